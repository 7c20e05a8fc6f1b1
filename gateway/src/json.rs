//! The client API's JSON shapes (CLIENT_API.md): how users, conversations, messages and
//! groups look on the wire, the response envelope, and the WebSocket event frames.
//! IDs are strings, times RFC 3339, message types names.

use ringchat_core::model::message_type_name;
use ringchat_core::Error;
use ringchat_proto as pb;
use serde_json::{json, Value};

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

pub fn user(u: &pb::User) -> Value {
    json!({
        "userId": u.user_id.to_string(),
        "username": u.username,
        "avatar": u.avatar,
        "isGuest": u.is_guest,
    })
}

pub fn message(m: &pb::ChatMessage) -> Value {
    json!({
        "messageId": m.message_id.to_string(),
        "conversationId": m.conversation_id,
        "senderId": m.sender_id.to_string(),
        "senderName": m.sender_name,
        "content": m.content,
        "type": message_type_name(m.r#type),
        "sendTime": rfc3339(m.send_time_ms),
        "seqId": m.seq_id,
    })
}

fn conversation_type(t: i32) -> &'static str {
    match pb::ConversationType::try_from(t) {
        Ok(pb::ConversationType::Group) => "group",
        Ok(pb::ConversationType::World) => "world",
        _ => "single",
    }
}

pub fn conversation(c: &pb::ConversationView) -> Value {
    use pb::conversation_view::Target;
    let target = match &c.target {
        Some(Target::Peer(u)) => json!({
            "userId": u.user_id.to_string(),
            "username": u.username,
            "avatar": u.avatar,
        }),
        Some(Target::Group(g)) => json!({
            "groupId": g.group_id.to_string(),
            "groupName": g.group_name,
            "avatar": g.avatar,
            "memberCount": g.member_count,
        }),
        Some(Target::World(w)) => json!({
            "groupId": "world",
            "groupName": w.group_name,
            "avatar": w.avatar,
            "description": w.description,
        }),
        None => Value::Null,
    };
    json!({
        "conversationId": c.conversation_id,
        "type": conversation_type(c.r#type),
        "target": target,
        "lastMessage": c.last_message.as_ref().map(message),
        "lastMessageTime": (c.last_message_time_ms > 0).then(|| rfc3339(c.last_message_time_ms)),
        "unreadCount": c.unread_count,
        "lastSeq": c.last_seq,
    })
}

pub fn role_name(r: i32) -> &'static str {
    match pb::GroupRole::try_from(r) {
        Ok(pb::GroupRole::Owner) => "owner",
        Ok(pb::GroupRole::Admin) => "admin",
        _ => "member",
    }
}

pub fn group(g: &pb::Group) -> Value {
    json!({
        "groupId": g.group_id.to_string(),
        "groupName": g.group_name,
        "avatar": g.avatar,
        "ownerId": g.owner_id.to_string(),
        "conversationId": g.conversation_id,
        "members": g.members.iter().map(|m| json!({
            "userId": m.user_id.to_string(),
            "username": m.username,
            "avatar": m.avatar,
            "role": role_name(m.role),
        })).collect::<Vec<_>>(),
    })
}

/// `{"success": true, "message": ..., "data": ...}`
pub fn ok(message: &str, data: Value) -> Value {
    json!({ "success": true, "message": message, "data": data })
}

/// `{"success": false, "message": ..., "code": ...}`
pub fn error(e: &Error) -> Value {
    json!({ "success": false, "message": e.message, "code": e.code.as_str() })
}

fn now_secs() -> i64 {
    ringchat_core::ids::now_ms() / 1000
}

/// A server-to-client WebSocket event `{"type", "data", "timestamp"}`.
pub fn event(kind: &str, data: Value) -> String {
    json!({ "type": kind, "data": data, "timestamp": now_secs() }).to_string()
}

/// The WebSocket `error` frame uses the contract's short list of codes; the richer codes
/// of the HTTP API fold into the closest one.
pub fn ws_error_code(code: &str) -> &'static str {
    match code {
        "AUTH_FAILED" => "AUTH_FAILED",
        "CONVERSATION_NOT_FOUND" => "CONVERSATION_NOT_FOUND",
        "FORBIDDEN" => "FORBIDDEN",
        "MESSAGE_TOO_LARGE" => "MESSAGE_TOO_LARGE",
        "RATE_LIMITED" => "RATE_LIMITED",
        "INVALID_MESSAGE" | "INVALID_ARGUMENT" | "USER_NOT_FOUND" | "GROUP_NOT_FOUND"
        | "NOT_FOUND" | "CONFLICT" | "USERNAME_TAKEN" => "INVALID_MESSAGE",
        _ => "INTERNAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_710_204_123), "2026-11-26T16:23:24.123Z");
    }

    #[test]
    fn ids_are_strings_and_times_rfc3339() {
        let m = pb::ChatMessage {
            message_id: 12,
            conversation_id: "s_1_2".into(),
            sender_id: 1,
            sender_name: "ann".into(),
            content: "hi".into(),
            r#type: 2,
            send_time_ms: 0,
            seq_id: 3,
            temp_message_id: String::new(),
        };
        let v = message(&m);
        assert_eq!(v["messageId"], "12");
        assert_eq!(v["senderId"], "1");
        assert_eq!(v["type"], "image");
        assert_eq!(v["seqId"], 3);
        assert_eq!(v["sendTime"], "1970-01-01T00:00:00.000Z");
    }
}
