//! Consumer lag: how many records of each partition a member owns it has not read yet,
//! the broker's high watermark minus the member's position.
//!
//! Measured when asked (a service's metrics scrape), not kept up to date: the position is
//! local to the consumer, the high watermarks are one `ListOffsets` round trip per
//! partition. A partition the member has not read from yet counts from the group's
//! committed offset, or from the earliest record when the group has none (where a new
//! group starts).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use ringchat_core::Result;

use crate::context::BusContext;
use crate::errors::{from_kafka, timed_out};

/// How far one member of a consumer group is behind on one partition it owns (`lag`: the
/// records on the broker the member has not read yet): the bus port's type.
pub use ringchat_core::ports::PartitionLag;

/// What the bus keeps of a live subscription to measure its lag (weakly: a dropped
/// subscription leaves the group and the registry).
#[derive(Clone)]
pub(crate) struct LagSource {
    pub(crate) group: String,
    pub(crate) consumer: Weak<StreamConsumer<BusContext>>,
}

/// The sources of every live subscription of a bus.
#[derive(Default)]
pub(crate) struct LagRegistry {
    sources: Mutex<Vec<LagSource>>,
}

impl LagRegistry {
    pub(crate) fn add(&self, source: LagSource) {
        let mut sources = self.sources.lock().expect("lag lock");
        sources.retain(|s| s.consumer.strong_count() > 0);
        sources.push(source);
    }

    fn live(&self) -> Vec<LagSource> {
        let sources = self.sources.lock().expect("lag lock");
        sources
            .iter()
            .filter(|s| s.consumer.strong_count() > 0)
            .cloned()
            .collect()
    }

    /// The lag of every live subscription.
    pub(crate) async fn measure(&self, timeout: Duration) -> Result<Vec<PartitionLag>> {
        let mut out = Vec::new();
        for source in self.live() {
            if let Some(consumer) = source.consumer.upgrade() {
                out.extend(measure(consumer, source.group, timeout).await?);
            }
        }
        Ok(out)
    }
}

/// The lag of one consumer, measured on the blocking pool (the watermark and committed
/// offset look-ups block until the broker answers).
pub(crate) async fn measure(
    consumer: Arc<StreamConsumer<BusContext>>,
    group: String,
    timeout: Duration,
) -> Result<Vec<PartitionLag>> {
    let what = "measuring consumer lag";
    let task = tokio::task::spawn_blocking(move || measure_blocking(&consumer, &group, timeout));
    match tokio::time::timeout(timeout * 2, task).await {
        Err(_) => Err(timed_out(what, timeout * 2)),
        Ok(Err(join)) => Err(ringchat_core::Error::internal(format!(
            "kafka lag task failed: {join}"
        ))),
        Ok(Ok(result)) => result.map_err(|e| from_kafka(what, &e)),
    }
}

fn measure_blocking(
    consumer: &StreamConsumer<BusContext>,
    group: &str,
    timeout: Duration,
) -> KafkaResult<Vec<PartitionLag>> {
    let positions = consumer.position()?;
    let mut unread = TopicPartitionList::new();
    for p in positions.elements() {
        if !matches!(p.offset(), Offset::Offset(_)) {
            unread.add_partition(p.topic(), p.partition());
        }
    }
    let committed = if unread.count() > 0 {
        consumer.committed_offsets(unread, timeout)?
    } else {
        unread
    };
    let mut out = Vec::new();
    for p in positions.elements() {
        let (low, high) = consumer.fetch_watermarks(p.topic(), p.partition(), timeout)?;
        let position = match p.offset() {
            Offset::Offset(o) => o,
            _ => committed
                .find_partition(p.topic(), p.partition())
                .and_then(|c| match c.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(low),
        };
        out.push(PartitionLag {
            topic: p.topic().to_string(),
            group: group.to_string(),
            partition: p.partition(),
            lag: (high - position).max(0) as u64,
        });
    }
    Ok(out)
}
