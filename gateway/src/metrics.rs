//! Gateway counters. Each core owns one [`CoreMetrics`] and is its only writer (relaxed
//! atomics, no contention); the admin endpoint sums them when scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use ringchat_core::ErrorCode;

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

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        type Getter = fn(&CoreMetrics) -> u64;
        let per_core: [(&str, &str, Getter); 14] = [
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
        for (name, help, get) in per_core {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (i, c) in self.cores.iter().enumerate() {
                let _ = writeln!(out, "{name}{{core=\"{i}\"}} {}", get(c));
            }
        }
        let _ = writeln!(
            out,
            "# HELP ringchat_gateway_errors_total error frames and responses sent, by code\n# TYPE ringchat_gateway_errors_total counter"
        );
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            let n: u64 = self.cores.iter().map(|c| c.errors[i].load(Relaxed)).sum();
            let _ = writeln!(
                out,
                "ringchat_gateway_errors_total{{code=\"{}\"}} {n}",
                code.as_str()
            );
        }
        for (name, help, v) in [
            (
                "ringchat_gateway_pending_sends",
                "sends published and not yet acknowledged",
                self.pending_sends.load(Relaxed).max(0) as u64,
            ),
            (
                "ringchat_gateway_upstream_published_total",
                "client sends published to the upstream topic",
                self.upstream_published.load(Relaxed),
            ),
            (
                "ringchat_gateway_upstream_failed_total",
                "client sends the bus refused",
                self.upstream_failed.load(Relaxed),
            ),
            (
                "ringchat_gateway_downstream_events_total",
                "events read from this gateway's downstream topic",
                self.downstream_events.load(Relaxed),
            ),
            (
                "ringchat_gateway_redeliveries_dropped_total",
                "downstream events dropped as copies of ones already delivered",
                self.redeliveries_dropped.load(Relaxed),
            ),
        ] {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP ringchat_build_info build and runtime facts\n# TYPE ringchat_build_info gauge\nringchat_build_info{{version=\"{}\",driver=\"{}\",gateway_id=\"{}\",cores=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            self.driver,
            self.gateway_id,
            self.cores.len()
        );
        out
    }
}
