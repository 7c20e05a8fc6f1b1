//! The WebSocket side of a connection: the reader task and what each client frame does
//! (frames are typed in [`crate::protocol`]).
//!
//! Framing is tungstenite's (`WebSocketContext`: masking, fragmentation, UTF-8, control
//! frames, size limits) fed from an in-memory buffer, so tungstenite never touches the
//! socket and no tokio runs here. The reader owns the read half and is the only task that
//! reads; the writer (see [`crate::conn`]) owns the write half. No `select!` races a read:
//! closing cancels the read through the connection's canceller instead.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use monoio::io::{CancelableAsyncReadRent, OwnedReadHalf, Splitable};
use monoio::net::TcpStream;
use ringchat_core::limits::{Rate, TokenBucket};
use ringchat_core::ErrorCode;
use ringchat_proto as pb;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::Message;

use crate::channels::token_tag;
use crate::conn::Conn;
use crate::cores::Core;
use crate::frame;
use crate::protocol::{ClientFrame, MarkRead, SendMessage, ServerEvent};

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

/// Client frames from raw bytes: tungstenite's framing (masking, fragmentation, UTF-8,
/// control frames, size limits) over an in-memory buffer. Pure (no socket), so the
/// reader task and the fuzz targets drive the same code.
pub struct FrameReader {
    ctx: WebSocketContext,
    io: BufIo,
}

/// What [`FrameReader::next`] found.
pub enum Next {
    Message(Message),
    /// Everything buffered is consumed: feed more bytes.
    NeedMore,
    /// The closing handshake is complete; nothing more will be read.
    Closed,
    /// The peer broke the protocol; close with the fitting code.
    Violation(tungstenite::Error),
}

impl FrameReader {
    /// A server-side reader; `max_frame_bytes` bounds frames and messages.
    pub fn new(max_frame_bytes: usize, leftover: &[u8]) -> FrameReader {
        let config = WebSocketConfig::default()
            // tungstenite's own buffer only holds what we copy in from `rx`: keep it small
            // (it is allocated up front, and idle connections are most connections); it
            // grows to a whole frame when a header announces one, and reads this much at
            // a time beyond it (a ~300-byte chat frame: three copies)
            .read_buffer_size(128)
            .write_buffer_size(0)
            .max_message_size(Some(max_frame_bytes))
            .max_frame_size(Some(max_frame_bytes));
        FrameReader {
            ctx: WebSocketContext::new(Role::Server, Some(config)),
            io: BufIo {
                rx: BytesMut::from(leftover),
                tx: Vec::new(),
            },
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.io.rx.extend_from_slice(bytes);
    }

    // not an Iterator: `NeedMore` is not the end, more bytes can follow
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Next {
        match self.ctx.read(&mut self.io) {
            Ok(msg) => Next::Message(msg),
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                Next::NeedMore
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Next::Closed
            }
            Err(e) => Next::Violation(e),
        }
    }

    /// After a close from the peer: writes tungstenite's reply (the client's code echoed,
    /// or 1002 for a code a peer may not send) into the output.
    pub fn answer_close(&mut self) {
        let _ = self.ctx.flush(&mut self.io);
    }

    /// What tungstenite wrote (pongs, close replies), as one frame buffer to send.
    pub fn take_output(&mut self) -> Option<Bytes> {
        (!self.io.tx.is_empty()).then(|| Bytes::from(std::mem::take(&mut self.io.tx)))
    }
}

/// What the reader keeps about its client: the frame budget (every frame counts: sends,
/// mark-read, pings and invalid frames alike) and the read pointers being written.
struct ClientState {
    budget: TokenBucket,
    rate: Rate,
    reads: Rc<ReadPointers>,
}

impl ClientState {
    fn allow(&mut self) -> bool {
        self.budget.take(self.rate).is_ok()
    }
}

/// Read pointers of one connection, coalesced: at most one write per conversation per
/// [`READ_POINTER_INTERVAL`]; what arrives meanwhile folds into the next write (a read
/// pointer only moves forward, so only the highest matters). A flood of `mark-read`
/// frames costs a few writes, not one fsync each.
#[derive(Default)]
struct ReadPointers {
    /// Conversations with a write in flight or waiting out its interval, and the highest
    /// seq asked for since (0 = "the latest", which beats any number).
    busy: RefCell<HashMap<String, Option<i64>>>,
}

