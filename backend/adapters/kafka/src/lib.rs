//! ringchat's Kafka adapter of the [`Bus`](ringchat_core::ports::Bus) port (distributed
//! profile), on librdkafka through `rdkafka`.
//!
//! - [`KafkaBus`] owns one idempotent producer (`acks=all`) shared by every publisher, and an
//!   admin client that creates topics on first use (downstream topics are per gateway and
//!   appear at run time).
//! - Each subscription is its own `StreamConsumer`, a member of the consumer group, with
//!   manual commits ([`KafkaSubscription`]).
//!
//! Where librdkafka runs: the producer's delivery reports and the admin results come back on
//! rdkafka's own polling threads (one per client, plain threads, not a runtime) and complete
//! futures awaited on the caller's tokio runtime; a consumer is polled by the task awaiting
//! [`next_batch`](ringchat_core::ports::Subscription::next_batch) (librdkafka wakes it when
//! its queue fills). The two calls that block inside librdkafka, a synchronous commit and
//! closing a consumer (leaving the group), run on tokio's blocking pool.
//!
//! Record headers (a trace id) travel as Kafka message headers. Beyond the port: consumer
//! lag ([`KafkaBus::lag`]).
#![forbid(unsafe_code)]

mod bus;
mod context;
mod errors;
mod lag;
mod options;
mod subscription;

pub use bus::KafkaBus;
pub use lag::PartitionLag;
pub use options::{KafkaOptions, KafkaTuning};
pub use subscription::KafkaSubscription;
