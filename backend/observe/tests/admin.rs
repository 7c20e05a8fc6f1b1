//! The admin port over real HTTP: health, readiness (ready, degraded, not ready) and
//! metrics, with the embedded adapters and a cache that fails on command.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ringchat_core::degraded::{CacheHealth, TolerantCache};
use ringchat_core::ports::{Cache, Endpoint};
use ringchat_core::shutdown::Shutdown;
use ringchat_core::{Error, Result};
use ringchat_embedded::{MemoryBus, MemoryCache, SqliteStore, StaticDiscovery};
use ringchat_observe::admin::{self, Admin, DEGRADED_HEADER};
use ringchat_observe::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A cache that is unreachable while `down` is set, a [`MemoryCache`] otherwise.
#[derive(Default)]
struct FailingCache {
    down: AtomicBool,
    inner: MemoryCache,
}

impl FailingCache {
    fn check(&self) -> Result<()> {
        if self.down.load(Relaxed) {
            Err(Error::unavailable("cache: connection refused"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Cache for FailingCache {
    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<()> {
        self.check()?;
        self.inner.set(key, value, ttl).await
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.check()?;
        self.inner.get(key).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.check()?;
        self.inner.delete(key).await
    }
    async fn presence_add(&self, user_id: i64, e: &Endpoint, ttl: Duration) -> Result<usize> {
        self.check()?;
        self.inner.presence_add(user_id, e, ttl).await
    }
    async fn presence_remove(&self, user_id: i64, e: &Endpoint) -> Result<usize> {
        self.check()?;
        self.inner.presence_remove(user_id, e).await
    }
    async fn presence_refresh(
        &self,
        gw: &str,
        entries: &[(i64, u64)],
        ttl: Duration,
    ) -> Result<()> {
        self.check()?;
        self.inner.presence_refresh(gw, entries, ttl).await
    }
    async fn presence(&self, user_ids: &[i64]) -> Result<HashMap<i64, Vec<Endpoint>>> {
        self.check()?;
        self.inner.presence(user_ids).await
    }
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response");
    Answer {
        status: head[9..12].parse().unwrap(),
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// The value of the unlabelled sample `name` in a metrics text.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

struct Service {
    addr: SocketAddr,
    cache: Arc<FailingCache>,
    tolerant: TolerantCache,
    _stop: Shutdown,
}

async fn service() -> Service {
    let store = Arc::new(SqliteStore::connect("sqlite::memory:", 1, 1).await.unwrap());
    let bus = Arc::new(MemoryBus::new(2, 64));
    let discovery = Arc::new(StaticDiscovery::default());
    let health = Arc::new(CacheHealth::default());
    let cache = Arc::new(FailingCache::default());
    let tolerant = TolerantCache::new(cache.clone(), Arc::new(MemoryCache::new()), health.clone());
    let mut metrics = Metrics::for_service("im-test", "t-1");
    metrics.cache_health(health.clone()).bus_lag(bus.clone());
    let admin = Admin::new(Arc::new(metrics))
        .store(store)
        .bus(bus)
        .discovery(discovery, "im-test")
        .cache(health);
    let (stop, signal) = Shutdown::new();
    let (addr, _task) = admin::start("127.0.0.1:0", admin, signal.into_future())
        .await
        .unwrap();
    Service {
        addr,
        cache,
        tolerant,
        _stop: stop,
    }
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let s = service().await;
    let r = get(s.addr, "/healthz").await;
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("ok")));

    let r = get(s.addr, "/readyz").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["status"], "ready");
    for check in ["store", "bus", "discovery", "cache"] {
        assert_eq!(body["checks"][check], "ok", "{body}");
    }
    assert_eq!(r.header(DEGRADED_HEADER), None);

    let r = get(s.addr, "/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    for name in [
        "ringchat_build_info{",
        "ringchat_cache_degraded ",
        "ringchat_cache_failures_total ",
        "ringchat_bus_lag_measurement_failures_total ",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_threads ",
    ] {
        assert!(r.body.contains(name), "{name} missing:\n{}", r.body);
    }

    assert_eq!(get(s.addr, "/nope").await.status, 404);
}

#[tokio::test]
async fn an_unreachable_cache_shows_as_degraded_in_readyz_and_in_the_gauge() {
    let s = service().await;
    let metrics = get(s.addr, "/metrics").await.body;
    assert_eq!(sample(&metrics, "ringchat_cache_degraded"), 0.0);

    s.cache.down.store(true, Relaxed);
    // the tolerant cache answers from its mirror and marks the service degraded
    assert_eq!(s.tolerant.get("k").await.unwrap(), None);
    let r = get(s.addr, "/readyz").await;
    assert_eq!(r.status, 200, "degraded is still ready: {}", r.body);
    assert!(r.body.contains("degraded: cache unreachable"), "{}", r.body);
    assert_eq!(r.json()["degraded"], serde_json::json!(["cache"]));
    assert_eq!(r.header(DEGRADED_HEADER).as_deref(), Some("cache"));
    let metrics = get(s.addr, "/metrics").await.body;
    assert_eq!(sample(&metrics, "ringchat_cache_degraded"), 1.0);
    assert_eq!(sample(&metrics, "ringchat_cache_failures_total"), 1.0);

    s.cache.down.store(false, Relaxed);
    s.tolerant.get("k").await.unwrap();
    let r = get(s.addr, "/readyz").await;
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("ready"))
    );
    let metrics = get(s.addr, "/metrics").await.body;
    assert_eq!(sample(&metrics, "ringchat_cache_degraded"), 0.0);
    assert_eq!(sample(&metrics, "ringchat_cache_recoveries_total"), 1.0);
}

#[tokio::test]
async fn a_dependency_that_does_not_answer_makes_the_service_unready() {
    let admin = Admin::new(Arc::new(Metrics::new()))
        .check("store", || async {
            Err(Error::unavailable("store: connection refused"))
        })
        .check("bus", || async { Ok(()) })
        .check("discovery", std::future::pending::<Result<()>>);
    let r = admin.readiness().await;
    assert!(!r.ready);
    assert_eq!(r.status(), "not ready");
    let outcome = |name: &str| r.checks.iter().find(|(n, _)| *n == name).unwrap().1.clone();
    assert!(outcome("store").contains("connection refused"));
    assert_eq!(outcome("bus"), "ok");
    assert!(outcome("discovery").contains("no answer within"));
    let resp = admin.respond(&http::Method::GET, "/readyz").await;
    assert_eq!(resp.status(), 503);
    let resp = admin.respond(&http::Method::POST, "/readyz").await;
    assert_eq!(resp.status(), 405);
}
