//! The WebSocket handshake (RFC 6455 4.2): the token is checked first (401 on failure),
//! then 101, then the connection belongs to [`crate::ws`].

use std::rc::Rc;

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use ringchat_core::{Error, ErrorCode};
use ringchat_proto as pb;

use super::cors;
use super::request::Request;
use super::response::Response;
use crate::cores::Core;
use crate::limits::ConnSlot;

pub fn is_upgrade(req: &Request) -> bool {
    req.method == "GET"
        && req
            .header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

/// Answers an upgrade request; on success the WebSocket continues in a task of its own
/// (holding `slot`, see [`crate::ws::start`]), so the HTTP connection's task, whose future
/// is sized for every request handler's states, is freed rather than kept as long as the
/// WebSocket (about 4 KiB per idle connection).
pub async fn upgrade(
    core: Rc<Core>,
    mut stream: TcpStream,
    req: Request,
    leftover: Vec<u8>,
    slot: Option<ConnSlot>,
) {
    let cors = cors::headers(&core.config.cors_origins, &req);
    let refuse =
        |status: u16, e: Error| Response::error_with_status(status, &e).encode(&cors, false);
    let Some(key) = req.header("sec-websocket-key").map(str::to_string) else {
        let _ = stream
            .write_all(refuse(400, Error::invalid("missing Sec-WebSocket-Key")))
            .await;
        return;
    };
    if req.header("sec-websocket-version") != Some("13") {
        let mut r =
            Response::error_with_status(426, &Error::invalid("WebSocket version 13 required"));
        r.headers.push(("sec-websocket-version", "13".into()));
        let _ = stream.write_all(r.encode(&cors, false)).await;
        return;
    }
    if !cors::upgrade_allowed(&core.config.cors_origins, &req) {
        core.metrics.error(ErrorCode::Forbidden);
        let _ = stream
            .write_all(refuse(
                403,
                Error::new(ErrorCode::Forbidden, "origin not allowed"),
            ))
            .await;
        return;
    }
    if core.draining.get() {
        let _ = stream
            .write_all(refuse(
                503,
                Error::new(ErrorCode::Unavailable, "server is shutting down"),
            ))
            .await;
        return;
    }
    let token = req
        .query_param("token")
        .or_else(|| req.bearer().map(str::to_string))
        .unwrap_or_default();
    let session: Result<pb::Session, Error> = if token.is_empty() {
        Err(Error::auth("missing token: connect to /ws?token=<jwt>"))
    } else {
        core.bridge
            .call(move |logic| async move { logic.authenticate(pb::TokenRequest { token }).await })
            .await
    };
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            // AUTH_FAILED answers 401, a backend outage 503
            core.metrics.error(e.code);
            let _ = stream
                .write_all(Response::error(&e).encode(&cors, false))
                .await;
            return;
        }
    };
    // nothing of the request is needed past the handshake: free it before the long wait
    drop(req);
    drop(cors);
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
    );
    drop(key);
    let (res, _) = stream.write_all(resp.into_bytes()).await;
    if res.is_err() {
        return;
    }
    crate::ws::start(core, stream, session, leftover, slot).await;
}
