//! [`KafkaSubscription`]: one member of a consumer group, its own `StreamConsumer`.
//!
//! - Offsets are committed by hand only (`enable.auto.commit=false`): `commit` stores the
//!   highest given offset + 1 per partition and returns when the group coordinator has it,
//!   so delivery is at least once, as the port says.
//! - `next_batch` is cancel-safe (the consume loops race it against shutdown): its only
//!   await is the first `recv`, which takes a record off librdkafka's queue only when it
//!   completes; the rest of the batch is what is ready at once, taken without waiting.
//! - Dropping the subscription closes the consumer, which leaves the group, so the
//!   partitions move to the other members at once instead of after the session timeout.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use ringchat_core::ports::{Record, Subscription};
use ringchat_core::{Error, Result};

use crate::context::BusContext;
use crate::errors::{from_kafka, timed_out};
use crate::lag::{self, PartitionLag};

/// The port's record of a consumed message, headers included (a header without a value
/// has an empty one).
fn record_of(m: &BorrowedMessage<'_>) -> Record {
    let headers = m
        .headers()
        .map(|h| {
            (0..h.count())
                .map(|i| {
                    let header = h.get(i);
                    (
                        header.key.to_string(),
                        Bytes::copy_from_slice(header.value.unwrap_or_default()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        // a consumed record always has a real partition and offset (>= 0)
        partition: m.partition().max(0) as u32,
        offset: m.offset().max(0) as u64,
        key: Bytes::copy_from_slice(m.key().unwrap_or_default()),
        payload: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
        headers,
    }
}

pub struct KafkaSubscription {
    topic: String,
    group: String,
    /// `Some` until dropped; an `Arc` so a commit can run on the blocking pool.
    consumer: Option<Arc<StreamConsumer<BusContext>>>,
    request_timeout: Duration,
}

impl std::fmt::Debug for KafkaSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSubscription")
            .field("topic", &self.topic)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl KafkaSubscription {
    pub(crate) fn new(
        topic: &str,
        group: &str,
        consumer: Arc<StreamConsumer<BusContext>>,
        request_timeout: Duration,
    ) -> Self {
        KafkaSubscription {
            topic: topic.to_string(),
            group: group.to_string(),
            consumer: Some(consumer),
            request_timeout,
        }
    }

    fn consumer(&self) -> &Arc<StreamConsumer<BusContext>> {
        self.consumer.as_ref().expect("consumer present until drop")
    }

    /// How far this member is behind on each partition it owns; see
    /// [`crate::KafkaBus::lag`].
    pub async fn lag(&self) -> Result<Vec<PartitionLag>> {
        lag::measure(
            self.consumer().clone(),
            self.group.clone(),
            self.request_timeout,
        )
        .await
    }
}

/// Consumer errors librdkafka recovers from by itself (a broker away, a coordinator
/// moving) are logged by the client context and waited out; a fatal one ends the batch.
fn check_consume_error(e: KafkaError) -> Result<()> {
    match e {
        KafkaError::MessageConsumptionFatal(_) => Err(from_kafka("consuming", &e)),
        KafkaError::PartitionEOF(_) => Ok(()),
        e => {
            tracing::debug!(error = %e, "kafka consumer error, librdkafka retries");
            Ok(())
        }
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Record>> {
        let max = max.max(1);
        let consumer = self.consumer();
        let mut out = Vec::new();
        while out.is_empty() {
            // the one await of a batch (see the module note on cancel safety)
            match consumer.recv().await {
                Ok(m) => out.push(record_of(&m)),
                Err(e) => check_consume_error(e)?,
            }
        }
        while out.len() < max {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => out.push(record_of(&m)),
                Some(Err(e)) => check_consume_error(e)?,
                None => break,
            }
        }
        Ok(out)
    }

    async fn commit(&mut self, records: &[Record]) -> Result<()> {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for r in records {
            let offset = next.entry(r.partition as i32).or_insert(0);
            *offset = (*offset).max(r.offset as i64 + 1);
        }
        if next.is_empty() {
            return Ok(());
        }
        let mut offsets = TopicPartitionList::with_capacity(next.len());
        for (partition, offset) in next {
            offsets
                .add_partition_offset(&self.topic, partition, Offset::Offset(offset))
                .map_err(|e| from_kafka("committing offsets", &e))?;
        }
        // A synchronous commit blocks until the coordinator answers: on the blocking pool.
        let consumer = self.consumer().clone();
        let commit =
            tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync));
        match tokio::time::timeout(self.request_timeout, commit).await {
            Err(_) => Err(timed_out("committing offsets", self.request_timeout)),
            Ok(Err(join)) => Err(Error::internal(format!("kafka commit task failed: {join}"))),
            Ok(Ok(result)) => result.map_err(|e| from_kafka("committing offsets", &e)),
        }
    }
}

impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        // Closing leaves the group and waits for the broker's answer: off the async workers
        // when there is a runtime (there is none when a runtime itself is being dropped).
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(move || drop(consumer));
            }
            Err(_) => drop(consumer),
        }
    }
}
