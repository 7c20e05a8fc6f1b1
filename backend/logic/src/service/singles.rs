//! The single chats a send has already been checked against, kept in memory.
//!
//! A single chat's two members are fixed when it is created: no store operation adds or
//! removes a member of one (deleting a friend keeps the conversation and its history). So
//! once its metadata is read, a later send to it is authorised without the store: two
//! round trips to the store's reader (the conversation, then the membership) fewer per
//! message. This holds in every profile and with any number of im-logic instances, as
//! nothing cached here can change. Groups and the world are not cached: their members do.

use std::collections::HashMap;
use std::sync::Mutex;

use ringchat_proto as pb;

/// Most single chats kept; when full, the cache starts again from empty (a miss costs
/// two store reads, not a wrong answer).
const CAPACITY: usize = 100_000;

#[derive(Default)]
pub(crate) struct SingleChats {
    known: Mutex<HashMap<String, [i64; 2]>>,
}

impl SingleChats {
    /// The conversation's metadata (its `last_seq` left 0: the send path does not read it)
    /// if it is a single chat seen before.
    pub(crate) fn get(&self, conversation_id: &str) -> Option<pb::ConversationMeta> {
        let [user_a, user_b] = *self.lock().get(conversation_id)?;
        Some(pb::ConversationMeta {
            conversation_id: conversation_id.to_owned(),
            r#type: pb::ConversationType::Single as i32,
            user_a,
            user_b,
            member_count: 2,
            ..Default::default()
        })
    }

    /// Remembers `meta` if it is a single chat.
    pub(crate) fn remember(&self, meta: &pb::ConversationMeta) {
        if meta.r#type != pb::ConversationType::Single as i32 {
            return;
        }
        let mut known = self.lock();
        if known.len() >= CAPACITY && !known.contains_key(&meta.conversation_id) {
            known.clear();
        }
        known.insert(meta.conversation_id.clone(), [meta.user_a, meta.user_b]);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, [i64; 2]>> {
        // a panic while holding the lock cannot leave the map half-written in a way that
        // matters (each entry is written whole), so a poisoned lock is used as it is
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: &str, kind: pb::ConversationType) -> pb::ConversationMeta {
        pb::ConversationMeta {
            conversation_id: id.into(),
            r#type: kind as i32,
            user_a: 1,
            user_b: 2,
            member_count: 2,
            last_seq: 7,
            ..Default::default()
        }
    }

    #[test]
    fn remembers_single_chats_only() {
        let c = SingleChats::default();
        c.remember(&meta("s", pb::ConversationType::Single));
        c.remember(&meta("g", pb::ConversationType::Group));
        let got = c.get("s").expect("single chat remembered");
        assert_eq!((got.user_a, got.user_b, got.member_count), (1, 2, 2));
        assert_eq!(got.r#type, pb::ConversationType::Single as i32);
        assert!(c.get("g").is_none(), "a group's members change: not cached");
        assert!(c.get("other").is_none());
    }

    #[test]
    fn starts_again_when_full() {
        let c = SingleChats::default();
        for i in 0..CAPACITY {
            c.remember(&meta(&i.to_string(), pb::ConversationType::Single));
        }
        assert!(c.get("0").is_some());
        c.remember(&meta("one more", pb::ConversationType::Single));
        assert!(c.get("one more").is_some());
        assert!(c.get("0").is_none(), "the full cache was emptied first");
    }
}
