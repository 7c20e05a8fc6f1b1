//! The bus conformance suite against a real Kafka-protocol broker (topics of 3 partitions;
//! every case uses its own topic and group names).

mod common;

use std::sync::Arc;

use ringchat_core::ports::Bus;

ringchat_core::bus_conformance!(async { Arc::new(common::bus().await) as Arc<dyn Bus> });
