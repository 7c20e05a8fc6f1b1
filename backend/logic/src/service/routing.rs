//! Message routing: the upstream batch (append, ack, route), the synchronous send,
//! fan-out to the gateways of online recipients (through im-task for large
//! conversations), presence and its announcements.

use std::collections::HashSet;

use pb::downstream_batch::Body;
use ringchat_core::fanout::{self, send_downstream};
use ringchat_core::model::{self, GATEWAY_SERVICE};
use ringchat_core::ports::Endpoint;
use ringchat_core::trace::{in_message, TraceId};
use ringchat_core::{Error, ErrorCode, Result};
use ringchat_proto as pb;

use super::rules::Outgoing;
use super::LogicService;

impl LogicService {
    pub(crate) fn is_large(&self, meta: &pb::ConversationMeta) -> bool {
        meta.r#type == pb::ConversationType::World as i32
            || (meta.r#type == pb::ConversationType::Group as i32
                && meta.member_count > self.large_group_threshold())
    }

    /// Delivers a stored message to its online recipients (the sending connection
    /// excluded) and queues an offline push for the others. Worlds and large groups are
    /// handed to im-task.
    pub(crate) async fn route(
        &self,
        message: &pb::ChatMessage,
        meta: &pb::ConversationMeta,
        origin: Option<(&str, u64)>,
    ) -> Result<()> {
        if self.is_large(meta) {
            let task = pb::task_message::Task::FanOut(pb::FanOutTask {
                message: Some(message.clone()),
                sender_gateway_id: origin.map(|o| o.0.to_string()).unwrap_or_default(),
                sender_conn_id: origin.map(|o| o.1).unwrap_or(0),
                world: meta.r#type == pb::ConversationType::World as i32,
            });
            tracing::debug!(message_id = message.message_id, "fan-out handed to im-task");
            return fanout::send_task(self.ports.bus.as_ref(), &message.conversation_id, task)
                .await;
        }
        let members = self.small_members(meta).await?;
        let located = fanout::locate_or_everywhere(
            self.ports.cache.as_ref(),
            self.ports.discovery.as_ref(),
            &members,
        )
        .await?;
        fanout::deliver(self.ports.bus.as_ref(), &located, message, origin).await?;
        let offline: Vec<i64> = located
            .offline
            .into_iter()
            .filter(|u| *u != message.sender_id)
            .collect();
        // a revoke or edit is no news to push
        if !offline.is_empty() && !model::is_amendment(message.r#type) {
            let task = pb::task_message::Task::OfflinePush(pb::OfflinePushTask {
                user_ids: offline,
                message: Some(message.clone()),
            });
            fanout::send_task(self.ports.bus.as_ref(), &message.conversation_id, task).await?;
        }
        Ok(())
    }

