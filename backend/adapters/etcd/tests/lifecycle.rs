//! Registrations over a process's life, seen from another process: a clean exit leaves at
//! once, a killed process when its lease runs out, a lost lease is replaced; dynamic
//! config reaches watchers; the view survives a broken watch; picks go round-robin.

mod common;

use std::time::Duration;

use common::{connect, connect_to, etcd_json, prefix, Proxy, QUICK};
use ringchat_core::ports::{Discovery, Instance};
use ringchat_core::testkit::eventually;
use ringchat_core::ErrorCode;
use ringchat_etcd::EtcdDiscovery;
use tokio::time::Instant;

fn instance(service: &str, id: &str) -> Instance {
    Instance {
        service: service.into(),
        id: id.into(),
        addr: format!("http://127.0.0.1:1/{id}"),
    }
}

/// Waits until `d` lists exactly `want` for `service`.
async fn until_listed(d: &EtcdDiscovery, service: &str, want: &[Instance], deadline: Duration) {
    eventually(&format!("{service} to list {want:?}"), deadline, || async {
        (d.instances(service).await.unwrap() == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_leaves_when_its_lease_runs_out() {
    const TTL: u64 = 2;
    let p = prefix();
    let a = connect(&p, TTL).await;
    let b = connect(&p, TTL).await;
    let i = instance("logic", "a");
    a.register(&i).await.unwrap();
    until_listed(&b, "logic", std::slice::from_ref(&i), QUICK).await;

    // the keep-alive renews the lease: the instance outlives its TTL
    let c = connect(&p, TTL).await;
    tokio::time::sleep(Duration::from_millis(TTL * 1000 + 500)).await; // outlive the TTL on purpose
    assert_eq!(c.instances("logic").await.unwrap(), vec![i.clone()]);

    let killed = Instant::now();
    a.abandon(); // kill -9: no revoke, no more keep-alive
    until_listed(&b, "logic", &[], Duration::from_secs(TTL + 2)).await;
    let gone = killed.elapsed();
    assert!(
        gone >= Duration::from_millis(500),
        "left after {gone:?}: before its lease could have run out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_leaves_at_once() {
    let p = prefix();
    let a = connect(&p, 30).await;
    let b = connect(&p, 30).await;
    let (x, y) = (instance("repo", "x"), instance("repo", "y"));
    a.register(&x).await.unwrap();
    a.register(&y).await.unwrap();
    until_listed(&b, "repo", &[x.clone(), y.clone()], QUICK).await;

    a.shutdown().await.unwrap();
    // the lease (30 s) is revoked: both leave well before it would run out
    until_listed(&b, "repo", &[], Duration::from_secs(1)).await;

    // dropping without shutdown revokes too (in the background)
    let a2 = connect(&p, 30).await;
    a2.register(&x).await.unwrap();
    until_listed(&b, "repo", std::slice::from_ref(&x), QUICK).await;
    drop(a2);
    until_listed(&b, "repo", &[], Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_is_replaced_and_the_instances_registered_again() {
    let p = prefix();
    let a = connect(&p, 2).await;
    let b = connect(&p, 2).await;
    let (x, y) = (instance("task", "x"), instance("task", "y"));
    a.register(&x).await.unwrap();
    a.register(&y).await.unwrap();
    let lost = a.lease_id();
    assert_ne!(lost, 0);

    // etcd forgets the lease behind the adapter's back (as after an outage longer than
    // the TTL): its keys go at once
    etcd_json("/v3/lease/revoke", &format!(r#"{{"ID":"{lost}"}}"#)).await;
    until_listed(&b, "task", &[], QUICK).await;

    // the keep-alive notices and registers both again under a new lease
    until_listed(&b, "task", &[x.clone(), y.clone()], Duration::from_secs(5)).await;
    assert_ne!(a.lease_id(), lost);

    // a registration that meets the lost lease first replaces it itself
    let lost = a.lease_id();
    etcd_json("/v3/lease/revoke", &format!(r#"{{"ID":"{lost}"}}"#)).await;
    let z = instance("task", "z");
    a.register(&z).await.unwrap();
    until_listed(&b, "task", &[x, y, z], Duration::from_secs(5)).await;
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_watchers_see_another_clients_changes() {
    let p = prefix();
    let a = connect(&p, 10).await;
    let b = connect(&p, 10).await;
    b.set_config("limits/rate", "10").await.unwrap();

    // a watcher that starts later sees what is there
    let c = connect(&p, 10).await;
    assert_eq!(c.watch_config().borrow()["limits/rate"], "10");

    let mut rx = a.watch_config();
    b.set_config("limits/rate", "20").await.unwrap();
    b.set_config("feature/x", "on").await.unwrap();
    let seen = tokio::time::timeout(
        QUICK,
        rx.wait_for(|c| {
            c.get("limits/rate").map(String::as_str) == Some("20") && c.contains_key("feature/x")
        }),
    )
    .await
    .expect("config change to reach the watcher")
    .unwrap()
    .clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(a.config("feature/x").await.unwrap().as_deref(), Some("on"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picks_alternate_over_the_live_instances() {
    let p = prefix();
    let d = connect(&p, 10).await;
    assert_eq!(d.pick("logic"), None);
    let (a, b) = (instance("logic", "a"), instance("logic", "b"));
    d.register(&b).await.unwrap();
    d.register(&a).await.unwrap();
    until_listed(&d, "logic", &[a.clone(), b.clone()], QUICK).await;
    let picks: Vec<String> = (0..4).map(|_| d.pick("logic").unwrap().id).collect();
    assert_eq!(picks, ["a", "b", "a", "b"]);

    d.deregister(&a).await.unwrap();
    until_listed(&d, "logic", std::slice::from_ref(&b), QUICK).await;
    assert_eq!(d.pick("logic"), Some(b.clone()));
    assert_eq!(d.pick("logic"), Some(b));
    d.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_catches_up_after_its_connection_is_cut() {
    let p = prefix();
    let proxy = Proxy::start().await;
    let watcher = connect_to(std::slice::from_ref(&proxy.endpoint), &p, 10).await;
    let writer = connect(&p, 10).await;
    let x = instance("gateway", "x");
    writer.register(&x).await.unwrap();
    until_listed(&watcher, "gateway", std::slice::from_ref(&x), QUICK).await;

    // cut the watch; what happens meanwhile reaches the view once it is rebuilt
    proxy.cut();
    let y = instance("gateway", "y");
    writer.register(&y).await.unwrap();
    writer.deregister(&x).await.unwrap();
    writer.set_config("k", "v").await.unwrap();
    until_listed(
        &watcher,
        "gateway",
        std::slice::from_ref(&y),
        Duration::from_secs(5),
    )
    .await;
    let mut rx = watcher.watch_config();
    tokio::time::timeout(QUICK, rx.wait_for(|c| c.get("k").is_some()))
        .await
        .expect("config to reach the rebuilt view")
        .unwrap();

    // its own registration is kept alive through the cut too
    let w = instance("gateway", "w");
    watcher.register(&w).await.unwrap();
    proxy.cut();
    until_listed(&writer, "gateway", &[w, y], QUICK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_no_etcd_fails_fast_as_unavailable() {
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = Instant::now();
    let e = EtcdDiscovery::connect(&[format!("http://127.0.0.1:{port}")], "/x", 10)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable, "{e}");
    assert!(start.elapsed() < Duration::from_secs(4));

    let e = EtcdDiscovery::connect(&[], "/x", 10).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_would_break_the_key_layout_are_refused() {
    let d = connect(&prefix(), 10).await;
    for (service, id) in [("a/b", "x"), ("", "x"), ("svc", ""), ("svc", "x/y")] {
        let e = d.register(&instance(service, id)).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument, "{service:?}/{id:?}");
    }
}
