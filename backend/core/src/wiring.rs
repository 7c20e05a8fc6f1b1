//! The set of ports a service runs on, built from config.

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::{
    LogNotifier, MemoryBus, MemoryCache, SqliteStore, StaticDiscovery, WebhookNotifier,
};
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
        Ok(Ports {
            bus: Arc::new(MemoryBus::new(
                config.bus.partitions,
                config.bus.partition_capacity,
            )),
            store: store_from_config(config).await?,
            cache: Arc::new(MemoryCache::new()),
            discovery: Arc::new(StaticDiscovery::new(&config.discovery.services)),
            notifier: notifier(config)?,
        })
    }
}

/// Picks the adapter of each port by its URL scheme. The embedded adapters are built in;
/// the real engines (`kafka://`, `mysql://`, `redis://`, `etcd://`) are refused with a
/// clear error until their adapters exist.
pub async fn ports_from_config(config: &Config, store: Option<Arc<dyn Store>>) -> Result<Ports> {
    fn unsupported(key: &str, url: &str) -> Error {
        Error::invalid(format!(
            "{key} = {url:?}: this build has no adapter for that engine yet (supported: the embedded ones)"
        ))
    }
    let bus: Arc<dyn Bus> = match config.bus.url.as_str() {
        "memory://" => Arc::new(MemoryBus::new(
            config.bus.partitions,
            config.bus.partition_capacity,
        )),
        other => return Err(unsupported("bus.url", other)),
    };
    let cache: Arc<dyn Cache> = match config.cache.url.as_str() {
        "memory://" => Arc::new(MemoryCache::new()),
        other => return Err(unsupported("cache.url", other)),
    };
    let discovery: Arc<dyn Discovery> = match config.discovery.url.as_str() {
        "static://" => Arc::new(StaticDiscovery::new(&config.discovery.services)),
        other => return Err(unsupported("discovery.url", other)),
    };
    let store = match store {
        Some(s) => s,
        None => store_from_config(config).await?,
    };
    Ok(Ports {
        bus,
        store,
        cache,
        discovery,
        notifier: notifier(config)?,
    })
}

/// The store adapter chosen by `[store] url`.
pub async fn store_from_config(config: &Config) -> Result<Arc<dyn Store>> {
    if config.store.url.starts_with("sqlite:") {
        Ok(Arc::new(
            SqliteStore::connect(
                &config.store.url,
                config.store.max_connections,
                config.node.worker_id,
            )
            .await?,
        ))
    } else {
        Err(Error::invalid(format!(
            "store.url = {:?}: this build has no adapter for that engine yet (supported: sqlite:)",
            config.store.url
        )))
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
