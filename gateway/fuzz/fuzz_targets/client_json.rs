//! The typed client protocol: `ClientFrame::decode` (WebSocket text frames),
//! `SendMessage::from_json` (the body of `POST /api/messages`), and the server's frames
//! (`ServerEvent`, `frame::text`, `frame::close`) built from fuzzed strings and numbers.
//!
//! Input: a client text frame (`corpus/client_json/seed-*` are the contract's frames). The
//! same bytes also give the strings and numbers of the server events.
//!
//! Properties besides "no panic":
//! - a decoded frame re-encoded in the contract's canonical form decodes to the same frame
//!   (ids non-empty, `seqId` >= 0, message types by name round-trip);
//! - `POST /api/messages` and `send-message` read the same fields the same way;
//! - every `ServerEvent` is JSON `{type, data, timestamp}` that gives back the strings and
//!   numbers it was built from; `error` frames carry one of the contract's WebSocket codes;
//!   `sendTime` is the RFC 3339 form of the message's time;
//! - `encode()`, `frame::text` and `frame::close` are final unmasked frames with a minimal
//!   length, and a close payload is at most 125 bytes of valid UTF-8.
#![no_main]

use im_gateway::frame;
use im_gateway::protocol::objects::{rfc3339, Message};
use im_gateway::protocol::{ClientFrame, SendMessage, ServerEvent};
use libfuzzer_sys::fuzz_target;
use ringchat_core::model::message_type_name;
use ringchat_core::ErrorCode;
use ringchat_proto as pb;
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match ClientFrame::decode(text) {
            Ok(f) => {
                check_frame(&f);
                let canonical = canonical(&f).to_string();
                assert_eq!(
                    ClientFrame::decode(&canonical).as_ref(),
                    Ok(&f),
                    "canonical form {canonical} of {text:?}"
                );
            }
            Err(e) => assert!(!e.message.is_empty()),
        }
        same_fields_both_ways(data, text);
    } else {
        let _ = SendMessage::from_json(data);
    }
    server_events(data);
});

fn check_frame(f: &ClientFrame) {
    match f {
        ClientFrame::SendMessage(m) => assert!(!m.conversation_id.is_empty()),
        ClientFrame::MarkRead(m) => {
            assert!(!m.conversation_id.is_empty());
            assert!(m.seq_id >= 0);
        }
        ClientFrame::Typing {
            conversation_id, ..
        } => assert!(!conversation_id.is_empty()),
        ClientFrame::Ping => {}
    }
}

/// The frame as the contract writes it: names for types, strings for ids.
fn canonical(f: &ClientFrame) -> Value {
    match f {
        ClientFrame::Ping => json!({ "type": "ping", "data": {} }),
        ClientFrame::SendMessage(m) => {
            let mut data = json!({
                "conversationId": m.conversation_id,
                "content": m.content,
                "messageType": message_type_name(m.kind as i32),
            });
            if let Some(t) = &m.temp_message_id {
                data["tempMessageId"] = json!(t);
            }
            if m.mention_all {
                data["mentions"] = json!("all");
            } else if !m.mentions.is_empty() {
                data["mentions"] = json!(m.mentions.iter().map(i64::to_string).collect::<Vec<_>>());
            }
            json!({ "type": "send-message", "data": data, "timestamp": 1 })
        }
        ClientFrame::MarkRead(m) => json!({
            "type": "mark-read",
            "data": { "conversationId": m.conversation_id, "seqId": m.seq_id },
        }),
        ClientFrame::Typing {
            conversation_id,
            typing,
        } => json!({
            "type": if *typing { "typing" } else { "stop-typing" },
            "data": { "conversationId": conversation_id },
        }),
    }
}

/// `POST /api/messages` with this body and `send-message` with it as `data` agree.
fn same_fields_both_ways(body: &[u8], text: &str) {
    let http = SendMessage::from_json(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return; // an empty body reads as `{}`, an empty `data` is no JSON
    }
    let ws = ClientFrame::decode(&format!(r#"{{"type":"send-message","data":{text}}}"#));
    match (&http, &ws) {
        (Ok(h), Ok(ClientFrame::SendMessage(w))) => assert_eq!(h, w),
        (Err(h), Err(w)) => assert_eq!(h.temp_message_id, w.temp_message_id),
        _ => panic!("POST /api/messages gives {http:?}, send-message gives {ws:?}"),
    }
}

/// Strings and numbers for the server events, from the input.
struct Source<'a> {
    parts: Vec<&'a str>,
    nums: Vec<i64>,
}

impl<'a> Source<'a> {
    fn s(&self, i: usize) -> &'a str {
        self.parts.get(i).copied().unwrap_or("")
    }
    fn n(&self, i: usize) -> i64 {
        self.nums.get(i).copied().unwrap_or(0)
    }
}

