//! The one place that picks an adapter for each port by its URL scheme.
//!
//! | port | embedded | distributed |
//! |---|---|---|
//! | bus (`[bus] url`) | `memory://` | `kafka://host:port[,host:port]` |
//! | store (`[store] url`) | `sqlite://path` | `mysql://user:pass@host/db` (plus `read_url`) |
//! | cache (`[cache] url`) | `memory://` | `redis://host:port` |
//! | discovery (`[discovery] url`) | `static://` | `etcd://host:port[,host:port]` |
//!
//! Services that reach another service over gRPC do it through [`service_channel`]:
//! balanced over the live instances that discovery knows, or the configured URL when
//! discovery is static.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ringchat_core::config::Config;
use ringchat_core::degraded::CacheHealth;
use ringchat_core::ports::{Bus, Cache, Discovery, Instance, Notifier, Ports, Store};
use ringchat_core::{Error, Result};
use ringchat_embedded::{
    LogNotifier, MemoryBus, MemoryCache, SqliteStore, StaticDiscovery, WebhookNotifier,
};
use tonic::transport::{Channel, Endpoint};

/// The scheme of a URL (`kafka` of `kafka://a:1`), or the whole text when it has none.
fn scheme(url: &str) -> &str {
    url.split_once(':').map(|(s, _)| s).unwrap_or(url)
}

/// `host:port[,host:port]` after `scheme://`.
#[cfg_attr(not(feature = "distributed"), allow(dead_code))]
fn hosts(url: &str) -> Vec<String> {
    url.split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(url)
        .trim_end_matches('/')
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(String::from)
        .collect()
}

fn unsupported(key: &str, url: &str, supported: &str) -> Error {
    if cfg!(not(feature = "distributed")) {
        return Error::invalid(format!(
            "{key} = {url:?}: this build has the embedded adapters only (built without \
             ringchat-wiring's `distributed` feature)"
        ));
    }
    Error::invalid(format!(
        "{key} = {url:?}: unknown scheme (supported: {supported})"
    ))
}

/// The embedded profile: in-process bus, SQLite, in-memory cache, static discovery. Any
/// other engine is refused (one process runs everything).
pub async fn embedded(config: &Config) -> Result<Ports> {
    for (key, url, want) in [
        ("bus.url", &config.bus.url, "memory"),
        ("cache.url", &config.cache.url, "memory"),
        ("discovery.url", &config.discovery.url, "static"),
        ("store.url", &config.store.url, "sqlite"),
    ] {
        if scheme(url) != want {
            return Err(Error::invalid(format!(
                "{key} = {url:?}: the embedded profile (`ringchat`) runs on {want}: only; \
                 run the distributed binaries (im-gateway, im-logic, im-repo, im-task) for \
                 other engines"
            )));
        }
    }
    ports(config, None).await
}

/// Every port from config; `store` replaces the configured store (im-logic and im-task
/// reach the store through im-repo).
pub async fn ports(config: &Config, store: Option<Arc<dyn Store>>) -> Result<Ports> {
    let store = match store {
        Some(s) => s,
        None => self::store(config).await?,
    };
    ports_with(config, store, discovery(config).await?).await
}

/// The remaining ports from config, around a given store and discovery (services that
/// find im-repo through discovery make both first).
pub async fn ports_with(
    config: &Config,
    store: Arc<dyn Store>,
    discovery: Arc<dyn Discovery>,
) -> Result<Ports> {
    let cache_health = Arc::new(CacheHealth::default());
    Ok(Ports {
        bus: bus(config).await?,
        store,
        cache: cache(config, &cache_health).await?,
        discovery,
        notifier: notifier(config)?,
        cache_health,
    })
}

pub async fn bus(config: &Config) -> Result<Arc<dyn Bus>> {
    let bus = bare_bus(config).await?;
    Ok(match config.bus.topic_prefix.as_str() {
        "" => bus,
        prefix => Arc::new(Prefixed {
            inner: bus,
            prefix: prefix.to_string(),
        }),
    })
}