    /// The members of a single chat or a group that is not large (a large one would be
    /// cut at the threshold: its fan-out is im-task's).
    async fn small_members(&self, meta: &pb::ConversationMeta) -> Result<Vec<i64>> {
        if meta.r#type == pb::ConversationType::Single as i32 {
            return Ok(vec![meta.user_a, meta.user_b]);
        }
        self.ports
            .store
            .member_ids(&meta.conversation_id, 0, self.large_group_threshold() + 1)
            .await
    }

    pub(crate) async fn announce_presence(&self, user_id: i64, online: bool) -> Result<()> {
        let friends: HashSet<i64> = self
            .ports
            .store
            .friends(user_id)
            .await?
            .into_iter()
            .map(|u| u.user_id)
            .collect();
        let peers = self.ports.store.peer_ids(user_id).await?;
        let (friend_ids, group_ids): (Vec<i64>, Vec<i64>) =
            peers.into_iter().partition(|p| friends.contains(p));
        for (ids, event) in [
            (friend_ids, "friend-online"),
            (group_ids, "group-member-online"),
        ] {
            self.tell_online(&ids, &user_id.to_string(), |users| {
                Body::Presence(pb::PresenceChange {
                    recipient_user_ids: users,
                    user_id,
                    online,
                    event: event.into(),
                })
            })
            .await?;
        }
        Ok(())
    }

    /// [`tell`] through this service's ports.
    pub(super) async fn tell_online(
        &self,
        user_ids: &[i64],
        key: &str,
        event: impl Fn(Vec<i64>) -> Body,
    ) -> Result<()> {
        tell(&self.ports, user_ids, key, event).await
    }

    /// Processes a batch of client sends from the upstream topic: validate, append in one
    /// transaction, ack each sender's connection, route. A retryable error (store or bus
    /// down) is returned so the caller retries the whole batch without committing it;
    /// appends are idempotent on (sender, tempMessageId), so a retry stores nothing twice.
    /// Each send's own steps run in its trace (`message{trace_id}`).
    pub async fn process_upstream(&self, batch: &[pb::UpstreamMessage]) -> Result<()> {
        let mut drafts = Vec::with_capacity(batch.len());
        let mut accepted = Vec::with_capacity(batch.len());
        for up in batch {
            if let Some(meta) = in_message(TraceId::parse(&up.trace_id), self.admit(up)).await? {
                drafts.push(pb::MessageDraft {
                    conversation_id: up.conversation_id.clone(),
                    sender_id: up.user_id,
                    sender_name: up.username.clone(),
                    r#type: up.r#type,
                    content: up.content.clone(),
                    temp_message_id: up.temp_message_id.clone(),
                    ref_message_id: 0,
                    mentions: up.mentions.clone(),
                    mention_all: up.mention_all,
                });
                accepted.push((up, meta));
            }
        }
        if accepted.is_empty() {
            return Ok(());
        }
        let append = self.ports.store.append(drafts);
        let outcomes = if let [(up, _)] = accepted.as_slice() {
            // one send: the append is in its trace (im-repo's logs name it too)
            in_message(TraceId::parse(&up.trace_id), append).await?
        } else {
            tracing::debug!(
                trace_ids = ?accepted.iter().map(|(up, _)| up.trace_id.as_str()).collect::<Vec<_>>(),
                "appending a batch of sends"
            );
            append.await?
        };
        for (outcome, (up, meta)) in outcomes.into_iter().zip(accepted) {
            in_message(
                TraceId::parse(&up.trace_id),
                self.answer(up, &meta, outcome),
            )
            .await?;
        }
        Ok(())
    }

    /// The rate limit and the rules for one send: its conversation when it may be stored;
    /// None when it was answered with an `error` frame instead.
    async fn admit(&self, up: &pb::UpstreamMessage) -> Result<Option<pb::ConversationMeta>> {
        tracing::debug!(
            conn_id = up.conn_id,
            conversation_id = %up.conversation_id,
            temp_message_id = %up.temp_message_id,
            "send received"
        );
        if let Err(wait) = self.user_sends.take(&up.user_id) {
            let e = Error::rate_limited("too many messages: slow down", wait);
            self.send_error(up, &e).await?;
            return Ok(None);
        }
        let checked = self
            .check_send(Outgoing {
                sender_id: up.user_id,
                conversation_id: &up.conversation_id,
                content: &up.content,
                kind: up.r#type,
                temp_message_id: &up.temp_message_id,
                mentions: &up.mentions,
                mention_all: up.mention_all,
            })
            .await;
        match checked {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if e.is_retryable() => Err(e),
            Err(e) => {
                self.send_error(up, &e).await?;
                Ok(None)
            }
        }
    }

    /// Acks a stored send to its connection and routes it; answers one the store refused
    /// with an `error` frame.
    async fn answer(
        &self,
        up: &pb::UpstreamMessage,
        meta: &pb::ConversationMeta,
        outcome: pb::AppendOutcome,
    ) -> Result<()> {
        let Some(message) = outcome.message else {
            let code = ErrorCode::parse(&outcome.error_code).unwrap_or(ErrorCode::Internal);
            return self
                .send_error(up, &Error::new(code, outcome.error_message))
                .await;
        };
        tracing::debug!(
            message_id = message.message_id,
            seq_id = message.seq_id,
            duplicate = outcome.duplicate,
            "send stored"
        );
        send_downstream(
            self.ports.bus.as_ref(),
            &up.gateway_id,
            &message.conversation_id,
            Body::Ack(pb::SendAck {
                conn_id: up.conn_id,
                user_id: up.user_id,
                temp_message_id: up.temp_message_id.clone(),
                message_id: message.message_id,
                seq_id: message.seq_id,
                conversation_id: message.conversation_id.clone(),
                duplicate: outcome.duplicate,
            }),
        )
        .await?;
        // a duplicate is routed again: it may be the redelivery of a batch whose
        // routing a crash cut short; gateways drop what they already delivered
        // (dispatch.rs), so recipients see each message once
        self.route(&message, meta, Some((&up.gateway_id, up.conn_id)))
            .await
    }

    /// Runs until `shutdown`: whenever the cache recovers from a degraded mode, asks every
    /// gateway to report its connections again (a restarted Redis forgot them all).
    pub async fn run_presence_resync(&self, mut shutdown: ringchat_core::shutdown::ShutdownSignal) {
        loop {
            tokio::select! {
                _ = self.ports.cache_health.recovered() => {}
                _ = shutdown.wait() => return,
            }
            let gateways = match self.ports.discovery.instances(GATEWAY_SERVICE).await {
                Ok(g) => g,
                Err(e) => {
                    tracing::warn!(error = %e, "presence resync: cannot list the gateways");
                    continue;
                }
            };
            tracing::info!(
                gateways = gateways.len(),
                "cache recovered: asking the gateways to report their connections"
            );
            for gw in gateways {
                if let Err(e) = send_downstream(
                    self.ports.bus.as_ref(),
                    &gw.id,
                    "presence",
                    Body::Resync(pb::PresenceResync {}),
                )
                .await
                {
                    tracing::warn!(error = %e, gateway = %gw.id, "presence resync not sent");
                }
            }
        }
    }

    /// Answers a client send with an `error` frame naming its `tempMessageId`.
    pub(crate) async fn send_error(&self, up: &pb::UpstreamMessage, e: &Error) -> Result<()> {
        send_downstream(
            self.ports.bus.as_ref(),
            &up.gateway_id,
            &up.conversation_id,
            Body::Error(pb::SendError {
                conn_id: up.conn_id,
                user_id: up.user_id,
                temp_message_id: up.temp_message_id.clone(),
                code: e.code.as_str().into(),
                message: e.message.clone(),
                conversation_id: up.conversation_id.clone(),
            }),
        )
        .await
    }
}

