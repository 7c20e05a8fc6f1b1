//! im-repo: serves the message store over gRPC.

use std::sync::Arc;

use anyhow::Context;
use ringchat_core::bootstrap::{self, About};
use ringchat_core::model::REPO_SERVICE;
use ringchat_core::shutdown::Shutdown;
use ringchat_observe::admin::{self, Admin};
use ringchat_observe::grpc::GrpcMetrics;
use ringchat_observe::Metrics;

const ABOUT: About = About {
    name: "im-repo",
    summary: "ringchat's persistence service: users, conversations, groups, messages (gRPC)",
    details: "Listens on [repo] listen (default 127.0.0.1:9002), health and metrics on [repo] admin_listen\n\
              (default 127.0.0.1:9102: /healthz, /readyz, /metrics); stores in [store] url (sqlite:// or\n\
              mysql://, with an optional [store] read_url replica). With etcd discovery it registers as\n\
              im-repo at http://[node] advertise_host:<port>. Every im-repo of a deployment needs its own\n\
              [node] worker_id (message ids) and [node] id.",
};

fn main() -> anyhow::Result<()> {
    let path = bootstrap::config_path_from_args(&ABOUT);
    let config = bootstrap::load_config(path.as_deref())?;
    bootstrap::init_logging(&config.log);
    let rt = bootstrap::build_runtime(&config, "im-repo")?;
    rt.block_on(async move {
        let store = ringchat_wiring::store(&config)
            .await
            .context("opening the store")?;
        let discovery = ringchat_wiring::discovery(&config).await?;
        let grpc = GrpcMetrics::new();
        let mut metrics = Metrics::for_service("im-repo", &config.node.id);
        grpc.register(&mut metrics);
        let admin = Admin::new(Arc::new(metrics))
            .store(store.clone())
            .discovery(discovery.clone(), REPO_SERVICE);
        let (stop, signal) = Shutdown::new();
        admin::start(&config.repo.admin_listen, admin, signal.clone().into_future()).await?;
        // the log level follows etcd (`{prefix}/config/log.level`)
        tokio::spawn(ringchat_core::dynamic::follow(
            discovery.clone(),
            vec![Arc::new(bootstrap::LogLevel)],
            signal,
        ));
        let listener = tokio::net::TcpListener::bind(&config.repo.listen)
            .await
            .with_context(|| format!("binding {}", config.repo.listen))?;
        let me = ringchat_wiring::advertised(&config, REPO_SERVICE, listener.local_addr()?);
        discovery.register(&me).await?;
        tracing::info!(addr = %listener.local_addr()?, advertised = %me.addr, store = %config.store.url, "im-repo serving");
        let served = im_repo::serve_with(store, listener, &grpc, bootstrap::shutdown_signal()).await;
        stop.trigger();
        served?;
        discovery.deregister(&me).await?;
        tracing::info!("im-repo stopped");
        Ok(())
    })
}
