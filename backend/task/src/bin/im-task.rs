//! im-task: large-group and world fan-out, offline push.

use std::sync::Arc;

use im_repo::GrpcStore;
use ringchat_core::bootstrap::{self, About};
use ringchat_core::shutdown::Shutdown;
use ringchat_core::wiring::ports_from_config;

const ABOUT: About = About {
    name: "im-task",
    summary: "ringchat's task service: fan-out to large groups and the world room, offline push",
    details: "Consumes im-task-topic as group im-task from [bus] url; reaches im-repo at [task] repo_url;\n\
              pushes through [task] notifier (log or webhook).",
};

fn main() -> anyhow::Result<()> {
    let path = bootstrap::config_path_from_args(&ABOUT);
    bootstrap::init_logging();
    let config = bootstrap::load_config(path.as_deref())?;
    let rt = bootstrap::build_runtime(&config, "im-task")?;
    rt.block_on(async move {
        let store = Arc::new(GrpcStore::connect_lazy(&config.task.repo_url)?);
        let ports = ports_from_config(&config, Some(store)).await?;
        let task = Arc::new(im_task::TaskService::new(ports, config.task.fanout_batch));
        let (stop, signal) = Shutdown::new();
        let worker = tokio::spawn(im_task::run(task, signal));
        tracing::info!(notifier = %config.task.notifier, "im-task running");
        bootstrap::shutdown_signal().await;
        stop.trigger();
        let _ = worker.await;
        tracing::info!("im-task stopped");
        Ok(())
    })
}