/// A bus whose topic and group names all start with a prefix.
struct Prefixed {
    inner: Arc<dyn Bus>,
    prefix: String,
}

#[async_trait::async_trait]
impl Bus for Prefixed {
    async fn publish(&self, topic: &str, key: &[u8], payload: bytes::Bytes) -> Result<()> {
        self.inner
            .publish(&format!("{}{topic}", self.prefix), key, payload)
            .await
    }

    async fn publish_with_headers(
        &self,
        topic: &str,
        key: &[u8],
        payload: bytes::Bytes,
        headers: &[(&str, &[u8])],
    ) -> Result<()> {
        self.inner
            .publish_with_headers(&format!("{}{topic}", self.prefix), key, payload, headers)
            .await
    }

    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn ringchat_core::ports::Subscription>> {
        self.inner
            .subscribe(
                &format!("{}{topic}", self.prefix),
                &format!("{}{group}", self.prefix),
            )
            .await
    }

    async fn lag(&self) -> Result<Vec<ringchat_core::ports::PartitionLag>> {
        self.inner.lag().await
    }
}

async fn bare_bus(config: &Config) -> Result<Arc<dyn Bus>> {
    let url = &config.bus.url;
    Ok(match scheme(url) {
        "memory" => Arc::new(MemoryBus::new(
            config.bus.partitions,
            config.bus.partition_capacity,
        )),
        #[cfg(feature = "distributed")]
        "kafka" => Arc::new(
            ringchat_kafka::KafkaBus::connect(&ringchat_kafka::KafkaOptions {
                brokers: hosts(url).join(","),
                partitions: config.bus.partitions as i32,
                replication: config.bus.replication as i32,
                client_id: format!("ringchat-{}", config.node.id),
            })
            .await?,
        ),
        _ => return Err(unsupported("bus.url", url, "memory://, kafka://")),
    })
}

pub async fn store(config: &Config) -> Result<Arc<dyn Store>> {
    let url = &config.store.url;
    Ok(match scheme(url) {
        "sqlite" => Arc::new(
            SqliteStore::connect(url, config.store.max_connections, config.node.worker_id).await?,
        ),
        #[cfg(feature = "distributed")]
        "mysql" | "mariadb" => Arc::new(
            ringchat_mysql::MysqlStore::connect(&ringchat_mysql::MysqlOptions {
                url: url.replacen("mariadb:", "mysql:", 1),
                read_url: Some(config.store.read_url.clone()).filter(|u| !u.is_empty()),
                max_connections: config.store.max_connections,
                worker_id: config.node.worker_id,
            })
            .await?,
        ),
        _ => return Err(unsupported("store.url", url, "sqlite://, mysql://")),
    })
}

/// The cache; a real one is wrapped for degraded mode, reporting to `health`.
#[cfg_attr(not(feature = "distributed"), allow(unused_variables))]
pub async fn cache(config: &Config, health: &Arc<CacheHealth>) -> Result<Arc<dyn Cache>> {
    let url = &config.cache.url;
    Ok(match scheme(url) {
        "memory" => Arc::new(MemoryCache::new()),
        // degraded mode when Redis is unreachable: see ringchat_core::degraded
        #[cfg(feature = "distributed")]
        "redis" | "rediss" => Arc::new(ringchat_core::degraded::TolerantCache::new(
            Arc::new(ringchat_redis::RedisCache::connect(url, &config.cache.key_prefix).await?),
            Arc::new(MemoryCache::new()),
            health.clone(),
        )),
        _ => return Err(unsupported("cache.url", url, "memory://, redis://")),
    })
}

