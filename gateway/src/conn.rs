//! One WebSocket connection as its core sees it: a bounded send queue of ready-made frames
//! and, while there is something to write, a writer task that drains it with vectored
//! writes.
//!
//! - Frames are `Bytes` shared with every other recipient; queueing one is a refcount bump.
//! - The writer takes everything queued (up to a batch) and writes it with one `writev`,
//!   so a connection that receives several frames per wake-up costs one syscall.
//! - An idle connection has no writer task: the write half waits in the connection. A
//!   frame queued on it marks it dirty, and the core's flush pass ([`flush_dirty`], run
//!   after each batch of the core's inbox and whenever something else queued a frame)
//!   writes what is queued with one non-blocking `sendmsg`, no task and no ring operation
//!   involved. Only when the socket cannot take it all does a writer task start: it waits
//!   for the socket through io_uring, and gives the write half back and ends when the queue
//!   is empty. (A task per connection for its whole life cost ~1.5 KiB each; a task per
//!   delivery cost CPU.)
//! - The queue is bounded in frames and bytes. A connection whose queue is full when a frame
//!   arrives is a slow consumer: it is closed with 1013 (try again later) and its queue
//!   dropped, rather than silently losing frames; the client reconnects and syncs with
//!   `afterSeq`. Other connections are never slowed by it: pushing never waits.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
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
    user_id: i64,
    /// Who sends from here (their name travels with each message).
    pub username: Box<str>,
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
    /// The close to write (code and reason) once the queue is done with.
    close_with: Cell<Option<(u16, &'static str)>>,
    /// The write half while no writer runs (a writer holds it; gone once the connection
    /// has ended).
    sink: RefCell<Option<Sink>>,
    /// The socket, for the flush pass's direct writes (-1 until attached).
    fd: Cell<RawFd>,
    /// In the core's dirty list.
    dirty: Cell<bool>,
    /// A writer task runs (for good once the connection has ended).
    writing: Cell<bool>,
    /// The writer has finished the connection: close written, socket shut down.
    ended: Cell<bool>,
    ended_signal: LocalSignal,
    me: Weak<Conn>,
    /// Set when the reader has finished.
    pub(crate) reader_done: LocalSignal,
    /// Tells the reader to stop waiting for input (the connection is being torn down).
    pub(crate) read_stop: LocalSignal,
    /// Cancels the writer's pending write when the connection is torn down; made when a
    /// writer needs it and dropped when it parks (most connections never need one).
    io_cancel: RefCell<Option<Canceller>>,
    io_cancelled: Cell<bool>,
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
            user_id: user.user_id,
            username: user.username.into_boxed_str(),
            token_tag,
            expires_at,
            queue: RefCell::new(VecDeque::new()),
            queued_bytes: Cell::new(0),
            max_frames,
            max_bytes,
            state: Cell::new(State::Open),
            close_with: Cell::new(None),
            sink: RefCell::new(None),
            fd: Cell::new(-1),
            dirty: Cell::new(false),
            writing: Cell::new(false),
            ended: Cell::new(false),
            ended_signal: LocalSignal::default(),
            me: me.clone(),
            reader_done: LocalSignal::default(),
            read_stop: LocalSignal::default(),
            io_cancel: RefCell::new(None),
            io_cancelled: Cell::new(false),
            last_seen: Cell::new(Instant::now()),
            metrics,
        })
    }

    /// Gives the connection its socket's write half (and the socket's fd, for direct
    /// writes); what is queued starts going out.
    pub fn attach(&self, sink: Sink, fd: RawFd) {
        self.fd.set(fd);
        *self.sink.borrow_mut() = Some(sink);
        self.kick();
    }

    /// Resolves once the connection has ended (see [`writer`]).
    pub async fn writer_finished(&self) {
        while !self.ended.get() {
            self.ended_signal.wait().await;
        }
    }

    /// There is something to write (frames, or a state change). An open connection goes
    /// on the dirty list for the flush pass; a closing one gets a writer task, which sees
    /// the close through. Nothing happens while a writer runs (it will see it) or before
    /// the write half is here.
    fn kick(&self) {
        if self.writing.get() || self.sink.borrow().is_none() {
            return;
        }
        if self.state.get() == State::Open {
            if !self.dirty.replace(true) {
                if let Some(me) = self.me.upgrade() {
                    FLUSH.with(|f| f.add(me));
                }
            }
            return;
        }
        self.start_writer();
    }

    fn start_writer(&self) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let Some(sink) = self.sink.borrow_mut().take() else {
            return;
        };
        self.writing.set(true);
        monoio::spawn(writer(me, sink));
    }

    /// The flush pass's part: what is queued, written now with one non-blocking
    /// `sendmsg`; a writer task takes over what the socket did not take.
    fn flush_now(&self) {
        self.dirty.set(false);
        if self.writing.get() || self.sink.borrow().is_none() {
            return;
        }
        if self.state.get() != State::Open {
            return self.start_writer();
        }
        let written = {
            let q = self.queue.borrow();
            if q.is_empty() {
                return;
            }
            let n = q.len().min(DIRECT_BATCH);
            let mut iov = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; DIRECT_BATCH];
            for (slot, f) in iov.iter_mut().zip(q.iter()) {
                *slot = iovec(f);
            }
            send_now(self.fd.get(), &iov[..n])
        };
        self.metrics.writes.fetch_add(1, Relaxed);
        match written {
            Ok(mut n) => {
                self.metrics.bytes_out.fetch_add(n as u64, Relaxed);
                let mut q = self.queue.borrow_mut();
                let mut frames = 0;
                while n > 0 {
                    let f = q.front_mut().expect("no more written than queued");
                    if n >= f.len() {
                        n -= f.len();
                        self.queued_bytes.set(self.queued_bytes.get() - f.len());
                        q.pop_front();
                        frames += 1;
                    } else {
                        // a frame cut by a full socket buffer: the rest waits for the writer
                        let rest = f.slice(n..);
                        self.queued_bytes.set(self.queued_bytes.get() - n);
                        *f = rest;
                        n = 0;
                    }
                }
                self.metrics.frames_out.fetch_add(frames, Relaxed);
                if q.is_empty() {
                    // an idle connection keeps no queue storage
                    *q = VecDeque::new();
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!(conn_id = self.id, error = %e, "write failed");
                return self.abort();
            }
        }
        // the socket is full, or more is queued than one call takes
        self.start_writer();
    }

    pub fn user_id(&self) -> i64 {
        self.user_id
    }

    /// The writer's cancel handle; None once the connection's I/O is cancelled.
    fn cancel_handle(&self) -> Option<CancelHandle> {
        if self.io_cancelled.get() {
            return None;
        }
        Some(
            self.io_cancel
                .borrow_mut()
                .get_or_insert_with(Canceller::new)
                .handle(),
        )
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
    pub fn close(&self, code: u16, reason: &'static str, flush: bool) {
        if matches!(self.state.get(), State::Closing | State::Closed) {
            return;
        }
        if self.state.get() == State::Draining && flush {
            return;
        }
        self.close_with.set(Some((code, reason)));
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
        self.read_stop.notify();
        self.io_cancelled.set(true);
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

/// Frames one direct write takes at most.
const DIRECT_BATCH: usize = 64;

/// One non-blocking `sendmsg` of `iov`.
fn send_now(fd: RawFd, iov: &[libc::iovec]) -> io::Result<usize> {
    // SAFETY: every iovec points into a `Bytes` the caller keeps alive (and unchanged) for
    // the duration of the call, which does not block (MSG_DONTWAIT) and keeps no pointer.
    #[allow(unsafe_code)]
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len() as _;
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The connections of this core (thread) with frames to write and no writer task.
#[derive(Default)]
pub struct Flush {
    dirty: RefCell<Vec<Rc<Conn>>>,
    signal: LocalSignal,
}

thread_local! {
    static FLUSH: Rc<Flush> = Rc::default();
}

impl Flush {
    fn add(&self, conn: Rc<Conn>) {
        let mut d = self.dirty.borrow_mut();
        d.push(conn);
        if d.len() == 1 {
            self.signal.notify();
        }
    }
}

/// The flush pass: writes every dirty connection of this core (see the module docs).
pub fn flush_dirty() {
    let dirty = FLUSH.with(|f| std::mem::take(&mut *f.dirty.borrow_mut()));
    for c in &dirty {
        c.flush_now();
    }
    // hand the list's storage back for the next pass
    FLUSH.with(|f| {
        let mut d = f.dirty.borrow_mut();
        if d.is_empty() {
            let mut dirty = dirty;
            dirty.clear();
            *d = dirty;
        }
    });
}

/// Runs the flush pass whenever a frame was queued outside the inbox (replies to a
/// client's own frames, heartbeats, closes); the inbox runs it after each batch itself.
pub async fn run_flusher() {
    let flush = FLUSH.with(Rc::clone);
    loop {
        flush.signal.wait().await;
        flush_dirty();
    }
}

/// A frame as an iovec (valid while the frame is alive and unchanged).
fn iovec(f: &Bytes) -> libc::iovec {
    libc::iovec {
        iov_base: f.as_ptr() as *mut libc::c_void,
        iov_len: f.len(),
    }
}

/// A batch of frames as an iovec array for `writev`.
struct FrameBatch {
    frames: Vec<Bytes>,
    iovecs: Vec<libc::iovec>,
}

impl FrameBatch {
    fn new(frames: Vec<Bytes>) -> Self {
        let iovecs = frames.iter().map(iovec).collect();
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
            // idle: no await between the check and this, so nothing was queued meanwhile;
            // an idle connection keeps no queue storage either (next time the flush pass
            // writes first)
            *conn.queue.borrow_mut() = VecDeque::new();
            *conn.io_cancel.borrow_mut() = None;
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
    let Some((code, reason)) = conn.close_with.take() else {
        return;
    };
    let f = frame::close(code, reason);
    let _ = monoio::time::timeout(Duration::from_secs(2), wr.write(f)).await;
}
