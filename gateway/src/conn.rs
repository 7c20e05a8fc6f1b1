//! One WebSocket connection as its core sees it: a bounded send queue of ready-made frames
//! and, while there is something to write, a writer task that drains it with vectored
//! writes.
//!
//! - Frames are `Bytes` shared with every other recipient; queueing one is a refcount bump.
//! - The writer takes everything queued (up to a batch) and writes it with one `writev`,
//!   so a connection that receives several frames per wake-up costs one syscall.
//! - An idle connection has no writer task: the write half waits in the connection, and
//!   the first frame queued starts a writer, which gives the write half back and ends when
//!   the queue is empty. (A task per connection for its whole life cost ~1.5 KiB each.)
//! - The queue is bounded in frames and bytes. A connection whose queue is full when a frame
//!   arrives is a slow consumer: it is closed with 1013 (try again later) and its queue
//!   dropped, rather than silently losing frames; the client reconnects and syncs with
//!   `afterSeq`. Other connections are never slowed by it: pushing never waits.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use monoio::io::{
    AsyncWriteRent, CancelHandle, CancelableAsyncWriteRent, Canceller, OwnedWriteHalf,
};
use monoio::net::TcpStream;
use ringchat_proto as pb;

use crate::frame;
use crate::metrics::CoreMetrics;
use crate::signal::LocalSignal;

/// The socket's write half.
pub type Sink = OwnedWriteHalf<TcpStream>;

/// Frames written per `writev` at most.
const WRITE_BATCH: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// Write what is queued, then the close frame.
    Draining,
    /// Drop what is queued, write the close frame.
    Closing,
    Closed,
}

pub struct Conn {
    pub id: u64,
    pub user: pb::User,
    /// The token the connection was opened with ([`crate::channels::token_tag`]): a
    /// logout of that token closes it.
    pub token_tag: u64,
    /// When that token expires (unix seconds): the heartbeat closes the connection then.
    pub expires_at: i64,
    queue: RefCell<VecDeque<Bytes>>,
    queued_bytes: Cell<usize>,
    max_frames: usize,
    max_bytes: usize,
    state: Cell<State>,
    close_frame: RefCell<Option<Bytes>>,
    /// The write half while no writer runs (a writer holds it; gone once the connection
    /// has ended).
    sink: RefCell<Option<Sink>>,
    /// A writer task runs (for good once the connection has ended).
    writing: Cell<bool>,
    /// The writer has finished the connection: close written, socket shut down.
    ended: Cell<bool>,
    ended_signal: LocalSignal,
    me: Weak<Conn>,
    /// Set when the reader has finished.
    pub(crate) reader_done: LocalSignal,
    io_cancel: RefCell<Option<Canceller>>,
    last_seen: Cell<Instant>,
    metrics: Arc<CoreMetrics>,
}

impl Conn {
    pub fn new(
        id: u64,
        user: pb::User,
        token_tag: u64,
        expires_at: i64,
        max_frames: usize,
        max_bytes: usize,
        metrics: Arc<CoreMetrics>,
    ) -> Rc<Conn> {
        Rc::new_cyclic(|me| Conn {
            id,
            user,
            token_tag,
            expires_at,
            queue: RefCell::new(VecDeque::new()),
            queued_bytes: Cell::new(0),
            max_frames,
            max_bytes,
            state: Cell::new(State::Open),
            close_frame: RefCell::new(None),
            sink: RefCell::new(None),
            writing: Cell::new(false),
            ended: Cell::new(false),
            ended_signal: LocalSignal::default(),
            me: me.clone(),
            reader_done: LocalSignal::default(),
            io_cancel: RefCell::new(Some(Canceller::new())),
            last_seen: Cell::new(Instant::now()),
            metrics,
        })
    }

    /// Gives the connection its socket's write half; what is queued starts going out.
    pub fn attach(&self, sink: Sink) {
        *self.sink.borrow_mut() = Some(sink);
        self.kick();
    }

