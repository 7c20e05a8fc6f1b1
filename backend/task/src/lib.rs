//! im-task: the asynchronous half of delivery.
//!
//! Consumes `im-task-topic`:
//! - `FanOutTask` for the world room: one broadcast `DownstreamBatch` per live gateway;
//! - `FanOutTask` for a large group: members are paged (`[task] fanout_batch` at a time),
//!   located, and delivered with one batch per gateway per page; offline members get an
//!   offline push;
//! - `OfflinePushTask`: handed to the notifier (webhook or log), retried while it answers
//!   `UNAVAILABLE`, then dropped with a warning (pushes are best effort: the messages are
//!   stored and synced on reconnect).
//!
//! Each task runs in the trace of the message it is for (`message{trace_id}`, from the
//! record's `trace-id` header), and the batches it publishes carry the id on.
#![forbid(unsafe_code)]

pub mod metrics;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pb::downstream_batch::Body;
use ringchat_core::consume::{consume, Handled, Incoming};
use ringchat_core::fanout::{self, send_downstream};
use ringchat_core::model::{GATEWAY_SERVICE, TASK_GROUP};
use ringchat_core::ports::OfflinePush;
use ringchat_core::shutdown::ShutdownSignal;
use ringchat_core::trace::in_message;
use ringchat_core::{Ports, Result};
use ringchat_proto as pb;

/// Counters a process can expose.
#[derive(Debug, Default)]
pub struct TaskStats {
    pub fanouts: AtomicU64,
    pub deliveries: AtomicU64,
    pub pushes: AtomicU64,
    pub push_failures: AtomicU64,
}

pub struct TaskService {
    ports: Ports,
    fanout_batch: i64,
    push_attempts: u32,
    pub stats: TaskStats,
}

impl TaskService {
    pub fn new(ports: Ports, fanout_batch: u32) -> Self {
        TaskService {
            ports,
            fanout_batch: i64::from(fanout_batch.max(1)),
            push_attempts: 3,
            stats: TaskStats::default(),
        }
    }

    pub async fn handle(&self, task: pb::TaskMessage) -> Result<()> {
        tracing::debug!(
            task = match &task.task {
                Some(pb::task_message::Task::FanOut(f)) if f.world => "world fan-out",
                Some(pb::task_message::Task::FanOut(_)) => "group fan-out",
                Some(pb::task_message::Task::OfflinePush(_)) => "offline push",
                None => "none",
            },
            "task received"
        );
        match task.task {
            Some(pb::task_message::Task::FanOut(f)) => self.fan_out(f).await,
            Some(pb::task_message::Task::OfflinePush(p)) => {
                if let Some(m) = p.message {
                    self.push(&p.user_ids, &m).await;
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn fan_out(&self, f: pb::FanOutTask) -> Result<()> {
        let Some(message) = f.message else {
            return Ok(());
        };
        self.stats.fanouts.fetch_add(1, Ordering::Relaxed);
        let origin = (!f.sender_gateway_id.is_empty())
            .then_some((f.sender_gateway_id.as_str(), f.sender_conn_id));
        if f.world {
            for gw in self.ports.discovery.instances(GATEWAY_SERVICE).await? {
                let exclude_conn_id = match origin {
                    Some((g, c)) if g == gw.id => c,
                    _ => 0,
                };
                send_downstream(
                    self.ports.bus.as_ref(),
                    &gw.id,
                    &message.conversation_id,
                    Body::NewMessage(pb::NewMessage {
                        message: Some(message.clone()),
                        recipient_user_ids: Vec::new(),
                        broadcast: true,
                        exclude_conn_id,
                    }),
                )
                .await?;
            }
            return Ok(());
        }
        let mut after = 0;
        loop {
            let page = self
                .ports
                .store
                .member_ids(&message.conversation_id, after, self.fanout_batch)
                .await?;
            let Some(last) = page.last().copied() else {
                break;
            };
            after = last;
            let located = fanout::locate_or_everywhere(
                self.ports.cache.as_ref(),
                self.ports.discovery.as_ref(),
                &page,
            )
            .await?;
            let n = fanout::deliver(self.ports.bus.as_ref(), &located, &message, origin).await?;
            self.stats.deliveries.fetch_add(n as u64, Ordering::Relaxed);
            let offline: Vec<i64> = located
                .offline
                .into_iter()
                .filter(|u| *u != message.sender_id)
                .collect();
            if !offline.is_empty() && !ringchat_core::model::is_amendment(message.r#type) {
                self.push(&offline, &message).await;
            }
            if (page.len() as i64) < self.fanout_batch {
                break;
            }
        }
        Ok(())
    }

    async fn push(&self, users: &[i64], message: &pb::ChatMessage) {
        let push = OfflinePush::new(users, message);
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=self.push_attempts {
            match self.ports.notifier.notify(&push).await {
                Ok(()) => {
                    self.stats.pushes.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) if e.is_retryable() && attempt < self.push_attempts => {
                    tracing::debug!(error = %e, attempt, "offline push failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(e) => {
                    self.stats.push_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, users = users.len(), message_id = message.message_id, "offline push dropped");
                    return;
                }
            }
        }
    }
}

/// Runs one member of the `im-task` consumer group until shutdown. A task that fails with
/// a retryable error (bus or store down) is retried before its offset is committed.
pub async fn run(task: Arc<TaskService>, shutdown: ShutdownSignal) -> Result<()> {
    let bus = task.ports.bus.clone();
    consume(
        bus.as_ref(),
        pb::topics::TASK,
        TASK_GROUP,
        64,
        shutdown.clone(),
        |batch: Vec<Incoming<pb::TaskMessage>>| {
            let (task, shutdown) = (&task, &shutdown);
            async move {
                for msg in batch {
                    let done = handle_with_retries(task, msg.message, shutdown.clone());
                    if !in_message(msg.trace_id, done).await {
                        return Handled::Stop;
                    }
                }
                Handled::Commit
            }
        },
    )
    .await
}

/// Handles one task, retrying retryable failures with backoff; false if shutdown came
/// first.
async fn handle_with_retries(
    task: &TaskService,
    msg: pb::TaskMessage,
    mut shutdown: ShutdownSignal,
) -> bool {
    let mut backoff = Duration::from_millis(50);
    loop {
        match task.handle(msg.clone()).await {
            Ok(()) => return true,
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "task failed, retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.wait() => return false,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(error = %e, "task failed, skipped");
                return true;
            }
        }
    }
}
