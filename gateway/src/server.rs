//! Starting and stopping the gateway: listeners, worker threads, the tokio side.
//!
//! **Accept model: one `SO_REUSEPORT` listener per core.** The kernel spreads incoming
//! connections over the cores' accept queues by 4-tuple hash, so a connection is accepted,
//! served and closed on one thread with no hand-off, and no core waits on another's
//! accept. The alternative, one acceptor handing sockets to cores, adds a cross-thread hop
//! per connection and a single accept bottleneck; its advantage (balancing by actual load)
//! matters little for long-lived, uniformly cheap WebSocket connections. The admin listener
//! is served by core 0 alone.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::config::GatewayConfig;
use im_logic::LogicApi;
use monoio::net::TcpListener;
use ringchat_core::model::GATEWAY_SERVICE;
use ringchat_core::ports::{Bus, Discovery, Instance};
use ringchat_core::shutdown::Shutdown;
use tokio::sync::mpsc;

use crate::admin::Admin;
use crate::api::Api;
use crate::bridge::Bridge;
use crate::channels::CoreMsg;
use crate::cores::{Core, CoreDeps};
use crate::dispatch;
use crate::http::{self, Routes};
use crate::limits::{self, Limits, Refused};
use crate::metrics::GatewayMetrics;

/// What the gateway needs from the rest of the system; all of it lives on the tokio side.
pub struct Backend {
    pub runtime: tokio::runtime::Handle,
    pub logic: Arc<dyn LogicApi>,
    pub bus: Arc<dyn Bus>,
    pub discovery: Arc<dyn Discovery>,
    /// What the admin port's `/metrics` serves beside the gateway's own figures (the
    /// embedded profile adds its backend's); the gateway adds its counters, the process's
    /// figures and its bus's consumer lag.
    pub metrics: ringchat_observe::Metrics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    IoUring,
    Legacy,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Legacy => "legacy",
        }
    }

    fn choose(wanted: &str) -> anyhow::Result<Driver> {
        let uring = monoio::utils::detect_uring();
        match (wanted, uring) {
            ("legacy", _) | ("auto", false) => Ok(Driver::Legacy),
            ("uring" | "auto", true) => Ok(Driver::IoUring),
            _ => anyhow::bail!("gateway.driver = uring, but this kernel has no usable io_uring"),
        }
    }
}

/// A running gateway.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub driver: Driver,
    pub metrics: Arc<GatewayMetrics>,
    pub gateway_id: String,
    core_txs: Vec<mpsc::Sender<CoreMsg>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    side: Shutdown,
    discovery: Arc<dyn Discovery>,
    instance: Instance,
    grace: Duration,
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<StdListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    Ok(s.into())
}

/// Binds `n` listeners on one address (port 0 picks a port, shared by all).
fn bind_all(addr: &str, n: usize) -> anyhow::Result<Vec<StdListener>> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| anyhow::anyhow!("listen address {addr:?}: {e}"))?;
    let first = reuseport_listener(addr).map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
    let actual = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(reuseport_listener(actual)?);
    }
    Ok(all)
}

impl Gateway {
    /// Binds the listeners and starts the cores and the tokio side. Returns once the
    /// gateway accepts connections.
    pub async fn start(
        config: &GatewayConfig,
        gateway_id: &str,
        backend: Backend,
    ) -> anyhow::Result<Gateway> {
        let workers = if config.workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(64)
        } else {
            config.workers
        };
        let driver = Driver::choose(&config.driver)?;
        let listeners = bind_all(&config.listen, workers)?;
        let admin = bind_all(&config.admin_listen, 1)?
            .pop()
            .expect("one admin listener");
        let addr = listeners[0].local_addr()?;
        let admin_addr = admin.local_addr()?;
        let metrics = Arc::new(GatewayMetrics::new(workers, driver.name(), gateway_id));
        let exported = {
            let mut m = backend.metrics;
            metrics.register(&mut m);
            m.process().bus_lag(backend.bus.clone());
            Arc::new(m)
        };
        let open_files = limits::raise_open_file_limit();
        let limits = Limits::new(config, open_files);
        tracing::info!(
            open_files,
            max_connections = limits.max_connections(),
            per_address = config.max_connections_per_ip,
            "connection caps"
        );
        let bridge = Bridge::new(backend.runtime.clone(), backend.logic.clone());
        let (side_stop, side_signal) = Shutdown::new();

