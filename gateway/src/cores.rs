//! A gateway core: one monoio thread that owns its connections, its slice of the
//! user -> connections index and their send queues. Nothing here is shared with other
//! cores; the only way in is the core's bounded inbox channel.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::GatewayConfig;
use monoio::io::{CancelHandle, Canceller};
use ringchat_core::ErrorCode;
use ringchat_proto as pb;
use tokio::sync::mpsc;

use crate::bridge::Bridge;
use crate::channels::{CoreMsg, DirEvent, DispatchMsg, CORE_SHIFT};
use crate::conn::Conn;
use crate::frame;
use crate::limits::{Limits, QuietLog};
use crate::metrics::{CoreMetrics, GatewayMetrics};
use crate::protocol::ServerEvent;
use crate::signal::LocalSignal;

pub struct Core {
    pub index: usize,
    pub gateway_id: String,
    pub config: Rc<GatewayConfig>,
    pub bridge: Bridge,
    pub metrics: Arc<CoreMetrics>,
    pub gateway_metrics: Arc<GatewayMetrics>,
    /// The registry the admin port serves (`/metrics`).
    pub exported: Arc<ringchat_observe::Metrics>,
    pub dir_tx: mpsc::Sender<DispatchMsg>,
    pub upstream_tx: mpsc::Sender<pb::UpstreamMessage>,
    /// Caps on connections and requests, shared by all cores.
    pub limits: Arc<Limits>,
    /// Accept failures and refusals, logged at most once a second.
    pub accept_log: QuietLog,
    /// No new connections or sends: the gateway is shutting down.
    pub draining: Cell<bool>,
    accept_cancel: RefCell<Option<Canceller>>,
    conns: RefCell<HashMap<u64, Rc<Conn>>>,
    /// Set whenever the last connection goes.
    no_conns: LocalSignal,
    by_user: RefCell<HashMap<i64, Vec<Rc<Conn>>>>,
    next_conn: Cell<u64>,
    /// What every connection of this core reads into (`gateway.read_buffer_bytes`); used
    /// only between a socket's readiness and the parse, never across an await.
    read_buffer: RefCell<Box<[u8]>>,
}

/// What a core is built from (everything here is `Send`: it crosses into the core's thread).
pub struct CoreDeps {
    pub index: usize,
    pub gateway_id: String,
    pub config: GatewayConfig,
    pub bridge: Bridge,
    pub gateway_metrics: Arc<GatewayMetrics>,
    pub exported: Arc<ringchat_observe::Metrics>,
    pub dir_tx: mpsc::Sender<DispatchMsg>,
    pub upstream_tx: mpsc::Sender<pb::UpstreamMessage>,
    pub limits: Arc<Limits>,
}

impl Core {
    pub fn new(d: CoreDeps) -> Rc<Core> {
        let read_buffer = RefCell::new(vec![0; d.config.read_buffer_bytes].into_boxed_slice());
        Rc::new(Core {
            index: d.index,
            gateway_id: d.gateway_id,
            config: Rc::new(d.config),
            bridge: d.bridge,
            metrics: d.gateway_metrics.cores[d.index].clone(),
            gateway_metrics: d.gateway_metrics,
            exported: d.exported,
            dir_tx: d.dir_tx,
            upstream_tx: d.upstream_tx,
            limits: d.limits,
            accept_log: QuietLog::new(Duration::from_secs(1)),
            draining: Cell::new(false),
            accept_cancel: RefCell::new(Some(Canceller::new())),
            conns: RefCell::new(HashMap::new()),
            no_conns: LocalSignal::default(),
            by_user: RefCell::new(HashMap::new()),
            next_conn: Cell::new(1),
            read_buffer,
        })
    }

