//! The changes of client contract v1.1 (docs/client-api.md), each pinned end to end with
//! real clients: found when the GoChat web client was run against ringchat unchanged.

mod common;

use std::io::{Read, Write};
use std::time::Instant;

use common::*;
use serde_json::json;

fn logout(sys: &System, token: Option<&str>) -> HttpResponse {
    Http {
        addr: sys.http,
        token: token.map(str::to_string),
    }
    .post("/api/auth/logout", &json!({}))
}

#[test]
fn logout_is_always_200_and_closes_only_that_tokens_sockets() {
    let sys = System::start();
    let alice = sys.user("lo");

    // nothing to revoke is still a success: no token, garbage, expired
    let expired = expired_token(&sys, &alice);
    for token in [None, Some("garbage"), Some(""), Some(expired.as_str())] {
        let r = logout(&sys, token);
        assert_eq!(r.status, 200, "{token:?}: {}", r.text);
        assert_eq!(r.body["success"], true);
    }

    // alice on two devices: token A (two sockets) and token B (one socket)
    let relogin = sys.api().post(
        "/api/auth/login",
        &json!({ "username": alice.name, "password": "secret12" }),
    );
    assert_eq!(relogin.status, 200);
    let token_b = relogin.body["data"]["token"].as_str().unwrap().to_string();
    let (mut a1, mut a2) = (alice.ws(), alice.ws());
    let mut b = Ws::connect(sys.http, &token_b).unwrap();
    let mut other = sys.user("lo_other").ws();

    let r = logout(&sys, Some(&alice.token));
    assert_eq!(r.status, 200, "{}", r.text);
    for ws in [&mut a1, &mut a2] {
        let err = ws.error();
        assert_eq!(err["code"], "AUTH_FAILED", "{err}");
        assert_eq!(ws.close_code(), Some(4001));
    }
    // the same user's other token and everyone else are untouched
    b.ping();
    other.ping();
    // logging out again is fine; the revoked token opens nothing
    assert_eq!(logout(&sys, Some(&alice.token)).status, 200);
    assert!(matches!(
        Ws::connect(sys.http, &alice.token),
        Err(tungstenite::Error::Http(r)) if r.status() == 401
    ));
    let me = alice.http().get("/api/users/info");
    assert_eq!(me.status, 401);
}

#[test]
fn last_message_is_the_content_string() {
    let sys = System::start();
    let (a, b) = (sys.user("lm_a"), sys.user("lm_b"));
    let conv = a.single_with(&b);
    let list = b.http().get("/api/conversations");
    let row = |list: &HttpResponse| {
        list.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["conversationId"] == conv.as_str())
            .cloned()
            .expect("the conversation is listed")
    };
    assert_eq!(
        row(&list)["lastMessage"],
        "",
        "no message yet: an empty string"
    );

    let mut ws = a.ws();
    ws.send(&conv, "hello preview", "lm-1");
    let ack = ws.ack("lm-1");
    let list = b.http().get("/api/conversations");
    let c = row(&list);
    assert_eq!(c["lastMessage"], "hello preview", "{c}");
    assert_eq!(c["lastMessageSeq"], ack["seqId"]);
    assert_eq!(c["lastMessageSenderId"], a.id.as_str());
    assert_eq!(c["lastMessageSenderName"], a.name.as_str());
    assert!(c["lastMessageTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(c["unreadCount"], 1);
}

#[test]
fn online_status_is_a_map_of_user_ids() {
    let sys = System::start();
    let (a, b, c) = (sys.user("on_a"), sys.user("on_b"), sys.user("on_c"));
    for friend in [&b, &c] {
        let r = a
            .http()
            .post("/api/friends", &json!({ "friendId": friend.id }));
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let online = |want_b: bool| {
        let end = Instant::now() + WAIT;
        loop {
            let r = a.http().get("/api/users/status/online");
            assert_eq!(r.status, 200, "{}", r.text);
            let map = r.body["data"]
                .as_object()
                .expect("data is an object")
                .clone();
            if map.get(&b.id) == Some(&json!(want_b)) {
                return map;
            }
            assert!(
                Instant::now() < end,
                "b online={want_b} never showed: {map:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let mut b_ws = b.ws();
    b_ws.ping();
    let map = online(true);
    assert_eq!(map.get(&c.id), Some(&json!(false)));
    assert_eq!(map.len(), 2, "{map:?}");
    drop(b_ws);
    online(false);
}

#[test]
fn the_world_room_has_a_member_count() {
    let sys = System::start();
    let users: Vec<Client> = (0..3).map(|i| sys.user(&format!("wm{i}"))).collect();
    sys.guest("wm_guest");
    let r = users[0].http().get("/api/conversations");
    let world = &r.body["data"][0];
    assert_eq!(world["conversationId"], "world");
    assert_eq!(world["target"]["groupId"], "world");
    assert_eq!(world["target"]["memberCount"], 4, "{world}");
}

/// Reads what the server sends until it closes TCP; returns the payload of its close
/// frame (after the 101 response head).
fn close_reply_then_eof(s: &mut std::net::TcpStream) -> Vec<u8> {
    let mut s = NoEintr(s.try_clone().unwrap());
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s
            .read(&mut buf)
            .expect("the server closes TCP after the close reply");
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
    }
    close_payload_in(&all).unwrap_or_else(|| panic!("TCP closed without a close frame: {all:?}"))
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

#[test]
fn a_client_close_is_answered_with_a_close_frame_then_tcp_closes() {
    let sys = System::start();
    let u = sys.user("cl");
    let mut bystander = sys.user("cl_by").ws();

    // valid codes are echoed
    for code in [1000u16, 1001, 3000, 4999] {
        let mut s = raw_ws(&sys, &u.token);
        s.write_all(&client_frame(0x8, &close_payload(code, "bye"), true))
            .unwrap();
        let reply = close_reply_then_eof(&mut s);
        assert_eq!(u16::from_be_bytes([reply[0], reply[1]]), code);
    }
    // an empty close is answered with an empty close
    let mut s = raw_ws(&sys, &u.token);
    s.write_all(&client_frame(0x8, b"", true)).unwrap();
    assert_eq!(close_reply_then_eof(&mut s), b"");

    // codes a peer may not send get 1002
    for code in [1005u16, 1006, 999, 1015, 5000] {
        let mut s = raw_ws(&sys, &u.token);
        s.write_all(&client_frame(0x8, &close_payload(code, ""), true))
            .unwrap();
        let reply = close_reply_then_eof(&mut s);
        assert_eq!(
            u16::from_be_bytes([reply[0], reply[1]]),
            1002,
            "close code {code} from the client"
        );
    }
    // a library client sees a clean close
    let mut ws = u.ws();
    ws.ws.close(None).unwrap();
    loop {
        match ws.ws.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("not a clean close: {e:?}"),
        }
    }
    bystander.ping();
}

#[test]
fn the_web_page_and_the_openapi_document_are_served() {
    let sys = System::start();
    let page = sys.api().get("/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text.contains("<html") || page.text.contains("<!doctype"));
    let spec = sys.api().get("/api/openapi.json");
    assert_eq!(spec.status, 200);
    assert_eq!(spec.header("content-type"), Some("application/json"));
    assert!(spec.body["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(spec.body["paths"]["/api/auth/logout"]["post"].is_object());
    // an unknown method on a known path names the allowed ones
    let r = sys.api().request("DELETE", "/api/friends", None, &[]);
    assert_eq!(r.status, 405);
    assert_eq!(r.body["code"], "METHOD_NOT_ALLOWED");
    assert_eq!(r.header("allow"), Some("POST, GET"));
}