        // the tokio side: dispatcher, downstream consumer, one publisher per core
        let (dispatch_tx, dispatch_rx) = mpsc::channel(16 * 1024);
        let mut core_txs = Vec::with_capacity(workers);
        let mut core_rxs = Vec::with_capacity(workers);
        let mut upstream_txs = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::channel(4096);
            core_txs.push(tx);
            core_rxs.push(rx);
        }
        let rt = &backend.runtime;
        for tx in &core_txs {
            let (up_tx, up_rx) = mpsc::channel(4096);
            upstream_txs.push(up_tx);
            rt.spawn(dispatch::run_upstream_publisher(
                backend.bus.clone(),
                up_rx,
                tx.clone(),
                metrics.clone(),
            ));
        }
        rt.spawn(dispatch::run_dispatcher(
            dispatch_rx,
            core_txs.clone(),
            metrics.clone(),
        ));
        rt.spawn(dispatch::run_downstream_consumer(
            backend.bus.clone(),
            gateway_id.to_string(),
            dispatch_tx.clone(),
            metrics.clone(),
            side_signal.clone(),
        ));
        // dynamic settings: the per-address and per-connection limits, the log level
        rt.spawn(ringchat_core::dynamic::follow(
            backend.discovery.clone(),
            vec![
                limits.clone() as Arc<dyn ringchat_core::dynamic::Reconfigure>,
                Arc::new(ringchat_core::bootstrap::LogLevel),
            ],
            side_signal,
        ));

        // the cores
        let mut threads = Vec::with_capacity(workers);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let mut admin = Some(admin);
        for (index, ((listener, inbox), upstream_tx)) in listeners
            .into_iter()
            .zip(core_rxs)
            .zip(upstream_txs)
            .enumerate()
        {
            let deps = CoreDeps {
                index,
                gateway_id: gateway_id.to_string(),
                config: config.clone(),
                bridge: bridge.clone(),
                gateway_metrics: metrics.clone(),
                exported: exported.clone(),
                dir_tx: dispatch_tx.clone(),
                upstream_tx,
                limits: limits.clone(),
            };
            let admin = if index == 0 { admin.take() } else { None };
            let ready = ready_tx.clone();
            let (pin, entries) = (config.pin_workers, config.uring_entries);
            let t = std::thread::Builder::new()
                .name(format!("gw-core-{index}"))
                .spawn(move || {
                    if pin {
                        let cpus = std::thread::available_parallelism()
                            .map(|n| n.get())
                            .unwrap_or(1);
                        if let Err(e) = monoio::utils::bind_to_cpu_set([index % cpus]) {
                            tracing::warn!(core = index, error = ?e, "cannot pin worker to a CPU");
                        }
                    }
                    run_core(driver, entries, deps, listener, admin, inbox, ready);
                })?;
            threads.push(t);
        }
        drop(ready_tx);
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for _ in 0..workers {
                ready_rx
                    .recv()
                    .map_err(|_| anyhow::anyhow!("a gateway core died while starting"))??;
            }
            Ok(())
        })
        .await??;

        let instance = Instance {
            service: GATEWAY_SERVICE.into(),
            id: gateway_id.to_string(),
            addr: addr.to_string(),
        };
        let discovery = backend.discovery.clone();
        // registration is what makes im-task send world-room broadcasts here
        discovery.register(&instance).await?;
        tracing::info!(
            %addr, %admin_addr, cores = workers, driver = driver.name(), gateway_id,
            "gateway listening"
        );
        Ok(Gateway {
            addr,
            admin_addr,
            driver,
            metrics,
            gateway_id: gateway_id.to_string(),
            core_txs,
            threads,
            side: side_stop,
            discovery,
            instance,
            grace: Duration::from_secs(config.shutdown_grace_secs),
        })
    }

    /// Graceful shutdown: stop accepting connections and sends, wait (up to the grace
    /// period) until every send already published is acknowledged, flush every queue and
    /// close every WebSocket with 1001, then stop the cores and the tokio side.
    pub async fn shutdown(self) {
        tracing::info!(gateway_id = %self.gateway_id, "gateway draining");
        let _ = self.discovery.deregister(&self.instance).await;
        for tx in &self.core_txs {
            let _ = tx.send(CoreMsg::Drain).await;
        }
        let deadline = tokio::time::Instant::now() + self.grace;
        while self.metrics.pending_sends.load(Relaxed) > 0 && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let pending = self.metrics.pending_sends.load(Relaxed);
        if pending > 0 {
            tracing::warn!(
                pending,
                "shutting down with unacknowledged sends (clients will resend)"
            );
        }
        for tx in &self.core_txs {
            let _ = tx.send(CoreMsg::CloseAll).await;
        }
        let threads = self.threads;
        let deadline = tokio::time::Instant::now() + self.grace;
        while threads.iter().any(|t| !t.is_finished()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(self.core_txs);
        self.side.trigger();
        tracing::info!("gateway stopped");
    }
}

