//! The WebSocket side of a connection: the reader task and the client protocol.
//!
//! Framing is tungstenite's (`WebSocketContext`: masking, fragmentation, UTF-8, control
//! frames, size limits) fed from an in-memory buffer, so tungstenite never touches the
//! socket and no tokio runs here. The reader owns the read half and is the only task that
//! reads; the writer (see [`crate::conn`]) owns the write half. No `select!` races a read:
//! closing cancels the read through the connection's canceller instead.

use std::io::{self, Read, Write};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use monoio::io::{CancelableAsyncReadRent, OwnedReadHalf, Splitable};
use monoio::net::TcpStream;
use ringchat_core::model::{message_type_from_int, parse_message_type_name};
use ringchat_core::{Error, ErrorCode};
use ringchat_proto as pb;
use serde_json::{json, Value};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::Message;

use crate::conn::{self, Conn};
use crate::core::Core;
use crate::{frame, json};

/// The in-memory stream tungstenite reads from and writes to.
struct BufIo {
    rx: BytesMut,
    tx: Vec<u8>,
}

impl Read for BufIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rx.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.rx.len());
        buf[..n].copy_from_slice(&self.rx[..n]);
        self.rx.advance(n);
        Ok(n)
    }
}

impl Write for BufIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Per-connection send rate limit (token bucket).
struct RateLimit {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl RateLimit {
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Serves an upgraded connection until it closes. `leftover` is what the client sent
/// after the handshake request in the same read.
pub async fn serve(core: Rc<Core>, stream: TcpStream, user: pb::User, leftover: Vec<u8>) {
    let _ = stream.set_nodelay(true);
    let conn = core.register(user).await;
    tracing::debug!(
        conn_id = conn.id,
        user_id = conn.user_id(),
        core = core.index,
        "websocket open"
    );
    report_presence(&core, &conn, true);
    conn.push(frame::text(&json::event(
        "connected",
        json!({ "userId": conn.user_id().to_string(), "gatewayId": core.gateway_id, "connId": conn.id.to_string() }),
    )));
    let (rd, wr) = stream.into_split();
    let writer = monoio::spawn(conn::writer(conn.clone(), wr));
    read_loop(&core, &conn, rd, leftover).await;
    conn.reader_done.notify();
    if conn.is_open() {
        // the peer went away without a close handshake
        conn.abort();
    }
    writer.await;
    core.unregister(&conn).await;
    report_presence(&core, &conn, false);
    tracing::debug!(conn_id = conn.id, "websocket closed");
}

/// Tells im-logic that this connection came or went (presence, online events).
fn report_presence(core: &Core, conn: &Conn, connected: bool) {
    let req = pb::PresenceRequest {
        user_id: conn.user_id(),
        gateway_id: core.gateway_id.clone(),
        conn_id: conn.id,
    };
    if connected {
        core.bridge
            .spawn("presence connect", move |logic| async move {
                logic.user_connected(req).await
            });
    } else {
        core.bridge
            .spawn("presence disconnect", move |logic| async move {
                logic.user_disconnected(req).await
            });
    }
}

async fn read_loop(
    core: &Rc<Core>,
    conn: &Rc<Conn>,
    mut rd: OwnedReadHalf<TcpStream>,
    leftover: Vec<u8>,
) {
    let cfg = &core.config;
    let ws_config = WebSocketConfig::default()
        // tungstenite's own buffer only holds what we copy in from `rx`: keep it small,
        // it grows for large messages (idle connections are most connections)
        .read_buffer_size(512)
        .write_buffer_size(0)
        .max_message_size(Some(cfg.max_frame_bytes))
        .max_frame_size(Some(cfg.max_frame_bytes));
    let mut ctx = WebSocketContext::new(Role::Server, Some(ws_config));
    let mut io = BufIo {
        rx: BytesMut::from(&leftover[..]),
        tx: Vec::new(),
    };
    // the handshake's buffer: do not keep it for the life of the connection
    drop(leftover);
    let mut limit = RateLimit {
        tokens: f64::from(cfg.rate_limit_burst),
        last: Instant::now(),
        rate: f64::from(cfg.rate_limit_per_sec),
        burst: f64::from(cfg.rate_limit_burst),
    };
    let mut buf = Vec::with_capacity(cfg.read_buffer_bytes);
    loop {
        // parse everything buffered
        loop {
            match ctx.read(&mut io) {
                Ok(msg) => {
                    conn.touch();
                    if !on_message(core, conn, msg, &mut limit) {
                        tracing::debug!(conn_id = conn.id, "peer sent close");
                        flush_tx(conn, &mut io);
                        conn.finish();
                        return;
                    }
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    tracing::debug!(conn_id = conn.id, "websocket closed by the close handshake");
                    flush_tx(conn, &mut io);
                    conn.finish();
                    return;
                }
                Err(e) => {
                    flush_tx(conn, &mut io);
                    protocol_close(core, conn, &e);
                    return;
                }
            }
        }
        flush_tx(conn, &mut io);
        if !conn.is_open() {
            return;
        }
        let Some(cancel) = conn.cancel_handle() else {
            return;
        };
        buf.clear();
        let (res, b) = rd.cancelable_read(buf, cancel).await;
        buf = b;
        match res {
            Ok(0) => {
                tracing::debug!(conn_id = conn.id, "peer closed the connection");
                return;
            }
            Err(e) => {
                tracing::debug!(conn_id = conn.id, error = %e, "read ended");
                return;
            }
            Ok(n) => io.rx.extend_from_slice(&buf[..n]),
        }
    }
}

/// Moves what tungstenite wrote (pongs, close replies) into the send queue.
fn flush_tx(conn: &Conn, io: &mut BufIo) {
    if !io.tx.is_empty() {
        conn.push(Bytes::from(std::mem::take(&mut io.tx)));
    }
}

fn protocol_close(core: &Core, conn: &Conn, e: &tungstenite::Error) {
    use tungstenite::Error as E;
    let (code, reason) = match e {
        E::Capacity(_) => {
            send_error(
                core,
                conn,
                ErrorCode::MessageTooLarge,
                "frame exceeds the size limit",
                None,
            );
            (frame::code::TOO_BIG, "message too big")
        }
        E::Utf8(_) => (
            frame::code::INVALID_PAYLOAD,
            "invalid UTF-8 in a text frame",
        ),
        E::Protocol(_) => (frame::code::PROTOCOL_ERROR, "protocol error"),
        _ => (frame::code::INTERNAL_ERROR, "internal error"),
    };
    core.metrics.protocol_closes.fetch_add(1, Relaxed);
    tracing::debug!(conn_id = conn.id, error = %e, code, "closing on a protocol violation");
    conn.close(code, reason, true);
}

fn send_error(core: &Core, conn: &Conn, code: ErrorCode, message: &str, extra: Option<Value>) {
    core.metrics.error(code);
    let mut data = json!({ "code": json::ws_error_code(code.as_str()), "message": message });
    if let (Some(Value::Object(extra)), Value::Object(d)) = (extra, &mut data) {
        d.extend(extra);
    }
    conn.push(frame::text(&json::event("error", data)));
}

/// Handles one client message; false ends the connection (the peer closed).
fn on_message(core: &Rc<Core>, conn: &Rc<Conn>, msg: Message, limit: &mut RateLimit) -> bool {
    core.metrics.frames_in.fetch_add(1, Relaxed);
    match msg {
        Message::Text(text) => {
            if text.len() > core.config.max_message_bytes {
                send_error(
                    core,
                    conn,
                    ErrorCode::MessageTooLarge,
                    &format!(
                        "message is {} bytes, the limit is {}",
                        text.len(),
                        core.config.max_message_bytes
                    ),
                    None,
                );
            } else {
                on_text(core, conn, text.as_str(), limit);
            }
            true
        }
        Message::Binary(_) => {
            send_error(
                core,
                conn,
                ErrorCode::InvalidMessage,
                "binary frames are not supported: send JSON text frames",
                None,
            );
            true
        }
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => true,
        Message::Close(_) => false,
    }
}

/// The client's JSON frame `{"type", "data", "timestamp"}`.
#[derive(serde::Deserialize)]
struct ClientFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
}

/// A string field that clients may also send as a number.
fn string_field(data: &Value, key: &str) -> Option<String> {
    match data.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn on_text(core: &Rc<Core>, conn: &Rc<Conn>, text: &str, limit: &mut RateLimit) {
    let frame: ClientFrame = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            send_error(
                core,
                conn,
                ErrorCode::InvalidMessage,
                &format!("invalid JSON frame: {e}"),
                None,
            );
            return;
        }
    };
    match frame.kind.as_str() {
        "ping" => {
            conn.push(frame::text(&json::event("pong", json!({}))));
        }
        "send-message" => on_send(core, conn, &frame.data, limit),
        "mark-read" => on_mark_read(core, conn, &frame.data),
        other => send_error(
            core,
            conn,
            ErrorCode::InvalidMessage,
            &format!("unknown frame type {other:?}"),
            None,
        ),
    }
}