    /// Lends the core's read buffer (see [`crate::ws`]).
    pub fn with_read_buffer<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        f(&mut self.read_buffer.borrow_mut())
    }

    /// The handle accept loops pass to `cancelable_accept`; None once draining.
    pub fn accept_handle(&self) -> Option<CancelHandle> {
        self.accept_cancel.borrow().as_ref().map(Canceller::handle)
    }

    fn next_conn_id(&self) -> u64 {
        let n = self.next_conn.get();
        self.next_conn.set(n + 1);
        ((self.index as u64) << CORE_SHIFT) | (n & ((1 << CORE_SHIFT) - 1))
    }

    /// Adds a connection for `user`, opened with the token `token_tag` names; tells the
    /// dispatcher when it is the user's first here.
    pub async fn register(&self, user: pb::User, token_tag: u64, expires_at: i64) -> Rc<Conn> {
        let conn = Conn::new(
            self.next_conn_id(),
            user,
            token_tag,
            expires_at,
            self.config.send_queue_frames,
            self.config.send_queue_bytes,
            self.metrics.clone(),
        );
        let first = {
            let mut by_user = self.by_user.borrow_mut();
            let list = by_user.entry(conn.user_id()).or_default();
            list.push(conn.clone());
            list.len() == 1
        };
        self.conns.borrow_mut().insert(conn.id, conn.clone());
        self.metrics.connections.fetch_add(1, Relaxed);
        self.metrics.connections_total.fetch_add(1, Relaxed);
        if first {
            let _ = self
                .dir_tx
                .send(DispatchMsg::Dir(DirEvent::Up {
                    user_id: conn.user_id(),
                    core: self.index,
                }))
                .await;
        }
        conn
    }

    pub async fn unregister(&self, conn: &Rc<Conn>) {
        if self.conns.borrow_mut().remove(&conn.id).is_none() {
            return;
        }
        if self.conns.borrow().is_empty() {
            self.no_conns.notify();
        }
        self.metrics.connections.fetch_sub(1, Relaxed);
        let last = {
            let mut by_user = self.by_user.borrow_mut();
            match by_user.get_mut(&conn.user_id()) {
                Some(list) => {
                    list.retain(|c| c.id != conn.id);
                    if list.is_empty() {
                        by_user.remove(&conn.user_id());
                        true
                    } else {
                        false
                    }
                }
                None => false,
            }
        };
        if last {
            let _ = self
                .dir_tx
                .send(DispatchMsg::Dir(DirEvent::Down {
                    user_id: conn.user_id(),
                    core: self.index,
                }))
                .await;
        }
    }

    pub fn conn(&self, id: u64) -> Option<Rc<Conn>> {
        self.conns.borrow().get(&id).cloned()
    }

    pub fn connection_count(&self) -> usize {
        self.conns.borrow().len()
    }

    /// Resolves once this core has no connection.
    pub async fn all_closed(&self) {
        while self.connection_count() > 0 {
            self.no_conns.wait().await;
        }
    }

    fn handle(&self, msg: CoreMsg) {
        match msg {
            CoreMsg::Deliver {
                frame,
                users,
                exclude,
            } => {
                let by_user = self.by_user.borrow();
                let mut n = 0;
                for u in users.iter() {
                    if let Some(list) = by_user.get(u) {
                        for c in list {
                            if c.id != exclude && c.push(frame.clone()) {
                                n += 1;
                            }
                        }
                    }
                }
                self.metrics.deliveries.fetch_add(n, Relaxed);
            }
            CoreMsg::Broadcast { frame, exclude } => {
                let conns = self.conns.borrow();
                let mut n = 0;
                for c in conns.values() {
                    if c.id != exclude && c.push(frame.clone()) {
                        n += 1;
                    }
                }
                self.metrics.deliveries.fetch_add(n, Relaxed);
            }
            CoreMsg::ToConn { conn_id, frame } => {
                if let Some(c) = self.conn(conn_id) {
                    c.push(frame);
                }
            }
            CoreMsg::Revoke { user_id, token_tag } => {
                let by_user = self.by_user.borrow();
                let revoked = by_user
                    .get(&user_id)
                    .into_iter()
                    .flatten()
                    .filter(|c| c.token_tag == token_tag);
                for c in revoked {
                    c.push(
                        ServerEvent::error(
                            ErrorCode::AuthFailed,
                            "logged out: this token is revoked",
                        )
                        .encode(),
                    );
                    c.close(frame::code::AUTH_FAILED, "logged out", true);
                }
            }
            CoreMsg::RefreshPresence => self.refresh_presence(),
            CoreMsg::Drain => {
                self.draining.set(true);
                if let Some(c) = self.accept_cancel.borrow_mut().take() {
                    let _ = c.cancel();
                }
            }
            CoreMsg::CloseAll => {
                self.handle(CoreMsg::Drain);
                let conns: Vec<Rc<Conn>> = self.conns.borrow().values().cloned().collect();
                for c in conns {
                    c.close(frame::code::GOING_AWAY, "server shutting down", true);
                }
            }
        }
    }

    /// Runs the inbox until the dispatcher goes away.
    pub async fn run_inbox(self: Rc<Self>, mut rx: mpsc::Receiver<CoreMsg>) {
        let mut buf = Vec::with_capacity(256);
        while rx.recv_many(&mut buf, 256).await > 0 {
            for msg in buf.drain(..) {
                self.handle(msg);
            }
            // one write per connection for the whole batch
            crate::conn::flush_dirty();
        }
    }

    /// Closes connections that stayed silent past the heartbeat timeout; pings the idle
    /// ones (browsers answer pings by themselves, which counts as life).
    pub async fn run_heartbeat(self: Rc<Self>) {
        let timeout = Duration::from_secs(self.config.heartbeat_timeout_secs);
        let every = (timeout / 3).clamp(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            monoio::time::sleep(every).await;
            let now = Instant::now();
            let now_secs = ringchat_core::ids::now_ms() / 1000;
            let conns: Vec<Rc<Conn>> = self.conns.borrow().values().cloned().collect();
            for c in conns {
                let idle = c.idle_for(now);
                if c.expires_at <= now_secs {
                    // a token is checked at the upgrade and lives no longer than it says
                    c.push(
                        ServerEvent::error(ErrorCode::AuthFailed, "token expired: log in again")
                            .encode(),
                    );
                    c.close(frame::code::AUTH_FAILED, "token expired", true);
                } else if idle >= timeout {
                    self.metrics.heartbeat_closes.fetch_add(1, Relaxed);
                    c.close(frame::code::GOING_AWAY, "heartbeat timeout", false);
                } else if idle >= timeout / 3 {
                    c.push(frame::ping());
                }
            }
        }
    }

    /// Refreshes the presence entries of this core's connections in the cache.
    pub async fn run_presence_refresh(self: Rc<Self>) {
        let every = Duration::from_secs(self.config.presence_refresh_secs);
        loop {
            monoio::time::sleep(every).await;
            self.refresh_presence();
        }
    }

    /// Reports every connection of this core to the presence cache (through im-logic).
    pub fn refresh_presence(&self) {
        {
            let entries: Vec<pb::HeartbeatEntry> = self
                .conns
                .borrow()
                .values()
                .map(|c| pb::HeartbeatEntry {
                    user_id: c.user_id(),
                    conn_id: c.id,
                })
                .collect();
            if entries.is_empty() {
                return;
            }
            let gateway_id = self.gateway_id.clone();
            self.bridge
                .spawn("presence refresh", move |logic| async move {
                    logic
                        .heartbeat(pb::HeartbeatRequest {
                            gateway_id,
                            entries,
                        })
                        .await
                });
        }
    }
}