/// Sends `event(recipients)` under `key` to each gateway that holds online users of
/// `user_ids` (to every gateway when presence is unknown); nothing for no users.
pub(super) async fn tell(
    ports: &ringchat_core::Ports,
    user_ids: &[i64],
    key: &str,
    event: impl Fn(Vec<i64>) -> Body,
) -> Result<()> {
    if user_ids.is_empty() {
        return Ok(());
    }
    let located =
        fanout::locate_or_everywhere(ports.cache.as_ref(), ports.discovery.as_ref(), user_ids)
            .await?;
    for (gw, users) in located.by_gateway {
        send_downstream(ports.bus.as_ref(), &gw, key, event(users)).await?;
    }
    Ok(())
}

pub(super) async fn send_message(
    svc: &LogicService,
    req: pb::SendMessageRequest,
) -> Result<pb::ChatMessage> {
    svc.user_sends
        .take(&req.caller_id)
        .map_err(|wait| Error::rate_limited("too many messages: slow down", wait))?;
    let meta = svc
        .check_send(Outgoing {
            sender_id: req.caller_id,
            conversation_id: &req.conversation_id,
            content: &req.content,
            kind: req.r#type,
            temp_message_id: &req.temp_message_id,
            mentions: &req.mentions,
            mention_all: req.mention_all,
        })
        .await?;
    let mut outcomes = svc
        .ports
        .store
        .append(vec![pb::MessageDraft {
            conversation_id: req.conversation_id,
            sender_id: req.caller_id,
            sender_name: String::new(),
            r#type: req.r#type,
            content: req.content,
            temp_message_id: req.temp_message_id,
            ref_message_id: 0,
            mentions: req.mentions,
            mention_all: req.mention_all,
        }])
        .await?;
    let outcome = outcomes
        .pop()
        .ok_or_else(|| Error::internal("append returned nothing"))?;
    let Some(message) = outcome.message else {
        let code = ErrorCode::parse(&outcome.error_code).unwrap_or(ErrorCode::Internal);
        return Err(Error::new(code, outcome.error_message));
    };
    // durable already: a routing failure is logged, not reported as a failed send; a
    // duplicate is routed again (gateways drop what they already delivered)
    if let Err(e) = svc.route(&message, &meta, None).await {
        tracing::warn!(error = %e, message_id = message.message_id, "routing failed after append");
    }
    Ok(message)
}

pub(super) async fn user_connected(svc: &LogicService, req: pb::PresenceRequest) -> Result<()> {
    let n = svc
        .ports
        .cache
        .presence_add(
            req.user_id,
            &Endpoint {
                gateway_id: req.gateway_id,
                conn_id: req.conn_id,
            },
            svc.presence_ttl,
        )
        .await?;
    if n == 1 {
        svc.announce_presence(req.user_id, true).await?;
    }
    Ok(())
}

pub(super) async fn user_disconnected(svc: &LogicService, req: pb::PresenceRequest) -> Result<()> {
    let n = svc
        .ports
        .cache
        .presence_remove(
            req.user_id,
            &Endpoint {
                gateway_id: req.gateway_id,
                conn_id: req.conn_id,
            },
        )
        .await?;
    if n == 0 {
        svc.announce_presence(req.user_id, false).await?;
    }
    Ok(())
}

pub(super) async fn heartbeat(svc: &LogicService, req: pb::HeartbeatRequest) -> Result<()> {
    let entries: Vec<(i64, u64)> = req.entries.iter().map(|e| (e.user_id, e.conn_id)).collect();
    svc.ports
        .cache
        .presence_refresh(&req.gateway_id, &entries, svc.presence_ttl)
        .await
}

/// A member's typing state to the conversation's other online members, one event per
/// gateway that holds one of them; nothing stored, no offline push. The world room and
/// large groups are refused (a keystroke must not fan out to thousands).
pub(super) async fn typing(svc: &LogicService, req: pb::CallerTypingRequest) -> Result<()> {
    let meta = svc
        .member_conversation(req.caller_id, &req.conversation_id)
        .await?;
    if svc.is_large(&meta) {
        return Err(Error::invalid_message(
            "typing indicators are for single chats and groups up to the large-group size",
        ));
    }
    let others: Vec<i64> = svc
        .small_members(&meta)
        .await?
        .into_iter()
        .filter(|u| *u != req.caller_id)
        .collect();
    svc.tell_online(&others, &meta.conversation_id, |users| {
        Body::Typing(pb::TypingIndicator {
            recipient_user_ids: users,
            conversation_id: meta.conversation_id.clone(),
            user_id: req.caller_id,
            username: req.username.clone(),
            typing: req.typing,
        })
    })
    .await
}
