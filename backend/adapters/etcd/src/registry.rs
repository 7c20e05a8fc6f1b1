//! This process's registrations: every instance it registered is a key attached to one
//! lease, which a keep-alive task renews every third of its TTL.
//!
//! The lease is the liveness signal: a process that exits cleanly revokes it (its
//! instances leave discovery at once), one that dies stops renewing it (they leave when
//! the TTL runs out). When the lease is found gone while the process lives (it was
//! stopped longer than the TTL, or etcd lost it), a new lease is granted and every
//! registered instance is put again under it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};
use tonic::Status;

use crate::client::{is_lease_not_found, Etcd, CALL_TIMEOUT};
use crate::pb::etcdserverpb::LeaseKeepAliveRequest;

pub(crate) struct Registry {
    etcd: Etcd,
    ttl_secs: i64,
    /// Changes to the lease and to what is registered are serialised here.
    held: Mutex<Held>,
    /// The current lease (0: none yet); the keep-alive task follows it.
    lease: watch::Sender<Lease>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Lease {
    pub id: i64,
    /// The TTL the server granted (it may raise a small requested one).
    pub ttl_secs: i64,
}

#[derive(Default)]
struct Held {
    /// key -> value of every registered instance, to put again under a new lease
    instances: BTreeMap<String, Vec<u8>>,
}

impl Registry {
    pub fn new(etcd: Etcd, ttl_secs: u64) -> Registry {
        Registry {
            etcd,
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX).max(1),
            held: Mutex::new(Held::default()),
            lease: watch::channel(Lease::default()).0,
        }
    }

    pub fn lease(&self) -> Lease {
        *self.lease.borrow()
    }

    /// Puts `key` under the lease (granting one first if needed); returns the write's
    /// revision.
    pub async fn register(&self, key: &str, value: Vec<u8>) -> Result<i64, Status> {
        let mut held = self.held.lock().await;
        let mut lease = self.lease();
        if lease.id == 0 {
            lease = self.grant().await?;
        }
        let revision = match self.etcd.put(key, value.clone(), lease.id).await {
            Err(s) if is_lease_not_found(&s) => {
                // the lease expired under us (the keep-alive task has not noticed yet)
                held.instances.insert(key.to_string(), value);
                return self.renew(&mut held, lease.id).await;
            }
            r => r?,
        };
        held.instances.insert(key.to_string(), value);
        Ok(revision)
    }

    /// Deletes `key`; returns the revision of the deletion, or `None` when there was no
    /// such key.
    pub async fn deregister(&self, key: &str) -> Result<Option<i64>, Status> {
        let mut held = self.held.lock().await;
        held.instances.remove(key);
        let (deleted, revision) = self.etcd.delete(key).await?;
        Ok((deleted > 0).then_some(revision))
    }

    async fn grant(&self) -> Result<Lease, Status> {
        let (id, ttl_secs) = self.etcd.grant(self.ttl_secs).await?;
        let lease = Lease { id, ttl_secs };
        self.lease.send_replace(lease);
        tracing::info!(lease = id, ttl_secs, "etcd lease granted");
        Ok(lease)
    }

    /// Replaces the lost lease `lost` with a new one and puts every registered instance
    /// again; returns the revision of the last put. Does nothing if `lost` was already
    /// replaced.
    async fn renew(&self, held: &mut Held, lost: i64) -> Result<i64, Status> {
        if self.lease().id != lost {
            // someone renewed it already; put again what is registered, to be sure
            let id = self.lease().id;
            return self.put_all(held, id).await;
        }
        tracing::warn!(
            lease = lost,
            instances = held.instances.len(),
            "etcd lease lost, registering again under a new one"
        );
        let lease = self.grant().await?;
        self.put_all(held, lease.id).await
    }

    async fn put_all(&self, held: &Held, lease: i64) -> Result<i64, Status> {
        let mut revision = 0;
        for (key, value) in &held.instances {
            revision = self.etcd.put(key, value.clone(), lease).await?;
        }
        Ok(revision)
    }

