//! im-task: large-group and world fan-out, offline push.

use std::sync::Arc;

use im_repo::GrpcStore;
use ringchat_core::bootstrap::{self, About};
use ringchat_core::model::{REPO_SERVICE, TASK_SERVICE};
use ringchat_core::ports::Instance;
use ringchat_core::shutdown::Shutdown;

const ABOUT: About = About {
    name: "im-task",
    summary: "ringchat's task service: fan-out to large groups and the world room, offline push",
    details: "Consumes im-task-topic as group im-task from [bus] url (memory:// or kafka://); reaches\n\
              im-repo through discovery (etcd://, balanced) or at [task] repo_url (static discovery);\n\
              pushes through [task] notifier (log or webhook).",
};

fn main() -> anyhow::Result<()> {
    let path = bootstrap::config_path_from_args(&ABOUT);
    bootstrap::init_logging();
    let config = bootstrap::load_config(path.as_deref())?;
    let rt = bootstrap::build_runtime(&config, "im-task")?;
    rt.block_on(async move {
        let discovery = ringchat_wiring::discovery(&config).await?;
        let repo = ringchat_wiring::service_channel(
            &config,
            discovery.clone(),
            REPO_SERVICE,
            &config.task.repo_url,
        )?;
        let store = Arc::new(GrpcStore::from_channel(repo));
        let ports = ringchat_wiring::ports_with(&config, store, discovery.clone()).await?;
        let task = Arc::new(im_task::TaskService::new(ports, config.task.fanout_batch));
        let (stop, signal) = Shutdown::new();
        let worker = tokio::spawn(im_task::run(task, signal));
        // listed in discovery (it serves no port) so operators see it live
        let me = Instance {
            service: TASK_SERVICE.into(),
            id: config.node.id.clone(),
            addr: String::new(),
        };
        discovery.register(&me).await?;
        tracing::info!(notifier = %config.task.notifier, bus = %config.bus.url, "im-task running");
        bootstrap::shutdown_signal().await;
        let _ = discovery.deregister(&me).await;
        stop.trigger();
        let _ = worker.await;
        tracing::info!("im-task stopped");
        Ok(())
    })
}
