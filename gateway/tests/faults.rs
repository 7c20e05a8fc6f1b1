//! The fault suite: store errors injected at the adapter while clients send, a real SQLite
//! lock held by another writer, and SIGKILL plus restart during streaming. Each ends with
//! the same check (DESIGN.md invariants 1 and 6): every acked message is stored once with
//! its acked id and seq; every unacked send is either stored once after a resend with the
//! same `tempMessageId`, or absent; never twice; seqs have no gaps.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use ringchat_core::testkit::faulty::errors;
use serde_json::Value;

/// What a client knows after sending: acked temp ids with (messageId, seqId), and the
/// temp ids that got an error instead.
#[derive(Default)]
struct Outcome {
    acked: HashMap<String, (String, i64)>,
    failed: Vec<String>,
}

impl Outcome {
    fn record(&mut self, temp: &str, answer: Result<Value, Value>) {
        match answer {
            Ok(ack) => {
                let id = ack["messageId"].as_str().unwrap().to_string();
                let seq = ack["seqId"].as_i64().unwrap();
                if let Some(prev) = self.acked.insert(temp.to_string(), (id.clone(), seq)) {
                    assert_eq!(prev, (id, seq), "a resend of {temp} was acked differently");
                }
                self.failed.retain(|t| t != temp);
            }
            Err(e) => {
                assert_eq!(e["tempMessageId"], temp, "the error names the send: {e}");
                assert!(!e["code"].as_str().unwrap_or("").is_empty());
                if !self.acked.contains_key(temp) && !self.failed.iter().any(|t| t == temp) {
                    self.failed.push(temp.to_string());
                }
            }
        }
    }
}

/// Every message of a conversation, oldest first (contents are the temp ids).
fn all_history(c: &Client, conversation: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = c.history(conversation, &format!("?afterSeq={after}&size=200"));
        if page.is_empty() {
            return out;
        }
        after = page.last().unwrap()["seqId"].as_i64().unwrap();
        out.extend(page);
    }
}

/// The invariant: acked ones stored once with their id and seq, the rest at most once,
/// seqs 1..=n with no gap.
fn check_stored(history: &[Value], outcome: &Outcome, sent: &[String]) {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (i, m) in history.iter().enumerate() {
        assert_eq!(m["seqId"].as_i64(), Some(i as i64 + 1), "seqs have no gaps");
        *count.entry(m["content"].as_str().unwrap()).or_default() += 1;
    }
    for temp in sent {
        let n = count.get(temp.as_str()).copied().unwrap_or(0);
        assert!(n <= 1, "{temp} stored {n} times");
        if let Some((id, seq)) = outcome.acked.get(temp) {
            assert_eq!(n, 1, "acked {temp} is not stored");
            let m = history
                .iter()
                .find(|m| m["content"] == temp.as_str())
                .unwrap();
            assert_eq!(
                m["messageId"],
                id.as_str(),
                "{temp}: stored id differs from the ack"
            );
            assert_eq!(
                m["seqId"].as_i64(),
                Some(*seq),
                "{temp}: stored seq differs"
            );
        }
    }
}

