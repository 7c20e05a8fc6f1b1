//! Ports: one trait per external concern, at the level the domain needs it.
//!
//! | port | embedded adapter | real adapter (distributed profile) |
//! |---|---|---|
//! | [`Bus`] | `ringchat_embedded::MemoryBus` | Kafka (`ringchat-kafka`) |
//! | [`Store`] | `ringchat_embedded::SqliteStore` | MySQL/MariaDB (`ringchat-mysql`), or im-repo over gRPC |
//! | [`Cache`] | `ringchat_embedded::MemoryCache` | Redis (`ringchat-redis`) |
//! | [`Discovery`] | `ringchat_embedded::StaticDiscovery` | etcd (`ringchat-etcd`) |
//! | [`Notifier`] | `ringchat_embedded::LogNotifier` | `ringchat_embedded::WebhookNotifier` |
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
