//! The in-memory cache of the embedded profile: TTL'd values and presence.
//!
//! Expired entries are dropped lazily on access and by a sweep every few thousand writes,
//! so memory stays bounded by the live entries. Presence is one entry per connection of
//! the whole deployment, so it is kept small: a short list per user (most have one or two
//! connections) of (gateway number, connection id, expiry), the gateways' names stored once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use ringchat_core::error::Result;
use ringchat_core::ports::{Cache, Endpoint};

#[derive(Default)]
pub struct MemoryCache {
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    values: HashMap<String, (Bytes, Instant)>,
    presence: HashMap<i64, Vec<Live>>,
    /// Gateway ids by number (a `Live` names its gateway by its index here).
    gateways: Vec<String>,
    writes: u64,
}

/// One live endpoint of a user.
struct Live {
    gateway: u32,
    conn_id: u64,
    expires: Instant,
}

impl State {
    /// A gateway's number, if it has one.
    fn gateway_index(&self, id: &str) -> Option<u32> {
        self.gateways.iter().position(|g| g == id).map(|i| i as u32)
    }

    /// A gateway's number, given one if it has none yet.
    fn gateway(&mut self, id: &str) -> u32 {
        match self.gateway_index(id) {
            Some(i) => i,
            None => {
                self.gateways.push(id.to_string());
                (self.gateways.len() - 1) as u32
            }
        }
    }

    /// Adds or renews an endpoint.
    fn upsert(&mut self, user_id: i64, gateway: u32, conn_id: u64, expires: Instant) {
        let eps = self
            .presence
            .entry(user_id)
            .or_insert_with(|| Vec::with_capacity(1));
        match eps
            .iter_mut()
            .find(|l| l.gateway == gateway && l.conn_id == conn_id)
        {
            Some(l) => l.expires = expires,
            None => eps.push(Live {
                gateway,
                conn_id,
                expires,
            }),
        }
    }

    fn endpoint(&self, l: &Live) -> Endpoint {
        Endpoint {
            gateway_id: self.gateways[l.gateway as usize].clone(),
            conn_id: l.conn_id,
        }
    }

    fn maybe_sweep(&mut self, now: Instant) {
        self.writes += 1;
        if !self.writes.is_multiple_of(4096) {
            return;
        }
        self.values.retain(|_, (_, exp)| *exp > now);
        self.presence.retain(|_, eps| {
            eps.retain(|l| l.expires > now);
            !eps.is_empty()
        });
    }

    fn live_count(&mut self, user_id: i64, now: Instant) -> usize {
        match self.presence.get_mut(&user_id) {
            Some(eps) => {
                eps.retain(|l| l.expires > now);
                let n = eps.len();
                if n == 0 {
                    self.presence.remove(&user_id);
                }
                n
            }
            None => 0,
        }
    }
}

impl MemoryCache {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<()> {
        let now = Instant::now();
        let mut st = self.inner.lock().expect("cache lock");
        st.values.insert(key.to_string(), (value, now + ttl));
        st.maybe_sweep(now);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let now = Instant::now();
        let mut st = self.inner.lock().expect("cache lock");
        match st.values.get(key) {
            Some((v, exp)) if *exp > now => Ok(Some(v.clone())),
            Some(_) => {
                st.values.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.lock().expect("cache lock").values.remove(key);
        Ok(())
    }

    async fn presence_add(
        &self,
        user_id: i64,
        endpoint: &Endpoint,
        ttl: Duration,
    ) -> Result<usize> {
        let now = Instant::now();
        let mut st = self.inner.lock().expect("cache lock");
        let gateway = st.gateway(&endpoint.gateway_id);
        st.upsert(user_id, gateway, endpoint.conn_id, now + ttl);
        st.maybe_sweep(now);
        Ok(st.live_count(user_id, now))
    }

    async fn presence_remove(&self, user_id: i64, endpoint: &Endpoint) -> Result<usize> {
        let now = Instant::now();
        let mut st = self.inner.lock().expect("cache lock");
        if let Some(gateway) = st.gateway_index(&endpoint.gateway_id) {
            if let Some(eps) = st.presence.get_mut(&user_id) {
                eps.retain(|l| !(l.gateway == gateway && l.conn_id == endpoint.conn_id));
            }
        }
        Ok(st.live_count(user_id, now))
    }

    async fn presence_refresh(
        &self,
        gateway_id: &str,
        entries: &[(i64, u64)],
        ttl: Duration,
    ) -> Result<()> {
        let now = Instant::now();
        let mut st = self.inner.lock().expect("cache lock");
        let gateway = st.gateway(gateway_id);
        for (user_id, conn_id) in entries {
            st.upsert(*user_id, gateway, *conn_id, now + ttl);
        }
        st.maybe_sweep(now);
        Ok(())
    }

    async fn presence(&self, user_ids: &[i64]) -> Result<HashMap<i64, Vec<Endpoint>>> {
        let now = Instant::now();
        let st = self.inner.lock().expect("cache lock");
        let mut out = HashMap::new();
        for id in user_ids {
            if let Some(eps) = st.presence.get(id) {
                let mut live: Vec<Endpoint> = eps
                    .iter()
                    .filter(|l| l.expires > now)
                    .map(|l| st.endpoint(l))
                    .collect();
                if !live.is_empty() {
                    live.sort();
                    out.insert(*id, live);
                }
            }
        }
        Ok(out)
    }
}
