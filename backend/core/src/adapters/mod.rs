//! Embedded adapters: every port implemented in-process, so the embedded profile needs no
//! external engine. The real-engine adapters (Kafka, MySQL, Redis, etcd) implement the same
//! traits and pass the same conformance suites.

pub mod data_dir;
mod memory_bus;
mod memory_cache;
mod notifier;
mod sqlite_store;
mod static_discovery;

pub use memory_bus::{partition_for, MemoryBus};
pub use memory_cache::MemoryCache;
pub use notifier::{LogNotifier, WebhookNotifier};
pub use sqlite_store::SqliteStore;
pub use static_discovery::StaticDiscovery;