    /// Revokes the lease: every instance registered here leaves at once.
    pub async fn revoke(&self) -> Result<(), Status> {
        let held = self.held.lock().await;
        let lease = self.lease();
        if lease.id != 0 {
            self.etcd.revoke(lease.id).await?;
            self.lease.send_replace(Lease::default());
            tracing::info!(lease = lease.id, "etcd lease revoked");
        }
        drop(held);
        Ok(())
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Renews the registry's lease every third of its TTL, until aborted; replaces it when
/// it is found gone. While etcd is unreachable it retries at least every second: the
/// lease must be renewed soon after etcd is back (a restarted etcd gives each lease its
/// whole TTL again, and no more).
pub(crate) async fn keep_alive(registry: Arc<Registry>) {
    let mut leases = registry.lease.subscribe();
    let mut backoff = MIN_BACKOFF;
    loop {
        let lease = match leases.wait_for(|l| l.id != 0).await {
            Ok(l) => *l,
            Err(_) => return,
        };
        match renew_while_alive(&registry, lease, &mut leases, &mut backoff).await {
            Outcome::Replaced => continue,
            Outcome::Lost => {
                let mut held = registry.held.lock().await;
                match registry.renew(&mut held, lease.id).await {
                    Ok(_) => backoff = MIN_BACKOFF,
                    Err(e) => {
                        tracing::warn!(code = ?e.code(), error = e.message(), "etcd lease renewal failed");
                        drop(held);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            Outcome::Failed(e) => {
                // one warning per outage, not one per retry
                if backoff == MIN_BACKOFF {
                    tracing::warn!(
                        lease = lease.id, code = ?e.code(), error = e.message(),
                        "etcd lease keep-alive failed, retrying"
                    );
                } else {
                    tracing::debug!(
                        lease = lease.id,
                        error = e.message(),
                        "etcd lease keep-alive failed"
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

enum Outcome {
    /// The registry moved to another lease (a register call renewed it, or it was revoked).
    Replaced,
    /// etcd no longer knows the lease.
    Lost,
    /// The stream broke (etcd unreachable): try again.
    Failed(Status),
}

async fn renew_while_alive(
    registry: &Registry,
    lease: Lease,
    leases: &mut watch::Receiver<Lease>,
    backoff: &mut Duration,
) -> Outcome {
    let mut stream = match registry.etcd.keep_alive(lease.id).await {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(e),
    };
    let ttl_ms = u64::try_from(lease.ttl_secs.max(1)).unwrap_or(1) * 1000;
    let mut tick = tokio::time::interval(Duration::from_millis(ttl_ms / 3));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first request went with the stream
    loop {
        match tokio::time::timeout(CALL_TIMEOUT, stream.rx.message()).await {
            Ok(Ok(Some(resp))) if resp.ttl <= 0 => return Outcome::Lost,
            // renewed: a later failure is a new outage
            Ok(Ok(Some(_))) => *backoff = MIN_BACKOFF,
            Ok(Ok(None)) => return Outcome::Failed(Status::unavailable("keep-alive stream ended")),
            Ok(Err(e)) => return Outcome::Failed(e),
            Err(_) => {
                return Outcome::Failed(Status::deadline_exceeded(format!(
                    "no keep-alive answer within {CALL_TIMEOUT:?}"
                )))
            }
        }
        // until the next renewal is due, unless the registry moves to another lease
        loop {
            tokio::select! {
                _ = tick.tick() => break,
                changed = leases.changed() => {
                    if changed.is_err() || leases.borrow_and_update().id != lease.id {
                        return Outcome::Replaced;
                    }
                }
            }
        }
        if stream
            .tx
            .send(LeaseKeepAliveRequest { id: lease.id })
            .await
            .is_err()
        {
            return Outcome::Failed(Status::unavailable("keep-alive stream closed"));
        }
    }
}
