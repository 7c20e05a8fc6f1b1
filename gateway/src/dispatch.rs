//! The gateway's tokio side: everything that talks to the bus, kept off the monoio cores.
//! It reaches the cores only through the channels of [`crate::channels`].
//!
//! - one **upstream publisher** per core: publishes the core's client sends, in order, to
//!   `im-upstream-topic`, each with its trace id as the record's `trace-id` header;
//! - the **downstream consumer**: reads `im-downstream-topic-{gateway_id}`;
//! - the **dispatcher**: owns the directory (user -> cores holding a connection of that
//!   user, fed by the cores' Up/Down events through the same channel as the downstream
//!   events, so an Up always precedes the events routed because of it), encodes each event
//!   into a WebSocket frame ONCE, and hands `(frame, recipients)` to the cores that hold a
//!   recipient.
//!
//! Trace ids cost nothing per recipient: the dispatcher names an event's trace id in its
//! (debug and warning) lines as a plain field, and frames carry none.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use pb::downstream_batch::Body;
use prost::Message as _;
use ringchat_core::consume::{consume, Handled, Incoming};
use ringchat_core::ports::Bus;
use ringchat_core::shutdown::ShutdownSignal;
use ringchat_core::trace::{self, TraceId};
use ringchat_core::ErrorCode;
use ringchat_proto as pb;
use tokio::sync::mpsc;

use crate::channels::{core_of, token_tag, CoreMsg, DirEvent, DispatchMsg};
use crate::metrics::GatewayMetrics;
use crate::protocol::objects::Message;
use crate::protocol::ServerEvent;

/// Publishes one core's client sends in order; a refused send gets an error frame.
pub async fn run_upstream_publisher(
    bus: Arc<dyn Bus>,
    mut rx: mpsc::Receiver<pb::UpstreamMessage>,
    core_tx: mpsc::Sender<CoreMsg>,
    metrics: Arc<GatewayMetrics>,
) {
    while let Some(up) = rx.recv().await {
        metrics.pending_sends.fetch_add(1, Relaxed);
        let payload = Bytes::from(up.encode_to_vec());
        let trace_id = TraceId::parse(&up.trace_id);
        let published = match trace_id {
            Some(id) => {
                let hex = id.hex();
                let headers = [(trace::HEADER, hex.as_bytes())];
                let key = up.conversation_id.as_bytes();
                bus.publish_with_headers(pb::topics::UPSTREAM, key, payload, &headers)
                    .await
            }
            None => {
                bus.publish(pb::topics::UPSTREAM, up.conversation_id.as_bytes(), payload)
                    .await
            }
        };
        match published {
            Ok(()) => {
                metrics.upstream_published.fetch_add(1, Relaxed);
                tracing::debug!(
                    trace_id = %up.trace_id,
                    conn_id = up.conn_id,
                    conversation_id = %up.conversation_id,
                    temp_message_id = %up.temp_message_id,
                    "send published"
                );
            }
            Err(e) => {
                metrics.send_answered();
                metrics.upstream_failed.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, trace_id = %up.trace_id, conn_id = up.conn_id, "upstream publish failed");
                let f = ServerEvent::Error {
                    code: ErrorCode::Unavailable.ws_code(),
                    message: "the message bus is unavailable: resend shortly",
                    temp_message_id: Some(&up.temp_message_id),
                    conversation_id: Some(&up.conversation_id),
                }
                .encode();
                let _ = core_tx
                    .send(CoreMsg::ToConn {
                        conn_id: up.conn_id,
                        frame: f,
                    })
                    .await;
            }
        }
    }
}

/// Reads this gateway's downstream topic into the dispatcher until shutdown.
pub async fn run_downstream_consumer(
    bus: Arc<dyn Bus>,
    gateway_id: String,
    tx: mpsc::Sender<DispatchMsg>,
    metrics: Arc<GatewayMetrics>,
    shutdown: ShutdownSignal,
) {
    let topic = pb::topics::downstream(&gateway_id);
    let r = consume(
        bus.as_ref(),
        &topic,
        &format!("gateway-{gateway_id}"),
        512,
        shutdown,
        |batch: Vec<Incoming<pb::DownstreamBatch>>| {
            let (tx, metrics) = (&tx, &metrics);
            async move {
                for b in batch {
                    metrics.downstream_events.fetch_add(1, Relaxed);
                    let event = DispatchMsg::Event(Box::new(b.message), b.trace_id);
                    if tx.send(event).await.is_err() {
                        return Handled::Stop;
                    }
                }
                Handled::Commit
            }
        },
    )
    .await;
    if let Err(e) = r {
        tracing::error!(error = %e, topic, "cannot consume the downstream topic");
    }
}

/// Events seen lately, to drop the copies a redelivery brings: the bus delivers at least
/// once, and im-logic routes a message again when a crash cut its first routing short
/// (it cannot tell), so the same `(message, recipients)` or ack can arrive twice. Bounded:
/// the oldest keys leave first.
pub struct Redeliveries {
    seen: std::collections::HashSet<u64>,
    order: std::collections::VecDeque<u64>,
    capacity: usize,
}

