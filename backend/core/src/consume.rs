//! The one consume loop of every bus consumer (im-logic's upstream consumers, im-task,
//! the gateway's downstream consumer): join the group, read batches, decode them, hand
//! them to the handler (each with the trace id its record carried), commit what it
//! finished; until shutdown.
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
use crate::trace::TraceId;

/// A decoded record, and the trace id its header carried (see [`crate::trace`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming<M> {
    pub message: M,
    pub trace_id: Option<TraceId>,
}

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
    F: FnMut(Vec<Incoming<M>>) -> Fut,
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
        let batch: Vec<Incoming<M>> = records
            .iter()
            .filter_map(|r| {
                let trace_id = TraceId::of_record(r);
                match M::decode(r.payload.clone()) {
                    Ok(message) => Some(Incoming { message, trace_id }),
                    Err(e) => {
                        tracing::warn!(topic, partition = r.partition, offset = r.offset, trace_id = trace_id.map(tracing::field::display), error = %e, "undecodable record skipped");
                        None
                    }
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
