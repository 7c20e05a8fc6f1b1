//! What the adapter is told: where the brokers are and how topics it creates look
//! ([`KafkaOptions`], built by the wiring from config), and the timeouts and intervals that
//! have working defaults ([`KafkaTuning`]; tests shorten them).

use std::time::Duration;

/// Where the cluster is and how the topics ringchat creates look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaOptions {
    /// `host:port[,host:port...]` (librdkafka's `bootstrap.servers`).
    pub brokers: String,
    /// Partitions of each topic ringchat creates (existing topics are left as they are).
    pub partitions: i32,
    /// Replication factor of each topic ringchat creates.
    pub replication: i32,
    /// Names this process in broker logs and metrics (`client.id`).
    pub client_id: String,
}

/// Timeouts and intervals; the defaults suit a production cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaTuning {
    /// A `publish` (topic creation included) that is not acknowledged by then fails with
    /// `UNAVAILABLE`; also librdkafka's `message.timeout.ms`, so the record is not sent
    /// after the caller was told it failed (at-least-once: the caller may publish again).
    pub publish_timeout: Duration,
    /// Admin requests (topic creation), commits and lag look-ups.
    pub request_timeout: Duration,
    /// How long the producer waits for more records to batch (`linger.ms`).
    pub linger: Duration,
    /// The longest a consumer's fetch waits at the broker for new records
    /// (`fetch.wait.max.ms`). Kafka answers as soon as a record arrives, so there this only
    /// bounds idle polling; tansu 0.6 holds every fetch this long, so there it is the
    /// delivery latency of an idle consumer.
    pub fetch_wait: Duration,
    /// A member that sends no heartbeat for this long leaves the group and its partitions
    /// move (`session.timeout.ms`). A dropped subscription leaves at once, without waiting.
    pub session_timeout: Duration,
}

impl Default for KafkaTuning {
    fn default() -> Self {
        KafkaTuning {
            publish_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            linger: Duration::from_millis(2),
            fetch_wait: Duration::from_millis(50),
            session_timeout: Duration::from_secs(10),
        }
    }
}

/// Milliseconds as librdkafka config text, at least 1 (0 often means "disabled" there).
pub(crate) fn ms(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}
