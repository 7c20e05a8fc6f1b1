//! `im-gateway`: the client-facing gateway of the distributed profile. Its monoio cores
//! serve the WebSocket and HTTP clients; its tokio side calls im-logic over gRPC, publishes
//! client sends to the bus and consumes `im-downstream-topic-{node.id}`.

use std::sync::Arc;

use im_gateway::config::Settings;
use im_gateway::server::{Backend, Gateway};
use im_logic::GrpcLogic;
use ringchat_core::bootstrap::{self, About};
use ringchat_core::model::LOGIC_SERVICE;

#[global_allocator]
static GLOBAL: im_gateway::alloc::MiMalloc = im_gateway::alloc::MiMalloc;

const ABOUT: About = About {
    name: "im-gateway",
    summary: "ringchat's gateway (distributed profile): client HTTP + WebSocket on monoio cores",
    details: "Serves the client API on [gateway] listen (default 0.0.0.0:8080) and health/metrics on\n\
              [gateway] admin_listen (default 127.0.0.1:8081). Publishes client sends to im-upstream-topic\n\
              and consumes im-downstream-topic-<[node] id> on [bus] url (kafka://...); registers as\n\
              im-gateway in [discovery] url (etcd://...) and reaches im-logic through it (balanced),\n\
              or at [gateway] logic_url with static discovery. Every gateway needs its own [node] id.\n\
              SIGINT/SIGTERM drain and close the clients with 1001.",
};

fn main() -> anyhow::Result<()> {
    im_gateway::alloc::give_back_freed_memory();
    let path = bootstrap::config_path_from_args(&ABOUT);
    let Settings { config, gateway } =
        Settings::from_config(bootstrap::load_config(path.as_deref())?)?;
    bootstrap::init_logging(&config.log);
    let rt = bootstrap::build_runtime(&config, "im-gateway-side")?;
    rt.block_on(async move {
        let discovery = ringchat_wiring::discovery(&config).await?;
        let bus = ringchat_wiring::bus(&config).await?;
        let channel = ringchat_wiring::service_channel(
            &config,
            discovery.clone(),
            LOGIC_SERVICE,
            &gateway.logic_url,
        )?;
        let gateway = Gateway::start(
            &gateway,
            &config.node.id,
            Backend {
                runtime: tokio::runtime::Handle::current(),
                logic: Arc::new(GrpcLogic::from_channel(channel)),
                bus,
                discovery,
                metrics: ringchat_observe::Metrics::new(),
            },
        )
        .await?;
        tracing::info!(
            id = %config.node.id,
            "im-gateway is up: API http://{}/api, admin http://{}/readyz",
            gateway.addr,
            gateway.admin_addr
        );
        bootstrap::shutdown_signal().await;
        gateway.shutdown().await;
        Ok(())
    })
}
