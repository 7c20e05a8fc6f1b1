//! The admin port of the tokio services (im-logic, im-repo, im-task): a small HTTP/1.1
//! server (hyper) on the service's own runtime.
//!
//! - `GET /healthz`: 200 `{"status":"ok"}` while the process runs.
//! - `GET /readyz`: asks every dependency at once, each as cheaply as it can be asked
//!   (the store: a lookup of user 0 by primary key; the bus: its consumer lag, which asks
//!   the broker, or nothing for a bus that is not a broker; discovery: its instance list,
//!   served from the etcd watch), each within [`CHECK_TIMEOUT`]. 503 when one does not
//!   answer. While the cache is unreachable the service works on in degraded mode
//!   (`ringchat_core::degraded`), so the answer stays 200, and says so twice: the body's
//!   `status` is `degraded: cache unreachable` with `"degraded": ["cache"]`, and the
//!   header `x-ringchat-degraded: cache` is set (for probes that read only headers).
//!   The same state is the gauge `ringchat_cache_degraded`.
//! - `GET /metrics`: the process's [`Metrics`], measured now, in the Prometheus text
//!   format.
//!
//! Bodies are JSON, as on the gateway's admin port.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use ringchat_core::degraded::CacheHealth;
use ringchat_core::ports::{Bus, Discovery, Store};
use ringchat_core::{ErrorCode, Ports, Result};
use serde_json::json;
use tokio::net::TcpListener;

use crate::Metrics;

/// How long `/readyz` waits for one dependency.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Set on a `/readyz` answer while the service runs degraded: the names of what is
/// unreachable, comma-separated (`cache`).
pub const DEGRADED_HEADER: &str = "x-ringchat-degraded";

type CheckFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;
type Check = Box<dyn Fn() -> CheckFuture + Send + Sync>;

/// What a service's admin port answers with.
pub struct Admin {
    metrics: Arc<Metrics>,
    checks: Vec<(&'static str, Check)>,
    cache: Option<Arc<CacheHealth>>,
}

/// The outcome of the readiness checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Every dependency answered.
    pub ready: bool,
    /// What the service works around (`cache`), each also reported in `checks`.
    pub degraded: Vec<&'static str>,
    /// Each dependency and `ok` or what went wrong.
    pub checks: Vec<(&'static str, String)>,
}

impl Readiness {
    /// `ready`, `degraded: cache unreachable` or `not ready`.
    pub fn status(&self) -> String {
        if !self.ready {
            "not ready".into()
        } else if self.degraded.is_empty() {
            "ready".into()
        } else {
            format!("degraded: {} unreachable", self.degraded.join(", "))
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let checks: serde_json::Map<String, serde_json::Value> = self
            .checks
            .iter()
            .map(|(name, outcome)| (name.to_string(), json!(outcome)))
            .collect();
        json!({ "status": self.status(), "degraded": self.degraded, "checks": checks })
    }
}

impl Admin {
    pub fn new(metrics: Arc<Metrics>) -> Admin {
        Admin {
            metrics,
            checks: Vec::new(),
            cache: None,
        }
    }

    /// A readiness check: ready while `check` answers Ok within [`CHECK_TIMEOUT`].
    pub fn check<F, Fut>(mut self, name: &'static str, check: F) -> Admin
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.checks
            .push((name, Box::new(move || Box::pin(check()) as CheckFuture)));
        self
    }

    /// The store answers: a lookup of user 0 (by primary key; "not found" is an answer).
    pub fn store(self, store: Arc<dyn Store>) -> Admin {
        self.check("store", move || {
            let store = store.clone();
            async move {
                match store.user(0).await {
                    Err(e) if matches!(e.code, ErrorCode::Unavailable | ErrorCode::Internal) => {
                        Err(e)
                    }
                    _ => Ok(()),
                }
            }
        })
    }

    /// The bus answers: its consumer lag is measured (a broker round trip for Kafka).
    pub fn bus(self, bus: Arc<dyn Bus>) -> Admin {
        self.check("bus", move || {
            let bus = bus.clone();
            async move { bus.lag().await.map(|_| ()) }
        })
    }

