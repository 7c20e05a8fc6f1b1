//! `ringchat`: the whole IM system in one process (embedded profile).

use im_gateway::config::Settings;
use im_gateway::embedded::Embedded;
use ringchat_core::bootstrap::{self, About};
use ringchat_core::shutdown::Shutdown;

#[global_allocator]
static GLOBAL: im_gateway::alloc::MiMalloc = im_gateway::alloc::MiMalloc;

const ABOUT: About = About {
    name: "ringchat",
    summary: "ringchat IM server, embedded profile: gateway, logic, repo and task in one process",
    details: "Serves the client API (HTTP + WebSocket) on [gateway] listen (default 0.0.0.0:8080) and\n\
              health/metrics on [gateway] admin_listen (default 127.0.0.1:8081). Data goes to [store] url\n\
              (default sqlite://data/ringchat.db). SIGINT/SIGTERM shut down gracefully.",
};

fn main() -> anyhow::Result<()> {
    im_gateway::alloc::give_back_freed_memory();
    let path = bootstrap::config_path_from_args(&ABOUT);
    // the [gateway] section is validated now, before anything starts
    let Settings { config, .. } = Settings::from_config(bootstrap::load_config(path.as_deref())?)?;
    bootstrap::init_logging(&config.log);
    let rt = bootstrap::build_runtime(&config, "ringchat-backend")?;
    rt.block_on(async move {
        let system = Embedded::start(&config).await?;
        let (http, admin) = (system.gateway.addr, system.gateway.admin_addr);
        tracing::info!(
            "ringchat is up: API http://{http}/api, WebSocket ws://{http}/ws?token=<jwt>"
        );
        tracing::info!(
            "admin: http://{admin}/healthz  http://{admin}/readyz  http://{admin}/metrics"
        );
        let (stop, signal) = Shutdown::new();
        tokio::spawn(async move {
            bootstrap::shutdown_signal().await;
            stop.trigger();
        });
        system.run_until(signal).await;
        Ok(())
    })
}
