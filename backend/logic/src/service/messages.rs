//! Changing sent messages and who has read them: revoke and edit (each also a new message
//! in the conversation's seq stream, so offline clients sync it through `afterSeq`), the
//! readers of a message (from read pointers: no per-member per-message rows), and the
//! `read-receipt` events, batched per conversation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pb::downstream_batch::Body;
use ringchat_core::ids::now_ms;
use ringchat_core::model::{self, WORLD_ID};
use ringchat_core::{Error, ErrorCode, Ports, Result};
use ringchat_proto as pb;

use super::rules::role_of;
use super::LogicService;

/// How long read receipts of a conversation gather before one event carries them all.
pub const RECEIPT_DELAY: Duration = Duration::from_millis(500);
/// The recent messages whose senders a batch of read receipts goes to.
const RECEIPT_SENDERS_SCAN: i64 = 50;
/// Reader pages: the default size and the largest.
const READERS_DEFAULT_SIZE: i64 = 50;
const READERS_MAX_SIZE: i64 = 200;

fn minutes_or_seconds(ms: i64) -> String {
    let s = ms / 1000;
    if s >= 120 && s % 60 == 0 {
        format!("{} minutes", s / 60)
    } else {
        format!("{s} s")
    }
}

pub(super) async fn amend_message(
    svc: &LogicService,
    req: pb::CallerAmendMessageRequest,
) -> Result<pb::AmendedMessage> {
    svc.user_sends
        .take(&req.caller_id)
        .map_err(|wait| Error::rate_limited("too many messages: slow down", wait))?;
    let target = svc.ports.store.message(req.message_id).await?;
    // a message of a conversation the caller is not in is not theirs to see
    let meta = svc
        .member_conversation(req.caller_id, &target.conversation_id)
        .await
        .map_err(|e| match e.code {
            ErrorCode::Forbidden => model::message_not_found(req.message_id),
            _ => e,
        })?;
    if model::is_amendment(target.r#type) {
        return Err(Error::invalid(
            "a revoke or edit cannot itself be revoked or edited",
        ));
    }
    if target.revoked {
        return Err(Error::new(
            ErrorCode::Conflict,
            format!("message {} was already revoked", req.message_id),
        ));
    }
    let own = target.sender_id == req.caller_id;
    let age = now_ms() - target.send_time_ms;
    let (kind, content) = if req.revoke {
        let in_time = own && age <= svc.revoke_window_ms;
        if !in_time && !is_group_admin(svc, &meta, req.caller_id).await? {
            return Err(Error::forbidden(if own {
                format!(
                    "a message can be revoked within {} of sending",
                    minutes_or_seconds(svc.revoke_window_ms)
                )
            } else {
                "only its sender, or a group's owner or admin, can revoke a message".into()
            }));
        }
        (pb::MessageType::Revoke, String::new())
    } else {
        if !own {
            return Err(Error::forbidden("only its sender can edit a message"));
        }
        if target.r#type != pb::MessageType::Text as i32 {
            return Err(Error::invalid_message("only text messages can be edited"));
        }
        if age > svc.edit_window_ms {
            return Err(Error::forbidden(format!(
                "a message can be edited within {} of sending",
                minutes_or_seconds(svc.edit_window_ms)
            )));
        }
        svc.check_content(&req.content)?;
        (pb::MessageType::Edit, req.content)
    };
    let message = svc
        .ports
        .store
        .amend_message(pb::AmendMessageRequest {
            message_id: req.message_id,
            content: (kind == pb::MessageType::Edit).then(|| content.clone()),
            revoke: kind == pb::MessageType::Revoke,
        })
        .await?;
    let outcome = svc
        .ports
        .store
        .append(vec![pb::MessageDraft {
            conversation_id: meta.conversation_id.clone(),
            sender_id: req.caller_id,
            sender_name: String::new(),
            r#type: kind as i32,
            content,
            temp_message_id: String::new(),
            ref_message_id: req.message_id,
            mentions: Vec::new(),
            mention_all: false,
        }])
        .await?
        .pop()
        .ok_or_else(|| Error::internal("append returned nothing"))?;
    let Some(event) = outcome.message else {
        let code = ErrorCode::parse(&outcome.error_code).unwrap_or(ErrorCode::Internal);
        return Err(Error::new(code, outcome.error_message));
    };
    // durable already: a routing failure is logged; clients sync the event by seq
    if let Err(e) = svc.route(&event, &meta, None).await {
        tracing::warn!(error = %e, message_id = event.message_id, "routing failed after an amendment");
    }
    Ok(pb::AmendedMessage {
        message: Some(message),
        event: Some(event),
    })
}

