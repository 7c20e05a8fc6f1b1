//! The WebSocket frames of the client API (docs/client-api.md), both directions, typed.
//!
//! Every frame is a JSON text frame `{"type": ..., "data": {...}, "timestamp": <unix s>}`.
//! [`ClientFrame::decode`] is the one place client frames are read, [`ServerEvent`] the one
//! place server frames are written; [`ServerEvent::encode`] produces the finished WebSocket
//! frame as `Bytes`, encoded once and shared by every recipient.

use std::borrow::Cow;

use bytes::Bytes;
use ringchat_core::model::{message_type_from_int, parse_message_type_name};
use ringchat_core::ErrorCode;
use ringchat_proto as pb;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::objects::{ConversationChanged, FriendRequest, MembersChanged, Message, ReadReceipt};
use crate::frame;

/// A JSON scalar that clients send either as a string or as a number (ids, message
/// types, sequence numbers).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Loose {
    Text(String),
    Int(i64),
    Other(serde_json::Value),
}

impl Loose {
    /// The value as a string: a string as is, an integer in decimal.
    pub fn into_string(self) -> Option<String> {
        match self {
            Loose::Text(s) => Some(s),
            Loose::Int(i) => Some(i.to_string()),
            Loose::Other(_) => None,
        }
    }

    /// The value as an integer: an integer, or a string holding one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Loose::Text(s) => s.trim().parse().ok(),
            Loose::Int(i) => Some(*i),
            Loose::Other(_) => None,
        }
    }

    /// A message type: a name (`"text"`) or the matching integer (`1`), as string or number.
    pub fn message_type(&self) -> Option<pb::MessageType> {
        match self {
            Loose::Text(s) => parse_message_type_name(s),
            Loose::Int(i) => message_type_from_int(*i),
            Loose::Other(_) => None,
        }
    }
}

/// A frame a client may send.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    SendMessage(SendMessage),
    MarkRead(MarkRead),
    /// `typing` (true) or `stop-typing` (false) in a conversation.
    Typing {
        conversation_id: String,
        typing: bool,
    },
    Ping,
}

/// `send-message`, and the body of `POST /api/messages` (the same fields).
#[derive(Debug, Clone, PartialEq)]
pub struct SendMessage {
    pub conversation_id: String,
    pub content: String,
    pub kind: pb::MessageType,
    /// The client's idempotency key; `None` when the client gave none.
    pub temp_message_id: Option<String>,
    /// @-mentions: user ids (`mentions: [..]`), or everyone (`mentions: "all"`).
    pub mentions: Vec<i64>,
    pub mention_all: bool,
}

/// `mark-read`: `seq_id` 0 means "up to the latest".
#[derive(Debug, Clone, PartialEq)]
pub struct MarkRead {
    pub conversation_id: String,
    pub seq_id: i64,
}

/// Why a client frame was refused: always `INVALID_MESSAGE`, with the send's
/// `tempMessageId` when it had one, so the client knows which send failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub message: String,
    pub temp_message_id: Option<String>,
}

impl FrameError {
    fn new(message: impl Into<String>) -> Self {
        FrameError {
            message: message.into(),
            temp_message_id: None,
        }
    }
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

/// The fields of `send-message` as clients send them, before validation.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendFields {
    conversation_id: Option<Loose>,
    content: Option<Loose>,
    message_type: Option<Loose>,
    /// `POST /api/messages` names it `type`; `messageType` wins when both are given
    #[serde(rename = "type")]
    legacy_type: Option<Loose>,
    temp_message_id: Option<Loose>,
    mentions: Option<serde_json::Value>,
}

