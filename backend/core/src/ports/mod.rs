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

pub use bus::{Bus, Record, Subscription};
pub use cache::{Cache, Endpoint};
pub use discovery::{Discovery, Instance};
pub use notifier::{Notifier, OfflinePush};
pub use store::Store;