async fn is_group_admin(
    svc: &LogicService,
    meta: &pb::ConversationMeta,
    user_id: i64,
) -> Result<bool> {
    if meta.r#type != pb::ConversationType::Group as i32 {
        return Ok(false);
    }
    let group = svc.ports.store.group(meta.group_id).await?;
    Ok(matches!(
        role_of(&group, user_id),
        Some(pb::GroupRole::Owner | pb::GroupRole::Admin)
    ))
}

pub(super) async fn readers(
    svc: &LogicService,
    req: pb::CallerReadersRequest,
) -> Result<pb::ReaderPage> {
    let size = super::page_size(
        req.after_user_id,
        req.size,
        READERS_DEFAULT_SIZE,
        READERS_MAX_SIZE,
    )?;
    if req.conversation_id == WORLD_ID {
        return Err(Error::invalid("the world room has no read receipts"));
    }
    let meta = svc
        .member_conversation(req.caller_id, &req.conversation_id)
        .await?;
    let message = svc.ports.store.message(req.message_id).await?;
    if message.conversation_id != meta.conversation_id {
        return Err(model::message_not_found(req.message_id));
    }
    let found = svc
        .ports
        .store
        .readers(pb::ReadersRequest {
            conversation_id: meta.conversation_id.clone(),
            seq: message.seq_id,
            exclude_user_id: message.sender_id,
            after_user_id: req.after_user_id,
            limit: size + 1,
        })
        .await?;
    let has_more = found.user_ids.len() as i64 > size;
    let ids: Vec<i64> = found.user_ids.into_iter().take(size as usize).collect();
    Ok(pb::ReaderPage {
        users: svc.ports.store.users(&ids).await?,
        has_more,
        read_count: found.total,
        // everyone but the sender may read it
        member_count: (meta.member_count - 1).max(0),
    })
}

/// Read receipts of groups, gathered per conversation for [`RECEIPT_DELAY`] and then sent
/// as one `read-receipt` event to the senders of its recent messages: a read by each of
/// 500 members is a handful of events, not 500 frames per sender.
pub struct ReceiptBatcher {
    ports: Ports,
    /// conversation -> reader -> its read seq
    pending: Mutex<HashMap<String, HashMap<i64, i64>>>,
}

impl ReceiptBatcher {
    pub fn new(ports: Ports) -> Self {
        ReceiptBatcher {
            ports,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Notes a read; the first of a batch schedules its sending.
    pub fn record(self: &Arc<Self>, conversation_id: &str, reader: i64, read_seq: i64) {
        let first = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let readers = pending.entry(conversation_id.to_string()).or_default();
            let first = readers.is_empty();
            let seq = readers.entry(reader).or_default();
            *seq = (*seq).max(read_seq);
            first
        };
        if first {
            let this = Arc::clone(self);
            let conversation_id = conversation_id.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(RECEIPT_DELAY).await;
                if let Err(e) = this.flush(&conversation_id).await {
                    tracing::warn!(error = %e, conversation_id, "read receipts not sent");
                }
            });
        }
    }

    async fn flush(&self, conversation_id: &str) -> Result<()> {
        let readers = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.remove(conversation_id).unwrap_or_default()
        };
        let Some(top) = readers.values().copied().max() else {
            return Ok(());
        };
        // the senders of the recent messages read
        let page = self
            .ports
            .store
            .messages(pb::HistoryRequest {
                conversation_id: conversation_id.to_string(),
                size: RECEIPT_SENDERS_SCAN,
                before_seq: Some(top.saturating_add(1)),
                ..Default::default()
            })
            .await?;
        let mut senders: Vec<i64> = page
            .messages
            .iter()
            .filter(|m| !model::is_amendment(m.r#type))
            .map(|m| m.sender_id)
            .collect();
        senders.sort_unstable();
        senders.dedup();
        if senders.is_empty() {
            return Ok(());
        }
        let mut positions: Vec<pb::ReaderPosition> = readers
            .into_iter()
            .map(|(user_id, read_seq)| pb::ReaderPosition { user_id, read_seq })
            .collect();
        positions.sort_by_key(|p| p.user_id);
        let receipt = pb::ReadReceipt {
            conversation_id: conversation_id.to_string(),
            readers: positions,
        };
        super::routing::tell(&self.ports, &senders, conversation_id, |users| {
            Body::Notice(Box::new(pb::Notice {
                recipient_user_ids: users,
                event: Some(pb::notice::Event::ReadReceipt(receipt.clone())),
            }))
        })
        .await
    }
}
