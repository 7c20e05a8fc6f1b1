//! Gateway counters. Each core owns one [`CoreMetrics`] and is its only writer (relaxed
//! atomics, no contention, no allocation on the per-frame path); [`GatewayCollector`]
//! reads them when the admin port is scraped and hands them to the process's
//! `ringchat-observe` registry, which writes the Prometheus text.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use ringchat_core::ErrorCode;
use ringchat_observe::prometheus_client::collector::Collector;
use ringchat_observe::prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use ringchat_observe::prometheus_client::metrics::counter::ConstCounter;
use ringchat_observe::prometheus_client::metrics::gauge::ConstGauge;
use ringchat_observe::prometheus_client::metrics::MetricType;
use ringchat_observe::Metrics;

#[derive(Default)]
pub struct CoreMetrics {
    pub connections: AtomicI64,
    pub connections_total: AtomicU64,
    pub http_requests: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub writes: AtomicU64,
    pub deliveries: AtomicU64,
    pub send_queue_drops: AtomicU64,
    pub slow_consumer_closes: AtomicU64,
    pub heartbeat_closes: AtomicU64,
    pub protocol_closes: AtomicU64,
    pub connections_refused: AtomicU64,
    pub errors: [AtomicU64; ErrorCode::ALL.len()],
}

impl CoreMetrics {
    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[i].fetch_add(1, Relaxed);
        }
    }
}

/// Counters of the whole gateway.
pub struct GatewayMetrics {
    pub cores: Vec<Arc<CoreMetrics>>,
    pub driver: String,
    pub gateway_id: String,
    /// Sends published upstream and not yet acknowledged (or refused).
    pub pending_sends: AtomicI64,
    pub upstream_published: AtomicU64,
    pub upstream_failed: AtomicU64,
    pub downstream_events: AtomicU64,
    /// Events dropped as copies of ones already delivered (bus redelivery).
    pub redeliveries_dropped: AtomicU64,
}

impl GatewayMetrics {
    /// A send was acknowledged or refused. Never below zero: an ack the bus delivers twice
    /// (after a crash of im-logic) must not hide a send still in flight.
    pub fn send_answered(&self) {
        let _ = self
            .pending_sends
            .fetch_update(Relaxed, Relaxed, |v| Some((v - 1).max(0)));
    }

    pub fn new(cores: usize, driver: &str, gateway_id: &str) -> Self {
        GatewayMetrics {
            cores: (0..cores)
                .map(|_| Arc::new(CoreMetrics::default()))
                .collect(),
            driver: driver.to_string(),
            gateway_id: gateway_id.to_string(),
            pending_sends: AtomicI64::new(0),
            upstream_published: AtomicU64::new(0),
            upstream_failed: AtomicU64::new(0),
            downstream_events: AtomicU64::new(0),
            redeliveries_dropped: AtomicU64::new(0),
        }
    }

    pub fn connections(&self) -> i64 {
        self.cores.iter().map(|c| c.connections.load(Relaxed)).sum()
    }

    /// Adds the gateway's families to `metrics`, read from these counters at each scrape.
    pub fn register(self: &Arc<Self>, metrics: &mut Metrics) {
        metrics.register_collector(GatewayCollector(self.clone()));
    }
}

type Getter = fn(&CoreMetrics) -> u64;

/// Per-core families, `core="i"` each: counters end in `_total` (the encoder writes the
/// suffix of a counter family, so it is cut here), the rest are gauges.
const PER_CORE: [(&str, &str, Getter); 14] = [
    (
        "ringchat_gateway_connections",
        "open WebSocket connections",
        |c| c.connections.load(Relaxed).max(0) as u64,
    ),
    (
        "ringchat_gateway_connections_total",
        "WebSocket connections accepted",
        |c| c.connections_total.load(Relaxed),
    ),
    (
        "ringchat_gateway_http_requests_total",
        "HTTP API requests served",
        |c| c.http_requests.load(Relaxed),
    ),
    (
        "ringchat_gateway_frames_in_total",
        "WebSocket messages received",
        |c| c.frames_in.load(Relaxed),
    ),
    (
        "ringchat_gateway_frames_out_total",
        "WebSocket frames written",
        |c| c.frames_out.load(Relaxed),
    ),
    (
        "ringchat_gateway_bytes_out_total",
        "bytes written to WebSocket clients",
        |c| c.bytes_out.load(Relaxed),
    ),
    (
        "ringchat_gateway_writes_total",
        "socket write calls (one carries many frames)",
        |c| c.writes.load(Relaxed),
    ),
    (
        "ringchat_gateway_deliveries_total",
        "new-message frames queued to connections",
        |c| c.deliveries.load(Relaxed),
    ),
    (
        "ringchat_gateway_send_queue_drops_total",
        "frames dropped because a send queue was full",
        |c| c.send_queue_drops.load(Relaxed),
    ),
    (
        "ringchat_gateway_slow_consumer_closes_total",
        "connections closed because their send queue stayed full",
        |c| c.slow_consumer_closes.load(Relaxed),
    ),
    (
        "ringchat_gateway_heartbeat_closes_total",
        "connections closed after the heartbeat timeout",
        |c| c.heartbeat_closes.load(Relaxed),
    ),
    (
        "ringchat_gateway_protocol_closes_total",
        "connections closed for a WebSocket protocol violation",
        |c| c.protocol_closes.load(Relaxed),
    ),
    (
        "ringchat_gateway_connections_refused_total",
        "connections refused at the connection caps (overall or per address)",
        |c| c.connections_refused.load(Relaxed),
    ),
    ("ringchat_gateway_core_up", "gateway cores running", |_| 1),
];

