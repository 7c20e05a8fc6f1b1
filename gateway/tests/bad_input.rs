//! The bad-input matrix: each bad input gets the contract's error, the connection stays
//! usable (or, for protocol violations, closes with the fitting RFC 6455 code), and the
//! server keeps serving everyone else.

mod common;

use std::io::Write;

use common::*;
use serde_json::json;
use tungstenite::Message;

#[test]
fn bad_frames_get_an_error_and_the_connection_stays_usable() {
    let sys = System::start();
    let (alice, bob, outsider) = (sys.user("alice"), sys.user("bob"), sys.user("out"));
    let conv = alice.single_with(&bob);
    let mut ws = outsider.ws();
    let mut a = alice.ws();

    let cases: Vec<(&str, String, &str)> = vec![
        ("bad JSON", "{not json".into(), "INVALID_MESSAGE"),
        ("not an object", "[1,2,3]".into(), "INVALID_MESSAGE"),
        ("unknown type", json!({ "type": "teleport", "data": {} }).to_string(), "INVALID_MESSAGE"),
        ("no conversation", json!({ "type": "send-message", "data": { "content": "x", "messageType": "text", "tempMessageId": "e1" } }).to_string(), "INVALID_MESSAGE"),
        ("content not a string", json!({ "type": "send-message", "data": { "conversationId": conv, "content": 5, "tempMessageId": "e2" } }).to_string(), "INVALID_MESSAGE"),
        ("unknown message type", json!({ "type": "send-message", "data": { "conversationId": conv, "content": "x", "messageType": "hologram", "tempMessageId": "e3" } }).to_string(), "INVALID_MESSAGE"),
        ("unknown message type number", json!({ "type": "send-message", "data": { "conversationId": conv, "content": "x", "messageType": 99, "tempMessageId": "e4" } }).to_string(), "INVALID_MESSAGE"),
        ("oversize message", json!({ "type": "send-message", "data": { "conversationId": conv, "content": "x".repeat(70 * 1024), "messageType": "text", "tempMessageId": "e5" } }).to_string(), "MESSAGE_TOO_LARGE"),
        ("unknown conversation", json!({ "type": "send-message", "data": { "conversationId": "g_424242", "content": "x", "messageType": "text", "tempMessageId": "e6" } }).to_string(), "CONVERSATION_NOT_FOUND"),
        ("non-member post", json!({ "type": "send-message", "data": { "conversationId": conv, "content": "let me in", "messageType": "text", "tempMessageId": "e7" } }).to_string(), "FORBIDDEN"),
        ("empty content", json!({ "type": "send-message", "data": { "conversationId": "world", "content": "   ", "messageType": "text", "tempMessageId": "e8" } }).to_string(), "INVALID_MESSAGE"),
        ("bad mark-read", json!({ "type": "mark-read", "data": { "conversationId": conv, "seqId": -3 } }).to_string(), "INVALID_MESSAGE"),
        ("mark-read of a stranger's chat", json!({ "type": "mark-read", "data": { "conversationId": conv } }).to_string(), "FORBIDDEN"),
    ];
    for (what, frame, code) in cases {
        ws.send_text(&frame);
        let e = ws.error();
        assert_eq!(e["code"], code, "{what}: {e}");
        assert!(!e["message"].as_str().unwrap().is_empty(), "{what}");
        ws.ping(); // still open and answering
    }
    ws.ws.send(Message::binary(vec![1, 2, 3])).unwrap();
    assert_eq!(ws.error()["code"], "INVALID_MESSAGE");
    // errors of sends carry the tempMessageId back
    ws.send("g_424242", "x", "echo-me");
    assert_eq!(ws.error()["tempMessageId"], "echo-me");
    // and the connection can still chat
    ws.send("world", "still here", "ok-1");
    assert_eq!(ws.ack("ok-1")["status"], "success");
    // nothing leaked into the conversation the outsider poked at
    a.send(&conv, "real", "a-1");
    assert_eq!(a.ack("a-1")["seqId"], 1);
    assert_eq!(alice.history(&conv, "").len(), 1);
    assert!(sys.metric("ringchat_gateway_errors_total{code=\"INVALID_MESSAGE\"}") >= 8.0);
}

