//! The admin port (default 8081): `/healthz` (the process runs), `/readyz` (the backend
//! answers and the gateway is not draining), `/metrics` (Prometheus text format).

use std::rc::Rc;

use ringchat_core::{Error, ErrorCode};
use ringchat_proto as pb;
use serde_json::json;

use crate::cores::Core;
use crate::http::{Request, Response, Routes};

/// The routes of the admin listener.
#[derive(Clone, Copy)]
pub struct Admin;

impl Routes for Admin {
    const PUBLIC: bool = false;

    async fn route(self, core: &Rc<Core>, req: &Request) -> Response {
        route(core, req).await
    }
}

async fn route(core: &Rc<Core>, req: &Request) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/healthz") => Response::json(200, &json!({ "status": "ok" })),
        ("GET", "/readyz") => {
            if core.draining.get() {
                return Response::json(503, &json!({ "status": "draining" }));
            }
            if core.limits.at_capacity() {
                return Response::json(
                    503,
                    &json!({
                        "status": "at connection capacity",
                        "connections": core.limits.connections(),
                        "max": core.limits.max_connections(),
                    }),
                );
            }
            // an empty token costs the backend nothing and proves it answers
            let probe = core
                .bridge
                .call(|l| async move {
                    l.authenticate(pb::TokenRequest {
                        token: String::new(),
                    })
                    .await
                })
                .await;
            match probe {
                Err(e) if e.code == ErrorCode::AuthFailed => Response::json(
                    200,
                    &json!({ "status": "ready", "driver": core.gateway_metrics.driver }),
                ),
                Ok(_) => Response::json(200, &json!({ "status": "ready" })),
                Err(e) => Response::json(
                    503,
                    &json!({ "status": "backend unavailable", "error": e.message }),
                ),
            }
        }
        ("GET", "/metrics") => {
            // measured and written on the tokio side: consumer lag asks the bus (a broker
            // round trip), which a core never waits on itself
            let exported = core.exported.clone();
            let text = core
                .bridge
                .call(move |_| async move { Ok(exported.scrape().await) })
                .await
                .unwrap_or_else(|_| core.exported.encode());
            Response::text(200, ringchat_observe::CONTENT_TYPE, text)
        }
        _ => {
            core.metrics.error(ErrorCode::NotFound);
            Response::error(&Error::new(
                ErrorCode::NotFound,
                "admin endpoints: /healthz, /readyz, /metrics",
            ))
        }
    }
}