fn wait_metric_zero(sys: &System, name: &str) {
    let end = Instant::now() + WAIT;
    while sys.metric(name) != 0.0 {
        assert!(Instant::now() < end, "{name} stays at {}", sys.metric(name));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `temps` (content = temp id) and records each answer.
fn send_all(ws: &mut Ws, conv: &str, temps: &[String], outcome: &mut Outcome) {
    for t in temps {
        ws.send(conv, t, t);
    }
    for t in temps {
        let a = ws.answer(t);
        outcome.record(t, a);
    }
}

#[test]
fn transient_store_errors_are_retried_and_nothing_is_lost_or_doubled() {
    let (sys, faults) = System::start_faulty(&[]);
    let (a, b) = (sys.user("fa"), sys.user("fb"));
    let conv = a.single_with(&b);
    let mut ws = a.ws();
    faults.fail_next(2, errors::busy());
    faults.fail_next(2, errors::locked());
    faults.fail_next(2, errors::io());
    let sent: Vec<String> = (0..60).map(|i| format!("tr-{i}")).collect();
    let mut outcome = Outcome::default();
    send_all(&mut ws, &conv, &sent, &mut outcome);
    assert_eq!(
        faults.injected.load(std::sync::atomic::Ordering::Relaxed),
        6
    );
    assert!(
        outcome.failed.is_empty(),
        "transient errors failed sends: {:?}",
        outcome.failed
    );
    assert_eq!(outcome.acked.len(), sent.len());
    check_stored(&all_history(&b, &conv), &outcome, &sent);
    wait_metric_zero(&sys, "ringchat_gateway_pending_sends");
}

#[test]
fn a_send_that_finally_fails_is_answered_and_a_resend_stores_it_once() {
    let (sys, faults) = System::start_faulty(&[("RINGCHAT_LOGIC__RETRY_BUDGET_SECS", "1")]);
    let (a, b) = (sys.user("ga"), sys.user("gb"));
    let conv = a.single_with(&b);
    let mut ws = a.ws();
    let sent: Vec<String> = (0..15).map(|i| format!("ff-{i}")).collect();
    let mut outcome = Outcome::default();

    // the store stays down past the retry budget: every send is answered with an error
    faults.fail_until(Instant::now() + Duration::from_secs(600), errors::busy());
    send_all(&mut ws, &conv, &sent[..5], &mut outcome);
    assert_eq!(outcome.failed.len(), 5, "every send answered with an error");
    wait_metric_zero(&sys, "ringchat_gateway_pending_sends");
    faults.clear();

    // a non-transient error fails at most the sends it hit, never silently
    faults.fail_next(1, errors::corrupt());
    send_all(&mut ws, &conv, &sent[5..], &mut outcome);

    // the client resends what failed, with the same tempMessageIds
    let retry: Vec<String> = outcome.failed.clone();
    send_all(&mut ws, &conv, &retry, &mut outcome);
    // and a resend of something already acked is acked again, not stored again
    let again: Vec<String> = sent[5..7].to_vec();
    send_all(&mut ws, &conv, &again, &mut outcome);

    assert!(
        outcome.failed.is_empty(),
        "still failing: {:?}",
        outcome.failed
    );
    let history = all_history(&b, &conv);
    assert_eq!(history.len(), sent.len());
    check_stored(&history, &outcome, &sent);
    wait_metric_zero(&sys, "ringchat_gateway_pending_sends");
}

#[test]
fn another_writer_holding_the_database_lock_is_waited_out() {
    let sys = System::start();
    let (a, b) = (sys.user("la"), sys.user("lb"));
    let conv = a.single_with(&b);
    let mut ws = a.ws();
    let mut outcome = Outcome::default();
    send_all(&mut ws, &conv, &["before".to_string()], &mut outcome);

    // another process-like writer takes the write lock and holds it for 3 s
    let db = sys.db.clone();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            let url = format!("sqlite://{}", db.display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut c)
                .await
                .unwrap();
            locked_tx.send(()).unwrap();
            tokio::time::sleep(Duration::from_secs(3)).await;
            sqlx::query("COMMIT").execute(&mut c).await.unwrap();
        });
    });
    locked_rx.recv().unwrap();
    let mut sent: Vec<String> = (0..30).map(|i| format!("lk-{i}")).collect();
    send_all(&mut ws, &conv, &sent, &mut outcome);
    holder.join().unwrap();
    assert!(
        outcome.failed.is_empty(),
        "failed under a lock: {:?}",
        outcome.failed
    );
    sent.push("before".into());
    let history = all_history(&b, &conv);
    assert_eq!(history.len(), 31);
    check_stored(&history, &outcome, &sent);
    wait_metric_zero(&sys, "ringchat_gateway_pending_sends");
}

