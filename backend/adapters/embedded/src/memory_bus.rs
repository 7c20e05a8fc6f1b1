//! The in-process bus of the embedded profile, with Kafka's semantics.
//!
//! Each topic is a set of partitions; each partition an in-memory log with offsets.
//! Consumer groups keep a committed offset per partition, and the partitions of a topic are
//! split among the live members of a group (partition `p` goes to member `p % n`), reassigned
//! whenever a member joins or leaves; a member resumes a reassigned partition from the
//! committed offset, so delivery is at least once, as with Kafka.
//!
//! Bounded: a partition keeps at most `capacity` records that some group has not committed;
//! a publisher waits (up to `publish_timeout`) for room, then fails with `UNAVAILABLE`.
//! Records every group has committed are dropped; a topic that no group reads keeps only the
//! newest `capacity` records (like Kafka's size-based retention).
//!
//! Locks are `std::sync::Mutex`, held only for in-memory bookkeeping, never across `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;

use ringchat_core::error::{Error, Result};
use ringchat_core::ports::{Bus, PartitionLag, Record, Subscription};

#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

struct Inner {
    partitions: u32,
    capacity: usize,
    publish_timeout: Duration,
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    next_member: AtomicU64,
}

struct Topic {
    parts: Vec<Partition>,
    groups: Mutex<HashMap<String, Arc<Group>>>,
    /// Woken on every publish and every group membership change.
    data: Notify,
    /// Woken when records are dropped after commits.
    space: Notify,
}

struct Partition {
    log: Mutex<Log>,
}

struct Log {
    /// Offset of `records[0]`.
    base: u64,
    records: VecDeque<Stored>,
}

/// A record as a partition's log keeps it.
struct Stored {
    key: Bytes,
    payload: Bytes,
    headers: Vec<(String, Bytes)>,
}

impl Log {
    fn end(&self) -> u64 {
        self.base + self.records.len() as u64
    }
}

struct Group {
    state: Mutex<GroupState>,
}

struct GroupState {
    committed: Vec<u64>,
    members: Vec<u64>,
    generation: u64,
}

impl MemoryBus {
    pub fn new(partitions: u32, capacity: usize) -> Self {
        Self::with_timeout(partitions, capacity, Duration::from_secs(5))
    }

    pub fn with_timeout(partitions: u32, capacity: usize, publish_timeout: Duration) -> Self {
        assert!(partitions > 0 && capacity > 0);
        MemoryBus {
            inner: Arc::new(Inner {
                partitions,
                capacity,
                publish_timeout,
                topics: Mutex::new(HashMap::new()),
                next_member: AtomicU64::new(1),
            }),
        }
    }

    fn topic(&self, name: &str) -> Arc<Topic> {
        let mut topics = self.inner.topics.lock().expect("bus lock");
        topics
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Topic {
                    parts: (0..self.inner.partitions)
                        .map(|_| Partition {
                            log: Mutex::new(Log {
                                base: 0,
                                records: VecDeque::new(),
                            }),
                        })
                        .collect(),
                    groups: Mutex::new(HashMap::new()),
                    data: Notify::new(),
                    space: Notify::new(),
                })
            })
            .clone()
    }
}

/// Kafka-like stable key hash (FNV-1a), so a key always lands on the same partition.
pub fn partition_for(key: &[u8], partitions: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % partitions
}

impl Topic {
    /// Lowest committed offset of partition `p` over the groups that have live members, or
    /// None when no group is being read. A group with no members does not hold records back
    /// (retention wins, as with Kafka): when it returns it resumes at the oldest kept record.
    fn low_watermark(&self, p: usize) -> Option<u64> {
        let groups = self.groups.lock().expect("bus lock");
        groups
            .values()
            .filter_map(|g| {
                let st = g.state.lock().expect("bus lock");
                (!st.members.is_empty()).then_some(st.committed[p])
            })
            .min()
    }

    fn has_readers(&self) -> bool {
        let groups = self.groups.lock().expect("bus lock");
        groups
            .values()
            .any(|g| !g.state.lock().expect("bus lock").members.is_empty())
    }

    fn trim(&self, p: usize) {
        if let Some(low) = self.low_watermark(p) {
            let mut log = self.parts[p].log.lock().expect("bus lock");
            let mut dropped = false;
            while log.base < low && !log.records.is_empty() {
                log.records.pop_front();
                log.base += 1;
                dropped = true;
            }
            if dropped {
                self.space.notify_waiters();
            }
        }
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, topic: &str, key: &[u8], payload: Bytes) -> Result<()> {
        self.publish_with_headers(topic, key, payload, &[]).await
    }