fn on_send(core: &Rc<Core>, conn: &Rc<Conn>, data: &Value, limit: &mut RateLimit) {
    let temp = string_field(data, "tempMessageId");
    let echo = temp.as_ref().map(|t| json!({ "tempMessageId": t }));
    let fail = |code, msg: &str| send_error(core, conn, code, msg, echo.clone());
    let Some(conversation_id) = string_field(data, "conversationId").filter(|s| !s.is_empty())
    else {
        return fail(
            ErrorCode::InvalidMessage,
            "send-message needs a conversationId",
        );
    };
    let Some(content) = data.get("content").and_then(Value::as_str) else {
        return fail(
            ErrorCode::InvalidMessage,
            "send-message needs a string content",
        );
    };
    let kind = match data.get("messageType").or_else(|| data.get("type")) {
        None | Some(Value::Null) => Some(pb::MessageType::Text),
        Some(Value::String(s)) => parse_message_type_name(s),
        Some(Value::Number(n)) => n.as_i64().and_then(message_type_from_int),
        Some(_) => None,
    };
    let Some(kind) = kind else {
        return fail(ErrorCode::InvalidMessage, "unknown messageType");
    };
    if core.draining.get() {
        return fail(
            ErrorCode::Internal,
            "server is shutting down: resend after reconnecting",
        );
    }
    if !limit.allow() {
        return fail(ErrorCode::RateLimited, "too many messages: slow down");
    }
    // every send gets an idempotency key, so a bus redelivery can never store it twice
    let temp_message_id =
        temp.unwrap_or_else(|| format!("auto-{}-{}", core.gateway_id, next_auto_id(conn)));
    let up = pb::UpstreamMessage {
        trace_id: format!("{}-{}", conn.id, ringchat_core::ids::now_ms()),
        user_id: conn.user_id(),
        gateway_id: core.gateway_id.clone(),
        conn_id: conn.id,
        conversation_id,
        r#type: kind as i32,
        content: content.to_string(),
        temp_message_id,
        timestamp_ms: ringchat_core::ids::now_ms(),
        username: conn.user.username.clone(),
    };
    match core.upstream_tx.try_send(up) {
        Ok(()) => {}
        Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
            fail(ErrorCode::RateLimited, "server busy: resend shortly")
        }
        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => fail(
            ErrorCode::Internal,
            "server is shutting down: resend after reconnecting",
        ),
    }
}

