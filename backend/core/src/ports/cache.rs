use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;

/// Where a user is connected: a gateway and a connection id unique on that gateway.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub gateway_id: String,
    pub conn_id: u64,
}

/// Session/presence cache: small values with TTLs, and user -> live endpoints.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<()>;
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;
    async fn delete(&self, key: &str) -> Result<()>;

    /// Records a live connection (or refreshes it); returns the user's live endpoint count.
    async fn presence_add(&self, user_id: i64, endpoint: &Endpoint, ttl: Duration)
        -> Result<usize>;
    /// Forgets a connection; returns the user's remaining live endpoint count.
    async fn presence_remove(&self, user_id: i64, endpoint: &Endpoint) -> Result<usize>;
    /// Extends (or restores) the TTL of a gateway's connections.
    async fn presence_refresh(
        &self,
        gateway_id: &str,
        entries: &[(i64, u64)],
        ttl: Duration,
    ) -> Result<()>;
    /// Live endpoints of the given users; users with none are absent from the map.
    async fn presence(&self, user_ids: &[i64]) -> Result<HashMap<i64, Vec<Endpoint>>>;
}