pub async fn discovery(config: &Config) -> Result<Arc<dyn Discovery>> {
    let url = &config.discovery.url;
    Ok(match scheme(url) {
        "static" => Arc::new(StaticDiscovery::new(&config.discovery.services)),
        #[cfg(feature = "distributed")]
        "etcd" => {
            let endpoints: Vec<String> = hosts(url)
                .into_iter()
                .map(|h| format!("http://{h}"))
                .collect();
            Arc::new(
                ringchat_etcd::EtcdDiscovery::connect(
                    &endpoints,
                    &config.discovery.prefix,
                    config.discovery.ttl_secs,
                )
                .await?,
            )
        }
        _ => return Err(unsupported("discovery.url", url, "static://, etcd://")),
    })
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

/// Whether discovery is a real registry (services find each other through it).
pub fn dynamic_discovery(config: &Config) -> bool {
    scheme(&config.discovery.url) != "static"
}

fn endpoint(url: &str) -> Result<Endpoint> {
    Ok(Endpoint::from_shared(url.to_string())
        .map_err(|e| Error::invalid(format!("service url {url:?}: {e}")))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true))
}

/// A gRPC channel to `service`. With static discovery: the fixed `url`. Otherwise a
/// channel balanced over the instances discovery lists, kept in step by a task that
/// re-reads the list every `refresh` (the etcd adapter serves it from a watch, so this is
/// a local read): an instance that leaves discovery stops getting calls.
pub fn service_channel(
    config: &Config,
    discovery: Arc<dyn Discovery>,
    service: &'static str,
    url: &str,
) -> Result<Channel> {
    if !dynamic_discovery(config) {
        return Ok(endpoint(url)?.connect_lazy());
    }
    use tonic::transport::channel::Change;
    let (channel, tx) = Channel::balance_channel::<String>(16);
    let refresh = Duration::from_millis(500);
    tokio::spawn(async move {
        let mut live: BTreeSet<String> = BTreeSet::new();
        let mut warned = false;
        loop {
            match discovery.instances(service).await {
                Ok(list) => {
                    let now: BTreeSet<String> =
                        list.into_iter().map(|Instance { addr, .. }| addr).collect();
                    if now.is_empty() && !warned {
                        tracing::warn!(service, "no live instance in discovery yet");
                        warned = true;
                    }
                    for gone in live.difference(&now) {
                        tracing::info!(service, addr = %gone, "instance left");
                        if tx.send(Change::Remove(gone.clone())).await.is_err() {
                            return;
                        }
                    }
                    for new in now.difference(&live) {
                        match endpoint(new) {
                            Ok(e) => {
                                tracing::info!(service, addr = %new, "instance joined");
                                if tx.send(Change::Insert(new.clone(), e)).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => tracing::warn!(service, error = %e, "bad instance address"),
                        }
                    }
                    if !now.is_empty() {
                        warned = false;
                    }
                    live = now;
                }
                Err(e) => tracing::warn!(service, error = %e, "discovery lookup failed"),
            }
            tokio::time::sleep(refresh).await;
        }
    });
    Ok(channel)
}

/// This instance as others reach it: `http://{node.advertise_host}:{bound port}`.
pub fn advertised(config: &Config, service: &str, bound: std::net::SocketAddr) -> Instance {
    Instance {
        service: service.to_string(),
        id: config.node.id.clone(),
        addr: format!("http://{}:{}", config.node.advertise_host, bound.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_hosts() {
        assert_eq!(scheme("kafka://a:1,b:2"), "kafka");
        assert_eq!(scheme("sqlite::memory:"), "sqlite");
        assert_eq!(hosts("kafka://a:1, b:2/"), vec!["a:1", "b:2"]);
        assert_eq!(hosts("etcd://127.0.0.1:2379"), vec!["127.0.0.1:2379"]);
    }

    #[tokio::test]
    async fn the_embedded_profile_refuses_other_engines() {
        let mut c = Config::default();
        c.store.url = "sqlite::memory:".into();
        c.bus.url = "kafka://127.0.0.1:9092".into();
        let e = embedded(&c).await.err().expect("refused");
        assert!(e.to_string().contains("bus.url"), "{e}");
    }
}
