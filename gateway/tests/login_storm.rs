//! Logins under attack, against the `ringchat` binary with the real password-hashing cost
//! (argon2id, 19 MiB, 2 passes): the server's own memory and threads are read from /proc.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// A `Key: value kB` line of /proc/PID/status.
fn proc_status(pid: u32, key: &str) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn logins_under_attack_stay_bounded_throttled_and_uniform() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(ringchat_core::testkit::unique("storm"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut p = start_binary(
        &dir,
        &[
            ("RINGCHAT_AUTH__ARGON2_MEMORY_KIB", "19456"),
            ("RINGCHAT_AUTH__ARGON2_ITERATIONS", "2"),
            ("RINGCHAT_AUTH__HASH_WORKERS", "2"),
            ("RINGCHAT_AUTH__HASH_QUEUE", "16"),
            ("RINGCHAT_AUTH__LOGIN_ADDRESS_BURST", "100000"),
            ("RINGCHAT_AUTH__LOGIN_ADDRESS_PER_MINUTE", "100000"),
            ("RINGCHAT_GATEWAY__HTTP_REQUESTS_BURST", "100000"),
        ],
    );
    let pid = p.child.id();
    let api = Http {
        addr: p.http,
        token: None,
    };
    let r = api.post(
        "/api/auth/register",
        &json!({ "username": "storm_alice", "password": "secret12" }),
    );
    assert_eq!(r.status, 201, "{}", r.text);

    // 1. 150 concurrent wrong-password logins (each for another name): the server's
    //    memory and threads stay bounded, and what does not fit the queue hears 429 at once
    let (rss0, threads0) = (proc_status(pid, "VmRSS:"), proc_status(pid, "Threads:"));
    let http = p.http;
    let clients: Vec<_> = (0..150)
        .map(|i| {
            std::thread::spawn(move || {
                Http {
                    addr: http,
                    token: None,
                }
                .post(
                    "/api/auth/login",
                    &json!({ "username": format!("nobody{i}"), "password": "wrong-one" }),
                )
                .status
            })
        })
        .collect();
    let mut threads_peak = 0;
    while clients.iter().any(|c| !c.is_finished()) {
        threads_peak = threads_peak.max(proc_status(pid, "Threads:"));
        std::thread::sleep(Duration::from_millis(5));
    }
    let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let (peak, rss1) = (proc_status(pid, "VmHWM:"), proc_status(pid, "VmRSS:"));
    let refused = statuses.iter().filter(|s| **s == 429).count();
    eprintln!(
        "login storm: RSS {rss0} KiB -> peak {peak} KiB -> {rss1} KiB after; threads {threads0} -> peak {threads_peak}; {refused} of 150 refused with 429"
    );
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert!(refused > 0, "the bounded queue never refused");
    assert!(statuses.contains(&401));
    // bounded by configuration, not by load: 2 hashers, and the store's reader pool
    // (store.max_connections = 8 connections, a thread each) opening under load
    assert!(
        threads_peak <= threads0 + 2 + 8 + 2,
        "threads {threads0} -> {threads_peak}: hashing is not on a bounded pool"
    );
    assert!(
        peak < rss0 + 128 * 1024,
        "peak RSS {peak} KiB from {rss0} KiB: hashing memory is not bounded"
    );

    // 2. unknown users cost what known users cost
    let time = |name: &str| {
        let start = Instant::now();
        let r = api.post(
            "/api/auth/login",
            &json!({ "username": name, "password": "wrong-one" }),
        );
        assert_eq!(r.status, 401, "{}", r.text);
        start.elapsed()
    };
    let mut known: Vec<Duration> = (0..3).map(|_| time("storm_alice")).collect();
    let mut unknown: Vec<Duration> = (0..3).map(|i| time(&format!("ghost{i}"))).collect();
    known.sort();
    unknown.sort();
    let (k, u) = (known[1], unknown[1]);
    eprintln!("login timing: known user {k:?}, unknown user {u:?}");
    assert!(
        u * 2 >= k && k * 2 >= u,
        "known {k:?} vs unknown {u:?}: the difference tells who exists"
    );

    // 3. failed logins per name are throttled, with Retry-After; other names are not
    let statuses: Vec<_> = (0..12)
        .map(|_| {
            api.post(
                "/api/auth/login",
                &json!({ "username": "storm_alice", "password": "wrong-two" }),
            )
        })
        .collect();
    let last = statuses.last().unwrap();
    assert_eq!(last.status, 429, "{}", last.text);
    assert_eq!(last.body["code"], "RATE_LIMITED");
    assert!(last.header("retry-after").is_some());
    let r = api.post(
        "/api/auth/register",
        &json!({ "username": "storm_bob", "password": "secret12" }),
    );
    assert_eq!(r.status, 201);
    let r = api.post(
        "/api/auth/login",
        &json!({ "username": "storm_bob", "password": "secret12" }),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}
