//! im-gateway: ringchat's edge. A thread-per-core WebSocket + HTTP server on monoio.
//!
//! - **Cores** ([`cores`]): N named threads (`gw-core-i`), each with its own monoio runtime
//!   (io_uring, or the legacy epoll driver where io_uring is missing: see [`Driver`]),
//!   its own `SO_REUSEPORT` listener, connections, slice of the user -> connections index
//!   and send queues. Cores share no locked state; work reaches them through bounded
//!   channels.
//! - **Connections** ([`conn`], [`ws`]): one task per socket, which waits for input without
//!   a buffer of its own, reads into its core's buffer and frames what came
//!   ([`ws::FrameReader`]); outgoing frames wait in a bounded queue per connection, which the
//!   core's flush pass writes with one non-blocking `sendmsg` per connection per pass; a
//!   writer task runs only while a socket cannot take what is queued.
//! - **The tokio side** ([`dispatch`], [`bridge`]): the bus (upstream publishers, downstream
//!   consumer) and the backend client run on a tokio runtime; the dispatcher there encodes
//!   each outgoing event once and hands the same bytes to the cores that hold a recipient.
//!   Cores and the tokio side talk only through the messages of [`channels`].
//! - **The client protocol** ([`protocol`]): the typed WebSocket frames and JSON objects.
//! - **HTTP** ([`http`]: parsing, responses, CORS, the upgrade) and what it serves:
//!   [`api`] (the client API, by area, and the web page at `/`) and [`admin`].
//!
//! Unsafe code is confined to the I/O core: the iovecs handed to `writev`/`sendmsg`
//! ([`conn`]), the non-blocking `recv` and the readiness wait ([`ws`]), and the
//! allocator's options ([`alloc`]).

pub mod admin;
pub mod alloc;
pub mod api;
pub mod bridge;
pub mod channels;
pub mod config;
pub mod conn;
pub mod cores;
pub mod dispatch;
pub mod embedded;
pub mod frame;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod signal;
pub mod ws;

pub use server::{Backend, Driver, Gateway};
