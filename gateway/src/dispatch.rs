//! The gateway's tokio side: everything that talks to the bus, kept off the monoio cores.
//! It reaches the cores only through the channels of [`crate::channels`].
//!
//! - one **upstream publisher** per core: publishes the core's client sends, in order, to
//!   `im-upstream-topic`;
//! - the **downstream consumer**: reads `im-downstream-topic-{gateway_id}`;
//! - the **dispatcher**: owns the directory (user -> cores holding a connection of that
//!   user, fed by the cores' Up/Down events through the same channel as the downstream
//!   events, so an Up always precedes the events routed because of it), encodes each event
//!   into a WebSocket frame ONCE, and hands `(frame, recipients)` to the cores that hold a
//!   recipient.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use pb::downstream_batch::Body;
use prost::Message as _;
use ringchat_core::ports::Bus;
use ringchat_core::shutdown::ShutdownSignal;
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
        match bus
            .publish(pb::topics::UPSTREAM, up.conversation_id.as_bytes(), payload)
            .await
        {
            Ok(()) => {
                metrics.upstream_published.fetch_add(1, Relaxed);
            }
            Err(e) => {
                metrics.pending_sends.fetch_sub(1, Relaxed);
                metrics.upstream_failed.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, conn_id = up.conn_id, "upstream publish failed");
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
    mut shutdown: ShutdownSignal,
) {
    let topic = pb::topics::downstream(&gateway_id);
    let mut sub = match bus
        .subscribe(&topic, &format!("gateway-{gateway_id}"))
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, topic, "cannot subscribe to the downstream topic");
            return;
        }
    };
    loop {
        let records = tokio::select! {
            r = sub.next_batch(512) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the downstream topic failed, retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => break,
        };
        for r in &records {
            match pb::DownstreamBatch::decode(r.payload.clone()) {
                Ok(b) => {
                    metrics.downstream_events.fetch_add(1, Relaxed);
                    if tx.send(DispatchMsg::Event(b)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(offset = r.offset, error = %e, "undecodable downstream record skipped")
                }
            }
        }
        if let Err(e) = sub.commit(&records).await {
            tracing::debug!(error = %e, "downstream commit failed");
        }
    }
}

/// Routes events to cores. Owns the directory; nothing else reads or writes it.
pub async fn run_dispatcher(
    mut rx: mpsc::Receiver<DispatchMsg>,
    cores: Vec<mpsc::Sender<CoreMsg>>,
    metrics: Arc<GatewayMetrics>,
) {
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
            DispatchMsg::Event(batch) => {
                let Some(body) = batch.body else { continue };
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
    Nothing,
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
            metrics.pending_sends.fetch_sub(1, Relaxed);
            Routed::Conn {
                conn_id: a.conn_id,
                frame: ServerEvent::ack(&a).encode(),
            }
        }
        Body::Error(e) => {
            metrics.pending_sends.fetch_sub(1, Relaxed);
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
    }
}