fn run_core(
    driver: Driver,
    entries: u32,
    deps: CoreDeps,
    listener: StdListener,
    admin: Option<StdListener>,
    inbox: mpsc::Receiver<CoreMsg>,
    ready: std::sync::mpsc::Sender<anyhow::Result<()>>,
) {
    let index = deps.index;
    let fut = async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(anyhow::anyhow!("core {index}: {e}")));
                return;
            }
        };
        let admin = match admin.map(TcpListener::from_std).transpose() {
            Ok(a) => a,
            Err(e) => {
                let _ = ready.send(Err(anyhow::anyhow!("core {index} admin: {e}")));
                return;
            }
        };
        let core = Core::new(deps);
        // The core's long-lived loops run inside this future, not as detached tasks: monoio
        // keeps no list of its tasks, so a task parked on a waker that points back at
        // itself (a channel it owns) would outlive the thread and leak everything it holds
        // (the backend, the store and its data-directory lock). Here they end with the
        // core: when serving ends, the select drops them.
        let background = async {
            let admin = async {
                if let Some(admin) = admin {
                    accept_loop(core.clone(), admin, Admin).await;
                }
                std::future::pending::<()>().await
            };
            // each runs until the core stops (the inbox until the dispatcher goes away)
            race(
                race(core.clone().run_inbox(inbox), core.clone().run_heartbeat()),
                race(
                    race(core.clone().run_presence_refresh(), admin),
                    crate::conn::run_flusher(),
                ),
            )
            .await;
        };
        let serving = async {
            let _ = ready.send(Ok(()));
            tracing::debug!(core = index, "core accepting");
            accept_loop(core.clone(), listener, Api).await;
            // draining: wait for the connections to close (the shutdown closes them)
            core.all_closed().await;
        };
        race(serving, background).await;
    };
    let result = match driver {
        #[cfg(target_os = "linux")]
        Driver::IoUring => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(entries)
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(fut)),
        _ => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(fut)),
    };
    if let Err(e) = result {
        tracing::error!(core = index, error = %e, "cannot build the core's runtime");
    }
}

/// Answers a connection over a cap with a 503 and closes it, quickly: the client learns
/// why, and the descriptor is free again at once.
fn refuse(
    core: &Core,
    mut stream: monoio::net::TcpStream,
    peer: std::net::SocketAddr,
    why: Refused,
) {
    use monoio::io::AsyncWriteRentExt;
    core.metrics.connections_refused.fetch_add(1, Relaxed);
    if let Some(suppressed) = core.accept_log.allow() {
        tracing::warn!(core = core.index, %peer, ?why, suppressed, "connection refused at the cap");
    }
    let message = match why {
        Refused::Full => "the server is at its connection limit: retry shortly",
        Refused::TooManyFromAddress => "too many connections from your address",
    };
    let resp = http::Response::error(&ringchat_core::Error::new(
        ringchat_core::ErrorCode::Unavailable,
        message,
    ))
    .encode(&[], false);
    monoio::spawn(async move {
        let _ = monoio::time::timeout(Duration::from_secs(1), stream.write_all(resp)).await;
    });
}

/// Runs both futures until either finishes, then drops the other. (No select over I/O is
/// involved: a dropped accept is cancelled by monoio, losing nothing.)
async fn race(a: impl std::future::Future<Output = ()>, b: impl std::future::Future<Output = ()>) {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    std::future::poll_fn(|cx| {
        if a.as_mut().poll(cx).is_ready() || b.as_mut().poll(cx).is_ready() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

async fn accept_loop<R: Routes>(core: Rc<Core>, listener: TcpListener, routes: R) {
    loop {
        let Some(cancel) = core.accept_handle() else {
            return;
        };
        match listener.cancelable_accept(cancel).await {
            Ok((stream, peer)) => {
                // the admin port is not counted: it must answer when the public one is full
                let slot = if R::PUBLIC {
                    match core.limits.admit(peer.ip()) {
                        Ok(slot) => Some(slot),
                        Err(why) => {
                            refuse(&core, stream, peer, why);
                            continue;
                        }
                    }
                } else {
                    None
                };
                monoio::spawn(http::serve_conn(core.clone(), stream, peer, routes, slot));
            }
            Err(e) => {
                if core.draining.get() {
                    return;
                }
                // EMFILE and friends: back off instead of spinning
                if let Some(suppressed) = core.accept_log.allow() {
                    tracing::warn!(core = core.index, error = %e, suppressed, "accept failed");
                }
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