/// A family's registered name and type: `x_total` is the counter `x`.
fn family(name: &str) -> (&str, MetricType) {
    match name.strip_suffix("_total") {
        Some(base) => (base, MetricType::Counter),
        None => (name, MetricType::Gauge),
    }
}

/// One unlabelled sample of a family named as it is exported.
fn encode_one(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> fmt::Result {
    let (name, kind) = family(name);
    let m = encoder.encode_descriptor(name, help, None, kind)?;
    match kind {
        MetricType::Counter => ConstCounter::new(v).encode(m),
        _ => ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(m),
    }
}

/// The gateway's families, read from its counters when scraped.
pub struct GatewayCollector(pub Arc<GatewayMetrics>);

impl fmt::Debug for GatewayCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayCollector")
            .field("gateway_id", &self.0.gateway_id)
            .finish()
    }
}

impl Collector for GatewayCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let g = &self.0;
        let cores: Vec<[(&str, String); 1]> = (0..g.cores.len())
            .map(|i| [("core", i.to_string())])
            .collect();
        for (name, help, get) in PER_CORE {
            let (name, kind) = family(name);
            let mut m = encoder.encode_descriptor(name, help, None, kind)?;
            for (labels, c) in cores.iter().zip(&g.cores) {
                let sample = m.encode_family(labels)?;
                match kind {
                    MetricType::Counter => ConstCounter::new(get(c)).encode(sample)?,
                    _ => {
                        ConstGauge::new(i64::try_from(get(c)).unwrap_or(i64::MAX)).encode(sample)?
                    }
                }
            }
        }
        {
            let (name, kind) = family("ringchat_gateway_errors_total");
            let mut m = encoder.encode_descriptor(
                name,
                "error frames and responses sent, by code",
                None,
                kind,
            )?;
            for (i, code) in ErrorCode::ALL.iter().enumerate() {
                let n: u64 = g.cores.iter().map(|c| c.errors[i].load(Relaxed)).sum();
                let labels = [("code", code.as_str())];
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
        }
        for (name, help, v) in [
            (
                "ringchat_gateway_pending_sends",
                "sends published and not yet acknowledged",
                g.pending_sends.load(Relaxed).max(0) as u64,
            ),
            (
                "ringchat_gateway_upstream_published_total",
                "client sends published to the upstream topic",
                g.upstream_published.load(Relaxed),
            ),
            (
                "ringchat_gateway_upstream_failed_total",
                "client sends the bus refused",
                g.upstream_failed.load(Relaxed),
            ),
            (
                "ringchat_gateway_downstream_events_total",
                "events read from this gateway's downstream topic",
                g.downstream_events.load(Relaxed),
            ),
            (
                "ringchat_gateway_redeliveries_dropped_total",
                "downstream events dropped as copies of ones already delivered",
                g.redeliveries_dropped.load(Relaxed),
            ),
        ] {
            encode_one(&mut encoder, name, help, v)?;
        }
        // `ringchat_build_info{...} 1`
        let mut m = encoder.encode_descriptor(
            "ringchat_build",
            "build and runtime facts",
            None,
            MetricType::Info,
        )?;
        m.encode_info(&[
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("driver", g.driver.clone()),
            ("gateway_id", g.gateway_id.clone()),
            ("cores", g.cores.len().to_string()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exported_names_and_labels_are_the_ones_dashboards_and_tests_know() {
        let g = Arc::new(GatewayMetrics::new(2, "legacy", "gw-9"));
        g.cores[1].connections.store(3, Relaxed);
        g.cores[0].connections_total.store(5, Relaxed);
        g.cores[1].error(ErrorCode::InvalidMessage);
        g.pending_sends.store(2, Relaxed);
        let mut m = Metrics::new();
        g.register(&mut m);
        let text = m.encode();
        for line in [
            "# TYPE ringchat_gateway_connections gauge\n",
            "\nringchat_gateway_connections{core=\"1\"} 3\n",
            "# TYPE ringchat_gateway_connections_total counter\n",
            "\nringchat_gateway_connections_total{core=\"0\"} 5\n",
            "\nringchat_gateway_core_up{core=\"1\"} 1\n",
            "\nringchat_gateway_errors_total{code=\"INVALID_MESSAGE\"} 1\n",
            "\nringchat_gateway_pending_sends 2\n",
            "\nringchat_gateway_upstream_published_total 0\n",
            "\nringchat_gateway_redeliveries_dropped_total 0\n",
            "ringchat_build_info{version=\"",
            "\",driver=\"legacy\",gateway_id=\"gw-9\",cores=\"2\"} 1\n",
        ] {
            assert!(text.contains(line), "{line:?} missing:\n{text}");
        }
        for (name, _, _) in PER_CORE {
            assert!(text.contains(&format!("\n{name}{{core=\"0\"}} ")), "{name}");
        }
    }
}
