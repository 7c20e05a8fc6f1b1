//! Slow and dead clients, and graceful shutdown.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn raw_ws(sys: &System, token: &str) -> TcpStream {
    let mut s = TcpStream::connect(sys.http).unwrap();
    let req = format!(
        "GET /ws?token={token} HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    s
}

#[test]
fn a_reader_that_never_reads_does_not_hold_up_the_others() {
    // queues of 4 MB: the stuck client, sent 16 MB, overflows it; the attentive reader,
    // reading as it goes, would have to fall 4 MB plus its socket buffers behind (a
    // 64-frame queue was only ~1 MB of 16 KB frames, less than a debug-built test client
    // parsing each message could fall behind a fast server)
    let sys = System::start_with(&[
        ("RINGCHAT_GATEWAY__SEND_QUEUE_FRAMES", "1024"),
        ("RINGCHAT_GATEWAY__SEND_QUEUE_BYTES", "4194304"),
        ("RINGCHAT_GATEWAY__RATE_LIMIT_PER_SEC", "100000"),
        ("RINGCHAT_GATEWAY__RATE_LIMIT_BURST", "100000"),
        ("RINGCHAT_LOGIC__USER_SENDS_PER_SEC", "100000"),
        ("RINGCHAT_LOGIC__USER_SENDS_BURST", "100000"),
    ]);
    let (sender, reader, sloth) = (sys.user("snd"), sys.user("rdr"), sys.user("slow"));
    let r = sender.http().post(
        "/api/groups",
        &json!({ "groupName": "flood", "members": [reader.id, sloth.id] }),
    );
    let conv = r.body["data"]["conversation"]["conversationId"]
        .as_str()
        .unwrap()
        .to_string();
    // the slow one connects and then never reads a byte
    let _stuck = raw_ws(&sys, &sloth.token);
    wait_until("the slow connection to register", || {
        sys.metric("ringchat_gateway_connections{") >= 1.0
    });
    let mut s = sender.ws();
    let mut r = reader.ws();
    // 16 MB: more than loopback socket buffers (a few MB each way) plus the 4 MB queue
    const N: usize = 1000;
    let body = "x".repeat(16 * 1024);
    // the attentive reader reads while the messages are sent, and gets every one, in order
    let conv2 = conv.clone();
    let reading = std::thread::spawn(move || {
        let mut last = 0;
        for _ in 0..N {
            let m = r.new_message(&conv2);
            let seq = m["seqId"].as_i64().unwrap();
            assert_eq!(seq, last + 1);
            last = seq;
        }
    });
    for i in 0..N {
        s.send(&conv, &body, &format!("f-{i}"));
    }
    reading
        .join()
        .expect("the reader got every message in order");
    for i in 0..N {
        s.ack(&format!("f-{i}"));
    }
    // and the slow one was cut off instead of buffering without bound
    wait_until("a slow-consumer close", || {
        sys.metric("ringchat_gateway_slow_consumer_closes_total") >= 1.0
    });
    assert!(sys.metric("ringchat_gateway_send_queue_drops_total") >= 1.0);
}

#[test]
fn a_silent_client_is_closed_after_the_heartbeat_timeout() {
    let sys = System::start_with(&[("RINGCHAT_GATEWAY__HEARTBEAT_TIMEOUT_SECS", "1")]);
    let u = sys.user("hb");
    let mut silent = raw_ws(&sys, &u.token);
    silent.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = Vec::new();
    // reading to EOF: the server sends its frames (connected, pings, close) then closes
    use std::io::Read;
    let _ = silent.read_to_end(&mut buf);
    let close = buf
        .windows(2)
        .rposition(|w| w[0] == 0x88)
        .expect("a close frame");
    let code = u16::from_be_bytes([buf[close + 2], buf[close + 3]]);
    assert_eq!(code, 1001);
    assert!(sys.metric("ringchat_gateway_heartbeat_closes_total") >= 1.0);
    // a client that keeps talking stays
    let mut alive = u.ws();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(400));
        alive.ping();
    }
}

#[test]
fn graceful_shutdown_loses_no_acknowledged_message() {
    let mut sys = System::start();
    let (alice, bob) = (sys.user("alice"), sys.user("bob"));
    let conv = alice.single_with(&bob);
    let mut a = alice.ws();
    const N: usize = 200;
    for i in 0..N {
        a.send(&conv, &format!("m{i}"), &format!("sd-{i}"));
    }
    // traffic is flowing: shut down while the rest is in flight
    let first = a.ack("sd-0");
    let db = sys.db.clone();
    sys.shutdown();
    // everything the server said before closing: acks, refusals, then a 1001 close
    let code = a.close_code();
    assert_eq!(code, Some(1001), "close code");
    let mut acked = HashSet::from([first["messageId"].as_str().unwrap().to_string()]);
    let mut refused = 0;
    for e in a.pending() {
        match e["type"].as_str() {
            Some("message-ack") => {
                acked.insert(e["data"]["messageId"].as_str().unwrap().to_string());
            }
            Some("error") => refused += 1,
            _ => {}
        }
    }
    assert!(acked.len() + refused <= N);
    eprintln!(
        "at shutdown: {} acked, {refused} refused (to be resent), of {N}",
        acked.len()
    );
    drop(sys);
    // the same database, a new process: every acknowledged message is there
    let sys = System::start_on(db, &[]);
    let r = sys.api().post(
        "/api/auth/login",
        &json!({ "username": bob.name, "password": "secret12" }),
    );
    let token = r.body["data"]["token"].as_str().unwrap().to_string();
    let bob = Http {
        addr: sys.http,
        token: Some(token),
    };
    let r = bob.get(&format!(
        "/api/conversations/{conv}/messages?afterSeq=0&size=200"
    ));
    let stored: HashSet<String> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
}

#[test]
fn shutdown_releases_the_backend_and_the_data_directory() {
    // a core task left parked on a waker of its own would keep the backend (and the store's
    // data-directory lock) alive after shutdown
    let db = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(ringchat_core::testkit::unique("release"))
        .join("ringchat.db");
    let config = config_for(&db, &[]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let e = rt
        .block_on(im_gateway::embedded::Embedded::start(&config))
        .unwrap();
    let store = std::sync::Arc::downgrade(&e.ports.store);
    let logic = std::sync::Arc::downgrade(&e.logic);
    // a second process on the same data directory is refused while this one runs
    let second = rt.block_on(im_gateway::embedded::Embedded::start(&config));
    let err = second
        .err()
        .expect("a second server on the same data is refused");
    assert!(
        err.to_string().contains("one process per data directory"),
        "{err}"
    );
    rt.block_on(e.shutdown());
    assert_eq!(store.strong_count(), 0, "the store outlives the shutdown");
    assert_eq!(logic.strong_count(), 0, "the backend outlives the shutdown");
    ringchat_embedded::data_dir::lock(&db).expect("the data directory is free again");
}
