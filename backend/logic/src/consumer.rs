//! The upstream consumer: reads client sends from `im-upstream-topic` in batches and hands
//! them to [`LogicService::process_upstream`]. A batch is committed only once processed;
//! while the store or bus is down the same batch is retried with backoff, so an accepted
//! send is never dropped on the floor.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use ringchat_core::model::LOGIC_GROUP;
use ringchat_core::shutdown::ShutdownSignal;
use ringchat_core::Result;
use ringchat_proto as pb;

use crate::LogicService;

/// Runs one member of the `im-logic` consumer group until shutdown.
pub async fn run_upstream_consumer(
    logic: Arc<LogicService>,
    batch_max: usize,
    mut shutdown: ShutdownSignal,
) -> Result<()> {
    let mut sub = logic
        .ports()
        .bus
        .subscribe(pb::topics::UPSTREAM, LOGIC_GROUP)
        .await?;
    loop {
        let records = tokio::select! {
            r = sub.next_batch(batch_max) => match r {
                Ok(records) => records,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the upstream topic failed, retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => break,
        };
        let batch: Vec<pb::UpstreamMessage> = records
            .iter()
            .filter_map(|r| match pb::UpstreamMessage::decode(r.payload.clone()) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!(partition = r.partition, offset = r.offset, error = %e, "undecodable upstream record skipped");
                    None
                }
            })
            .collect();
        let mut backoff = Duration::from_millis(50);
        loop {
            match logic.process_upstream(&batch).await {
                Ok(()) => break,
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, records = batch.len(), ?backoff, "upstream batch failed, retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.wait() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(error = %e, records = batch.len(), "upstream batch failed, skipped");
                    break;
                }
            }
        }
        if let Err(e) = sub.commit(&records).await {
            tracing::warn!(error = %e, "upstream commit failed; records may be processed again");
        }
    }
    Ok(())
}

/// Spawns `n` consumers of the `im-logic` group on the current runtime.
pub fn spawn_upstream_consumers(
    logic: &Arc<LogicService>,
    n: u32,
    batch_max: usize,
    shutdown: &ShutdownSignal,
) -> Vec<tokio::task::JoinHandle<Result<()>>> {
    (0..n)
        .map(|_| {
            tokio::spawn(run_upstream_consumer(
                logic.clone(),
                batch_max,
                shutdown.clone(),
            ))
        })
        .collect()
}
