//! Bus conformance: Kafka's ordering, consumer-group and redelivery semantics.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::unique;
use crate::ports::{Bus, Record, Subscription};

const WAIT: Duration = Duration::from_secs(30);

/// Reads until `n` records arrived (fails the test after a deadline).
pub async fn read_n(sub: &mut dyn Subscription, n: usize) -> Vec<Record> {
    let mut out = Vec::new();
    let end = tokio::time::Instant::now() + WAIT;
    while out.len() < n {
        let batch = tokio::time::timeout_at(end, sub.next_batch(n - out.len()))
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} records arrived", out.len()))
            .expect("next_batch");
        out.extend(batch);
    }
    out
}

fn payload(key: &str, i: usize) -> Bytes {
    Bytes::from(format!("{key}:{i}"))
}

pub async fn keyed_records_keep_their_order(bus: Arc<dyn Bus>) {
    let topic = unique("conf-order");
    let keys = ["alpha", "beta", "gamma", "delta"];
    for i in 0..60 {
        for k in keys {
            bus.publish(&topic, k.as_bytes(), payload(k, i))
                .await
                .unwrap();
        }
    }
    let mut sub = bus.subscribe(&topic, &unique("g")).await.unwrap();
    let records = read_n(sub.as_mut(), 240).await;
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    for r in &records {
        let next = seen.entry(r.key.to_vec()).or_insert(0);
        let key = std::str::from_utf8(&r.key).unwrap();
        assert_eq!(
            r.payload,
            payload(key, *next),
            "records of key {key} out of order"
        );
        *next += 1;
    }
    assert!(seen.values().all(|n| *n == 60));
}

pub async fn every_group_reads_every_record(bus: Arc<dyn Bus>) {
    let topic = unique("conf-groups");
    let mut a = bus.subscribe(&topic, &unique("ga")).await.unwrap();
    let mut b = bus.subscribe(&topic, &unique("gb")).await.unwrap();
    for i in 0..20 {
        bus.publish(&topic, format!("k{}", i % 3).as_bytes(), payload("x", i))
            .await
            .unwrap();
    }
    let ra = read_n(a.as_mut(), 20).await;
    let rb = read_n(b.as_mut(), 20).await;
    let mut pa: Vec<_> = ra.iter().map(|r| r.payload.clone()).collect();
    let mut pb: Vec<_> = rb.iter().map(|r| r.payload.clone()).collect();
    pa.sort();
    pb.sort();
    assert_eq!(pa, pb);
    assert_eq!(pa.len(), 20);
}

pub async fn uncommitted_records_are_read_again(bus: Arc<dyn Bus>) {
    let topic = unique("conf-redeliver");
    let group = unique("g");
    for i in 0..5 {
        bus.publish(&topic, b"k", payload("k", i)).await.unwrap();
    }
    {
        let mut sub = bus.subscribe(&topic, &group).await.unwrap();
        let first = read_n(sub.as_mut(), 5).await;
        // commit the first three only
        sub.commit(&first[..3]).await.unwrap();
    }
    let mut sub = bus.subscribe(&topic, &group).await.unwrap();
    let again = read_n(sub.as_mut(), 2).await;
    assert_eq!(again[0].payload, payload("k", 3));
    assert_eq!(again[1].payload, payload("k", 4));
    sub.commit(&again).await.unwrap();
    bus.publish(&topic, b"k", payload("k", 5)).await.unwrap();
    let next = read_n(sub.as_mut(), 1).await;
    assert_eq!(next[0].payload, payload("k", 5));
}

pub async fn a_waiting_subscriber_wakes_on_publish(bus: Arc<dyn Bus>) {
    let topic = unique("conf-wake");
    let mut sub = bus.subscribe(&topic, &unique("g")).await.unwrap();
    let reader = tokio::spawn(async move { read_n(sub.as_mut(), 1).await });
    // the reader is (very likely) parked in next_batch by now; either way it must get it
    tokio::task::yield_now().await;
    bus.publish(&topic, b"k", Bytes::from_static(b"hello"))
        .await
        .unwrap();
    let got = reader.await.unwrap();
    assert_eq!(got[0].payload, Bytes::from_static(b"hello"));
}

