//! The embedded profile: all four services in one process. The backend (im-logic,
//! im-repo's store, im-task) runs on a tokio runtime with the in-process adapters; the
//! gateway cores run on their own monoio threads and reach the backend through the bridge.

use std::sync::Arc;

use im_logic::{consumer, LogicService};
use ringchat_core::shutdown::{Shutdown, ShutdownSignal};
use ringchat_core::{Config, Ports};

use crate::config::GatewayConfig;
use crate::server::{Backend, Gateway};

/// A running embedded system.
pub struct Embedded {
    pub gateway: Gateway,
    pub ports: Ports,
    pub logic: Arc<LogicService>,
    backend_stop: Shutdown,
    workers: Vec<tokio::task::JoinHandle<ringchat_core::Result<()>>>,
}

impl Embedded {
    /// Starts the backend on the current tokio runtime and the gateway beside it.
    /// Without a configured `auth.jwt_secret`, the data directory's own is used (made on
    /// first start).
    pub async fn start(config: &Config) -> anyhow::Result<Embedded> {
        let config = ringchat_embedded::with_embedded_secret(config)?;
        let ports = ringchat_wiring::embedded(&config).await?;
        Self::start_with(&config, ports).await
    }

    /// As [`Embedded::start`], with ports chosen by the caller (tests swap the notifier).
    pub async fn start_with(config: &Config, ports: Ports) -> anyhow::Result<Embedded> {
        let gateway_config = GatewayConfig::from_config(config)?;
        let logic = Arc::new(LogicService::new(config, ports.clone())?);
        let revoked = logic.load_revocations().await?;
        if revoked > 0 {
            tracing::info!(revoked, "token revocations in force");
        }
        let (backend_stop, signal) = Shutdown::new();
        let mut workers = consumer::spawn_upstream_consumers(
            &logic,
            config.logic.upstream_consumers,
            config.logic.append_batch,
            config.logic.retry_budget(),
            &signal,
        );
        let task = Arc::new(im_task::TaskService::new(
            ports.clone(),
            config.task.fanout_batch,
        ));
        // dynamic settings (StaticDiscovery's set_config in one process)
        let follow = ringchat_core::dynamic::follow(
            ports.discovery.clone(),
            vec![logic.clone() as Arc<dyn ringchat_core::dynamic::Reconfigure>],
            signal.clone(),
        );
        workers.push(tokio::spawn(async move {
            follow.await;
            Ok(())
        }));
        // the backend's figures, served on the gateway's admin port with its own
        let mut metrics = ringchat_observe::Metrics::new();
        im_logic::metrics::register(&mut metrics);
        im_task::metrics::register(&task, &mut metrics);
        metrics.cache_health(ports.cache_health.clone());
        workers.push(tokio::spawn(im_task::run(task, signal)));
        let gateway = Gateway::start(
            &gateway_config,
            &config.node.id,
            Backend {
                runtime: tokio::runtime::Handle::current(),
                logic: logic.clone(),
                bus: ports.bus.clone(),
                discovery: ports.discovery.clone(),
                metrics,
            },
        )
        .await?;
        Ok(Embedded {
            gateway,
            ports,
            logic,
            backend_stop,
            workers,
        })
    }

    /// Runs until `signal` fires, then shuts down gracefully.
    pub async fn run_until(self, mut signal: ShutdownSignal) {
        signal.wait().await;
        self.shutdown().await;
    }

    /// Gateway first (drain, wait for acks, close sockets with 1001), then the backend.
    pub async fn shutdown(self) {
        self.gateway.shutdown().await;
        self.backend_stop.trigger();
        for w in self.workers {
            let _ = w.await;
        }
        tracing::info!("backend stopped");
    }
}
