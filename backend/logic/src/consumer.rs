//! The upstream consumer: reads client sends from `im-upstream-topic` in batches and hands
//! them to [`LogicService::process_upstream`]. A batch is committed only once every send
//! in it is answered (an ack, or an `error` frame naming its `tempMessageId`):
//! - a transient failure (store busy or locked, bus down) retries the batch with backoff
//!   for up to `logic.retry_budget_secs` (appends are idempotent on the sender's
//!   `tempMessageId`, so a retry stores nothing twice);
//! - a batch that fails otherwise is split and each send processed alone, so one bad send
//!   cannot sink the others;
//! - a send that still fails is answered with an `error` frame (`UNAVAILABLE` folds into
//!   `INTERNAL` on the wire): the client resends with the same `tempMessageId`.
//!
//! No send is ever dropped without an answer, so a gateway's count of pending sends
//! always returns to zero.
//!
//! Every send has a trace id (the record's `trace-id` header, else the gateway's
//! `UpstreamMessage.trace_id`, else a new one): its processing logs in `message{trace_id}`
//! and what is published for it carries the id on.

use std::sync::Arc;
use std::time::Duration;

use ringchat_core::consume::{consume, Handled, Incoming};
use ringchat_core::model::LOGIC_GROUP;
use ringchat_core::shutdown::ShutdownSignal;
use ringchat_core::trace::{in_message, TraceId};
use ringchat_core::{Error, Result};
use ringchat_proto as pb;

use crate::metrics::UPSTREAM;
use crate::LogicService;

/// Runs one member of the `im-logic` consumer group until shutdown.
pub async fn run_upstream_consumer(
    logic: Arc<LogicService>,
    batch_max: usize,
    budget: Duration,
    shutdown: ShutdownSignal,
) -> Result<()> {
    let bus = logic.ports().bus.clone();
    consume(
        bus.as_ref(),
        pb::topics::UPSTREAM,
        LOGIC_GROUP,
        batch_max,
        shutdown.clone(),
        |batch: Vec<Incoming<pb::UpstreamMessage>>| {
            let (logic, mut shutdown) = (&logic, shutdown.clone());
            let batch: Vec<pb::UpstreamMessage> = batch.into_iter().map(with_trace_id).collect();
            UPSTREAM.count_batch(batch.len());
            async move {
                if process_with_retries(logic, &batch, budget, &mut shutdown).await {
                    Handled::Commit
                } else {
                    // shutting down mid-retry: leave the batch uncommitted for redelivery
                    Handled::Stop
                }
            }
        },
    )
    .await
}

/// The send, its `trace_id` set to the one it travels with: the record header's, else the
/// gateway's field, else a new one (a send from a gateway that made none).
fn with_trace_id(incoming: Incoming<pb::UpstreamMessage>) -> pb::UpstreamMessage {
    let mut up = incoming.message;
    let field = TraceId::parse(&up.trace_id);
    let id = incoming.trace_id.or(field).unwrap_or_else(TraceId::random);
    if field != Some(id) {
        up.trace_id = id.to_string();
    }
    up
}

/// Processes `batch` until every send in it is answered; false if shutdown came first.
async fn process_with_retries(
    logic: &LogicService,
    batch: &[pb::UpstreamMessage],
    budget: Duration,
    shutdown: &mut ShutdownSignal,
) -> bool {
    match retry(logic, batch, budget, shutdown).await {
        Some(Ok(())) => return true,
        None => return false,
        Some(Err(e)) if batch.len() == 1 => {
            answer_failed(logic, &batch[0], &e).await;
            return true;
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, records = batch.len(), trace_ids = ?trace_ids(batch), "upstream batch failed, processing its sends one by one");
        }
    }
    for up in batch {
        let alone = retry(logic, std::slice::from_ref(up), budget, shutdown);
        match in_message(TraceId::parse(&up.trace_id), alone).await {
            Some(Ok(())) => {}
            None => return false,
            Some(Err(e)) => answer_failed(logic, up, &e).await,
        }
    }
    true
}

/// The trace ids of a batch, for the lines about the whole batch.
fn trace_ids(batch: &[pb::UpstreamMessage]) -> Vec<&str> {
    batch.iter().map(|up| up.trace_id.as_str()).collect()
}

/// Runs `process_upstream` on `batch`, retrying transient errors with backoff within
/// `budget`. None if shutdown came first.
async fn retry(
    logic: &LogicService,
    batch: &[pb::UpstreamMessage],
    budget: Duration,
    shutdown: &mut ShutdownSignal,
) -> Option<Result<()>> {
    let deadline = tokio::time::Instant::now() + budget;
    let mut backoff = Duration::from_millis(20);
    loop {
        match logic.process_upstream(batch).await {
            Ok(()) => return Some(Ok(())),
            Err(e) if e.is_retryable() && tokio::time::Instant::now() + backoff < deadline => {
                tracing::warn!(error = %e, records = batch.len(), trace_ids = ?trace_ids(batch), ?backoff, "upstream batch failed, retrying");
                UPSTREAM.count_retry();
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.wait() => return None,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Some(Err(e)),
        }
    }
}

/// The send could not be stored: tell its connection, naming its `tempMessageId`.
async fn answer_failed(logic: &LogicService, up: &pb::UpstreamMessage, e: &Error) {
    UPSTREAM.count_failed();
    in_message(
        TraceId::parse(&up.trace_id),
        answer_failed_traced(logic, up, e),
    )
    .await
}

async fn answer_failed_traced(logic: &LogicService, up: &pb::UpstreamMessage, e: &Error) {
    tracing::error!(error = %e, conn_id = up.conn_id, temp_message_id = %up.temp_message_id, "send failed after retries, answering with an error");
    let answer = Error::new(
        e.code,
        format!(
            "{}: not stored, resend with the same tempMessageId",
            e.message
        ),
    );
    if let Err(e) = logic.send_error(up, &answer).await {
        tracing::error!(error = %e, conn_id = up.conn_id, "cannot answer a failed send (the bus is down too): the client resends after its timeout");
    }
}

/// Spawns `n` consumers of the `im-logic` group on the current runtime.
pub fn spawn_upstream_consumers(
    logic: &Arc<LogicService>,
    n: u32,
    batch_max: usize,
    budget: Duration,
    shutdown: &ShutdownSignal,
) -> Vec<tokio::task::JoinHandle<Result<()>>> {
    (0..n)
        .map(|_| {
            tokio::spawn(run_upstream_consumer(
                logic.clone(),
                batch_max,
                budget,
                shutdown.clone(),
            ))
        })
        .collect()
}