pub async fn headers_travel_with_the_record(bus: Arc<dyn Bus>) {
    let topic = unique("conf-headers");
    let mut sub = bus.subscribe(&topic, &unique("g")).await.unwrap();
    bus.publish_with_headers(
        &topic,
        b"k",
        Bytes::from_static(b"traced"),
        &[("trace-id", b"4bf92f3577b34da6"), ("empty", b"")],
    )
    .await
    .unwrap();
    bus.publish(&topic, b"k", Bytes::from_static(b"plain"))
        .await
        .unwrap();
    let records = read_n(sub.as_mut(), 2).await;
    assert_eq!(records[0].payload, Bytes::from_static(b"traced"));
    assert_eq!(
        records[0].header("trace-id"),
        Some(&b"4bf92f3577b34da6"[..])
    );
    assert_eq!(records[0].header("empty"), Some(&b""[..]));
    assert_eq!(
        records[0].headers.len(),
        2,
        "published order: {:?}",
        records[0].headers
    );
    assert_eq!(records[0].headers[0].0, "trace-id");
    assert_eq!(records[1].payload, Bytes::from_static(b"plain"));
    assert!(records[1].headers.is_empty());
}

/// Reads a batch from each subscription in turn (waiting briefly on each) and commits it;
/// `seen` records which subscription read each payload first.
async fn read_round(subs: &mut [&mut dyn Subscription], seen: &mut HashMap<Bytes, usize>) {
    for (i, sub) in subs.iter_mut().enumerate() {
        // next_batch is cancel-safe: a timed-out wait loses no record
        if let Ok(batch) =
            tokio::time::timeout(Duration::from_millis(20), sub.next_batch(100)).await
        {
            let batch = batch.expect("next_batch");
            sub.commit(&batch).await.expect("commit");
            for r in batch {
                seen.entry(r.payload).or_insert(i);
            }
        }
    }
}

/// Not in `bus_conformance!` yet (testkit/mod.rs); the Kafka adapter's tests call it, and
/// the in-process bus passes it too.
pub async fn a_dropped_member_hands_its_partitions_over(bus: Arc<dyn Bus>) {
    let topic = unique("conf-handover");
    let group = unique("g");
    let mut a = bus.subscribe(&topic, &group).await.unwrap();
    let mut b = bus.subscribe(&topic, &group).await.unwrap();
    // publish over many keys until both members read some: the group split the partitions
    // (a real broker needs a rebalance for that)
    let mut seen = HashMap::new();
    let end = tokio::time::Instant::now() + WAIT;
    let mut i = 0;
    while !(seen.values().any(|m| *m == 0) && seen.values().any(|m| *m == 1)) {
        assert!(
            tokio::time::Instant::now() < end,
            "the group never gave both members partitions"
        );
        for _ in 0..10 {
            bus.publish(&topic, format!("k{i}").as_bytes(), payload("before", i))
                .await
                .unwrap();
            i += 1;
        }
        read_round(&mut [a.as_mut(), b.as_mut()], &mut seen).await;
    }
    drop(b);
    // every key, so every partition: `a` alone now reads them all
    let mut seen = HashMap::new();
    for i in 0..40 {
        bus.publish(&topic, format!("k{i}").as_bytes(), payload("after", i))
            .await
            .unwrap();
    }
    let end = tokio::time::Instant::now() + WAIT;
    while (0..40).any(|i| !seen.contains_key(&payload("after", i))) {
        assert!(
            tokio::time::Instant::now() < end,
            "records of the dropped member's partitions did not reach the one left"
        );
        read_round(&mut [a.as_mut()], &mut seen).await;
    }
}
