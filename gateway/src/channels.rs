//! The messages that cross between the gateway's threads: what the dispatcher (tokio side)
//! sends a core, and what a core tells the dispatcher about its connections. Both sides
//! depend on this module, never on each other.

use std::sync::Arc;

use bytes::Bytes;
use ringchat_core::trace::TraceId;
use ringchat_proto as pb;

/// Work for a core, from the dispatcher.
pub enum CoreMsg {
    /// Queue `frame` on every local connection of `users` except `exclude`.
    Deliver {
        frame: Bytes,
        users: Arc<[i64]>,
        exclude: u64,
    },
    /// Queue `frame` on every local connection except `exclude` (world room).
    Broadcast { frame: Bytes, exclude: u64 },
    /// Queue `frame` on one connection (acks, errors).
    ToConn { conn_id: u64, frame: Bytes },
    /// A token was revoked (logout): close its connections of `user_id` with 4001.
    Revoke { user_id: i64, token_tag: u64 },
    /// Report this core's connections to the presence cache now.
    RefreshPresence,
    /// Stop accepting connections and new sends (the first step of a graceful shutdown).
    Drain,
    /// Graceful shutdown: flush every queue, then close with 1001.
    CloseAll,
}

/// Directory events for the dispatcher: which cores hold which users.
pub enum DirEvent {
    Up { user_id: i64, core: usize },
    Down { user_id: i64, core: usize },
}

/// What the dispatcher reads: directory changes from the cores and events from the bus,
/// through one channel, so an `Up` always precedes the events routed because of it.
pub enum DispatchMsg {
    Dir(DirEvent),
    /// An event and the trace id its record carried (for the dispatcher's log lines).
    Event(Box<pb::DownstreamBatch>, Option<TraceId>),
}

/// Connection ids carry their core in the top 16 bits.
pub const CORE_SHIFT: u32 = 48;

pub fn core_of(conn_id: u64) -> usize {
    (conn_id >> CORE_SHIFT) as usize
}

/// A token id as connections keep it: 8 bytes instead of the id string. Only compared
/// within one process, so any fixed hash does; a collision would at worst close another
/// connection of the same user, who then reconnects.
pub fn token_tag(token_id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    token_id.hash(&mut h);
    h.finish()
}
