//! The WebSocket side of a connection: the reader task and what each client frame does
//! (frames are typed in [`crate::protocol`]).
//!
//! Framing is [`reader::FrameReader`]'s, fed from the socket. The reader task owns the read
//! half and is the only task that reads; the writer (see [`crate::conn`]) owns the write
//! half. An idle connection holds no read buffer: the reader waits for the socket to become
//! readable, then takes what is there into its core's buffer (one per core) and parses it
//! at once. No `select!` races a read: closing wakes the wait instead.

mod reader;

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Poll;
use std::time::{Duration, Instant};

use monoio::io::{OwnedReadHalf, Splitable};
use monoio::net::TcpStream;
use ringchat_core::limits::{Rate, TokenBucket};
use ringchat_core::ErrorCode;
use ringchat_proto as pb;
use tungstenite::Message;

pub use reader::{FrameReader, Next};

use crate::channels::token_tag;
use crate::conn::Conn;
use crate::cores::Core;
use crate::frame;
use crate::limits::ConnSlot;
use crate::protocol::{ClientFrame, MarkRead, SendMessage, ServerEvent};

/// What the reader keeps about its client: the frame budget (every frame counts: sends,
/// mark-read, pings and invalid frames alike) and the read pointers being written.
struct ClientState {
    budget: TokenBucket,
    rate: Rate,
    /// Made on the first `mark-read` (most connections never send one).
    reads: Option<Rc<ReadPointers>>,
    /// Made on the first `typing`: per conversation, the last state relayed and when.
    /// Boxed: every idle connection's task holds this field, 8 bytes instead of 48.
    #[allow(clippy::box_collection)]
    typing: Option<Box<HashMap<String, (Instant, bool)>>>,
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

/// A `typing` is relayed again for the same conversation only after this long (clients
/// send one per keystroke); a change to `stop-typing` and back is relayed at once.
const TYPING_REPEAT: Duration = Duration::from_secs(2);
/// Conversations a connection's typing state is remembered for, before it starts again.
const TYPING_CONVERSATIONS: usize = 64;

impl ClientState {
    /// Whether this typing state is news worth relaying (see [`TYPING_REPEAT`]).
    fn relay_typing(&mut self, conversation_id: &str, typing: bool, now: Instant) -> bool {
        let seen = self.typing.get_or_insert_with(Box::default);
        if let Some((at, last)) = seen.get_mut(conversation_id) {
            if *last == typing && (!typing || now.duration_since(*at) < TYPING_REPEAT) {
                return false;
            }
            (*at, *last) = (now, typing);
            return true;
        }
        if seen.len() >= TYPING_CONVERSATIONS {
            seen.clear();
        }
        seen.insert(conversation_id.to_string(), (now, typing));
        true
    }
}

fn later_seq(a: i64, b: i64) -> i64 {
    if a == 0 || b == 0 {
        0
    } else {
        a.max(b)
    }
}

/// Takes over an upgraded connection of `session`: registers it and starts its task.
/// `leftover` is what the client sent after the handshake request in the same read;
/// `slot` (its place in the per-address limit) is held for as long as the connection.
pub async fn start(
    core: Rc<Core>,
    stream: TcpStream,
    session: pb::Session,
    leftover: Vec<u8>,
    slot: Option<ConnSlot>,
) {
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let conn = core
        .register(
            session.user.unwrap_or_default(),
            token_tag(&session.token_id),
            session.expires_at,
        )
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
    conn.attach(wr, fd);
    let frames = FrameReader::new(core.config.max_frame_bytes, &leftover);
    monoio::spawn(serve(core, conn, rd, fd, frames, slot));
}

/// The connection's task: reads and handles client frames until it closes, then tears
/// down. It lives as long as the connection, so it holds only what the read loop needs:
/// an `async` block over its captures (an `async fn` would keep its arguments twice), with
/// the rare waits boxed.
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn serve(
    core: Rc<Core>,
    conn: Rc<Conn>,
    rd: OwnedReadHalf<TcpStream>,
    fd: RawFd,
    mut frames: FrameReader,
    slot: Option<ConnSlot>,
) -> impl Future<Output = ()> {
    async move {
        read_loop(&core, &conn, &rd, fd, &mut frames).await;
        conn.reader_done.notify();
        if conn.is_open() {
            // the peer went away without a close handshake
            conn.abort();
        }
        Box::pin(conn.writer_finished()).await;
        Box::pin(core.unregister(&conn)).await;
        report_presence(&core, &conn, false);
        tracing::debug!(conn_id = conn.id, "websocket closed");
        drop(rd);
        drop(slot);
    }
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
    rd: &OwnedReadHalf<TcpStream>,
    fd: RawFd,
    frames: &mut FrameReader,
) {
    let rate = core.limits.frame_rate();
    let mut limit = ClientState {
        budget: TokenBucket::full(rate),
        rate,
        reads: None,
        typing: None,
    };
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
                        flush_tx(conn, frames);
                        conn.finish();
                        return;
                    }
                }
                Next::NeedMore => break,
                Next::Closed => {
                    tracing::debug!(conn_id = conn.id, "websocket closed by the close handshake");
                    flush_tx(conn, frames);
                    conn.finish();
                    return;
                }
                Next::Violation(e) => {
                    flush_tx(conn, frames);
                    protocol_close(core, conn, &e);
                    return;
                }
            }
        }
        flush_tx(conn, frames);
        if !conn.is_open() {
            return;
        }
        match readable(rd, conn).await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                tracing::debug!(conn_id = conn.id, error = %e, "read ended");
                return;
            }
            None => return,
        }
        // everything there is, in pieces of the core's buffer
        loop {
            let res = core.with_read_buffer(|buf| {
                let r = recv_now(fd, buf);
                if let Ok(n) = r {
                    frames.feed(&buf[..n]);
                }
                r.map(|n| (n, n == buf.len()))
            });
            match res {
                Ok((0, _)) => {
                    tracing::debug!(conn_id = conn.id, "peer closed the connection");
                    return;
                }
                Ok((_, true)) => {}
                Ok((_, false)) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(conn_id = conn.id, error = %e, "read ended");
                    return;
                }
            }
        }
    }
}

