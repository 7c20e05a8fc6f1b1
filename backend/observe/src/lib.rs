//! ringchat's observability: one Prometheus registry per process, the figures every
//! service shares, and the admin HTTP port of the tokio services.
//!
//! - [`Metrics`]: a `prometheus-client` registry plus what must be measured right before
//!   it is read (Kafka consumer lag is a broker round trip, so it is asked per scrape, never
//!   per record). It renders the Prometheus text format 0.0.4, in which a gauge `x` and a
//!   counter `x_total` are two families, as the gateway has always exported them (the
//!   OpenMetrics format would fold them into one name).
//! - The shared figures: [`process`] (RSS, CPU seconds, open files, threads, from
//!   `/proc/self`), [`grpc`] (request rate, latency and errors per method, a tower layer
//!   for the tonic servers), [`lag`] (consumer lag per topic and partition), the cache's
//!   degraded mode ([`Metrics::cache_health`]) and [`Readings`] for counters a component
//!   keeps itself as atomics (read at scrape, so its hot path stays one relaxed add).
//! - [`admin`]: `/healthz`, `/readyz` (dependencies answer; degraded mode said in the body
//!   and a header) and `/metrics` on a hyper server, for im-logic, im-repo and im-task. The
//!   gateway serves the same [`Metrics`] on its own admin port (monoio core 0).
//!
//! Why `prometheus-client` (the Prometheus project's Rust client) rather than the
//! `metrics` facade with `metrics-exporter-prometheus`: three crates more in the build
//! (against some twenty: a global recorder, its hash maps, epoch GC, quanta, sketches); an
//! explicit registry per instance, so tests that run several services in one process keep
//! their figures apart; collectors called at scrape, which lets the gateway keep its
//! per-core atomics; and an encoder for the 0.0.4 text format.
#![forbid(unsafe_code)]

pub mod admin;
pub mod grpc;
pub mod lag;
pub mod process;
mod readings;
/// Starting a service binary and asking its admin port, for the services' tests.
#[cfg(feature = "testkit")]
pub mod testkit;

use std::sync::Arc;

use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry};
use ringchat_core::degraded::CacheHealth;
use ringchat_core::ports::Bus;
use ringchat_core::Ports;

pub use prometheus_client;
pub use readings::Readings;

/// The `Content-Type` of [`Metrics::encode`]'s output: the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A process's metrics: what is registered, and what is measured when they are read.
/// Built once at start (registration needs `&mut`), then shared behind an `Arc`.
#[derive(Default)]
pub struct Metrics {
    registry: Registry,
    lags: Vec<lag::BusLag>,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// The registry of a backend service: its process figures and
    /// `ringchat_build_info{version, service, node_id}`.
    pub fn for_service(service: &str, node_id: &str) -> Metrics {
        let mut m = Metrics::new();
        m.process();
        m.register(
            "ringchat_build",
            "build and instance facts",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("service", service.to_string()),
                ("node_id", node_id.to_string()),
            ]),
        );
        m
    }

    /// Registers a metric (a counter's name without `_total`: the encoder adds it).
    pub fn register(&mut self, name: &str, help: &str, metric: impl Metric) {
        self.registry.register(name, help, metric);
    }

    /// Registers a collector, asked for its families at each scrape.
    pub fn register_collector(&mut self, collector: impl prometheus_client::collector::Collector) {
        self.registry.register_collector(Box::new(collector));
    }

    /// `process_*`: resident memory, CPU seconds, open files and threads (Linux).
    pub fn process(&mut self) -> &mut Metrics {
        self.register_collector(process::ProcessCollector);
        self
    }

    /// The cache's degraded mode: `ringchat_cache_degraded` (0/1),
    /// `ringchat_cache_failures_total` and `ringchat_cache_recoveries_total`.
    pub fn cache_health(&mut self, health: Arc<CacheHealth>) -> &mut Metrics {
        let (a, b, c) = (health.clone(), health.clone(), health);
        self.register_collector(
            Readings::new()
                .gauge(
                    "ringchat_cache_degraded",
                    "1 while the cache (Redis) is unreachable and the service runs degraded",
                    move || i64::from(a.is_degraded()),
                )
                .counter(
                    "ringchat_cache_failures",
                    "cache calls that failed as unreachable",
                    move || b.failures(),
                )
                .counter(
                    "ringchat_cache_recoveries",
                    "times the degraded mode ended",
                    move || c.recoveries(),
                ),
        );
        self
    }

    /// `ringchat_bus_consumer_lag{topic, group, partition}`, measured on `bus` at each
    /// scrape ([`Metrics::scrape`]).
    pub fn bus_lag(&mut self, bus: Arc<dyn Bus>) -> &mut Metrics {
        let lag = lag::BusLag::new(bus);
        lag.register(self);
        self.lags.push(lag);
        self
    }

    /// The figures of a service's ports: the cache's degraded mode and the bus's consumer
    /// lag.
    pub fn ports(&mut self, ports: &Ports) -> &mut Metrics {
        self.cache_health(ports.cache_health.clone())
            .bus_lag(ports.bus.clone())
    }

    /// Measures what is measured per scrape (consumer lag).
    pub async fn refresh(&self) {
        for lag in &self.lags {
            lag.refresh().await;
        }
    }

    /// Everything registered, as it stands, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // writing to a String cannot fail; a collector that fails leaves its part out
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }

    /// [`Metrics::refresh`], then [`Metrics::encode`]: what `/metrics` answers.
    pub async fn scrape(&self) -> String {
        self.refresh().await;
        self.encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_registry_has_its_process_figures_and_build_info() {
        let text = Metrics::for_service("im-test", "node-7").encode();
        assert!(
            text.contains("ringchat_build_info{version=\"")
                && text.contains("service=\"im-test\",node_id=\"node-7\"} 1"),
            "{text}"
        );
        if cfg!(target_os = "linux") {
            for name in [
                "process_resident_memory_bytes ",
                "process_cpu_seconds_total ",
                "process_open_fds ",
                "process_threads ",
            ] {
                assert!(text.contains(name), "{name} missing:\n{text}");
            }
        }
    }

    #[test]
    fn cache_health_is_a_gauge_and_two_counters() {
        let health = Arc::new(CacheHealth::default());
        let mut m = Metrics::new();
        m.cache_health(health);
        let text = m.encode();
        assert!(
            text.contains("# TYPE ringchat_cache_degraded gauge\n"),
            "{text}"
        );
        assert!(text.contains("\nringchat_cache_degraded 0\n"), "{text}");
        assert!(
            text.contains("\nringchat_cache_failures_total 0\n"),
            "{text}"
        );
        assert!(
            text.contains("\nringchat_cache_recoveries_total 0\n"),
            "{text}"
        );
    }
}