impl Redeliveries {
    pub fn new(capacity: usize) -> Self {
        Redeliveries {
            seen: Default::default(),
            order: Default::default(),
            capacity,
        }
    }

    /// Whether this event is new (and remembers it); `true` for events that carry no
    /// message (presence, errors, revocations are idempotent or never redelivered).
    pub fn first_time(&mut self, body: &Body) -> bool {
        let Some(key) = redelivery_key(body) else {
            return true;
        };
        if !self.seen.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

/// A message's delivery to a set of recipients. Acks are not filtered: a client that
/// resends a message (same `tempMessageId`) is owed a second ack, and a redelivered ack is
/// harmless (the client already has it).
fn redelivery_key(body: &Body) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let Body::NewMessage(n) = body else {
        return None;
    };
    let m = n.message.as_ref()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (m.message_id, n.broadcast, &n.recipient_user_ids).hash(&mut h);
    Some(h.finish())
}

/// Routes events to cores. Owns the directory; nothing else reads or writes it.
pub async fn run_dispatcher(
    mut rx: mpsc::Receiver<DispatchMsg>,
    cores: Vec<mpsc::Sender<CoreMsg>>,
    metrics: Arc<GatewayMetrics>,
) {
    let mut redeliveries = Redeliveries::new(1 << 16);
    let mut directory: HashMap<i64, u64> = HashMap::new();
    let mut per_core: Vec<Vec<i64>> = vec![Vec::new(); cores.len()];
    while let Some(msg) = rx.recv().await {
        match msg {
            DispatchMsg::Dir(DirEvent::Up { user_id, core }) => {
                *directory.entry(user_id).or_insert(0) |= 1 << core;
            }
            DispatchMsg::Dir(DirEvent::Down { user_id, core }) => {
                if let Some(mask) = directory.get_mut(&user_id) {
                    *mask &= !(1 << core);
                    if *mask == 0 {
                        directory.remove(&user_id);
                    }
                }
            }
            DispatchMsg::Event(batch, trace_id) => {
                let Some(body) = batch.body else { continue };
                let trace_id = trace_id.map(tracing::field::display);
                if !redeliveries.first_time(&body) {
                    metrics.redeliveries_dropped.fetch_add(1, Relaxed);
                    tracing::debug!(trace_id, event = %kind(&body), "redelivered event dropped");
                    continue;
                }
                tracing::debug!(trace_id, event = %kind(&body), "event received");
                let routed = route(body, &metrics);
                match routed {
                    Routed::Users {
                        frame,
                        users,
                        exclude,
                    } => {
                        for u in users {
                            if let Some(mask) = directory.get(&u) {
                                for (i, list) in per_core.iter_mut().enumerate() {
                                    if mask & (1 << i) != 0 {
                                        list.push(u);
                                    }
                                }
                            }
                        }
                        for (i, list) in per_core.iter_mut().enumerate() {
                            if !list.is_empty() {
                                let users: Arc<[i64]> = std::mem::take(list).into();
                                let _ = cores[i]
                                    .send(CoreMsg::Deliver {
                                        frame: frame.clone(),
                                        users,
                                        exclude,
                                    })
                                    .await;
                            }
                        }
                    }
                    Routed::All { frame, exclude } => {
                        for c in &cores {
                            let _ = c
                                .send(CoreMsg::Broadcast {
                                    frame: frame.clone(),
                                    exclude,
                                })
                                .await;
                        }
                    }
                    Routed::Conn { conn_id, frame } => {
                        if let Some(c) = cores.get(core_of(conn_id)) {
                            let _ = c.send(CoreMsg::ToConn { conn_id, frame }).await;
                        }
                    }
                    Routed::Revoke { user_id, token_tag } => {
                        let mask = directory.get(&user_id).copied().unwrap_or(0);
                        for (i, c) in cores.iter().enumerate() {
                            if mask & (1 << i) != 0 {
                                let _ = c.send(CoreMsg::Revoke { user_id, token_tag }).await;
                            }
                        }
                    }
                    Routed::Resync => {
                        for c in &cores {
                            let _ = c.send(CoreMsg::RefreshPresence).await;
                        }
                    }
                    Routed::Nothing => {}
                }
            }
        }
    }
}

enum Routed {
    Users {
        frame: Bytes,
        users: Vec<i64>,
        exclude: u64,
    },
    All {
        frame: Bytes,
        exclude: u64,
    },
    Conn {
        conn_id: u64,
        frame: Bytes,
    },
    Revoke {
        user_id: i64,
        token_tag: u64,
    },
    Resync,
    Nothing,
}

/// An event's kind, for log lines.
fn kind(body: &Body) -> &'static str {
    match body {
        Body::NewMessage(_) => "new-message",
        Body::Ack(_) => "ack",
        Body::Error(_) => "error",
        Body::Presence(_) => "presence",
        Body::Revoked(_) => "token-revoked",
        Body::Resync(_) => "presence-resync",
        Body::Typing(_) => "typing",
        Body::Notice(_) => "notice",
    }
}

