//! The discovery conformance suite, run against etcd.

mod common;

use std::sync::Arc;

use ringchat_core::ports::Discovery;

ringchat_core::discovery_conformance!(async {
    Arc::new(common::connect(&common::prefix(), 10).await) as Arc<dyn Discovery>
});