fn login(http: std::net::SocketAddr, name: &str) -> Client {
    let api = Http {
        addr: http,
        token: None,
    };
    let r = api.post(
        "/api/auth/login",
        &serde_json::json!({ "username": name, "password": "secret12" }),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    Client {
        id: r.body["data"]["user"]["userId"]
            .as_str()
            .unwrap()
            .to_string(),
        name: name.to_string(),
        token: r.body["data"]["token"].as_str().unwrap().to_string(),
        addr: http,
    }
}

#[test]
fn sigkill_during_streaming_then_restart_loses_and_doubles_nothing() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(ringchat_core::testkit::unique("kill"));
    std::fs::create_dir_all(&dir).unwrap();
    // the resend after the restart may be hundreds of frames at once: above the default
    // per-user and per-connection bursts (200), which would answer RATE_LIMITED to some
    // (rate limits are hardening.rs's subject, not this test's)
    let limits = [
        ("RINGCHAT_LOGIC__USER_SENDS_BURST", "1000"),
        ("RINGCHAT_GATEWAY__RATE_LIMIT_BURST", "1000"),
    ];
    let mut p = start_binary(&dir, &limits);
    let api = Http {
        addr: p.http,
        token: None,
    };
    for name in ["kill_a", "kill_b"] {
        let r = api.post(
            "/api/auth/register",
            &serde_json::json!({ "username": name, "password": "secret12" }),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let (a, b) = (login(p.http, "kill_a"), login(p.http, "kill_b"));
    let conv = a.single_with(&b);

    // stream sends from a thread; kill the server while they are in flight (half-way
    // through the sends, so some are surely not acked: the acks are read only after the
    // sending stops, and a fast server would otherwise have acked all 400 by then)
    let sent: Vec<String> = (0..400).map(|i| format!("k-{i}")).collect();
    let mut ws = a.ws();
    let (tx, rx) = std::sync::mpsc::channel::<(String, Result<Value, Value>)>();
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let to_send = sent.clone();
    let conv2 = conv.clone();
    let sending = progress.clone();
    let streamer = std::thread::spawn(move || {
        for t in &to_send {
            let frame = serde_json::json!({
                "type": "send-message",
                "data": { "conversationId": conv2, "content": t, "messageType": "text", "tempMessageId": t },
                "timestamp": 0,
            });
            if ws
                .ws
                .send(tungstenite::Message::text(frame.to_string()))
                .is_err()
            {
                break; // the server is gone
            }
            sending.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::thread::sleep(Duration::from_micros(500));
        }
        // collect answers until the connection dies
        loop {
            match ws.ws.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    let e: Value = serde_json::from_str(t.as_str()).unwrap();
                    let temp = e["data"]["tempMessageId"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    match e["type"].as_str() {
                        Some("message-ack") => tx.send((temp, Ok(e["data"].clone()))).unwrap(),
                        Some("error") => tx.send((temp, Err(e["data"].clone()))).unwrap(),
                        _ => {}
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let end = Instant::now() + WAIT;
    while progress.load(std::sync::atomic::Ordering::Relaxed) < sent.len() / 2 {
        assert!(Instant::now() < end, "the sends did not get half-way");
        std::thread::sleep(Duration::from_millis(1));
    }
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    streamer.join().unwrap();
    let mut outcome = Outcome::default();
    while let Ok((t, a)) = rx.try_recv() {
        outcome.record(&t, a);
    }
    assert!(
        outcome.acked.len() < sent.len(),
        "the kill came too late to test anything"
    );

    // restart on the same data; the client resends everything not acked
    let mut p = start_binary(&dir, &limits);
    let (a, b) = (login(p.http, "kill_a"), login(p.http, "kill_b"));
    let mut ws = a.ws();
    let unacked: Vec<String> = sent
        .iter()
        .filter(|t| !outcome.acked.contains_key(*t))
        .cloned()
        .collect();
    send_all(&mut ws, &conv, &unacked, &mut outcome);
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    let history = all_history(&b, &conv);
    assert_eq!(history.len(), sent.len(), "every send stored exactly once");
    check_stored(&history, &outcome, &sent);
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}
