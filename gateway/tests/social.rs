//! Friends with consent, and conversation and member management (issue 12, GoChat
//! 2.0), end to end with real clients in the embedded profile; `distributed.rs` runs the
//! same checks on the real engines.

mod common;

use common::*;
use serde_json::json;

#[test]
fn friend_requests_wait_for_the_targets_answer() {
    let sys = System::start();
    let (a, b, c) = (sys.user("fr_a"), sys.user("fr_b"), sys.user("fr_c"));
    let guest = sys.guest("frg");
    check_friend_requests(&a, &b, &c, &guest);
}

#[test]
fn the_v1_add_friend_is_immediate_by_default() {
    let sys = System::start();
    let (a, b) = (sys.user("v1_a"), sys.user("v1_b"));
    let r = a.http().post("/api/friends", &json!({ "friendId": b.id }));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body["data"]["conversation"]["conversationId"].is_string(),
        "{}",
        r.text
    );
    let r = b.http().get("/api/friends");
    assert_eq!(r.body["data"][0]["userId"], a.id.as_str(), "{}", r.text);
}

#[test]
fn the_v1_add_friend_sends_a_request_when_consent_is_required() {
    let sys = System::start_with(&[("RINGCHAT_LOGIC__FRIENDS_NEED_CONSENT", "true")]);
    let (a, b) = (sys.user("cs_a"), sys.user("cs_b"));
    let mut wb = b.ws();
    let r = a.http().post("/api/friends", &json!({ "friendId": b.id }));
    assert_eq!(r.status, 202, "{}", r.text);
    let q = &r.body["data"]["request"];
    assert_eq!(q["status"], 0, "{}", r.text);
    assert_eq!(q["targetId"], b.id.as_str(), "{}", r.text);
    let told = wb.wait_for("b told", |e| e["type"] == "friend-request");
    assert_eq!(told["data"]["id"], q["id"], "{told}");
    // not friends yet
    let r = a.http().get("/api/friends");
    assert_eq!(r.body["data"], json!([]), "{}", r.text);
    // b's own v1 add is the consent: 200 with the conversation, as v1 answers
    let r = b.http().post("/api/friends", &json!({ "friendId": a.id }));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body["data"]["conversation"]["conversationId"].is_string(),
        "{}",
        r.text
    );
    let r = a.http().get("/api/friends");
    assert_eq!(r.body["data"][0]["userId"], b.id.as_str(), "{}", r.text);
}

#[test]
fn conversations_and_members_are_managed_with_events() {
    let sys = System::start();
    let (owner, m1, m2) = (sys.user("cm_o"), sys.user("cm_1"), sys.user("cm_2"));
    let outsider = sys.user("cm_x");
    check_conversations_and_members(&owner, &m1, &m2, &outsider);
}

#[test]
fn messages_are_edited_revoked_mentioned_and_read() {
    let sys = System::start();
    let (owner, m1, m2) = (sys.user("mc_o"), sys.user("mc_1"), sys.user("mc_2"));
    let outsider = sys.user("mc_x");
    check_message_changes(&owner, &m1, &m2, &outsider);
}

#[test]
fn revoke_and_edit_windows_close() {
    let sys = System::start_with(&[
        ("RINGCHAT_LOGIC__REVOKE_WINDOW_SECS", "1"),
        ("RINGCHAT_LOGIC__EDIT_WINDOW_SECS", "1"),
    ]);
    let (a, b) = (sys.user("wn_a"), sys.user("wn_b"));
    let single = a.single_with(&b);
    let mut ws = a.ws();
    ws.send(&single, "soon stale", "wn-1");
    let id = ws.ack("wn-1")["messageId"].as_str().unwrap().to_string();
    let path = format!("/api/messages/{id}");
    // the windows close a second after sending: then both are refused, with the window named
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let edit = loop {
        let r = a.http().put(&path, &json!({ "content": "late" }));
        if r.status != 200 {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the edit window never closed"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_error(&edit, 403, "FORBIDDEN");
    assert!(edit.text.contains("within 1 s"), "{}", edit.text);
    let r = a.http().request("DELETE", &path, None, &[]);
    assert_error(&r, 403, "FORBIDDEN");
    // a single chat has no owner to revoke for the sender
    let r = b.http().request("DELETE", &path, None, &[]);
    assert_error(&r, 403, "FORBIDDEN");
}
