//! Kafka-specific behaviour beyond the conformance suite: ordering across partitions under
//! concurrent publishers, resuming after a commit in a new member, a broker that is away,
//! and lag (headers are in the conformance suite).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringchat_core::ports::{Bus, Record, Subscription};
use ringchat_core::testkit::bus::read_n;
use ringchat_core::testkit::{eventually, unique};
use ringchat_core::ErrorCode;
use ringchat_kafka::{KafkaBus, KafkaTuning};
use tokio::task::JoinSet;

fn payload(key: &str, i: usize) -> Bytes {
    Bytes::from(format!("{key}:{i}"))
}

/// Publishes `per_key` records on each of `keys` keys, the keys concurrently and each
/// key's records one after the other; returns every payload.
async fn publish_keys(bus: &KafkaBus, topic: &str, keys: usize, per_key: usize) -> Vec<Bytes> {
    let mut publishers = JoinSet::new();
    for k in 0..keys {
        let bus = bus.clone();
        let topic = topic.to_string();
        publishers.spawn(async move {
            let key = format!("conv-{k}");
            for i in 0..per_key {
                bus.publish(&topic, key.as_bytes(), payload(&key, i))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = publishers.join_next().await {
        done.unwrap();
    }
    (0..keys)
        .flat_map(|k| (0..per_key).map(move |i| payload(&format!("conv-{k}"), i)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_records_on_ten_keys_keep_per_key_order_across_three_partitions() {
    let bus = common::bus().await;
    let topic = unique("kafka-order");
    bus.ensure_topics(&[&topic]).await.unwrap();
    let started = Instant::now();
    publish_keys(&bus, &topic, 10, 100).await;
    let published = started.elapsed();

    let mut sub = bus.subscribe(&topic, &unique("g")).await.unwrap();
    let records = read_n(sub.as_mut(), 1000).await;
    eprintln!(
        "published 1000 records in {published:?}, read back after {:?}",
        started.elapsed()
    );
    let mut next: HashMap<Bytes, usize> = HashMap::new();
    let mut partition_of: HashMap<Bytes, u32> = HashMap::new();
    for r in &records {
        let key = std::str::from_utf8(&r.key).unwrap();
        let n = next.entry(r.key.clone()).or_insert(0);
        assert_eq!(r.payload, payload(key, *n), "records of {key} out of order");
        *n += 1;
        let p = *partition_of.entry(r.key.clone()).or_insert(r.partition);
        assert_eq!(p, r.partition, "key {key} on two partitions");
    }
    assert_eq!(next.len(), 10);
    assert!(next.values().all(|n| *n == 100));
    let partitions: HashSet<u32> = partition_of.values().copied().collect();
    assert_eq!(
        partitions.len(),
        common::PARTITIONS as usize,
        "10 keys should spread over every partition: {partition_of:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_resumes_after_the_last_commit_of_a_dropped_one() {
    let bus = common::bus().await;
    let topic = unique("kafka-resume");
    let group = unique("g");
    let all = publish_keys(&bus, &topic, 10, 10).await;

    let (committed, uncommitted) = {
        let mut first = bus.subscription(&topic, &group).await.unwrap();
        let records = read_n(&mut first, all.len()).await;
        // commit the first half of each partition
        let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        for r in records {
            by_partition.entry(r.partition).or_default().push(r);
        }
        let (mut committed, mut uncommitted) = (Vec::new(), Vec::new());
        for (_, mut records) in by_partition {
            records.sort_by_key(|r| r.offset);
            let rest = records.split_off(records.len() / 2);
            first.commit(&records).await.unwrap();
            committed.extend(records);
            uncommitted.extend(rest);
        }
        (committed, uncommitted)
        // `first` is dropped here: it leaves the group
    };
    assert!(!committed.is_empty() && !uncommitted.is_empty());

    let started = Instant::now();
    let mut second = bus.subscription(&topic, &group).await.unwrap();
    let again = read_n(&mut second, uncommitted.len()).await;
    eprintln!(
        "the new member read the {} uncommitted records after {:?}",
        again.len(),
        started.elapsed()
    );
    let expected: HashSet<Bytes> = uncommitted.iter().map(|r| r.payload.clone()).collect();
    let got: HashSet<Bytes> = again.iter().map(|r| r.payload.clone()).collect();
    assert_eq!(got, expected, "exactly the uncommitted records come back");
    // and nothing that was committed follows them
    let more = tokio::time::timeout(Duration::from_secs(2), second.next_batch(100)).await;
    assert!(more.is_err(), "a committed record came back: {more:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_away_makes_publish_unavailable_within_the_timeout() {
    // a port nothing listens on
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let timeout = Duration::from_secs(2);
    let tuning = KafkaTuning {
        publish_timeout: timeout,
        request_timeout: timeout,
        ..KafkaTuning::default()
    };
    let bus = KafkaBus::connect_tuned(&common::options(&format!("127.0.0.1:{port}")), tuning)
        .await
        .expect("connecting does not wait for the broker");

    let started = Instant::now();
    let err = bus
        .publish("kafka-away", b"k", Bytes::from_static(b"lost"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
    assert!(took < timeout + Duration::from_secs(1), "took {took:?}");

    let started = Instant::now();
    let err = bus
        .subscribe("kafka-away", "g")
        .await
        .err()
        .expect("cannot subscribe without a broker");
    assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
    assert!(started.elapsed() < timeout + Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_counts_the_records_a_member_has_not_read() {
    let bus = common::bus().await;
    let topic = unique("kafka-lag");
    let group = unique("g");
    for i in 0..10 {
        bus.publish(&topic, b"one-key", payload("k", i))
            .await
            .unwrap();
    }
    let mut sub = bus.subscription(&topic, &group).await.unwrap();
    let mut read = Vec::new();
    while read.len() < 4 {
        read.extend(sub.next_batch(4 - read.len()).await.unwrap());
    }
    sub.commit(&read).await.unwrap();
    let lag = sub.lag().await.unwrap();
    assert_eq!(
        lag.len(),
        common::PARTITIONS as usize,
        "the only member owns every partition"
    );
    assert!(lag.iter().all(|l| l.topic == topic && l.group == group));
    assert_eq!(lag.iter().map(|l| l.lag).sum::<u64>(), 6, "{lag:?}");
    let from_bus: Vec<_> = bus
        .lag()
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.group == group)
        .collect();
    assert_eq!(from_bus, lag);

    let rest = read_n(&mut sub, 6).await;
    sub.commit(&rest).await.unwrap();
    let lag = sub.lag().await.unwrap();
    assert_eq!(lag.iter().map(|l| l.lag).sum::<u64>(), 0, "{lag:?}");
    drop(sub);
    // a dropped subscription leaves the bus's report
    eventually(
        "the dropped member to leave the report",
        Duration::from_secs(5),
        || {
            let bus = bus.clone();
            let group = group.clone();
            async move {
                let lag = bus.lag().await.unwrap();
                lag.iter().all(|l| l.group != group).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_that_exist_are_fine_and_concurrent_first_publishes_share_the_creation() {
    let first = common::bus().await;
    let (old, new) = (unique("kafka-exists"), unique("kafka-new"));
    first.ensure_topics(&[&old]).await.unwrap();
    // another process (a fresh bus) finds `old` existing
    let second = common::bus().await;
    second.ensure_topics(&[&old, &new]).await.unwrap();

    let fresh = unique("kafka-burst");
    let mut publishers = JoinSet::new();
    for i in 0..50 {
        let (bus, topic) = (second.clone(), fresh.clone());
        publishers.spawn(async move {
            bus.publish(&topic, format!("k{i}").as_bytes(), payload("burst", i))
                .await
        });
    }
    while let Some(done) = publishers.join_next().await {
        done.unwrap().unwrap();
    }
    let mut sub = second.subscribe(&fresh, &unique("g")).await.unwrap();
    assert_eq!(read_n(sub.as_mut(), 50).await.len(), 50);
}
