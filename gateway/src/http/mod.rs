//! HTTP/1.1 on a core: request heads ([`request`]), responses ([`response`]), CORS
//! ([`cors`]), keep-alive and limits (here), and the WebSocket upgrade ([`upgrade`]).
//!
//! What a request means is not decided here: each listener passes the [`Routes`] that
//! answer its requests (the client API, the admin port), so this module depends on no
//! handler and the handlers depend on it.

pub mod cors;
pub mod request;
pub mod response;
pub mod upgrade;

use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use ringchat_core::{Error, ErrorCode};
use std::net::SocketAddr;

use crate::limits::ConnSlot;

pub use request::{percent_decode, Request};
pub use response::Response;

use crate::cores::Core;
use request::{read_head, Head, HeadLimits, BODY_DEADLINE};

/// What answers the requests of one listener.
pub trait Routes: Copy + 'static {
    /// The public listener: `GET /ws` opens client WebSockets, and connections and
    /// requests count against the per-address limits. (The admin port is neither.)
    const PUBLIC: bool;

    fn route(self, core: &Rc<Core>, req: &Request) -> impl Future<Output = Response>;
}

/// Serves one TCP connection: requests until it closes, or a WebSocket after an upgrade.
pub async fn serve_conn<R: Routes>(
    core: Rc<Core>,
    mut stream: TcpStream,
    peer: SocketAddr,
    routes: R,
    slot: Option<ConnSlot>,
) {
    // counted against the connection caps until this connection (or its WebSocket) ends
    let mut slot = slot;
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let limits = HeadLimits {
        max_bytes: core.config.http_max_head_bytes,
        idle: Duration::from_secs(core.config.http_idle_timeout_secs),
        head: Duration::from_secs(core.config.http_head_timeout_secs),
    };
    loop {
        let head = read_head(&mut stream, &mut buf, &limits).await;
        let (mut req, head_len) = match head {
            Head::Request(r, n) => (r, n),
            Head::Reply(resp) => {
                let _ = stream.write_all(resp.encode(&[], false)).await;
                return;
            }
            Head::Closed => return,
        };
        buf.drain(..head_len);
        req.peer = Some(peer.ip());
        core.metrics
            .http_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if R::PUBLIC {
            if let Err(wait) = core.limits.http.take(&peer.ip()) {
                core.metrics.error(ErrorCode::RateLimited);
                let e = Error::rate_limited("too many requests from your address", wait);
                let cors = cors::headers(&core.config.cors_origins, &req);
                let (res, _) = stream
                    .write_all(Response::error(&e).encode(&cors, false))
                    .await;
                let _ = res;
                return;
            }
        }

        if R::PUBLIC && req.path == "/ws" && upgrade::is_upgrade(&req) {
            upgrade::upgrade(core, stream, req, buf, slot.take()).await;
            return;
        }

        // body
        let len = match request::body_length(&req, core.config.http_max_body_bytes) {
            Ok(n) => n,
            Err(r) => {
                if r.status == 413 {
                    core.metrics.error(ErrorCode::MessageTooLarge);
                }
                let cors = cors::headers(&core.config.cors_origins, &req);
                let _ = stream.write_all(r.encode(&cors, false)).await;
                return;
            }
        };
        if len > buf.len()
            && req
                .header("expect")
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        {
            let (res, _) = stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec())
                .await;
            if res.is_err() {
                return;
            }
        }
        let body_deadline = Instant::now() + BODY_DEADLINE;
        while buf.len() < len {
            let chunk = Vec::with_capacity((len - buf.len()).min(64 * 1024));
            let wait = body_deadline.saturating_duration_since(Instant::now());
            match monoio::time::timeout(wait, stream.read(chunk)).await {
                Ok((Ok(n), chunk)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
        req.body = buf.drain(..len).collect();

        let keep_alive = req.keep_alive();
        let cors = cors::headers(&core.config.cors_origins, &req);
        let resp = if req.method == "OPTIONS" {
            if cors.is_empty() {
                core.metrics.error(ErrorCode::Forbidden);
            }
            cors::preflight(&req, !cors.is_empty())
        } else {
            routes.route(&core, &req).await
        };
        let (res, _) = stream.write_all(resp.encode(&cors, keep_alive)).await;
        if res.is_err() || !keep_alive {
            return;
        }
    }
}