    async fn publish_with_headers(
        &self,
        topic: &str,
        key: &[u8],
        payload: Bytes,
        headers: &[(&str, &[u8])],
    ) -> Result<()> {
        let t = self.topic(topic);
        let p = partition_for(key, self.inner.partitions) as usize;
        let deadline = tokio::time::Instant::now() + self.inner.publish_timeout;
        let record = Stored {
            key: Bytes::copy_from_slice(key),
            payload,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), Bytes::copy_from_slice(v)))
                .collect(),
        };
        loop {
            let space = t.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            let has_readers = t.has_readers();
            {
                let mut log = t.parts[p].log.lock().expect("bus lock");
                if log.records.len() >= self.inner.capacity && !has_readers {
                    // nobody reads this topic: size-based retention
                    log.records.pop_front();
                    log.base += 1;
                }
                if log.records.len() < self.inner.capacity {
                    log.records.push_back(record);
                    drop(log);
                    t.data.notify_waiters();
                    return Ok(());
                }
            }
            if tokio::time::timeout_at(deadline, space).await.is_err() {
                return Err(Error::unavailable(format!(
                    "bus partition {topic}/{p} is full: a consumer group is not keeping up"
                )));
            }
        }
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>> {
        let t = self.topic(topic);
        let member = self.inner.next_member.fetch_add(1, Ordering::Relaxed);
        let g = {
            let mut groups = t.groups.lock().expect("bus lock");
            groups
                .entry(group.to_string())
                .or_insert_with(|| {
                    // a new group starts at the earliest retained record
                    let committed = t
                        .parts
                        .iter()
                        .map(|p| p.log.lock().expect("bus lock").base)
                        .collect();
                    Arc::new(Group {
                        state: Mutex::new(GroupState {
                            committed,
                            members: Vec::new(),
                            generation: 0,
                        }),
                    })
                })
                .clone()
        };
        {
            let mut st = g.state.lock().expect("bus lock");
            st.members.push(member);
            st.generation += 1;
        }
        t.data.notify_waiters();
        Ok(Box::new(MemorySubscription {
            topic: t,
            group: g,
            member,
            generation: u64::MAX,
            assigned: Vec::new(),
            positions: HashMap::new(),
            next: 0,
        }))
    }

    /// Per partition of every group with live members: the records not committed yet.
    async fn lag(&self) -> Result<Vec<PartitionLag>> {
        let topics: Vec<(String, Arc<Topic>)> = {
            let topics = self.inner.topics.lock().expect("bus lock");
            topics.iter().map(|(n, t)| (n.clone(), t.clone())).collect()
        };
        let mut out = Vec::new();
        for (name, t) in topics {
            let ends: Vec<u64> = t
                .parts
                .iter()
                .map(|p| p.log.lock().expect("bus lock").end())
                .collect();
            let groups = t.groups.lock().expect("bus lock");
            for (group, g) in groups.iter() {
                let st = g.state.lock().expect("bus lock");
                if st.members.is_empty() {
                    continue;
                }
                for (p, end) in ends.iter().enumerate() {
                    out.push(PartitionLag {
                        topic: name.clone(),
                        group: group.clone(),
                        partition: p as i32,
                        lag: end.saturating_sub(st.committed[p]),
                    });
                }
            }
        }
        out.sort_by(|a, b| {
            (&a.topic, &a.group, a.partition).cmp(&(&b.topic, &b.group, b.partition))
        });
        Ok(out)
    }
}

struct MemorySubscription {
    topic: Arc<Topic>,
    group: Arc<Group>,
    member: u64,
    generation: u64,
    assigned: Vec<usize>,
    positions: HashMap<usize, u64>,
    next: usize,
}

impl MemorySubscription {
    /// Picks up a rebalance: recomputes the partitions this member owns and rewinds to the
    /// group's committed offsets.
    fn sync_assignment(&mut self) {
        let st = self.group.state.lock().expect("bus lock");
        if st.generation == self.generation {
            return;
        }
        self.generation = st.generation;
        let n = st.members.len();
        let idx = st
            .members
            .iter()
            .position(|m| *m == self.member)
            .unwrap_or(0);
        self.assigned = (0..self.topic.parts.len())
            .filter(|p| p % n == idx)
            .collect();
        self.positions = self
            .assigned
            .iter()
            .map(|p| (*p, st.committed[*p]))
            .collect();
        self.next = 0;
    }

    fn poll(&mut self, max: usize) -> Vec<Record> {
        let mut out = Vec::new();
        let n = self.assigned.len();
        for i in 0..n {
            if out.len() >= max {
                break;
            }
            let p = self.assigned[(self.next + i) % n];
            let log = self.topic.parts[p].log.lock().expect("bus lock");
            let pos = self.positions.get_mut(&p).expect("assigned partition");
            if *pos < log.base {
                *pos = log.base;
            }
            while *pos < log.end() && out.len() < max {
                let r = &log.records[(*pos - log.base) as usize];
                out.push(Record {
                    partition: p as u32,
                    offset: *pos,
                    key: r.key.clone(),
                    payload: r.payload.clone(),
                    headers: r.headers.clone(),
                });
                *pos += 1;
            }
        }
        if n > 0 {
            self.next = (self.next + 1) % n;
        }
        out
    }
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Record>> {
        let max = max.max(1);
        let topic = self.topic.clone();
        loop {
            let data = topic.data.notified();
            tokio::pin!(data);
            data.as_mut().enable();
            self.sync_assignment();
            let out = self.poll(max);
            if !out.is_empty() {
                return Ok(out);
            }
            data.await;
        }
    }

