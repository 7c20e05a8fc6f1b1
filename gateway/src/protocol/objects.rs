//! The JSON objects of the client API (docs/client-api.md): users, messages,
//! conversations, groups and friends as clients see them. IDs are strings, times RFC 3339,
//! message types and roles names. Each is built from the backend's protobuf type by
//! borrowing, so encoding a frame copies nothing but the JSON itself.

use ringchat_core::model::message_type_name;
use ringchat_proto as pb;
use serde::Serialize;

/// Unix milliseconds as RFC 3339 UTC (`2026-11-26T16:23:24.123Z`).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // civil-from-days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User<'a> {
    pub user_id: String,
    pub username: &'a str,
    pub avatar: &'a str,
    pub is_guest: bool,
    /// The display name the user chose; empty when none (show the username).
    pub nickname: &'a str,
}

impl<'a> From<&'a pb::User> for User<'a> {
    fn from(u: &'a pb::User) -> Self {
        User {
            user_id: u.user_id.to_string(),
            username: &u.username,
            avatar: &u.avatar,
            is_guest: u.is_guest,
            nickname: &u.nickname,
        }
    }
}

/// A friend request (GoChat 2.0): status 0 pending, 1 accepted, 2 rejected, 3 blocked;
/// times are unix seconds.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FriendRequest<'a> {
    pub id: String,
    pub requester_id: String,
    pub target_id: String,
    pub status: i32,
    pub message: &'a str,
    pub created_at: i64,
    pub updated_at: i64,
    pub requester: Option<User<'a>>,
    pub target: Option<User<'a>>,
}

impl<'a> From<&'a pb::FriendRequest> for FriendRequest<'a> {
    fn from(r: &'a pb::FriendRequest) -> Self {
        FriendRequest {
            id: r.request_id.to_string(),
            requester_id: r.requester_id.to_string(),
            target_id: r.target_id.to_string(),
            status: r.status,
            message: &r.message,
            created_at: r.created_at,
            updated_at: r.updated_at,
            requester: r.requester.as_ref().map(User::from),
            target: r.target.as_ref().map(User::from),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message<'a> {
    pub message_id: String,
    pub conversation_id: &'a str,
    pub sender_id: String,
    pub sender_name: &'a str,
    pub content: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub send_time: String,
    pub seq_id: i64,
    /// A revoke or edit event: the message it changes. The fields below are left out when
    /// they are empty or false, so a plain message's JSON is as it always was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ref_message_id: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub edited: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub revoked: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub mention_all: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl<'a> From<&'a pb::ChatMessage> for Message<'a> {
    fn from(m: &'a pb::ChatMessage) -> Self {
        Message {
            message_id: m.message_id.to_string(),
            conversation_id: &m.conversation_id,
            sender_id: m.sender_id.to_string(),
            sender_name: &m.sender_name,
            content: &m.content,
            kind: message_type_name(m.r#type),
            send_time: rfc3339(m.send_time_ms),
            seq_id: m.seq_id,
            ref_message_id: (m.ref_message_id != 0).then(|| m.ref_message_id.to_string()),
            edited: m.edited,
            revoked: m.revoked,
            mentions: m.mentions.iter().map(i64::to_string).collect(),
            mention_all: m.mention_all,
        }
    }
}

/// Who a conversation is with: the peer of a single chat, a group, or the world room.
#[derive(Debug, Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
pub enum Target<'a> {
    Peer {
        user_id: String,
        username: &'a str,
        avatar: &'a str,
    },
    Group {
        group_id: String,
        group_name: &'a str,
        avatar: &'a str,
        member_count: i64,
    },
    World {
        group_id: &'static str,
        group_name: &'a str,
        avatar: &'a str,
        description: &'a str,
        member_count: i64,
    },
}

/// One row of a user's conversation list. `lastMessage` is the last message's content
/// (clients show it as the preview; contract v1.1); the rest of the last message is in
/// the `lastMessage*` fields beside it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation<'a> {
    pub conversation_id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub target: Option<Target<'a>>,
    pub last_message: &'a str,
    pub last_message_time: Option<String>,
    pub last_message_seq: i64,
    pub last_message_sender_id: Option<String>,
    pub last_message_sender_name: Option<&'a str>,
    pub unread_count: i64,
    pub last_seq: i64,
    /// Unread messages that @-mention the user (or everyone).
    pub mention_count: i64,
}

fn conversation_type(t: i32) -> &'static str {
    match pb::ConversationType::try_from(t) {
        Ok(pb::ConversationType::Group) => "group",
        Ok(pb::ConversationType::World) => "world",
        _ => "single",
    }
}