    /// Resolves once the connection has ended (see [`writer`]).
    pub async fn writer_finished(&self) {
        while !self.ended.get() {
            self.ended_signal.wait().await;
        }
    }

    /// There is something for a writer to do (frames, or a state change): start one
    /// unless one runs (it will see it) or the write half is not here yet.
    fn kick(&self) {
        if self.writing.get() {
            return;
        }
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let Some(sink) = self.sink.borrow_mut().take() else {
            return;
        };
        self.writing.set(true);
        monoio::spawn(writer(me, sink));
    }

    pub fn user_id(&self) -> i64 {
        self.user.user_id
    }

    pub fn cancel_handle(&self) -> Option<CancelHandle> {
        self.io_cancel.borrow().as_ref().map(Canceller::handle)
    }

    pub fn touch(&self) {
        self.last_seen.set(Instant::now());
    }

    pub fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_seen.get())
    }

    pub fn is_open(&self) -> bool {
        self.state.get() == State::Open
    }

    /// Queues a frame. Returns false (and starts a slow-consumer close) if the queue is full.
    pub fn push(&self, f: Bytes) -> bool {
        if self.state.get() != State::Open {
            return false;
        }
        let bytes = self.queued_bytes.get() + f.len();
        let q_len = self.queue.borrow().len();
        if q_len >= self.max_frames || bytes > self.max_bytes {
            self.metrics.send_queue_drops.fetch_add(1, Relaxed);
            self.metrics.slow_consumer_closes.fetch_add(1, Relaxed);
            tracing::debug!(
                conn_id = self.id,
                queued = q_len,
                "send queue full, closing slow consumer"
            );
            self.close(
                frame::code::TRY_AGAIN_LATER,
                "send queue full: reconnect and sync",
                false,
            );
            return false;
        }
        self.queued_bytes.set(bytes);
        self.queue.borrow_mut().push_back(f);
        self.kick();
        true
    }

    /// Starts closing with `code`. With `flush`, what is queued is written first (graceful
    /// shutdown); without, it is dropped and pending I/O is cancelled (the peer is stuck or
    /// gone, or broke the protocol).
    pub fn close(&self, code: u16, reason: &str, flush: bool) {
        if matches!(self.state.get(), State::Closing | State::Closed) {
            return;
        }
        if self.state.get() == State::Draining && flush {
            return;
        }
        *self.close_frame.borrow_mut() = Some(frame::close(code, reason));
        if flush {
            self.state.set(State::Draining);
        } else {
            self.state.set(State::Closing);
            self.queue.borrow_mut().clear();
            self.queued_bytes.set(0);
            self.cancel_io();
        }
        self.kick();
    }

    /// Ends after what is queued is written, without a close frame of our own (the close
    /// reply to the peer's close was queued as a frame already).
    pub fn finish(&self) {
        if self.state.get() == State::Open {
            self.state.set(State::Draining);
            self.kick();
        }
    }

    /// The connection is gone (peer closed, I/O failed): stop everything.
    pub fn abort(&self) {
        if self.state.get() != State::Closed {
            self.state.set(State::Closed);
            self.queue.borrow_mut().clear();
            self.queued_bytes.set(0);
            self.cancel_io();
            self.kick();
        }
    }

    fn cancel_io(&self) {
        if let Some(c) = self.io_cancel.borrow_mut().take() {
            let _ = c.cancel();
        }
    }

    fn take_batch(&self, into: &mut Vec<Bytes>) {
        let mut q = self.queue.borrow_mut();
        let n = q.len().min(WRITE_BATCH);
        let mut bytes = 0;
        for f in q.drain(..n) {
            bytes += f.len();
            into.push(f);
        }
        self.queued_bytes.set(self.queued_bytes.get() - bytes);
    }
}

/// A batch of frames as an iovec array for `writev`.
struct FrameBatch {
    frames: Vec<Bytes>,
    iovecs: Vec<libc::iovec>,
}

