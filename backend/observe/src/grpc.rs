//! gRPC server figures, per method: requests by status code, latency, and errors by
//! ringchat's error code. Measured by a tower layer around the whole tonic server
//! ([`GrpcMetrics::layer`]), so no handler carries metrics code.
//!
//! What the layer sees is the HTTP/2 exchange: the method is the request path
//! (`/ringchat.v1.Logic/Login`), the status is the `grpc-status` header of a trailers-only
//! response (how tonic answers a unary call that fails; a response without it succeeded,
//! its status following in the trailers), the latency runs until the response head, which
//! for a unary call is when the handler has finished. Paths the server does not know
//! (`UNIMPLEMENTED`) count under `method="unknown"`, so a client cannot grow the label set.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use ringchat_core::ErrorCode;

use crate::Metrics;

/// Latency buckets, in seconds: a cached lookup to a slow store write.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The header that carries ringchat's error code in a failed call (`ringchat_core::error`).
const CODE_HEADER: &str = "x-ringchat-code";

/// gRPC's status codes by number, as their canonical names.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];
const UNIMPLEMENTED: usize = 12;

type MethodLabels = [(&'static str, String); 2];
type CodeLabels = [(&'static str, String); 3];

struct Families {
    requests: Family<CodeLabels, Counter>,
    errors: Family<CodeLabels, Counter>,
    duration: Family<MethodLabels, Histogram, fn() -> Histogram>,
}

/// The gRPC server figures of one process. Cheap to clone (clones share the figures).
#[derive(Clone)]
pub struct GrpcMetrics {
    families: Arc<Families>,
}

impl Default for GrpcMetrics {
    fn default() -> Self {
        GrpcMetrics::new()
    }
}

impl GrpcMetrics {
    pub fn new() -> GrpcMetrics {
        GrpcMetrics {
            families: Arc::new(Families {
                requests: Family::default(),
                errors: Family::default(),
                duration: Family::new_with_constructor(|| Histogram::new(BUCKETS)),
            }),
        }
    }

    /// `ringchat_grpc_server_requests_total{service, method, code}`,
    /// `ringchat_grpc_server_errors_total{service, method, code}` and
    /// `ringchat_grpc_server_request_duration_seconds{service, method}`.
    pub fn register(&self, metrics: &mut Metrics) {
        let f = &self.families;
        metrics.register(
            "ringchat_grpc_server_requests",
            "gRPC calls served, by method and gRPC status code",
            f.requests.clone(),
        );
        metrics.register(
            "ringchat_grpc_server_errors",
            "gRPC calls that failed, by method and ringchat error code (x-ringchat-code)",
            f.errors.clone(),
        );
        metrics.register(
            "ringchat_grpc_server_request_duration_seconds",
            "time to answer a gRPC call, by method",
            f.duration.clone(),
        );
    }

    /// The tower layer that measures every call of a tonic server
    /// (`Server::builder().layer(metrics.layer())`).
    pub fn layer(&self) -> GrpcMetricsLayer {
        GrpcMetricsLayer {
            metrics: self.clone(),
        }
    }

    /// Counts one answered call to `path`; `headers` are the response's (None: the
    /// transport failed).
    fn observe(&self, path: &str, elapsed: Duration, headers: Option<&http::HeaderMap>) {
        let status = match headers {
            None => 2, // UNKNOWN
            Some(h) => h
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|c| *c < CODES.len())
                .unwrap_or(0),
        };
        let (service, method) = match path.trim_start_matches('/').split_once('/') {
            Some((s, m)) if status != UNIMPLEMENTED => (s, m),
            _ => ("unknown", "unknown"),
        };
        let f = &self.families;
        let labels = |code: &str| -> CodeLabels {
            [
                ("service", service.to_string()),
                ("method", method.to_string()),
                ("code", code.to_string()),
            ]
        };
        f.requests.get_or_create(&labels(CODES[status])).inc();
        if status != 0 {
            let code = headers
                .and_then(|h| h.get(CODE_HEADER))
                .and_then(|v| v.to_str().ok())
                .and_then(ErrorCode::parse)
                .map_or(CODES[status], ErrorCode::as_str);
            f.errors.get_or_create(&labels(code)).inc();
        }
        f.duration
            .get_or_create(&[
                ("service", service.to_string()),
                ("method", method.to_string()),
            ])
            .observe(elapsed.as_secs_f64());
    }
}

/// See [`GrpcMetrics::layer`].
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    metrics: GrpcMetrics,
}

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> GrpcMetricsService<S> {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// A service that measures each call of the one it wraps.
#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: GrpcMetrics,
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for GrpcMetricsService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    // one allocation per call: small beside a gRPC call's own
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_string();
        let metrics = self.metrics.clone();
        let start = Instant::now();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let r = answer.await;
            metrics.observe(
                &path,
                start.elapsed(),
                r.as_ref().ok().map(http::Response::headers),
            );
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    http::HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn calls_count_by_method_status_and_error_code() {
        let g = GrpcMetrics::new();
        let mut m = Metrics::new();
        g.register(&mut m);
        let ms = Duration::from_millis(3);
        g.observe("/ringchat.Logic/Login", ms, Some(&headers(&[])));
        g.observe(
            "/ringchat.Logic/Login",
            ms,
            Some(&headers(&[
                ("grpc-status", "16"),
                ("x-ringchat-code", "AUTH_FAILED"),
            ])),
        );
        g.observe(
            "/ringchat.Logic/NoSuchThing",
            ms,
            Some(&headers(&[("grpc-status", "12")])),
        );
        let text = m.encode();
        for line in [
            "ringchat_grpc_server_requests_total{service=\"ringchat.Logic\",method=\"Login\",code=\"OK\"} 1",
            "ringchat_grpc_server_requests_total{service=\"ringchat.Logic\",method=\"Login\",code=\"UNAUTHENTICATED\"} 1",
            "ringchat_grpc_server_errors_total{service=\"ringchat.Logic\",method=\"Login\",code=\"AUTH_FAILED\"} 1",
            "ringchat_grpc_server_requests_total{service=\"unknown\",method=\"unknown\",code=\"UNIMPLEMENTED\"} 1",
            "ringchat_grpc_server_request_duration_seconds_count{service=\"ringchat.Logic\",method=\"Login\"} 2",
            "ringchat_grpc_server_request_duration_seconds_bucket{service=\"ringchat.Logic\",method=\"Login\",le=\"0.005\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("NoSuchThing"), "{text}");
    }
}
