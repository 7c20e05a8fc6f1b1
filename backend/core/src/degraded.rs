//! Degraded mode: messaging goes on while the cache (Redis) is unreachable.
//!
//! [`TolerantCache`] wraps the real cache. While the cache answers, it is a pass-through
//! that also mirrors values (sessions, revocations) into a local in-memory cache (the
//! embedded profile's, passed in by the wiring). When a
//! call fails as UNAVAILABLE it marks the service degraded and answers from what it has:
//!
//! - values (`get`) from the local mirror: sessions and revocations this instance set or
//!   read lately (a revocation made by another instance during the outage reaches this one
//!   only through the store at its next start: the outage's known gap);
//! - writes (`set`, `delete`, presence) are dropped after the mirror is updated: presence
//!   comes back as gateways refresh it (every `gateway.presence_refresh_secs`) and as
//!   clients reconnect;
//! - `presence` lookups fail, and [`crate::fanout::locate_or_everywhere`] routes to every
//!   live gateway instead (each delivers to the recipients it holds and drops the rest),
//!   so delivery goes on, at the price of traffic to gateways without recipients and of
//!   offline pushes (nobody is known to be offline).
//!
//! The first call that succeeds ends the degraded mode and wakes
//! [`CacheHealth::recovered`]: im-logic then asks every gateway to report its connections
//! again at once (a restarted Redis has forgotten every presence entry), rather than
//! after their next periodic refresh. [`CacheHealth`] is exported as metrics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::ports::{Cache, Endpoint};

/// The cache's state as its users see it: shared by the [`TolerantCache`] that updates
/// it and whoever reports it (metrics, readiness) or acts on a recovery.
#[derive(Default)]
pub struct CacheHealth {
    degraded: AtomicBool,
    failures: AtomicU64,
    recoveries: AtomicU64,
    recovered: tokio::sync::Notify,
}

impl CacheHealth {
    /// Whether the last call to the cache failed.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Relaxed)
    }

    /// Calls that failed since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Relaxed)
    }

    /// Times the degraded mode ended since start.
    pub fn recoveries(&self) -> u64 {
        self.recoveries.load(Relaxed)
    }

    /// Resolves when a degraded mode ends (one waiter at a time; a recovery with nobody
    /// waiting is kept for the next one).
    pub async fn recovered(&self) {
        self.recovered.notified().await
    }
}

pub struct TolerantCache {
    inner: Arc<dyn Cache>,
    mirror: Arc<dyn Cache>,
    health: Arc<CacheHealth>,
}

impl TolerantCache {
    /// `inner` is the real cache; `mirror` an in-process one that keeps what this
    /// instance set or read lately, answered from while `inner` is unreachable.
    pub fn new(inner: Arc<dyn Cache>, mirror: Arc<dyn Cache>, health: Arc<CacheHealth>) -> Self {
        TolerantCache {
            inner,
            mirror,
            health,
        }
    }

    /// Ok values pass and end the degraded mode; an UNAVAILABLE error starts it and is
    /// returned as `Err(None)` for the caller to answer from what it has; any other
    /// error is returned as it is.
    fn check<T>(&self, r: Result<T>) -> std::result::Result<T, Option<Error>> {
        match r {
            Ok(v) => {
                if self.health.degraded.swap(false, Relaxed) {
                    tracing::info!("the cache answers again: degraded mode over");
                    self.health.recoveries.fetch_add(1, Relaxed);
                    self.health.recovered.notify_one();
                }
                Ok(v)
            }
            Err(e) if e.is_retryable() => {
                self.health.failures.fetch_add(1, Relaxed);
                if !self.health.degraded.swap(true, Relaxed) {
                    tracing::warn!(error = %e, "the cache is unreachable: degraded mode (routing to every gateway)");
                }
                Err(None)
            }
            Err(e) => Err(Some(e)),
        }
    }
}

#[async_trait]
impl Cache for TolerantCache {
    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<()> {
        self.mirror.set(key, value.clone(), ttl).await?;
        match self.check(self.inner.set(key, value, ttl).await) {
            Ok(()) | Err(None) => Ok(()),
            Err(Some(e)) => Err(e),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        match self.check(self.inner.get(key).await) {
            Ok(v) => Ok(v),
            Err(None) => self.mirror.get(key).await,
            Err(Some(e)) => Err(e),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.mirror.delete(key).await?;
        match self.check(self.inner.delete(key).await) {
            Ok(()) | Err(None) => Ok(()),
            Err(Some(e)) => Err(e),
        }
    }

    async fn presence_add(
        &self,
        user_id: i64,
        endpoint: &Endpoint,
        ttl: Duration,
    ) -> Result<usize> {
        match self.check(self.inner.presence_add(user_id, endpoint, ttl).await) {
            Ok(n) => Ok(n),
            // unknown: count this connection, so its first one is announced
            Err(None) => Ok(1),
            Err(Some(e)) => Err(e),
        }
    }

    async fn presence_remove(&self, user_id: i64, endpoint: &Endpoint) -> Result<usize> {
        match self.check(self.inner.presence_remove(user_id, endpoint).await) {
            Ok(n) => Ok(n),
            // unknown: announce nothing rather than a wrong "offline"
            Err(None) => Ok(1),
            Err(Some(e)) => Err(e),
        }
    }

    async fn presence_refresh(
        &self,
        gateway_id: &str,
        entries: &[(i64, u64)],
        ttl: Duration,
    ) -> Result<()> {
        match self.check(self.inner.presence_refresh(gateway_id, entries, ttl).await) {
            Ok(()) | Err(None) => Ok(()),
            Err(Some(e)) => Err(e),
        }
    }

    async fn presence(&self, user_ids: &[i64]) -> Result<HashMap<i64, Vec<Endpoint>>> {
        match self.check(self.inner.presence(user_ids).await) {
            Ok(p) => Ok(p),
            Err(None) => Err(Error::unavailable("the cache is unreachable")),
            Err(Some(e)) => Err(e),
        }
    }
}
