//! The [`Discovery`] port on etcd (distributed profile): service registration with a
//! lease, discovery from a watched local view, and dynamic configuration.
//!
//! Keys, all under a prefix (`/ringchat` by default) so deployments and tests can share
//! one etcd:
//! - `{prefix}/services/{service}/{id}`: an instance, JSON `{service, id, addr}`, attached
//!   to this process's lease (see `registry.rs`);
//! - `{prefix}/config/{key}`: a dynamic configuration value.
//!
//! Reads (`instances`, [`EtcdDiscovery::pick`], `config`, [`EtcdDiscovery::watch_config`])
//! are served from a local view that one watch keeps in step (see `view.rs`), so a
//! client-side balancer can ask on every call. A process sees its own writes: a read
//! after a write waits (briefly) for the view to reach that write's revision, and falls
//! back to reading etcd directly if the watch lags.
//!
//! The client is generated from etcd's protos (`proto/etcd/`) and speaks etcd's v3 API
//! as etcd 3.4 and later serve it.
#![forbid(unsafe_code)]

mod client;
mod registry;
mod view;

#[allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]
mod pb {
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ringchat_core::ports::{Discovery, Instance};
use ringchat_core::{Error, Result};
use tokio::task::JoinHandle;

use client::{to_error, Etcd};
use registry::Registry;
use view::{Keys, Record, View};

/// How long a read waits for the watch to deliver this process's own last write before
/// it reads etcd directly instead.
const OWN_WRITE_PATIENCE: Duration = Duration::from_secs(1);

/// The etcd adapter of the [`Discovery`] port.
///
/// Dropping it revokes its lease in the background (best effort: the runtime may be
/// going away); [`EtcdDiscovery::shutdown`] does it and waits.
pub struct EtcdDiscovery {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    /// Set once the lease needs no revoking at drop (shut down, or abandoned on purpose).
    closed: AtomicBool,
}

struct Shared {
    etcd: Etcd,
    keys: Keys,
    view: Arc<View>,
    registry: Arc<Registry>,
    /// The highest revision this process wrote under the prefix: reads wait for the view
    /// to reach it.
    written: AtomicI64,
}

impl std::fmt::Debug for EtcdDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdDiscovery")
            .field("prefix", &self.shared.keys.root)
            .field("lease", &self.shared.registry.lease().id)
            .finish_non_exhaustive()
    }
}

impl EtcdDiscovery {
    /// Connects to etcd at `endpoints` (`http://host:port`), reads everything under
    /// `prefix` and starts watching it. Instances this process registers live on one
    /// lease of `lease_ttl_secs` seconds, granted at the first registration. Fails as
    /// `UNAVAILABLE` when etcd does not answer.
    pub async fn connect(
        endpoints: &[String],
        prefix: &str,
        lease_ttl_secs: u64,
    ) -> Result<EtcdDiscovery> {
        let etcd = Etcd::new(endpoints)?;
        let keys = Keys::new(prefix);
        let view = Arc::new(View::new(keys.clone()));
        let (kvs, revision) = etcd.range_prefix(&keys.root).await.map_err(|s| {
            let mut e = to_error("connect", &s);
            e.message = format!("{} (endpoints: {})", e.message, endpoints.join(","));
            e
        })?;
        view.reset(&kvs, revision);
        let registry = Arc::new(Registry::new(etcd.clone(), lease_ttl_secs));
        let tasks = vec![
            tokio::spawn(view::sync(etcd.clone(), view.clone(), Some(revision))),
            tokio::spawn(registry::keep_alive(registry.clone())),
        ];
        tracing::info!(
            endpoints = %endpoints.join(","), prefix = %keys.root, revision,
            "etcd discovery connected"
        );
        Ok(EtcdDiscovery {
            shared: Arc::new(Shared {
                etcd,
                keys,
                view,
                registry,
                written: AtomicI64::new(0),
            }),
            tasks,
            closed: AtomicBool::new(false),
        })
    }

    /// The next live instance of `service`, round-robin over the live instances (from
    /// the local view: no call to etcd). `None` when there is none.
    pub fn pick(&self, service: &str) -> Option<Instance> {
        self.shared.view.pick(service)
    }

    /// Every `{prefix}/config/*` value (key without the prefix), updated as they change.
    pub fn watch_config(&self) -> tokio::sync::watch::Receiver<HashMap<String, String>> {
        self.shared.view.watch_config()
    }

    /// The lease this process's instances are attached to (0: none yet).
    pub fn lease_id(&self) -> i64 {
        self.shared.registry.lease().id
    }

