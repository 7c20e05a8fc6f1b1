//! im-logic's own figures for its admin port: what the upstream consumers did.
//!
//! Counted with relaxed atomics where it happens ([`crate::consumer`]) and read when
//! scraped. Per process, as the consumers are: they are free functions of the consume
//! loop, and the counts are figures of the process's consumer group members.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use ringchat_observe::{Metrics, Readings};

/// What this process's upstream consumers did since start.
pub(crate) struct UpstreamStats {
    batches: AtomicU64,
    messages: AtomicU64,
    retries: AtomicU64,
    failed: AtomicU64,
}

impl UpstreamStats {
    pub(crate) fn count_batch(&self, sends: usize) {
        self.batches.fetch_add(1, Relaxed);
        self.messages.fetch_add(sends as u64, Relaxed);
    }

    pub(crate) fn count_retry(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_failed(&self) {
        self.failed.fetch_add(1, Relaxed);
    }
}

pub(crate) static UPSTREAM: UpstreamStats = UpstreamStats {
    batches: AtomicU64::new(0),
    messages: AtomicU64::new(0),
    retries: AtomicU64::new(0),
    failed: AtomicU64::new(0),
};

/// Registers `ringchat_logic_upstream_{batches,messages,retries,failed}_total`.
pub fn register(metrics: &mut Metrics) {
    let s = &UPSTREAM;
    metrics.register_collector(
        Readings::new()
            .counter(
                "ringchat_logic_upstream_batches",
                "batches read from im-upstream-topic by the upstream consumers",
                || s.batches.load(Relaxed),
            )
            .counter(
                "ringchat_logic_upstream_messages",
                "client sends read from im-upstream-topic",
                || s.messages.load(Relaxed),
            )
            .counter(
                "ringchat_logic_upstream_retries",
                "retries of a batch (or of one send) after a transient store or bus failure",
                || s.retries.load(Relaxed),
            )
            .counter(
                "ringchat_logic_upstream_failed",
                "sends answered with an error frame after their retries",
                || s.failed.load(Relaxed),
            ),
    );
}
