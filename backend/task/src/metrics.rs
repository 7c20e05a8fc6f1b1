//! im-task's own figures for its admin port, read from [`TaskStats`] when scraped.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use ringchat_observe::{Metrics, Readings};

use crate::{TaskService, TaskStats};

/// Registers `ringchat_task_{fanouts,deliveries,offline_pushes,offline_push_failures}_total`.
pub fn register(task: &Arc<TaskService>, metrics: &mut Metrics) {
    let read = |f: fn(&TaskStats) -> u64| {
        let task = task.clone();
        move || f(&task.stats)
    };
    metrics.register_collector(
        Readings::new()
            .counter(
                "ringchat_task_fanouts",
                "fan-out tasks handled (world room and large groups)",
                read(|s| s.fanouts.load(Relaxed)),
            )
            .counter(
                "ringchat_task_deliveries",
                "recipients routed to gateways by large-group fan-outs",
                read(|s| s.deliveries.load(Relaxed)),
            )
            .counter(
                "ringchat_task_offline_pushes",
                "offline pushes the notifier accepted",
                read(|s| s.pushes.load(Relaxed)),
            )
            .counter(
                "ringchat_task_offline_push_failures",
                "offline pushes dropped after their attempts",
                read(|s| s.push_failures.load(Relaxed)),
            ),
    );
}
