//! Chatting over real WebSockets against the embedded system.

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::json;

#[test]
fn single_chat_both_ways() {
    let sys = System::start();
    let (alice, bob) = (sys.user("alice"), sys.user("bob"));
    let conv = alice.single_with(&bob);
    let mut a = alice.ws();
    let mut b = bob.ws();
    a.send(&conv, "hi bob", "a-1");
    let ack = a.ack("a-1");
    assert_eq!(ack["status"], "success");
    assert_eq!(ack["seqId"], 1);
    let m = b.new_message(&conv);
    assert_eq!(m["content"], "hi bob");
    assert_eq!(m["senderId"], alice.id.as_str());
    assert_eq!(m["senderName"], alice.name.as_str());
    assert_eq!(m["messageId"], ack["messageId"]);
    assert_eq!(m["type"], "text");
    b.send(&conv, "hi alice", "b-1");
    assert_eq!(b.ack("b-1")["seqId"], 2);
    let m = a.new_message(&conv);
    assert_eq!(
        (m["content"].as_str(), m["seqId"].as_i64()),
        (Some("hi alice"), Some(2))
    );
    // the sending connection got an ack, not also a new-message for its own send
    a.ping();
    assert!(
        !a.pending()
            .iter()
            .any(|e| e["type"] == "new-message"
                && e["data"]["message"]["senderId"] == alice.id.as_str()),
        "sender saw its own message: {:?}",
        a.pending()
    );
    // integer message types are accepted too
    a.send_json(&json!({ "type": "send-message", "data": { "conversationId": conv, "content": "img", "messageType": 2, "tempMessageId": "a-2" } }));
    a.ack("a-2");
    assert_eq!(b.new_message(&conv)["type"], "image");
}

#[test]
fn resend_is_acked_with_the_same_id_and_neither_stored_nor_delivered_twice() {
    let sys = System::start();
    let (alice, bob) = (sys.user("alice"), sys.user("bob"));
    let conv = alice.single_with(&bob);
    let mut a = alice.ws();
    let mut b = bob.ws();
    a.send(&conv, "once", "dup-1");
    let first = a.ack("dup-1");
    assert_eq!(b.new_message(&conv)["content"], "once");
    a.send(&conv, "once", "dup-1");
    let again = a.ack("dup-1");
    assert_eq!(again["messageId"], first["messageId"]);
    assert_eq!(again["seqId"], first["seqId"]);
    a.send(&conv, "marker", "dup-2");
    a.ack("dup-2");
    // in-order delivery per conversation: the next new-message is the marker
    let next = b.new_message(&conv);
    assert_eq!(next["content"], "marker");
    assert_eq!(next["seqId"], 2);
    let history = bob.history(&conv, "");
    let contents: Vec<&str> = history
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, vec!["once", "marker"]);
}

#[test]
fn a_group_of_three_reaches_every_member_and_the_senders_other_device() {
    let sys = System::start();
    let (a, b, c) = (sys.user("ga"), sys.user("gb"), sys.user("gc"));
    let r = a.http().post(
        "/api/groups",
        &json!({ "groupName": "trio", "members": [b.id, c.id] }),
    );
    let conv = r.body["data"]["conversation"]["conversationId"]
        .as_str()
        .unwrap()
        .to_string();
    let mut a1 = a.ws();
    let mut a2 = a.ws(); // the sender's second device
    let mut b1 = b.ws();
    let mut c1 = c.ws();
    a1.send(&conv, "hello trio", "t-1");
    let ack = a1.ack("t-1");
    for (who, ws) in [("a2", &mut a2), ("b", &mut b1), ("c", &mut c1)] {
        let m = ws.new_message(&conv);
        assert_eq!(m["content"], "hello trio", "{who}");
        assert_eq!(m["messageId"], ack["messageId"], "{who}");
    }
    // per-conversation order: 20 more messages arrive in seq order everywhere
    for i in 0..20 {
        a1.send(&conv, &format!("n{i}"), &format!("t-n{i}"));
    }
    for ws in [&mut a2, &mut b1, &mut c1] {
        let seqs: Vec<i64> = (0..20)
            .map(|_| ws.new_message(&conv)["seqId"].as_i64().unwrap())
            .collect();
        assert_eq!(seqs, (2..=21).collect::<Vec<_>>());
    }
}

#[test]
fn the_world_room_reaches_every_connection_including_guests() {
    let sys = System::start();
    let users = [sys.user("w1"), sys.user("w2"), sys.guest("wg")];
    let mut socks: Vec<Ws> = users.iter().map(|u| u.ws()).collect();
    let mut extra = users[1].ws(); // second device
    socks[2].send("world", "hello from a guest", "g-1");
    let ack = socks[2].ack("g-1");
    for ws in socks[..2].iter_mut().chain(std::iter::once(&mut extra)) {
        let m = ws.new_message("world");
        assert_eq!(m["content"], "hello from a guest");
        assert_eq!(m["messageId"], ack["messageId"]);
    }
    socks[0].send("world", "hello guest", "u-1");
    socks[0].ack("u-1");
    assert_eq!(socks[2].new_message("world")["content"], "hello guest");
}

#[test]
fn an_offline_member_syncs_exactly_what_it_missed() {
    let sys = System::start();
    let (alice, bob) = (sys.user("alice"), sys.user("bob"));
    let conv = alice.single_with(&bob);
    let mut a = alice.ws();
    let mut b = bob.ws();
    a.send(&conv, "seen 1", "s-1");
    a.ack("s-1");
    let last_seen = b.new_message(&conv)["seqId"].as_i64().unwrap();
    b.ws.close(None).unwrap();
    drop(b);
    let mut sent = HashSet::new();
    for i in 0..7 {
        a.send(&conv, &format!("missed {i}"), &format!("m-{i}"));
        sent.insert(
            a.ack(&format!("m-{i}"))["messageId"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // bob reconnects and pages from the last seq it saw
    let mut b = bob.ws();
    let missed = bob.history(&conv, &format!("?afterSeq={last_seen}"));
    let got: HashSet<String> = missed
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, sent);
    let seqs: Vec<i64> = missed
        .iter()
        .map(|m| m["seqId"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (last_seen + 1..=last_seen + 7).collect::<Vec<_>>());
    // and live delivery resumes
    a.send(&conv, "live again", "l-1");
    a.ack("l-1");
    assert_eq!(b.new_message(&conv)["content"], "live again");
    // the unread count shows what was missed
    let list = bob.http().get("/api/conversations");
    let row = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["conversationId"] == conv.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["unreadCount"], 9);
}

#[test]
fn mark_read_over_the_websocket_clears_unread() {
    let sys = System::start();
    let (alice, bob) = (sys.user("alice"), sys.user("bob"));
    let conv = alice.single_with(&bob);
    let mut a = alice.ws();
    for i in 0..3 {
        a.send(&conv, "x", &format!("r-{i}"));
        a.ack(&format!("r-{i}"));
    }
    let mut b = bob.ws();
    b.send_json(&json!({ "type": "mark-read", "data": { "conversationId": conv } }));
    let unread = || -> i64 {
        bob.http().get("/api/conversations").body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["conversationId"] == conv.as_str())
            .unwrap()["unreadCount"]
            .as_i64()
            .unwrap()
    };
    let end = std::time::Instant::now() + WAIT;
    while unread() != 0 {
        assert!(std::time::Instant::now() < end, "mark-read never applied");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