    /// Discovery answers `service`'s instance list (from the etcd adapter's watch: no
    /// round trip).
    pub fn discovery(self, discovery: Arc<dyn Discovery>, service: &'static str) -> Admin {
        self.check("discovery", move || {
            let discovery = discovery.clone();
            async move { discovery.instances(service).await.map(|_| ()) }
        })
    }

    /// Readiness over a service's ports: the store, the bus, discovery (`service`'s
    /// instances) and the cache's degraded mode.
    pub fn ports(self, ports: &Ports, service: &'static str) -> Admin {
        self.store(ports.store.clone())
            .bus(ports.bus.clone())
            .discovery(ports.discovery.clone(), service)
            .cache(ports.cache_health.clone())
    }

    /// Reports the cache's degraded mode (it does not make the service unready).
    pub fn cache(mut self, health: Arc<CacheHealth>) -> Admin {
        self.cache = Some(health);
        self
    }

    /// Runs every check at once.
    pub async fn readiness(&self) -> Readiness {
        let outcomes =
            futures_util::future::join_all(self.checks.iter().map(|(name, check)| async move {
                let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
                };
                (*name, outcome)
            }))
            .await;
        let ready = outcomes.iter().all(|(_, o)| o.is_ok());
        let mut checks: Vec<(&'static str, String)> = outcomes
            .into_iter()
            .map(|(name, o)| (name, o.err().unwrap_or_else(|| "ok".into())))
            .collect();
        let mut degraded = Vec::new();
        if let Some(cache) = &self.cache {
            if cache.is_degraded() {
                degraded.push("cache");
                checks.push(("cache", "unreachable (degraded mode)".into()));
            } else {
                checks.push(("cache", "ok".into()));
            }
        }
        Readiness {
            ready,
            degraded,
            checks,
        }
    }

    /// The answer to `method path`.
    pub async fn respond(&self, method: &http::Method, path: &str) -> http::Response<Full<Bytes>> {
        let known = matches!(path, "/healthz" | "/readyz" | "/metrics");
        if !known {
            return json_response(
                http::StatusCode::NOT_FOUND,
                &json!({ "status": "not found", "endpoints": ["/healthz", "/readyz", "/metrics"] }),
            );
        }
        if method != http::Method::GET {
            let mut r = json_response(
                http::StatusCode::METHOD_NOT_ALLOWED,
                &json!({ "status": "method not allowed" }),
            );
            r.headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static("GET"));
            return r;
        }
        match path {
            "/healthz" => json_response(http::StatusCode::OK, &json!({ "status": "ok" })),
            "/readyz" => {
                let r = self.readiness().await;
                let code = if r.ready {
                    http::StatusCode::OK
                } else {
                    http::StatusCode::SERVICE_UNAVAILABLE
                };
                let mut resp = json_response(code, &r.to_json());
                if !r.degraded.is_empty() {
                    if let Ok(v) = http::HeaderValue::from_str(&r.degraded.join(",")) {
                        resp.headers_mut().insert(DEGRADED_HEADER, v);
                    }
                }
                resp
            }
            _ => {
                let mut resp =
                    http::Response::new(Full::new(Bytes::from(self.metrics.scrape().await)));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(crate::CONTENT_TYPE),
                );
                resp
            }
        }
    }
}

fn json_response(
    status: http::StatusCode,
    body: &serde_json::Value,
) -> http::Response<Full<Bytes>> {
    let mut resp = http::Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Serves `admin` on an already-bound listener until `shutdown` resolves (connections
/// already open finish their request).
pub async fn serve(
    listener: TcpListener,
    admin: Arc<Admin>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // out of file descriptors, most likely: let some close
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.respond(req.method(), req.uri().path()).await) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "admin connection failed");
            }
        });
    }
}

/// Binds `listen` (port 0 picks one), logs `admin listening addr=...` and serves `admin`
/// on the current runtime until `shutdown` resolves. Returns the bound address.
pub async fn start(
    listen: &str,
    admin: Admin,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("binding the admin port {listen}: {e}"))
    })?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "admin listening");
    let task = tokio::spawn(serve(listener, Arc::new(admin), shutdown));
    Ok((addr, task))
}