const READ_POINTER_INTERVAL: Duration = Duration::from_millis(500);

fn later_seq(a: i64, b: i64) -> i64 {
    if a == 0 || b == 0 {
        0
    } else {
        a.max(b)
    }
}

/// Serves an upgraded connection of `session` until it closes. `leftover` is what the
/// client sent after the handshake request in the same read.
pub async fn serve(core: Rc<Core>, stream: TcpStream, session: pb::Session, leftover: Vec<u8>) {
    let _ = stream.set_nodelay(true);
    let tag = token_tag(&session.token_id);
    let conn = core
        .register(session.user.unwrap_or_default(), tag, session.expires_at)
        .await;
    tracing::debug!(
        conn_id = conn.id,
        user_id = conn.user_id(),
        core = core.index,
        "websocket open"
    );
    report_presence(&core, &conn, true);
    conn.push(
        ServerEvent::Connected {
            user_id: conn.user_id().to_string(),
            gateway_id: &core.gateway_id,
            conn_id: conn.id.to_string(),
        }
        .encode(),
    );
    let (rd, wr) = stream.into_split();
    conn.attach(wr);
    read_loop(&core, &conn, rd, leftover).await;
    conn.reader_done.notify();
    if conn.is_open() {
        // the peer went away without a close handshake
        conn.abort();
    }
    conn.writer_finished().await;
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
    let mut frames = FrameReader::new(cfg.max_frame_bytes, &leftover);
    // the handshake's buffer: do not keep it for the life of the connection
    drop(leftover);
    let rate = core.limits.frame_rate();
    let mut limit = ClientState {
        budget: TokenBucket::full(rate),
        rate,
        reads: Rc::default(),
    };
    let mut buf = Vec::with_capacity(cfg.read_buffer_bytes);
    loop {
        // parse everything buffered
        loop {
            match frames.next() {
                Next::Message(msg) => {
                    conn.touch();
                    if !on_message(core, conn, msg, &mut limit) {
                        // the closing handshake: the reply goes out before the writer
                        // closes TCP
                        tracing::debug!(conn_id = conn.id, "peer sent close");
                        frames.answer_close();
                        flush_tx(conn, &mut frames);
                        conn.finish();
                        return;
                    }
                }
                Next::NeedMore => break,
                Next::Closed => {
                    tracing::debug!(conn_id = conn.id, "websocket closed by the close handshake");
                    flush_tx(conn, &mut frames);
                    conn.finish();
                    return;
                }
                Next::Violation(e) => {
                    flush_tx(conn, &mut frames);
                    protocol_close(core, conn, &e);
                    return;
                }
            }
        }
        flush_tx(conn, &mut frames);
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
            Ok(n) => {
                frames.feed(&buf[..n]);
                // a full read: more was waiting, so read in bigger pieces from now on
                // (idle connections keep the small buffer: it is pinned by the pending read)
                if n == buf.capacity() && n < MAX_READ_BUFFER {
                    buf = Vec::with_capacity((n * 2).min(MAX_READ_BUFFER));
                }
            }
        }
    }
}

/// The largest read buffer a connection grows to (see `gateway.read_buffer_bytes`, the
/// smallest).
const MAX_READ_BUFFER: usize = 16 * 1024;

