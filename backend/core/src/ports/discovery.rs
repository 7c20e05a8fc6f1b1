use async_trait::async_trait;

use crate::error::Result;

/// A running instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instance {
    pub service: String,
    pub id: String,
    pub addr: String,
}

/// Service registration, discovery and dynamic configuration.
#[async_trait]
pub trait Discovery: Send + Sync + 'static {
    /// Registers an instance; it stays registered (lease kept alive) until deregistered
    /// or until the process dies and its lease runs out.
    async fn register(&self, instance: &Instance) -> Result<()>;
    async fn deregister(&self, instance: &Instance) -> Result<()>;
    /// Live instances of a service, sorted by id.
    async fn instances(&self, service: &str) -> Result<Vec<Instance>>;
    /// A dynamic configuration value.
    async fn config(&self, key: &str) -> Result<Option<String>>;
    async fn set_config(&self, key: &str, value: &str) -> Result<()>;
    /// Every dynamic configuration value, kept current (see [`crate::dynamic`]); `None`
    /// when the adapter cannot follow changes.
    fn config_updates(
        &self,
    ) -> Option<tokio::sync::watch::Receiver<std::collections::HashMap<String, String>>> {
        None
    }
}