impl<'a> From<&'a pb::ConversationView> for Conversation<'a> {
    fn from(c: &'a pb::ConversationView) -> Self {
        use pb::conversation_view::Target as T;
        let target = c.target.as_ref().map(|t| match t {
            T::Peer(u) => Target::Peer {
                user_id: u.user_id.to_string(),
                username: &u.username,
                avatar: &u.avatar,
            },
            T::Group(g) => Target::Group {
                group_id: g.group_id.to_string(),
                group_name: &g.group_name,
                avatar: &g.avatar,
                member_count: g.member_count,
            },
            T::World(w) => Target::World {
                group_id: ringchat_core::model::WORLD_ID,
                group_name: &w.group_name,
                avatar: &w.avatar,
                description: &w.description,
                member_count: w.member_count,
            },
        });
        let last = c.last_message.as_ref();
        Conversation {
            conversation_id: &c.conversation_id,
            kind: conversation_type(c.r#type),
            target,
            last_message: last.map_or("", |m| m.content.as_str()),
            last_message_time: (c.last_message_time_ms > 0)
                .then(|| rfc3339(c.last_message_time_ms)),
            last_message_seq: last.map_or(0, |m| m.seq_id),
            last_message_sender_id: last.map(|m| m.sender_id.to_string()),
            last_message_sender_name: last.map(|m| m.sender_name.as_str()),
            unread_count: c.unread_count,
            last_seq: c.last_seq,
            mention_count: c.mention_count,
        }
    }
}

pub fn role_name(r: i32) -> &'static str {
    match pb::GroupRole::try_from(r) {
        Ok(pb::GroupRole::Owner) => "owner",
        Ok(pb::GroupRole::Admin) => "admin",
        _ => "member",
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupMember<'a> {
    pub user_id: String,
    pub username: &'a str,
    pub avatar: &'a str,
    pub role: &'static str,
    pub nickname: &'a str,
}

impl<'a> From<&'a pb::GroupMember> for GroupMember<'a> {
    fn from(m: &'a pb::GroupMember) -> Self {
        GroupMember {
            user_id: m.user_id.to_string(),
            username: &m.username,
            avatar: &m.avatar,
            role: role_name(m.role),
            nickname: &m.nickname,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Group<'a> {
    pub group_id: String,
    pub group_name: &'a str,
    pub avatar: &'a str,
    pub owner_id: String,
    pub conversation_id: &'a str,
    pub member_count: usize,
    pub members: Vec<GroupMember<'a>>,
    pub description: &'a str,
}

impl<'a> From<&'a pb::Group> for Group<'a> {
    fn from(g: &'a pb::Group) -> Self {
        Group {
            group_id: g.group_id.to_string(),
            group_name: &g.group_name,
            avatar: &g.avatar,
            owner_id: g.owner_id.to_string(),
            conversation_id: &g.conversation_id,
            member_count: g.members.len(),
            members: g.members.iter().map(GroupMember::from).collect(),
            description: &g.description,
        }
    }
}

/// A conversation with its details (GoChat 2.0): the list row's fields, plus a group's
/// description and owner and the caller's role in it (`null` outside groups).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationDetails<'a> {
    #[serde(flatten)]
    pub conversation: Option<Conversation<'a>>,
    pub description: &'a str,
    pub owner_id: Option<String>,
    pub my_role: Option<&'static str>,
    pub member_count: i64,
}

impl<'a> From<&'a pb::ConversationDetails> for ConversationDetails<'a> {
    fn from(d: &'a pb::ConversationDetails) -> Self {
        let group = d.my_role != pb::GroupRole::Unspecified as i32;
        ConversationDetails {
            conversation: d.conversation.as_ref().map(Conversation::from),
            description: &d.description,
            owner_id: group.then(|| d.owner_id.to_string()),
            my_role: group.then(|| role_name(d.my_role)),
            member_count: d.member_count,
        }
    }
}

/// `member-added`, `member-removed` and `member-updated` events.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MembersChanged<'a> {
    pub conversation_id: &'a str,
    pub group_id: String,
    pub members: Vec<GroupMember<'a>>,
    pub by_user_id: String,
}

impl<'a> From<&'a pb::MembersChanged> for MembersChanged<'a> {
    fn from(m: &'a pb::MembersChanged) -> Self {
        MembersChanged {
            conversation_id: &m.conversation_id,
            group_id: m.group_id.to_string(),
            members: m.members.iter().map(GroupMember::from).collect(),
            by_user_id: m.by_user_id.to_string(),
        }
    }
}

/// The `read-receipt` event: members read a group conversation up to these seqs.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadReceipt<'a> {
    pub conversation_id: &'a str,
    pub readers: Vec<ReaderPosition>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReaderPosition {
    pub user_id: String,
    pub read_seq: i64,
}

impl<'a> From<&'a pb::ReadReceipt> for ReadReceipt<'a> {
    fn from(r: &'a pb::ReadReceipt) -> Self {
        ReadReceipt {
            conversation_id: &r.conversation_id,
            readers: r
                .readers
                .iter()
                .map(|p| ReaderPosition {
                    user_id: p.user_id.to_string(),
                    read_seq: p.read_seq,
                })
                .collect(),
        }
    }
}

