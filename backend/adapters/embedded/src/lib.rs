//! The embedded profile's adapters: every port implemented in-process, so one `ringchat`
//! process needs no external engine: SQLite for the store (with its data directory: the
//! lock and the JWT secret kept beside the database), an in-process bus with Kafka's
//! semantics, an in-memory cache and static discovery. The offline-push notifiers (log and
//! webhook) serve both profiles. The real engines' adapters (`ringchat-kafka`,
//! `ringchat-mysql`, `ringchat-redis`, `ringchat-etcd`) implement the same ports and pass
//! the same conformance suites (`ringchat_core::testkit`).

pub mod data_dir;
mod memory_bus;
mod memory_cache;
mod notifier;
mod secret;
mod sqlite_store;
mod static_discovery;

pub use memory_bus::{partition_for, MemoryBus};
pub use memory_cache::MemoryCache;
pub use notifier::{LogNotifier, WebhookNotifier};
pub use secret::with_embedded_secret;
pub use sqlite_store::SqliteStore;
pub use static_discovery::StaticDiscovery;