fn server_events(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let src = Source {
        parts: text.split('\n').collect(),
        nums: data
            .chunks(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..c.len()].copy_from_slice(c);
                i64::from_le_bytes(b)
            })
            .collect(),
    };
    let flag = src.n(0) & 1 == 1;

    // error frames, folded and raw
    let code = ErrorCode::ALL[src.n(1).unsigned_abs() as usize % ErrorCode::ALL.len()];
    let v = round_trip(&ServerEvent::error(code, src.s(0)), "error");
    assert_eq!(v["message"], src.s(0));
    let ws_code = v["code"].as_str().expect("a code");
    assert!(
        [
            "AUTH_FAILED",
            "INVALID_MESSAGE",
            "CONVERSATION_NOT_FOUND",
            "FORBIDDEN",
            "MESSAGE_TOO_LARGE",
            "RATE_LIMITED",
            "INTERNAL"
        ]
        .contains(&ws_code),
        "{code:?} folds into {ws_code}, not a WebSocket code"
    );
    assert!(v.get("tempMessageId").is_none() && v.get("conversationId").is_none());
    let temp = flag.then(|| src.s(1));
    let conv = (!flag).then(|| src.s(2));
    let v = round_trip(
        &ServerEvent::Error {
            code: code.ws_code(),
            message: src.s(0),
            temp_message_id: temp,
            conversation_id: conv,
        },
        "error",
    );
    assert_eq!(v["message"], src.s(0));
    assert_eq!(v.get("tempMessageId").and_then(Value::as_str), temp);
    assert_eq!(v.get("conversationId").and_then(Value::as_str), conv);

    // message-ack
    let ack = pb::SendAck {
        conn_id: src.n(2) as u64,
        user_id: src.n(3),
        temp_message_id: src.s(1).into(),
        message_id: src.n(4),
        seq_id: src.n(5),
        conversation_id: src.s(2).into(),
        duplicate: flag,
    };
    let v = round_trip(&ServerEvent::ack(&ack), "message-ack");
    assert_eq!(
        v,
        json!({
            "tempMessageId": ack.temp_message_id,
            "messageId": ack.message_id.to_string(),
            "seqId": ack.seq_id,
            "conversationId": ack.conversation_id,
            "status": "success",
            "duplicate": flag,
        })
    );

    // new-message
    let m = pb::ChatMessage {
        message_id: src.n(4),
        conversation_id: src.s(2).into(),
        sender_id: src.n(3),
        sender_name: src.s(3).into(),
        content: src.s(0).into(),
        r#type: src.n(6) as i32,
        send_time_ms: src.n(7),
        seq_id: src.n(5),
        temp_message_id: src.s(1).into(),
        ref_message_id: src.n(8),
        mentions: src.nums.iter().copied().take(3).collect(),
        edited: src.n(1) % 2 == 0,
        ..Default::default()
    };
    let v = round_trip(
        &ServerEvent::NewMessage {
            conversation_id: &m.conversation_id,
            message: Message::from(&m),
        },
        "new-message",
    );
    assert_eq!(v["conversationId"], m.conversation_id);
    let msg = &v["message"];
    assert_eq!(msg["messageId"], m.message_id.to_string());
    assert_eq!(msg["senderId"], m.sender_id.to_string());
    assert_eq!(msg["senderName"], m.sender_name);
    assert_eq!(msg["content"], m.content);
    assert_eq!(msg["type"], message_type_name(m.r#type));
    assert_eq!(msg["seqId"], m.seq_id);
    // the optional fields appear exactly when they apply
    match m.ref_message_id {
        0 => assert!(msg.get("refMessageId").is_none()),
        r => assert_eq!(msg["refMessageId"], r.to_string()),
    }
    let mentions: Vec<String> = m.mentions.iter().map(i64::to_string).collect();
    match mentions.is_empty() {
        true => assert!(msg.get("mentions").is_none()),
        false => assert_eq!(msg["mentions"], json!(mentions)),
    }
    assert_eq!(msg.get("edited").is_some(), m.edited);
    let send_time = msg["sendTime"].as_str().expect("sendTime");
    assert_eq!(send_time, rfc3339(m.send_time_ms));
    assert_eq!(
        parse_rfc3339(send_time),
        Some(i128::from(m.send_time_ms)),
        "sendTime {send_time} is not {} ms",
        m.send_time_ms
    );

    // the small ones
    let v = round_trip(
        &ServerEvent::Connected {
            user_id: src.n(3).to_string(),
            gateway_id: src.s(3),
            conn_id: src.n(2).to_string(),
        },
        "connected",
    );
    assert_eq!(v["gatewayId"], src.s(3));
    let v = round_trip(
        &ServerEvent::FriendOnline {
            user_id: src.s(1).into(),
            online: flag,
        },
        "friend-online",
    );
    assert_eq!(v, json!({ "userId": src.s(1), "online": flag }));
    let v = round_trip(
        &ServerEvent::GroupMemberOnline {
            user_id: src.s(2).into(),
            online: !flag,
        },
        "group-member-online",
    );
    assert_eq!(v, json!({ "userId": src.s(2), "online": !flag }));
    assert_eq!(round_trip(&ServerEvent::Pong {}, "pong"), json!({}));

    // raw frames
    let wire = frame::text(&text);
    let (op, payload) = one_frame(&wire);
    assert_eq!((op, payload), (0x1, text.as_bytes()));
    let close_code = src.n(8) as u16;
    let wire = frame::close(close_code, &text);
    let (op, payload) = one_frame(&wire);
    assert_eq!(op, 0x8);
    assert!(payload.len() <= 125, "close payload of {}", payload.len());
    assert_eq!(payload[..2], close_code.to_be_bytes());
    let reason = std::str::from_utf8(&payload[2..]).expect("a UTF-8 close reason");
    assert!(text.starts_with(reason));
    // cut only as much as needed: one more char would not fit
    if let Some(c) = text[reason.len()..].chars().next() {
        assert!(reason.len() + c.len_utf8() > 123, "reason cut short");
    }
}

/// Encodes `e` (as JSON and as a frame), checks the envelope and returns its `data`.
fn round_trip(e: &ServerEvent<'_>, kind: &str) -> Value {
    let bytes = e.encode();
    let (op, payload) = one_frame(&bytes);
    assert_eq!(op, 0x1, "events are text frames");
    let v: Value = serde_json::from_slice(payload).expect("an event frame is JSON");
    let json: Value = serde_json::from_str(&e.to_json()).expect("an event is JSON");
    assert_eq!(v["type"], kind);
    assert_eq!(json["type"], kind);
    assert_eq!(v["data"], json["data"]);
    assert!(v["timestamp"].is_i64());
    let obj = v.as_object().expect("an object");
    assert_eq!(obj.len(), 3, "{v}");
    v["data"].clone()
}

/// The one frame in `b`: final, unmasked, minimal length; returns opcode and payload.
fn one_frame(b: &[u8]) -> (u8, &[u8]) {
    assert_eq!(b[0] & 0xF0, 0x80, "FIN and no RSV bits");
    assert_eq!(b[1] & 0x80, 0, "server frames are not masked");
    let (len, head) = match b[1] & 0x7F {
        126 => {
            let n = u16::from_be_bytes([b[2], b[3]]) as usize;
            assert!(n >= 126, "a 16-bit length for {n}");
            (n, 4)
        }
        127 => {
            let n = u64::from_be_bytes(b[2..10].try_into().unwrap());
            assert!(n > 0xFFFF && n >> 63 == 0, "a 64-bit length for {n}");
            (n as usize, 10)
        }
        n => (n as usize, 2),
    };
    assert_eq!(b.len(), head + len, "frame length");
    (b[0] & 0x0F, &b[head..])
}

/// `[-]YYYY-MM-DDTHH:MM:SS.mmmZ` back to unix milliseconds (days from civil, Hinnant).
fn parse_rfc3339(s: &str) -> Option<i128> {
    let tail = s.len().checked_sub(20)?;
    let (year, rest) = s.split_at(tail);
    let b = rest.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i128> { rest.get(r)?.parse().ok() };
    if b[0] != b'-' || b[3] != b'-' || b[6] != b'T' || b[9] != b':' || b[12] != b':' {
        return None;
    }
    if b[15] != b'.' || b[19] != b'Z' {
        return None;
    }
    let y: i128 = year.parse().ok()?;
    let (mo, d) = (num(1..3)?, num(4..6)?);
    let (h, mi, sec, ms) = (num(7..9)?, num(10..12)?, num(13..15)?, num(16..19)?);
    let leap = y.rem_euclid(4) == 0 && (y.rem_euclid(100) != 0 || y.rem_euclid(400) == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d < 1 || d > month_days[(mo - 1) as usize] {
        return None;
    }
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000) + ms)
}
