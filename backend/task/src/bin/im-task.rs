//! im-task: large-group and world fan-out, offline push.

use std::sync::Arc;

use im_repo::GrpcStore;
use ringchat_core::bootstrap::{self, About};
use ringchat_core::model::{REPO_SERVICE, TASK_SERVICE};
use ringchat_core::ports::Instance;
use ringchat_core::shutdown::Shutdown;
use ringchat_observe::admin::{self, Admin};
use ringchat_observe::Metrics;

const ABOUT: About = About {
    name: "im-task",
    summary: "ringchat's task service: fan-out to large groups and the world room, offline push",
    details: "Consumes im-task-topic as group im-task from [bus] url (memory:// or kafka://); reaches\n\
              im-repo through discovery (etcd://, balanced) or at [task] repo_url (static discovery);\n\
              pushes through [task] notifier (log or webhook). Health and metrics on [task] admin_listen\n\
              (default 127.0.0.1:9103: /healthz, /readyz, /metrics).",
};

fn main() -> anyhow::Result<()> {
    let path = bootstrap::config_path_from_args(&ABOUT);
    let config = bootstrap::load_config(path.as_deref())?;
    bootstrap::init_logging(&config.log);
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
        let task = Arc::new(im_task::TaskService::new(
            ports.clone(),
            config.task.fanout_batch,
        ));
        let mut metrics = Metrics::for_service("im-task", &config.node.id);
        metrics.ports(&ports);
        im_task::metrics::register(&task, &mut metrics);
        let admin = Admin::new(Arc::new(metrics)).ports(&ports, TASK_SERVICE);
        let (stop, signal) = Shutdown::new();
        admin::start(
            &config.task.admin_listen,
            admin,
            signal.clone().into_future(),
        )
        .await?;
        // the log level follows etcd (`{prefix}/config/log.level`)
        tokio::spawn(ringchat_core::dynamic::follow(
            discovery.clone(),
            vec![Arc::new(bootstrap::LogLevel)],
            signal.clone(),
        ));
        let worker = tokio::spawn(im_task::run(task, signal));
        // listed in discovery (it serves no gRPC port) so operators see it live
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