/// Waits until the socket has something to read (bytes, the peer's FIN or an error),
/// without a buffer; None once the connection stops reading (see [`Conn::abort`]).
async fn readable(rd: &OwnedReadHalf<TcpStream>, conn: &Conn) -> Option<io::Result<()>> {
    // SAFETY: `readable` only needs `&TcpStream` to submit a poll of its fd. The read
    // half is this connection's only reader; the write half's use of the same stream is
    // what monoio's split allows (reads and writes of a socket are independent).
    #[allow(unsafe_code)]
    let stream: &TcpStream = unsafe { &*rd.0.get() };
    let mut ready = pin!(stream.readable(false));
    let mut stop = pin!(conn.read_stop.wait());
    poll_fn(|cx| {
        if let Poll::Ready(r) = ready.as_mut().poll(cx) {
            return Poll::Ready(Some(r));
        }
        if stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// One non-blocking `recv` into `buf`.
fn recv_now(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call,
    // which does not block (MSG_DONTWAIT) and keeps no pointer to it.
    #[allow(unsafe_code)]
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Moves what the reader wrote (pongs, close replies) into the send queue.
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
    send_error_about(core, conn, code, message, temp_message_id, None);
}

/// [`send_error`], naming the conversation the refused frame was about.
fn send_error_about(
    core: &Core,
    conn: &Conn,
    code: ErrorCode,
    message: &str,
    temp_message_id: Option<&str>,
    conversation_id: Option<&str>,
) {
    core.metrics.error(code);
    conn.push(
        ServerEvent::Error {
            code: code.ws_code(),
            message,
            temp_message_id,
            conversation_id,
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
        Ok(ClientFrame::MarkRead(m)) => {
            let reads = limit.reads.get_or_insert_with(Rc::default);
            on_mark_read(core, conn, reads, m)
        }
        Ok(ClientFrame::Typing {
            conversation_id,
            typing,
        }) => {
            if limit.relay_typing(&conversation_id, typing, Instant::now()) {
                on_typing(core, conn, conversation_id, typing)
            }
        }
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
        return fail(ErrorCode::Internal, SHUTTING_DOWN);
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
        username: conn.username.to_string(),
        mentions: m.mentions,
        mention_all: m.mention_all,
    };
    use tokio::sync::mpsc::error::TrySendError;
    let (code, message, up) = match core.upstream_tx.try_send(up) {
        Ok(()) => return,
        Err(TrySendError::Full(up)) => (ErrorCode::RateLimited, "server busy: resend shortly", up),
        Err(TrySendError::Closed(up)) => (ErrorCode::Internal, SHUTTING_DOWN, up),
    };
    send_error(core, conn, code, message, Some(&up.temp_message_id));
}

/// The refusal of a send while the gateway shuts down.
const SHUTTING_DOWN: &str = "server is shutting down: resend after reconnecting";

fn next_auto_id(conn: &Conn) -> String {
    thread_local!(static NEXT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
    let n = NEXT.with(|c| {
        let v = c.get() + 1;
        c.set(v);
        v
    });
    format!("{}-{n}", conn.id)
}

/// Relays a typing state through im-logic (membership checked there); a refusal comes
/// back as an `error` frame naming the conversation.
fn on_typing(core: &Rc<Core>, conn: &Rc<Conn>, conversation_id: String, typing: bool) {
    let (core, conn) = (core.clone(), conn.clone());
    monoio::spawn(async move {
        let (caller_id, username) = (conn.user_id(), conn.username.to_string());
        let conversation = conversation_id.clone();
        let r = core
            .bridge
            .call(move |logic| async move {
                logic
                    .typing(pb::CallerTypingRequest {
                        caller_id,
                        conversation_id,
                        typing,
                        username,
                    })
                    .await
            })
            .await;
        if let Err(e) = r {
            send_error_about(&core, &conn, e.code, &e.message, None, Some(&conversation));
        }
    });
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