    async fn commit(&mut self, records: &[Record]) -> Result<()> {
        let mut touched = Vec::new();
        {
            let mut st = self.group.state.lock().expect("bus lock");
            if st.generation != self.generation {
                return Err(Error::new(
                    ringchat_core::error::ErrorCode::Conflict,
                    "commit after a rebalance: partitions were reassigned",
                ));
            }
            for r in records {
                let p = r.partition as usize;
                if st.committed[p] < r.offset + 1 {
                    st.committed[p] = r.offset + 1;
                    touched.push(p);
                }
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for p in touched {
            self.topic.trim(p);
        }
        Ok(())
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        if let Ok(mut st) = self.group.state.lock() {
            st.members.retain(|m| *m != self.member);
            st.generation += 1;
        }
        self.topic.data.notify_waiters();
        // the group may no longer hold records back
        for p in 0..self.topic.parts.len() {
            self.topic.trim(p);
        }
        self.topic.space.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringchat_core::error::ErrorCode;

    #[tokio::test]
    async fn lag_counts_the_records_a_live_group_has_not_committed() {
        let bus = MemoryBus::new(2, 1024);
        assert!(bus.lag().await.unwrap().is_empty(), "no group, no lag");
        let mut sub = bus.subscribe("t", "g").await.unwrap();
        for i in 0..5u32 {
            bus.publish("t", b"k", Bytes::from(i.to_string()))
                .await
                .unwrap();
        }
        let total = |lags: Vec<PartitionLag>| -> u64 {
            assert!(lags.iter().all(|l| l.topic == "t" && l.group == "g"));
            lags.iter().map(|l| l.lag).sum()
        };
        assert_eq!(total(bus.lag().await.unwrap()), 5);
        let batch = sub.next_batch(100).await.unwrap();
        assert_eq!(
            total(bus.lag().await.unwrap()),
            5,
            "read, not committed yet"
        );
        sub.commit(&batch).await.unwrap();
        assert_eq!(total(bus.lag().await.unwrap()), 0);
        drop(sub);
        assert!(
            bus.lag().await.unwrap().is_empty(),
            "no live member, no lag"
        );
    }

    #[tokio::test]
    async fn members_of_a_group_split_the_partitions() {
        let bus = MemoryBus::new(4, 1024);
        let mut a = bus.subscribe("t", "g").await.unwrap();
        let mut b = bus.subscribe("t", "g").await.unwrap();
        for i in 0..100u32 {
            bus.publish(
                "t",
                format!("key-{i}").as_bytes(),
                Bytes::from(i.to_string()),
            )
            .await
            .unwrap();
        }
        let mut seen = std::collections::HashSet::new();
        let mut parts_a = std::collections::HashSet::new();
        let mut parts_b = std::collections::HashSet::new();
        while seen.len() < 100 {
            for (sub, parts) in [(&mut a, &mut parts_a), (&mut b, &mut parts_b)] {
                if let Ok(Ok(batch)) =
                    tokio::time::timeout(Duration::from_millis(1), sub.next_batch(100)).await
                {
                    for r in batch {
                        assert!(
                            seen.insert(r.payload.clone()),
                            "delivered twice in one group"
                        );
                        parts.insert(r.partition);
                    }
                }
            }
        }
        assert!(parts_a.is_disjoint(&parts_b));
        assert_eq!(parts_a.len() + parts_b.len(), 4);
    }

    #[tokio::test]
    async fn a_full_partition_pushes_back_and_frees_on_commit() {
        let bus = MemoryBus::with_timeout(1, 2, Duration::from_millis(50));
        let mut sub = bus.subscribe("t", "g").await.unwrap();
        bus.publish("t", b"k", Bytes::from_static(b"1"))
            .await
            .unwrap();
        bus.publish("t", b"k", Bytes::from_static(b"2"))
            .await
            .unwrap();
        let err = bus
            .publish("t", b"k", Bytes::from_static(b"3"))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Unavailable);
        let batch = sub.next_batch(10).await.unwrap();
        assert_eq!(batch.len(), 2);
        sub.commit(&batch).await.unwrap();
        bus.publish("t", b"k", Bytes::from_static(b"3"))
            .await
            .unwrap();
        assert_eq!(
            sub.next_batch(10).await.unwrap()[0].payload,
            Bytes::from_static(b"3")
        );
    }

    #[tokio::test]
    async fn a_topic_nobody_reads_keeps_only_the_newest_records() {
        let bus = MemoryBus::with_timeout(1, 3, Duration::from_millis(50));
        for i in 0..10u8 {
            bus.publish("t", b"k", Bytes::from(vec![i])).await.unwrap();
        }
        let mut sub = bus.subscribe("t", "late").await.unwrap();
        let got: Vec<u8> = sub
            .next_batch(10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.payload[0])
            .collect();
        assert_eq!(got, vec![7, 8, 9]);
    }
}
