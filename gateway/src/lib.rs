//! im-gateway: ringchat's edge. A thread-per-core WebSocket + HTTP server on monoio.
//!
//! - **Cores** ([`core`]): N named threads (`gw-core-i`), each with its own monoio runtime
//!   (io_uring, or the legacy epoll driver where io_uring is missing: see [`Driver`]),
//!   its own `SO_REUSEPORT` listener, connections, slice of the user -> connections index
//!   and send queues. Cores share no locked state; work reaches them through bounded
//!   channels.
//! - **Connections** ([`conn`], [`ws`]): a reader task and a writer task per socket; the
//!   reader frames with tungstenite from a memory buffer, the writer drains a bounded queue
//!   of ready-made frames with one `writev` per wake-up.
//! - **The tokio side** ([`side`], [`bridge`]): the bus (upstream publishers, downstream
//!   consumer) and the backend client run on a tokio runtime; the dispatcher there encodes
//!   each outgoing event once and hands the same bytes to the cores that hold a recipient.
//! - **HTTP** ([`http`], [`api`], [`admin`]): the client API and the admin port.
//!
//! Unsafe code is confined to the I/O core: the iovec batch handed to `writev` ([`conn`]).

pub mod admin;
pub mod api;
pub mod bridge;
pub mod conn;
pub mod core;
pub mod embedded;
pub mod frame;
pub mod http;
pub mod json;
pub mod metrics;
pub mod server;
pub mod side;
pub mod signal;
pub mod ws;

pub use server::{Backend, Driver, Gateway};