#[test]
fn bad_expired_and_revoked_tokens_are_refused() {
    let sys = System::start();
    let u = sys.user("tok");
    for token in ["", "garbage", "a.b.c"] {
        let err = Ws::connect(sys.http, token).err().expect("refused");
        match err {
            tungstenite::Error::Http(resp) => {
                assert_eq!(resp.status(), 401);
                let body: serde_json::Value =
                    serde_json::from_slice(resp.body().as_deref().unwrap_or(b"{}")).unwrap();
                assert_eq!(body["code"], "AUTH_FAILED");
            }
            other => panic!("{token:?}: {other:?}"),
        }
    }
    // an expired token, correctly signed
    let expired = {
        use base64::Engine;
        use hmac::Mac;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let head = b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
        let claims =
            json!({ "sub": u.id, "name": u.name, "guest": false, "jti": "x1", "iat": 1, "exp": 2 });
        let body = b64.encode(claims.to_string());
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(
            sys.config.auth.jwt_secret.expose().as_bytes(),
        )
        .unwrap();
        mac.update(format!("{head}.{body}").as_bytes());
        format!("{head}.{body}.{}", b64.encode(mac.finalize().into_bytes()))
    };
    assert!(
        matches!(Ws::connect(sys.http, &expired), Err(tungstenite::Error::Http(r)) if r.status() == 401)
    );
    let r = Http {
        addr: sys.http,
        token: Some(expired),
    }
    .get("/api/users/info");
    assert_eq!(r.status, 401);
    // revoked: no new upgrade, and the open socket is closed (4001, contract v1.1)
    let mut ws = u.ws();
    let mut bystander = sys.user("tok_other").ws();
    let r = u.http().post("/api/auth/logout", &json!({}));
    assert_eq!(r.status, 200);
    assert!(
        matches!(Ws::connect(sys.http, &u.token), Err(tungstenite::Error::Http(r)) if r.status() == 401)
    );
    assert_eq!(ws.close_code(), Some(4001));
    // the server is fine: other sockets keep working
    bystander.ping();
}

#[test]
fn guests_cannot_create_groups_or_add_friends_but_can_chat() {
    let sys = System::start();
    let guest = sys.guest("gg");
    let bob = sys.user("bob");
    let r = guest.http().post(
        "/api/groups",
        &json!({ "groupName": "nope", "members": [bob.id] }),
    );
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (403, Some("FORBIDDEN"))
    );
    let r = guest
        .http()
        .post("/api/conversations", &json!({ "targetUserId": bob.id }));
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (403, Some("FORBIDDEN"))
    );
    let conv = bob.single_with(&guest);
    let mut g = guest.ws();
    g.send(&conv, "hi bob, I'm a guest", "gg-1");
    g.ack("gg-1");
}

#[test]
fn protocol_violations_close_with_the_fitting_code_and_others_are_unaffected() {
    let sys = System::start_with(&[("RINGCHAT_GATEWAY__MAX_FRAME_BYTES", "131072")]);
    let u = sys.user("proto");
    let mut bystander = sys.user("by").ws();

    // unmasked client frame: protocol error
    let mut s = raw_ws(&sys, &u.token);
    s.write_all(&client_frame(0x1, b"{\"type\":\"ping\"}", false))
        .unwrap();
    assert_eq!(close_code_of(&mut s), 1002);

    // invalid UTF-8 in a text frame
    let mut s = raw_ws(&sys, &u.token);
    s.write_all(&client_frame(0x1, &[0xff, 0xfe, 0x80], true))
        .unwrap();
    assert_eq!(close_code_of(&mut s), 1007);

    // a frame over the hard limit
    let mut s = raw_ws(&sys, &u.token);
    s.write_all(&client_frame(0x1, &vec![b'a'; 200_000], true))
        .unwrap();
    assert_eq!(close_code_of(&mut s), 1009);

    // unknown opcode
    let mut s = raw_ws(&sys, &u.token);
    s.write_all(&client_frame(0x3, b"x", true)).unwrap();
    assert_eq!(close_code_of(&mut s), 1002);

    bystander.ping();
    assert!(sys.metric("ringchat_gateway_protocol_closes_total") >= 4.0);
}