/// `mentions`: absent or null (none), a list of user ids (strings or numbers), or `"all"`.
fn mentions(v: Option<serde_json::Value>) -> Result<(Vec<i64>, bool), String> {
    use serde_json::Value;
    let bad = || "mentions must be a list of user ids or \"all\"".to_string();
    match v {
        None | Some(Value::Null) => Ok((Vec::new(), false)),
        Some(Value::String(s)) if s == "all" => Ok((Vec::new(), true)),
        Some(Value::Array(items)) => {
            let mut ids = items
                .into_iter()
                .map(|item| match item {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                })
                .map(|id| id.filter(|i| *i > 0).ok_or_else(bad))
                .collect::<Result<Vec<i64>, String>>()?;
            ids.sort_unstable();
            ids.dedup();
            Ok((ids, false))
        }
        Some(_) => Err(bad()),
    }
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypingFields {
    conversation_id: Option<Loose>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MarkReadFields {
    conversation_id: Option<Loose>,
    seq_id: Option<Loose>,
}

/// A conversation id: a non-empty string (a number is taken as its decimal string).
fn conversation_id(v: Option<Loose>, what: &str) -> Result<String, String> {
    v.and_then(Loose::into_string)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("{what} needs a conversationId"))
}

/// A read position: absent or null is 0 (the latest), else a non-negative integer.
pub fn seq_id(v: Option<&Loose>) -> Result<i64, String> {
    match v {
        None | Some(Loose::Other(serde_json::Value::Null)) => Ok(0),
        Some(v) => v
            .as_i64()
            .filter(|n| *n >= 0)
            .ok_or_else(|| "seqId must be a non-negative integer".to_string()),
    }
}

impl SendMessage {
    fn from_fields(f: SendFields, what: &str) -> Result<SendMessage, FrameError> {
        let temp_message_id = f.temp_message_id.and_then(Loose::into_string);
        let fail = |message: String| FrameError {
            message,
            temp_message_id: temp_message_id.clone(),
        };
        let conversation_id = conversation_id(f.conversation_id, what).map_err(fail)?;
        let Some(Loose::Text(content)) = f.content else {
            return Err(fail(format!("{what} needs a string content")));
        };
        let kind = match f.message_type.or(f.legacy_type) {
            None | Some(Loose::Other(serde_json::Value::Null)) => pb::MessageType::Text,
            Some(t) => t
                .message_type()
                .ok_or_else(|| fail("unknown messageType".into()))?,
        };
        let (mentions, mention_all) = mentions(f.mentions).map_err(fail)?;
        Ok(SendMessage {
            conversation_id,
            content,
            kind,
            temp_message_id,
            mentions,
            mention_all,
        })
    }

    /// Reads the JSON body of `POST /api/messages` (the fields of `send-message`).
    pub fn from_json(body: &[u8]) -> Result<SendMessage, FrameError> {
        let fields: SendFields = if body.iter().all(u8::is_ascii_whitespace) {
            SendFields::default()
        } else {
            serde_json::from_slice(body)
                .map_err(|e| FrameError::new(format!("invalid JSON body: {e}")))?
        };
        SendMessage::from_fields(fields, "a message")
    }
}

fn data<'a, T: Deserialize<'a> + Default>(
    raw: Option<&'a RawValue>,
    kind: &str,
) -> Result<T, FrameError> {
    match raw {
        None => Ok(T::default()),
        Some(r) => serde_json::from_str(r.get())
            .map_err(|e| FrameError::new(format!("{kind}: invalid data: {e}"))),
    }
}

impl ClientFrame {
    /// Reads one client text frame.
    pub fn decode(text: &str) -> Result<ClientFrame, FrameError> {
        let raw: RawFrame<'_> = serde_json::from_str(text)
            .map_err(|e| FrameError::new(format!("invalid JSON frame: {e}")))?;
        match raw.kind.as_ref() {
            "ping" => Ok(ClientFrame::Ping),
            "send-message" => {
                let fields: SendFields = data(raw.data, "send-message")?;
                SendMessage::from_fields(fields, "send-message").map(ClientFrame::SendMessage)
            }
            "mark-read" => {
                let f: MarkReadFields = data(raw.data, "mark-read")?;
                Ok(ClientFrame::MarkRead(MarkRead {
                    conversation_id: conversation_id(f.conversation_id, "mark-read")
                        .map_err(FrameError::new)?,
                    seq_id: seq_id(f.seq_id.as_ref()).map_err(FrameError::new)?,
                }))
            }
            kind @ ("typing" | "stop-typing") => {
                let f: TypingFields = data(raw.data, kind)?;
                Ok(ClientFrame::Typing {
                    conversation_id: conversation_id(f.conversation_id, kind)
                        .map_err(FrameError::new)?,
                    typing: kind == "typing",
                })
            }
            other => Err(FrameError::new(format!("unknown frame type {other:?}"))),
        }
    }
}

/// A frame the server sends. Encoded with [`ServerEvent::encode`].
#[derive(Debug, Serialize)]
#[serde(
    tag = "type",
    content = "data",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum ServerEvent<'a> {
    /// Right after the upgrade.
    Connected {
        user_id: String,
        gateway_id: &'a str,
        conn_id: String,
    },
    /// The sender's connection learns its message is durable.
    MessageAck {
        temp_message_id: &'a str,
        message_id: String,
        seq_id: i64,
        conversation_id: &'a str,
        status: &'static str,
        duplicate: bool,
    },
    NewMessage {
        conversation_id: &'a str,
        message: Message<'a>,
    },
    FriendOnline {
        user_id: String,
        online: bool,
    },
    GroupMemberOnline {
        user_id: String,
        online: bool,
    },
    /// Another member started (`isTyping` true) or stopped typing.
    TypingIndicator {
        conversation_id: &'a str,
        user_id: String,
        username: &'a str,
        is_typing: bool,
    },
    /// A friend request to this user, or the answer to one this user sent.
    FriendRequest(FriendRequest<'a>),
    /// Members joined a group (the new ones get it too).
    MemberAdded(MembersChanged<'a>),
    /// Members left or were removed (the removed ones get it too).
    MemberRemoved(MembersChanged<'a>),
    /// Members' roles changed.
    MemberUpdated(MembersChanged<'a>),
    /// A group was renamed, described, handed over or dissolved.
    ConversationUpdated(ConversationChanged<'a>),
    /// Members of a group read up to these positions (batched).
    ReadReceipt(ReadReceipt<'a>),
    Pong {},
    Error {
        /// Always one of the contract's WebSocket codes ([`ErrorCode::ws_code`]).
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        temp_message_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        conversation_id: Option<&'a str>,
    },
}

#[derive(Serialize)]
struct Envelope<'e, 'a> {
    #[serde(flatten)]
    event: &'e ServerEvent<'a>,
    timestamp: i64,
}

impl<'a> ServerEvent<'a> {
    /// An `error` frame; `code` is folded into the contract's WebSocket codes.
    pub fn error(code: ErrorCode, message: &'a str) -> Self {
        ServerEvent::Error {
            code: code.ws_code(),
            message,
            temp_message_id: None,
            conversation_id: None,
        }
    }

    /// The acknowledgement of a stored send.
    pub fn ack(a: &'a pb::SendAck) -> Self {
        ServerEvent::MessageAck {
            temp_message_id: &a.temp_message_id,
            message_id: a.message_id.to_string(),
            seq_id: a.seq_id,
            conversation_id: &a.conversation_id,
            status: "success",
            duplicate: a.duplicate,
        }
    }

    /// `{"type", "data", "timestamp"}` as JSON.
    pub fn to_json(&self) -> String {
        let env = Envelope {
            event: self,
            timestamp: ringchat_core::ids::now_ms() / 1000,
        };
        serde_json::to_string(&env).expect("server events always serialize")
    }

    /// The finished WebSocket text frame, ready to queue on any number of connections.
    pub fn encode(&self) -> Bytes {
        frame::text(&self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn send(data: Value) -> Result<ClientFrame, FrameError> {
        ClientFrame::decode(&json!({ "type": "send-message", "data": data }).to_string())
    }

    #[test]
    fn send_message_accepts_both_spellings_of_its_fields() {
        let f = send(json!({ "conversationId": "s_1_2", "content": "hi", "messageType": "image", "tempMessageId": "t1" }))
            .unwrap();
        assert_eq!(
            f,
            ClientFrame::SendMessage(SendMessage {
                conversation_id: "s_1_2".into(),
                content: "hi".into(),
                kind: pb::MessageType::Image,
                temp_message_id: Some("t1".into()),
                mentions: Vec::new(),
                mention_all: false,
            })
        );
        // integer types, numeric ids, no type at all
        let ClientFrame::SendMessage(m) = send(
            json!({ "conversationId": 7, "content": "x", "messageType": 5, "tempMessageId": 9 }),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (
                m.conversation_id.as_str(),
                m.kind,
                m.temp_message_id.as_deref()
            ),
            ("7", pb::MessageType::Voice, Some("9"))
        );
        let ClientFrame::SendMessage(m) =
            send(json!({ "conversationId": "w", "content": "x" })).unwrap()
        else {
            panic!()
        };
        assert_eq!((m.kind, m.temp_message_id), (pb::MessageType::Text, None));
    }

    #[test]
    fn message_type_wins_over_type_in_both_paths() {
        let both = json!({ "conversationId": "c", "content": "x", "messageType": "file", "type": "image" });
        let ClientFrame::SendMessage(ws) = send(both.clone()).unwrap() else {
            panic!()
        };
        let http = SendMessage::from_json(both.to_string().as_bytes()).unwrap();
        assert_eq!(ws.kind, pb::MessageType::File);
        assert_eq!(http.kind, pb::MessageType::File);
        let only_type = json!({ "conversationId": "c", "content": "x", "type": 2 });
        assert_eq!(
            SendMessage::from_json(only_type.to_string().as_bytes())
                .unwrap()
                .kind,
            pb::MessageType::Image
        );
    }

    #[test]
    fn bad_frames_say_what_is_wrong_and_echo_the_temp_id() {
        let e = send(json!({ "content": "x", "tempMessageId": "t9" })).unwrap_err();
        assert_eq!(e.message, "send-message needs a conversationId");
        assert_eq!(e.temp_message_id.as_deref(), Some("t9"));
        let e = send(json!({ "conversationId": "c", "content": 5, "tempMessageId": "t8" }))
            .unwrap_err();
        assert_eq!(e.message, "send-message needs a string content");
        assert_eq!(e.temp_message_id.as_deref(), Some("t8"));
        let e = send(json!({ "conversationId": "c", "content": "x", "messageType": "gif" }))
            .unwrap_err();
        assert_eq!(e.message, "unknown messageType");
        let e = ClientFrame::decode("{not json").unwrap_err();
        assert!(e.message.starts_with("invalid JSON frame"), "{}", e.message);
        let e = ClientFrame::decode(r#"{"type":"dance","data":{}}"#).unwrap_err();
        assert_eq!(e.message, "unknown frame type \"dance\"");
        let e = ClientFrame::decode(r#"{"type":"send-message","data":[1]}"#).unwrap_err();
        assert!(
            e.message.starts_with("send-message: invalid data"),
            "{}",
            e.message
        );
    }

    #[test]
    fn ping_and_mark_read() {
        assert_eq!(
            ClientFrame::decode(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping)
        );
        assert_eq!(
            ClientFrame::decode(r#"{"type":"ping","data":{},"timestamp":1}"#),
            Ok(ClientFrame::Ping)
        );
        assert_eq!(
            ClientFrame::decode(
                r#"{"type":"mark-read","data":{"conversationId":"g_1","seqId":"4"}}"#
            ),
            Ok(ClientFrame::MarkRead(MarkRead {
                conversation_id: "g_1".into(),
                seq_id: 4
            }))
        );
        assert_eq!(
            ClientFrame::decode(r#"{"type":"mark-read","data":{"conversationId":"g_1"}}"#),
            Ok(ClientFrame::MarkRead(MarkRead {
                conversation_id: "g_1".into(),
                seq_id: 0
            }))
        );
        let e = ClientFrame::decode(
            r#"{"type":"mark-read","data":{"conversationId":"g_1","seqId":-1}}"#,
        )
        .unwrap_err();
        assert_eq!(e.message, "seqId must be a non-negative integer");
    }

    #[test]
    fn server_events_have_type_data_and_timestamp() {
        let v: Value = serde_json::from_str(&ServerEvent::Pong {}.to_json()).unwrap();
        assert_eq!(v["type"], "pong");
        assert_eq!(v["data"], json!({}));
        assert!(v["timestamp"].as_i64().unwrap() > 1_700_000_000);

        let ack = pb::SendAck {
            conn_id: 1,
            user_id: 2,
            temp_message_id: "t1".into(),
            message_id: 99,
            seq_id: 4,
            conversation_id: "s_1_2".into(),
            duplicate: false,
        };
        let v: Value = serde_json::from_str(&ServerEvent::ack(&ack).to_json()).unwrap();
        assert_eq!(v["type"], "message-ack");
        assert_eq!(
            v["data"],
            json!({ "tempMessageId": "t1", "messageId": "99", "seqId": 4, "conversationId": "s_1_2", "status": "success", "duplicate": false })
        );

        let v: Value = serde_json::from_str(
            &ServerEvent::error(ErrorCode::UserNotFound, "no such user").to_json(),
        )
        .unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(
            v["data"],
            json!({ "code": "INVALID_MESSAGE", "message": "no such user" })
        );

        let v: Value = serde_json::from_str(
            &ServerEvent::GroupMemberOnline {
                user_id: "3".into(),
                online: true,
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(v["type"], "group-member-online");
        assert_eq!(v["data"], json!({ "userId": "3", "online": true }));
    }

    #[test]
    fn mentions_are_user_ids_or_all() {
        let send = |mentions: &str| {
            ClientFrame::decode(&format!(
                r#"{{"type":"send-message","data":{{"conversationId":"g_1","content":"hi","mentions":{mentions}}}}}"#
            ))
        };
        let Ok(ClientFrame::SendMessage(m)) = send(r#"[3, "2", 3]"#) else {
            panic!("mentions by id")
        };
        assert_eq!((m.mentions, m.mention_all), (vec![2, 3], false));
        let Ok(ClientFrame::SendMessage(m)) = send(r#""all""#) else {
            panic!("mentions of all")
        };
        assert!(m.mention_all && m.mentions.is_empty());
        let Ok(ClientFrame::SendMessage(m)) = send("null") else {
            panic!("no mentions")
        };
        assert!(!m.mention_all && m.mentions.is_empty());
        for bad in [r#""everyone""#, "[0]", r#"["x"]"#, "[[1]]", "7", "{}"] {
            let e = send(bad).unwrap_err();
            assert!(e.message.contains("mentions"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn typing_frames_name_their_conversation() {
        assert_eq!(
            ClientFrame::decode(r#"{"type":"typing","data":{"conversationId":"s_1_2"}}"#),
            Ok(ClientFrame::Typing {
                conversation_id: "s_1_2".into(),
                typing: true
            })
        );
        assert_eq!(
            ClientFrame::decode(r#"{"type":"stop-typing","data":{"conversationId":7}}"#),
            Ok(ClientFrame::Typing {
                conversation_id: "7".into(),
                typing: false
            })
        );
        let e = ClientFrame::decode(r#"{"type":"typing","data":{}}"#).unwrap_err();
        assert_eq!(e.message, "typing needs a conversationId");
        let e = ClientFrame::decode(r#"{"type":"stop-typing"}"#).unwrap_err();
        assert!(e.message.contains("stop-typing"), "{}", e.message);
        let frame = ServerEvent::TypingIndicator {
            conversation_id: "s_1_2",
            user_id: "1".into(),
            username: "alice",
            is_typing: true,
        }
        .to_json();
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["type"], "typing-indicator");
        assert_eq!(v["data"]["conversationId"], "s_1_2");
        assert_eq!(v["data"]["userId"], "1");
        assert_eq!(v["data"]["username"], "alice");
        assert_eq!(v["data"]["isTyping"], true);
    }

    #[test]
    fn encoded_events_are_finished_text_frames() {
        let f = ServerEvent::Pong {}.encode();
        assert_eq!(f[0], 0x81);
        let len = f[1] as usize;
        let v: Value = serde_json::from_slice(&f[2..2 + len]).unwrap();
        assert_eq!(v["type"], "pong");
    }
}
