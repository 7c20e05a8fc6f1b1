//! The cache conformance suite, run against Redis.

mod common;

use std::sync::Arc;

use ringchat_core::ports::Cache;

ringchat_core::cache_conformance!(async { Arc::new(common::cache().await) as Arc<dyn Cache> });
