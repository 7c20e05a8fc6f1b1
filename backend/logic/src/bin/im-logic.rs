//! im-logic: the client API's rules over gRPC, and the upstream consumer.

use std::sync::Arc;

use anyhow::Context;
use im_logic::{consumer, LogicService};
use im_repo::GrpcStore;
use ringchat_core::bootstrap::{self, About};
use ringchat_core::shutdown::Shutdown;
use ringchat_core::wiring::ports_from_config;

const ABOUT: About = About {
    name: "im-logic",
    summary: "ringchat's logic service: auth, conversations, groups, message routing (gRPC)",
    details:
        "Listens on [logic] listen (default 127.0.0.1:9001), reaches im-repo at [logic] repo_url,\n\
              consumes im-upstream-topic as group im-logic from [bus] url.",
};

fn main() -> anyhow::Result<()> {
    let path = bootstrap::config_path_from_args(&ABOUT);
    bootstrap::init_logging();
    let config = bootstrap::load_config(path.as_deref())?;
    if !config.has_jwt_secret() {
        anyhow::bail!(
            "auth.jwt_secret is not set: im-logic signs and checks tokens with it, and every \
             im-logic of a deployment needs the same one (set RINGCHAT_AUTH__JWT_SECRET to at \
             least 16 random bytes)"
        );
    }
    let rt = bootstrap::build_runtime(&config, "im-logic")?;
    rt.block_on(async move {
        let store = Arc::new(GrpcStore::connect_lazy(&config.logic.repo_url)?);
        let ports = ports_from_config(&config, Some(store)).await?;
        let logic = Arc::new(LogicService::new(&config, ports)?);
        logic.load_revocations().await?;
        let (stop, signal) = Shutdown::new();
        let consumers = consumer::spawn_upstream_consumers(
            &logic,
            config.logic.upstream_consumers,
            config.logic.append_batch,
            config.logic.retry_budget(),
            &signal,
        );
        let listener = tokio::net::TcpListener::bind(&config.logic.listen)
            .await
            .with_context(|| format!("binding {}", config.logic.listen))?;
        tracing::info!(addr = %listener.local_addr()?, repo = %config.logic.repo_url, "im-logic serving");
        let server = im_logic::serve(logic, listener, bootstrap::shutdown_signal());
        server.await?;
        stop.trigger();
        for c in consumers {
            let _ = c.await;
        }
        tracing::info!("im-logic stopped");
        Ok(())
    })
}
