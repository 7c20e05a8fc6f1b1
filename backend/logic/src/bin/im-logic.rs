//! im-logic: the client API's rules over gRPC, and the upstream consumer.

use std::sync::Arc;

use anyhow::Context;
use im_logic::{consumer, LogicService};
use im_repo::GrpcStore;
use ringchat_core::bootstrap::{self, About};
use ringchat_core::model::{LOGIC_SERVICE, REPO_SERVICE};
use ringchat_core::shutdown::Shutdown;
use ringchat_observe::admin::{self, Admin};
use ringchat_observe::grpc::GrpcMetrics;
use ringchat_observe::Metrics;

const ABOUT: About = About {
    name: "im-logic",
    summary: "ringchat's logic service: auth, conversations, groups, message routing (gRPC)",
    details:
        "Listens on [logic] listen (default 127.0.0.1:9001), health and metrics on [logic]\n\
         admin_listen (default 127.0.0.1:9101: /healthz, /readyz, /metrics), and consumes\n\
         im-upstream-topic as group im-logic from [bus] url (memory:// or kafka://). Reaches im-repo\n\
         through discovery ([discovery] url = etcd://..., balanced over the live instances) or at\n\
         [logic] repo_url (static discovery). Needs [auth] jwt_secret, the same in every im-logic.",
};

fn main() -> anyhow::Result<()> {
    let path = bootstrap::config_path_from_args(&ABOUT);
    let config = bootstrap::load_config(path.as_deref())?;
    bootstrap::init_logging(&config.log);
    if !config.has_jwt_secret() {
        anyhow::bail!(
            "auth.jwt_secret is not set: im-logic signs and checks tokens with it, and every \
             im-logic of a deployment needs the same one (set RINGCHAT_AUTH__JWT_SECRET to at \
             least 16 random bytes)"
        );
    }
    let rt = bootstrap::build_runtime(&config, "im-logic")?;
    rt.block_on(async move {
        let discovery = ringchat_wiring::discovery(&config).await?;
        let repo = ringchat_wiring::service_channel(
            &config,
            discovery.clone(),
            REPO_SERVICE,
            &config.logic.repo_url,
        )?;
        let store = Arc::new(GrpcStore::from_channel(repo));
        let ports = ringchat_wiring::ports_with(&config, store, discovery.clone()).await?;
        let grpc = GrpcMetrics::new();
        let mut metrics = Metrics::for_service("im-logic", &config.node.id);
        grpc.register(&mut metrics);
        metrics.ports(&ports);
        im_logic::metrics::register(&mut metrics);
        let admin = Admin::new(Arc::new(metrics)).ports(&ports, LOGIC_SERVICE);
        let logic = Arc::new(LogicService::new(&config, ports)?);
        logic.load_revocations().await?;
        let (stop, signal) = Shutdown::new();
        admin::start(
            &config.logic.admin_listen,
            admin,
            signal.clone().into_future(),
        )
        .await?;
        let consumers = consumer::spawn_upstream_consumers(
            &logic,
            config.logic.upstream_consumers,
            config.logic.append_batch,
            config.logic.retry_budget(),
            &signal,
        );
        // settings changed in etcd (`{prefix}/config/<key>`) apply without a restart
        let dynamic = tokio::spawn(ringchat_core::dynamic::follow(
            discovery.clone(),
            vec![
                logic.clone() as Arc<dyn ringchat_core::dynamic::Reconfigure>,
                Arc::new(bootstrap::LogLevel),
            ],
            signal.clone(),
        ));
        let resync = {
            let (logic, signal) = (logic.clone(), signal.clone());
            tokio::spawn(async move { logic.run_presence_resync(signal).await })
        };
        let listener = tokio::net::TcpListener::bind(&config.logic.listen)
            .await
            .with_context(|| format!("binding {}", config.logic.listen))?;
        let me = ringchat_wiring::advertised(&config, LOGIC_SERVICE, listener.local_addr()?);
        discovery.register(&me).await?;
        tracing::info!(addr = %listener.local_addr()?, advertised = %me.addr, "im-logic serving");
        let server = im_logic::serve_with(logic, listener, &grpc, bootstrap::shutdown_signal());
        let served = server.await;
        let _ = discovery.deregister(&me).await;
        stop.trigger();
        for c in consumers {
            let _ = c.await;
        }
        let _ = resync.await;
        let _ = dynamic.await;
        served?;
        tracing::info!("im-logic stopped");
        Ok(())
    })
}