/// Moves what tungstenite wrote (pongs, close replies) into the send queue.
fn flush_tx(conn: &Conn, frames: &mut FrameReader) {
    if let Some(out) = frames.take_output() {
        conn.push(out);
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

/// Queues an `error` frame; `temp_message_id` names the send that failed, if any.
fn send_error(
    core: &Core,
    conn: &Conn,
    code: ErrorCode,
    message: &str,
    temp_message_id: Option<&str>,
) {
    core.metrics.error(code);
    conn.push(
        ServerEvent::Error {
            code: code.ws_code(),
            message,
            temp_message_id,
            conversation_id: None,
        }
        .encode(),
    );
}

/// Handles one client message; false ends the connection (the peer closed).
fn on_message(core: &Rc<Core>, conn: &Rc<Conn>, msg: Message, limit: &mut ClientState) -> bool {
    core.metrics.frames_in.fetch_add(1, Relaxed);
    if matches!(msg, Message::Binary(_)) && !limit.allow() {
        send_error(
            core,
            conn,
            ErrorCode::RateLimited,
            "too many frames: slow down",
            None,
        );
        return true;
    }
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

fn on_text(core: &Rc<Core>, conn: &Rc<Conn>, text: &str, limit: &mut ClientState) {
    let frame = ClientFrame::decode(text);
    if !limit.allow() {
        // named by its tempMessageId when it was a send, so the client knows what to resend
        let temp = match &frame {
            Ok(ClientFrame::SendMessage(m)) => m.temp_message_id.as_deref(),
            Err(e) => e.temp_message_id.as_deref(),
            _ => None,
        };
        return send_error(
            core,
            conn,
            ErrorCode::RateLimited,
            "too many frames: slow down",
            temp,
        );
    }
    match frame {
        Ok(ClientFrame::Ping) => {
            conn.push(ServerEvent::Pong {}.encode());
        }
        Ok(ClientFrame::SendMessage(m)) => on_send(core, conn, m),
        Ok(ClientFrame::MarkRead(m)) => on_mark_read(core, conn, &limit.reads, m),
        Err(e) => send_error(
            core,
            conn,
            ErrorCode::InvalidMessage,
            &e.message,
            e.temp_message_id.as_deref(),
        ),
    }
}

fn on_send(core: &Rc<Core>, conn: &Rc<Conn>, m: SendMessage) {
    let fail = |code, msg: &str| send_error(core, conn, code, msg, m.temp_message_id.as_deref());
    if core.draining.get() {
        return fail(
            ErrorCode::Internal,
            "server is shutting down: resend after reconnecting",
        );
    }
    // every send gets an idempotency key, so a bus redelivery can never store it twice
    let temp_message_id = m
        .temp_message_id
        .clone()
        .unwrap_or_else(|| format!("auto-{}-{}", core.gateway_id, next_auto_id(conn)));
    let now = ringchat_core::ids::now_ms();
    let up = pb::UpstreamMessage {
        // the send's trace id: it travels with the message through every service
        trace_id: ringchat_core::trace::TraceId::random().to_string(),
        user_id: conn.user_id(),
        gateway_id: core.gateway_id.clone(),
        conn_id: conn.id,
        conversation_id: m.conversation_id,
        r#type: m.kind as i32,
        content: m.content,
        temp_message_id,
        timestamp_ms: now,
        username: conn.user.username.clone(),
    };
    match core.upstream_tx.try_send(up) {
        Ok(()) => {}
        Err(tokio::sync::mpsc::error::TrySendError::Full(up)) => send_error(
            core,
            conn,
            ErrorCode::RateLimited,
            "server busy: resend shortly",
            Some(&up.temp_message_id),
        ),
        Err(tokio::sync::mpsc::error::TrySendError::Closed(up)) => send_error(
            core,
            conn,
            ErrorCode::Internal,
            "server is shutting down: resend after reconnecting",
            Some(&up.temp_message_id),
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

fn on_mark_read(core: &Rc<Core>, conn: &Rc<Conn>, reads: &Rc<ReadPointers>, m: MarkRead) {
    {
        let mut busy = reads.busy.borrow_mut();
        if let Some(pending) = busy.get_mut(&m.conversation_id) {
            *pending = Some(pending.map_or(m.seq_id, |p| later_seq(p, m.seq_id)));
            return;
        }
        busy.insert(m.conversation_id.clone(), None);
    }
    let (core, conn, reads) = (core.clone(), conn.clone(), reads.clone());
    monoio::spawn(async move {
        let caller_id = conn.user_id();
        let mut seq_id = m.seq_id;
        loop {
            let conversation_id = m.conversation_id.clone();
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
                send_error(&core, &conn, e.code, &e.message, None);
            }
            monoio::time::sleep(READ_POINTER_INTERVAL).await;
            let mut busy = reads.busy.borrow_mut();
            match busy.get_mut(&m.conversation_id).and_then(Option::take) {
                Some(next) if conn.is_open() => seq_id = next,
                _ => {
                    busy.remove(&m.conversation_id);
                    return;
                }
            }
        }
    });
}
