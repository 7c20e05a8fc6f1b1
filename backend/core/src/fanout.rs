//! Routing a message to the gateways that hold its online recipients: the step im-logic
//! runs for small conversations and im-task runs, page by page, for large ones.
//!
//! One `DownstreamBatch` per gateway carries the message once plus the recipient ids on
//! that gateway, so the payload is never repeated per recipient. Every record published
//! here carries the current trace id (see [`crate::trace`]).

use std::collections::BTreeMap;

use bytes::Bytes;
use pb::downstream_batch::Body;
use prost::Message as _;
use ringchat_proto as pb;

use crate::error::Result;
use crate::model::GATEWAY_SERVICE;
use crate::ports::{Bus, Cache, Discovery};
use crate::trace;

/// Where a set of users is: online ones grouped by gateway, and the offline ones.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Located {
    pub by_gateway: BTreeMap<String, Vec<i64>>,
    pub offline: Vec<i64>,
}

/// Looks up the presence of `users` (in the given order) and groups them by gateway.
pub async fn locate(cache: &dyn Cache, users: &[i64]) -> Result<Located> {
    let presence = cache.presence(users).await?;
    let mut out = Located::default();
    for user in users {
        match presence.get(user) {
            Some(endpoints) => {
                let mut gateways: Vec<&str> =
                    endpoints.iter().map(|e| e.gateway_id.as_str()).collect();
                gateways.dedup();
                for gw in gateways {
                    let list = out.by_gateway.entry(gw.to_string()).or_default();
                    if list.last() != Some(user) {
                        list.push(*user);
                    }
                }
            }
            None => out.offline.push(*user),
        }
    }
    Ok(out)
}

/// As [`locate`]; when the cache is unreachable (degraded mode, see
/// [`crate::degraded`]), every user is placed on every live gateway: each gateway delivers
/// to the recipients it holds and drops the others, so messages still arrive. Nobody is
/// reported offline then.
pub async fn locate_or_everywhere(
    cache: &dyn Cache,
    discovery: &dyn Discovery,
    users: &[i64],
) -> Result<Located> {
    match locate(cache, users).await {
        Err(e) if e.is_retryable() => {
            let gateways = discovery.instances(GATEWAY_SERVICE).await?;
            tracing::debug!(
                gateways = gateways.len(),
                "presence unknown: routing to every gateway"
            );
            Ok(Located {
                by_gateway: gateways
                    .into_iter()
                    .map(|g| (g.id, users.to_vec()))
                    .collect(),
                offline: Vec::new(),
            })
        }
        other => other,
    }
}

/// Publishes one event to one gateway's downstream topic, keyed by conversation so that
/// events of a conversation stay in order.
pub async fn send_downstream(bus: &dyn Bus, gateway_id: &str, key: &str, body: Body) -> Result<()> {
    let batch = pb::DownstreamBatch {
        gateway_id: gateway_id.to_string(),
        body: Some(body),
    };
    trace::publish(
        bus,
        &pb::topics::downstream(gateway_id),
        key.as_bytes(),
        Bytes::from(batch.encode_to_vec()),
    )
    .await
}

/// Hands a task to im-task, keyed by conversation.
pub async fn send_task(
    bus: &dyn Bus,
    conversation_id: &str,
    task: pb::task_message::Task,
) -> Result<()> {
    let task = pb::TaskMessage { task: Some(task) };
    trace::publish(
        bus,
        pb::topics::TASK,
        conversation_id.as_bytes(),
        Bytes::from(task.encode_to_vec()),
    )
    .await
}

/// Sends `message` to every located gateway; `exclude` is the sending connection
/// (gateway id, conn id), which gets an ack instead.
pub async fn deliver(
    bus: &dyn Bus,
    located: &Located,
    message: &pb::ChatMessage,
    exclude: Option<(&str, u64)>,
) -> Result<usize> {
    let mut sent = 0;
    for (gw, users) in &located.by_gateway {
        let exclude_conn_id = match exclude {
            Some((g, c)) if g == gw => c,
            _ => 0,
        };
        send_downstream(
            bus,
            gw,
            &message.conversation_id,
            Body::NewMessage(pb::NewMessage {
                message: Some(message.clone()),
                recipient_user_ids: users.clone(),
                broadcast: false,
                exclude_conn_id,
            }),
        )
        .await?;
        sent += users.len();
    }
    Ok(sent)
}
