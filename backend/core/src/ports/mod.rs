//! Ports: one trait per external concern, at the level the domain needs it.
//!
//! | port | embedded adapter | real adapter (distributed profile) |
//! |---|---|---|
//! | [`Bus`] | [`crate::adapters::MemoryBus`] | Kafka |
//! | [`Store`] | [`crate::adapters::SqliteStore`] | MySQL/MariaDB, or im-repo over gRPC |
//! | [`Cache`] | [`crate::adapters::MemoryCache`] | Redis |
//! | [`Discovery`] | [`crate::adapters::StaticDiscovery`] | etcd |
//! | [`Notifier`] | [`crate::adapters::LogNotifier`] | [`crate::adapters::WebhookNotifier`] |
//!
//! Each port has a conformance suite in [`crate::testkit`] that every adapter runs.

mod bus;
mod cache;
mod discovery;
mod notifier;
mod store;

pub use bus::{Bus, PartitionLag, Record, Subscription};
pub use cache::{Cache, Endpoint};
pub use discovery::{Discovery, Instance};
pub use notifier::{Notifier, OfflinePush};
pub use store::Store;

use std::sync::Arc;

/// Every external system a ringchat service talks to, behind its port. Built from config
/// by `ringchat-wiring`, the one place that picks an adapter per URL scheme.
#[derive(Clone)]
pub struct Ports {
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn Store>,
    pub cache: Arc<dyn Cache>,
    pub discovery: Arc<dyn Discovery>,
    pub notifier: Arc<dyn Notifier>,
    /// Whether the cache answers (degraded mode, see [`crate::degraded`]).
    pub cache_health: Arc<crate::degraded::CacheHealth>,
}
