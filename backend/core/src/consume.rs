//! The one consume loop of every bus consumer (im-logic's upstream consumers, im-task,
//! the gateway's downstream consumer): join the group, read batches, decode them, hand
//! them to the handler, commit what it finished; until shutdown.
//!
//! At least once: a batch is committed only after its handler says so, so records of a
//! batch cut short by a crash or a shutdown are read again by the next member of the group
//! (handlers are idempotent: appends by `tempMessageId`, gateways drop redelivered events).

use std::future::Future;
use std::time::Duration;

use prost::Message;

use crate::error::Result;
use crate::ports::{Bus, Record};
use crate::shutdown::ShutdownSignal;

/// What the handler did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Done: commit it and read on.
    Commit,
    /// Stop consuming, leaving the batch uncommitted (shutdown came mid-batch, or the
    /// receiving end is gone): the group reads it again.
    Stop,
}

/// Reads `topic` as a member of `group`, decoding each record as an `M` (undecodable
/// records are logged and skipped, never retried forever), until `shutdown` fires or the
/// handler says [`Handled::Stop`]. A failed read is retried after a pause; a failed commit
/// is logged (the records come again, which handlers tolerate).
pub async fn consume<M, F, Fut>(
    bus: &dyn Bus,
    topic: &str,
    group: &str,
    batch_max: usize,
    mut shutdown: ShutdownSignal,
    mut handle: F,
) -> Result<()>
where
    M: Message + Default,
    F: FnMut(Vec<M>) -> Fut,
    Fut: Future<Output = Handled>,
{
    let mut sub = bus.subscribe(topic, group).await?;
    loop {
        let records: Vec<Record> = tokio::select! {
            r = sub.next_batch(batch_max) => match r {
                Ok(records) => records,
                Err(e) => {
                    tracing::warn!(error = %e, topic, "reading failed, retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = shutdown.wait() => return Ok(()),
                    }
                    continue;
                }
            },
            _ = shutdown.wait() => return Ok(()),
        };
        let batch: Vec<M> = records
            .iter()
            .filter_map(|r| match M::decode(r.payload.clone()) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!(topic, partition = r.partition, offset = r.offset, error = %e, "undecodable record skipped");
                    None
                }
            })
            .collect();
        if handle(batch).await == Handled::Stop {
            return Ok(());
        }
        if let Err(e) = sub.commit(&records).await {
            tracing::warn!(error = %e, topic, "commit failed; records may be processed again");
        }
    }
}