/// The `conversation-updated` event: a group's details after a change.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationChanged<'a> {
    pub conversation_id: &'a str,
    pub group_id: String,
    pub group_name: &'a str,
    pub avatar: &'a str,
    pub description: &'a str,
    pub owner_id: String,
    pub member_count: i64,
    pub dissolved: bool,
    pub by_user_id: String,
}

impl<'a> From<&'a pb::ConversationChanged> for ConversationChanged<'a> {
    fn from(c: &'a pb::ConversationChanged) -> Self {
        ConversationChanged {
            conversation_id: &c.conversation_id,
            group_id: c.group_id.to_string(),
            group_name: &c.name,
            avatar: &c.avatar,
            description: &c.description,
            owner_id: c.owner_id.to_string(),
            member_count: c.member_count,
            dissolved: c.dissolved,
            by_user_id: c.by_user_id.to_string(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Friend<'a> {
    pub user_id: String,
    pub username: &'a str,
    pub avatar: &'a str,
    pub online: bool,
}

/// `data` of login and guest.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Auth<'a> {
    pub token: &'a str,
    pub user: Option<User<'a>>,
    pub expires_at: String,
}

impl<'a> From<&'a pb::AuthResponse> for Auth<'a> {
    fn from(a: &'a pb::AuthResponse) -> Self {
        Auth {
            token: &a.token,
            user: a.user.as_ref().map(User::from),
            expires_at: rfc3339(a.expires_at * 1000),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    pub page: i64,
    pub size: i64,
    pub total: i64,
    pub has_more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_710_204_123), "2026-11-26T16:23:24.123Z");
    }

    fn chat_message() -> pb::ChatMessage {
        pb::ChatMessage {
            message_id: 12,
            conversation_id: "s_1_2".into(),
            sender_id: 1,
            sender_name: "ann".into(),
            content: "hi".into(),
            r#type: 2,
            send_time_ms: 0,
            seq_id: 3,
            temp_message_id: String::new(),
            ..Default::default()
        }
    }

    #[test]
    fn a_plain_message_has_no_amendment_or_mention_fields() {
        let v = serde_json::to_value(Message::from(&chat_message())).unwrap();
        for key in [
            "refMessageId",
            "edited",
            "revoked",
            "mentions",
            "mentionAll",
        ] {
            assert!(v.get(key).is_none(), "{key} in {v}");
        }
        let revoke = pb::ChatMessage {
            r#type: pb::MessageType::Revoke as i32,
            ref_message_id: 9,
            mentions: vec![4],
            ..chat_message()
        };
        let v = serde_json::to_value(Message::from(&revoke)).unwrap();
        assert_eq!(v["type"], "revoke");
        assert_eq!(v["refMessageId"], "9");
        assert_eq!(v["mentions"], json!(["4"]));
    }

    #[test]
    fn ids_are_strings_and_times_rfc3339() {
        let m = chat_message();
        let v = serde_json::to_value(Message::from(&m)).unwrap();
        assert_eq!(v["messageId"], "12");
        assert_eq!(v["senderId"], "1");
        assert_eq!(v["type"], "image");
        assert_eq!(v["seqId"], 3);
        assert_eq!(v["sendTime"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn last_message_is_the_content_string() {
        let view = pb::ConversationView {
            conversation_id: "s_1_2".into(),
            r#type: pb::ConversationType::Single as i32,
            target: None,
            last_message: Some(chat_message()),
            last_message_time_ms: 1000,
            unread_count: 1,
            last_seq: 3,
            read_seq: 2,
            ..Default::default()
        };
        let v = serde_json::to_value(Conversation::from(&view)).unwrap();
        assert_eq!(v["lastMessage"], "hi");
        assert_eq!(v["lastMessageSeq"], 3);
        assert_eq!(v["lastMessageSenderId"], "1");
        assert_eq!(v["lastMessageSenderName"], "ann");
        let empty = pb::ConversationView {
            last_message: None,
            ..view
        };
        let v = serde_json::to_value(Conversation::from(&empty)).unwrap();
        assert_eq!(v["lastMessage"], "");
        assert_eq!(v["lastMessageSenderId"], json!(null));
    }

    #[test]
    fn world_target_has_a_member_count() {
        let view = pb::ConversationView {
            conversation_id: "world".into(),
            r#type: pb::ConversationType::World as i32,
            target: Some(pb::conversation_view::Target::World(
                ringchat_core::model::world_target(7),
            )),
            ..Default::default()
        };
        let v = serde_json::to_value(Conversation::from(&view)).unwrap();
        assert_eq!(v["type"], "world");
        assert_eq!(v["target"]["groupId"], "world");
        assert_eq!(v["target"]["memberCount"], 7);
    }
}