impl FrameBatch {
    fn new(frames: Vec<Bytes>) -> Self {
        let iovecs = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            })
            .collect();
        FrameBatch { frames, iovecs }
    }

    fn len(&self) -> usize {
        self.frames.iter().map(Bytes::len).sum()
    }

    /// Drops the first `n` written bytes.
    fn advance(mut self, mut n: usize) -> Self {
        let mut rest = Vec::with_capacity(self.frames.len());
        for f in self.frames.drain(..) {
            if n >= f.len() {
                n -= f.len();
            } else {
                rest.push(f.slice(n..));
                n = 0;
            }
        }
        FrameBatch::new(rest)
    }
}

// SAFETY: `iovecs` point into the `Bytes` held in `frames`, whose heap data never moves
// while they are alive; the batch owns both for as long as the runtime holds it, and
// neither vector is modified while a write is in flight (we only rebuild between writes).
#[allow(unsafe_code)]
unsafe impl monoio::buf::IoVecBuf for FrameBatch {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs.as_ptr()
    }
    fn read_iovec_len(&self) -> usize {
        self.iovecs.len()
    }
}

/// Drains the connection's queue into the socket. With the queue empty and the connection
/// open it gives the write half back and ends (the next frame starts a writer again);
/// once the connection closes it writes the close frame, shuts the socket down and marks
/// the connection ended.
async fn writer(conn: Rc<Conn>, mut wr: Sink) {
    let mut frames = Vec::new();
    loop {
        match conn.state.get() {
            State::Closed => break,
            State::Closing => {
                write_close(&conn, &mut wr).await;
                break;
            }
            State::Open | State::Draining => {}
        }
        conn.take_batch(&mut frames);
        if frames.is_empty() {
            if conn.state.get() == State::Draining {
                write_close(&conn, &mut wr).await;
                break;
            }
            // idle: no await between the check and this, so nothing was queued meanwhile
            *conn.sink.borrow_mut() = Some(wr);
            conn.writing.set(false);
            return;
        }
        let Some(cancel) = conn.cancel_handle() else {
            break;
        };
        let count = frames.len() as u64;
        let mut batch = FrameBatch::new(std::mem::take(&mut frames));
        let mut ok = true;
        while !batch.frames.is_empty() {
            let total = batch.len();
            let (res, b) = if batch.frames.len() == 1 {
                // one frame: a plain write avoids building the iovec path in the kernel
                let f = batch.frames.pop().expect("one frame");
                let (res, f) = wr.cancelable_write(f, cancel.clone()).await;
                (res, FrameBatch::new(vec![f]))
            } else {
                wr.cancelable_writev(batch, cancel.clone()).await
            };
            conn.metrics.writes.fetch_add(1, Relaxed);
            match res {
                Ok(n) if n > 0 => {
                    conn.metrics.bytes_out.fetch_add(n as u64, Relaxed);
                    batch = if n >= total {
                        FrameBatch::new(Vec::new())
                    } else {
                        b.advance(n)
                    };
                }
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            conn.abort();
            break;
        }
        conn.metrics.frames_out.fetch_add(count, Relaxed);
    }
    let _ = wr.shutdown().await;
    // give the peer a moment to answer our close, then stop the reader
    let _ = monoio::time::timeout(Duration::from_secs(2), conn.reader_done.wait()).await;
    // `writing` stays set: no writer starts again
    conn.abort();
    conn.ended.set(true);
    conn.ended_signal.notify();
}

/// Writes the close frame without the connection's canceller (closing may have cancelled
/// it), bounded in time: a peer that does not read must not hold the task.
async fn write_close<W: AsyncWriteRent>(conn: &Conn, wr: &mut W) {
    let Some(f) = conn.close_frame.borrow_mut().take() else {
        return;
    };
    let _ = monoio::time::timeout(Duration::from_secs(2), wr.write(f)).await;
}
