//! What the Kafka tests share: the broker address (from `RINGCHAT_TEST_KAFKA_BROKERS`,
//! default `127.0.0.1:9092`), checked up front so a missing broker fails the run with a
//! line saying how to start one, and a bus tuned for tests.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use ringchat_kafka::{KafkaBus, KafkaOptions, KafkaTuning};

pub const PARTITIONS: i32 = 3;

/// The brokers to test against; panics (never skips) when the first is not reachable.
pub fn brokers() -> String {
    let brokers = std::env::var("RINGCHAT_TEST_KAFKA_BROKERS")
        .unwrap_or_else(|_| "127.0.0.1:9092".to_string());
    let first = brokers.split(',').next().unwrap_or_default().trim();
    let reachable = first
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "no Kafka broker reachable at {first} (RINGCHAT_TEST_KAFKA_BROKERS): these tests need \
         a real one; start tansu with `deploy/engines.sh up`, or point \
         RINGCHAT_TEST_KAFKA_BROKERS at a Kafka cluster"
    );
    brokers
}

pub fn options(brokers: &str) -> KafkaOptions {
    KafkaOptions {
        brokers: brokers.to_string(),
        partitions: PARTITIONS,
        replication: 1,
        client_id: "ringchat-kafka-tests".to_string(),
    }
}

pub async fn bus() -> KafkaBus {
    KafkaBus::connect_tuned(&options(&brokers()), KafkaTuning::default())
        .await
        .expect("kafka bus")
}
