use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// An offline push: these users were offline when a message arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfflinePush {
    pub user_ids: Vec<String>,
    pub conversation_id: String,
    pub message_id: String,
    pub sender_id: String,
    pub sender_name: String,
    /// The start of the content (at most 100 characters).
    pub preview: String,
    pub send_time_ms: i64,
    /// Those of `user_ids` the message @-mentions (all of them when it mentions everyone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentioned_user_ids: Vec<String>,
}

impl OfflinePush {
    pub fn new(user_ids: &[i64], m: &ringchat_proto::ChatMessage) -> Self {
        OfflinePush {
            user_ids: user_ids.iter().map(i64::to_string).collect(),
            conversation_id: m.conversation_id.clone(),
            message_id: m.message_id.to_string(),
            sender_id: m.sender_id.to_string(),
            sender_name: m.sender_name.clone(),
            preview: m.content.chars().take(100).collect(),
            send_time_ms: m.send_time_ms,
            mentioned_user_ids: user_ids
                .iter()
                .filter(|u| m.mention_all || m.mentions.contains(u))
                .map(i64::to_string)
                .collect(),
        }
    }
}

/// Delivers offline pushes (APNs/FCM/webhook; logging in the embedded profile).
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    async fn notify(&self, push: &OfflinePush) -> Result<()>;
}