fn next_auto_id(conn: &Conn) -> String {
    thread_local!(static NEXT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
    let n = NEXT.with(|c| {
        let v = c.get() + 1;
        c.set(v);
        v
    });
    format!("{}-{n}", conn.id)
}

fn on_mark_read(core: &Rc<Core>, conn: &Rc<Conn>, data: &Value) {
    let Some(conversation_id) = string_field(data, "conversationId").filter(|s| !s.is_empty())
    else {
        return send_error(
            core,
            conn,
            ErrorCode::InvalidMessage,
            "mark-read needs a conversationId",
            None,
        );
    };
    let seq_id = match data.get("seqId") {
        None | Some(Value::Null) => 0,
        Some(v) => match v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        {
            Some(n) if n >= 0 => n,
            _ => {
                return send_error(
                    core,
                    conn,
                    ErrorCode::InvalidMessage,
                    "seqId must be a non-negative integer",
                    None,
                )
            }
        },
    };
    let (core, conn) = (core.clone(), conn.clone());
    monoio::spawn(async move {
        let caller_id = conn.user_id();
        let r = core
            .bridge
            .call(move |logic| async move {
                logic
                    .mark_read(pb::CallerMarkReadRequest {
                        caller_id,
                        conversation_id,
                        seq_id,
                    })
                    .await
            })
            .await;
        if let Err(e) = r {
            report(&core, &conn, &e);
        }
    });
}

fn report(core: &Core, conn: &Conn, e: &Error) {
    send_error(core, conn, e.code, &e.message, None);
}
