//! The set of ports a service runs on, built from config.

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::{LogNotifier, MemoryBus, MemoryCache, SqliteStore, StaticDiscovery, WebhookNotifier};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::ports::{Bus, Cache, Discovery, Notifier, Store};

/// Every external system a ringchat service talks to, behind its port.
#[derive(Clone)]
pub struct Ports {
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn Store>,
    pub cache: Arc<dyn Cache>,
    pub discovery: Arc<dyn Discovery>,
    pub notifier: Arc<dyn Notifier>,
}

impl Ports {
    /// The embedded profile: in-process bus, SQLite, in-memory cache, static discovery.
    /// URLs of other engines are refused here; the distributed wiring handles them.
    pub async fn embedded(config: &Config) -> Result<Ports> {
        for (key, url, want) in [
            ("bus.url", &config.bus.url, "memory://"),
            ("cache.url", &config.cache.url, "memory://"),
            ("discovery.url", &config.discovery.url, "static://"),
        ] {
            if url != want {
                return Err(Error::invalid(format!(
                    "{key} = {url:?}: the embedded profile supports only {want}"
                )));
            }
        }
        if !config.store.url.starts_with("sqlite:") {
            return Err(Error::invalid(format!(
                "store.url = {:?}: the embedded profile supports only sqlite:",
                config.store.url
            )));
        }
        let store = SqliteStore::connect(
            &config.store.url,
            config.store.max_connections,
            config.node.worker_id,
        )
        .await?;
        Ok(Ports {
            bus: Arc::new(MemoryBus::new(config.bus.partitions, config.bus.partition_capacity)),
            store: Arc::new(store),
            cache: Arc::new(MemoryCache::new()),
            discovery: Arc::new(StaticDiscovery::new(&config.discovery.services)),
            notifier: notifier(config)?,
        })
    }
}

/// The offline-push notifier chosen by `[task] notifier`.
pub fn notifier(config: &Config) -> Result<Arc<dyn Notifier>> {
    Ok(match config.task.notifier.as_str() {
        "webhook" => Arc::new(WebhookNotifier::new(
            &config.task.webhook_url,
            Duration::from_millis(config.task.webhook_timeout_ms),
        )?),
        _ => Arc::new(LogNotifier::new()),
    })
}