/// Encodes an event into its client frame, once.
fn route(body: Body, metrics: &GatewayMetrics) -> Routed {
    match body {
        Body::NewMessage(n) => {
            let Some(m) = n.message else {
                return Routed::Nothing;
            };
            let frame = ServerEvent::NewMessage {
                conversation_id: &m.conversation_id,
                message: Message::from(&m),
            }
            .encode();
            if n.broadcast {
                Routed::All {
                    frame,
                    exclude: n.exclude_conn_id,
                }
            } else {
                Routed::Users {
                    frame,
                    users: n.recipient_user_ids,
                    exclude: n.exclude_conn_id,
                }
            }
        }
        Body::Ack(a) => {
            metrics.send_answered();
            Routed::Conn {
                conn_id: a.conn_id,
                frame: ServerEvent::ack(&a).encode(),
            }
        }
        Body::Error(e) => {
            metrics.send_answered();
            let code = ErrorCode::parse(&e.code).unwrap_or(ErrorCode::Internal);
            Routed::Conn {
                conn_id: e.conn_id,
                frame: ServerEvent::Error {
                    code: code.ws_code(),
                    message: &e.message,
                    temp_message_id: Some(&e.temp_message_id),
                    conversation_id: Some(&e.conversation_id),
                }
                .encode(),
            }
        }
        Body::Presence(p) => {
            let (user_id, online) = (p.user_id.to_string(), p.online);
            let event = match p.event.as_str() {
                "friend-online" => ServerEvent::FriendOnline { user_id, online },
                "group-member-online" => ServerEvent::GroupMemberOnline { user_id, online },
                other => {
                    // presence changes are on no message's path: they have no trace id
                    tracing::warn!(event = other, "unknown presence event dropped");
                    return Routed::Nothing;
                }
            };
            Routed::Users {
                frame: event.encode(),
                users: p.recipient_user_ids,
                exclude: 0,
            }
        }
        Body::Revoked(r) => Routed::Revoke {
            user_id: r.user_id,
            token_tag: token_tag(&r.token_id),
        },
        Body::Resync(_) => Routed::Resync,
        Body::Typing(t) => Routed::Users {
            frame: ServerEvent::TypingIndicator {
                conversation_id: &t.conversation_id,
                user_id: t.user_id.to_string(),
                username: &t.username,
                is_typing: t.typing,
            }
            .encode(),
            users: t.recipient_user_ids,
            exclude: 0,
        },
        Body::Notice(n) => {
            use pb::notice::Event;
            let frame = match &n.event {
                Some(Event::FriendRequest(r)) => ServerEvent::FriendRequest(r.into()).encode(),
                Some(Event::MembersAdded(m)) => ServerEvent::MemberAdded(m.into()).encode(),
                Some(Event::MembersRemoved(m)) => ServerEvent::MemberRemoved(m.into()).encode(),
                Some(Event::MembersUpdated(m)) => ServerEvent::MemberUpdated(m.into()).encode(),
                Some(Event::ConversationUpdated(c)) => {
                    ServerEvent::ConversationUpdated(c.into()).encode()
                }
                Some(Event::ReadReceipt(r)) => ServerEvent::ReadReceipt(r.into()).encode(),
                None => return Routed::Nothing,
            };
            Routed::Users {
                frame,
                users: n.recipient_user_ids,
                exclude: 0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_message(id: i64, users: Vec<i64>) -> Body {
        Body::NewMessage(pb::NewMessage {
            message: Some(pb::ChatMessage {
                message_id: id,
                ..Default::default()
            }),
            recipient_user_ids: users,
            broadcast: false,
            exclude_conn_id: 0,
        })
    }

    #[test]
    fn a_redelivered_event_is_dropped_and_a_new_page_is_not() {
        let mut r = Redeliveries::new(4);
        assert!(r.first_time(&new_message(1, vec![1, 2])));
        assert!(!r.first_time(&new_message(1, vec![1, 2])));
        // the same message to other recipients (the next page of a fan-out) is new
        assert!(r.first_time(&new_message(1, vec![3, 4])));
        // acks always pass: a client's resend is owed its ack again
        let ack = Body::Ack(pb::SendAck {
            message_id: 1,
            conn_id: 9,
            ..Default::default()
        });
        assert!(r.first_time(&ack) && r.first_time(&ack));
        // bounded: the oldest key is forgotten
        for i in 10..14 {
            assert!(r.first_time(&new_message(i, vec![1])));
        }
        assert!(r.first_time(&new_message(1, vec![1, 2])));
        // events without a message always pass
        let p = Body::Presence(pb::PresenceChange::default());
        assert!(r.first_time(&p) && r.first_time(&p));
    }
}
