use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;

/// One record read from a topic partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: u32,
    pub offset: u64,
    pub key: Bytes,
    pub payload: Bytes,
    /// Headers, in the order they were published (a trace id: [`crate::trace::HEADER`]).
    pub headers: Vec<(String, Bytes)>,
}

impl Record {
    /// The value of the first header named `key`.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }
}

/// How far one consumer group is behind on one partition (records on the bus its members
/// have not read, or for the in-process bus not committed, yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub group: String,
    pub partition: i32,
    pub lag: u64,
}

/// A partitioned, ordered message bus with consumer groups (Kafka's semantics).
///
/// - Records with the same key go to the same partition and are read in publish order.
/// - Every consumer group reads every record of a topic; within a group each partition is
///   read by one subscription at a time (partitions are rebalanced when members come and go).
/// - A new group starts at the earliest retained record.
/// - Delivery is at least once: records after the last commit of a partition may be read
///   again after a rebalance or restart, so consumers must be idempotent.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Appends a record; returns once the bus has accepted it (durably, for a real broker).
    async fn publish(&self, topic: &str, key: &[u8], payload: Bytes) -> Result<()>;

    /// [`Bus::publish`] with headers, which subscribers find in [`Record::headers`]. A bus
    /// that cannot carry headers drops them (the default).
    async fn publish_with_headers(
        &self,
        topic: &str,
        key: &[u8],
        payload: Bytes,
        headers: &[(&str, &[u8])],
    ) -> Result<()> {
        let _ = headers;
        self.publish(topic, key, payload).await
    }

    /// Joins `group` on `topic`.
    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>>;

    /// The lag of this process's live subscriptions, measured now (for a broker, a round
    /// trip per partition: call it when metrics are scraped, not per record). Empty for a
    /// bus that cannot tell.
    async fn lag(&self) -> Result<Vec<PartitionLag>> {
        Ok(Vec::new())
    }
}

/// A member of a consumer group. Dropping it leaves the group.
#[async_trait]
pub trait Subscription: Send {
    /// Waits for at least one record and returns at most `max`, in partition order.
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Record>>;

    /// Marks every record up to and including each given record's offset as processed.
    async fn commit(&mut self, records: &[Record]) -> Result<()>;
}