    /// A clean exit: stops the watch and keep-alive and revokes the lease, so every
    /// instance registered here leaves discovery at once.
    pub async fn shutdown(&self) -> Result<()> {
        self.stop_tasks();
        self.closed.store(true, Ordering::SeqCst);
        self.shared
            .registry
            .revoke()
            .await
            .map_err(|s| to_error("lease revoke", &s))
    }

    /// Stops the keep-alive and the watch without revoking the lease, as if the process
    /// had been killed: its instances leave when the lease runs out. For tests.
    #[doc(hidden)]
    pub fn abandon(self) {
        self.closed.store(true, Ordering::SeqCst);
        self.stop_tasks();
    }

    fn stop_tasks(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }

    fn note_write(&self, revision: i64) {
        self.shared.written.fetch_max(revision, Ordering::SeqCst);
    }

    /// Whether the view holds this process's own writes (waiting a little if not).
    async fn view_is_current(&self) -> bool {
        let want = self.shared.written.load(Ordering::SeqCst);
        self.shared.view.caught_up(want, OWN_WRITE_PATIENCE).await
    }

    /// After a direct read at `revision`: a store whose revision is below one this
    /// process wrote at is a new cluster (etcd was replaced, its data lost). Its
    /// revisions start over, so the old writes must stop making reads wait.
    fn note_read(&self, revision: i64) {
        let written = &self.shared.written;
        let seen = written.load(Ordering::SeqCst);
        if revision < seen {
            tracing::warn!(
                revision,
                written = seen,
                "etcd revision went backwards: a new etcd cluster"
            );
            let _ = written.compare_exchange(seen, revision, Ordering::SeqCst, Ordering::SeqCst);
        }
    }
}

impl Drop for EtcdDiscovery {
    fn drop(&mut self) {
        self.stop_tasks();
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let registry = self.shared.registry.clone();
        if registry.lease().id == 0 {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = registry.revoke().await {
                    tracing::warn!(error = e.message(), "etcd lease revoke at drop failed");
                }
            });
        }
    }
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') {
        return Err(Error::invalid(format!(
            "discovery {what} {name:?}: must be non-empty, without '/'"
        )));
    }
    Ok(())
}

#[async_trait]
impl Discovery for EtcdDiscovery {
    fn config_updates(&self) -> Option<tokio::sync::watch::Receiver<HashMap<String, String>>> {
        Some(self.watch_config())
    }

    async fn register(&self, instance: &Instance) -> Result<()> {
        check_name("service", &instance.service)?;
        check_name("instance id", &instance.id)?;
        let record = Record {
            service: instance.service.clone(),
            id: instance.id.clone(),
            addr: instance.addr.clone(),
        };
        let value = serde_json::to_vec(&record)
            .map_err(|e| Error::internal(format!("instance record: {e}")))?;
        let key = self.shared.keys.instance(&instance.service, &instance.id);
        let revision = self
            .shared
            .registry
            .register(&key, value)
            .await
            .map_err(|s| to_error("register", &s))?;
        self.note_write(revision);
        Ok(())
    }

    async fn deregister(&self, instance: &Instance) -> Result<()> {
        let key = self.shared.keys.instance(&instance.service, &instance.id);
        let deleted = self
            .shared
            .registry
            .deregister(&key)
            .await
            .map_err(|s| to_error("deregister", &s))?;
        if let Some(revision) = deleted {
            self.note_write(revision);
        }
        Ok(())
    }

    async fn instances(&self, service: &str) -> Result<Vec<Instance>> {
        if self.view_is_current().await {
            return Ok(self.shared.view.instances(service));
        }
        // the watch lags: read etcd directly
        let (kvs, revision) = self
            .shared
            .etcd
            .range_prefix(&self.shared.keys.service(service))
            .await
            .map_err(|s| to_error("instances", &s))?;
        self.note_read(revision);
        let mut out: Vec<Instance> = kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Record>(&kv.value).ok())
            .map(|r| Instance {
                service: r.service,
                id: r.id,
                addr: r.addr,
            })
            .collect();
        out.sort();
        Ok(out)
    }

    async fn config(&self, key: &str) -> Result<Option<String>> {
        if self.view_is_current().await {
            return Ok(self.shared.view.config(key));
        }
        let (value, revision) = self
            .shared
            .etcd
            .get(&self.shared.keys.config(key))
            .await
            .map_err(|s| to_error("config", &s))?;
        self.note_read(revision);
        Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    async fn set_config(&self, key: &str, value: &str) -> Result<()> {
        if key.is_empty() {
            return Err(Error::invalid("config key must be non-empty"));
        }
        let revision = self
            .shared
            .etcd
            .put(&self.shared.keys.config(key), value.as_bytes().to_vec(), 0)
            .await
            .map_err(|s| to_error("set config", &s))?;
        self.note_write(revision);
        Ok(())
    }
}
