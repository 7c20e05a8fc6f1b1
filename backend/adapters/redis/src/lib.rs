//! The [`Cache`] port on Redis (distributed profile): sessions and revocations as TTL'd
//! strings, presence as one sorted set per user.
//!
//! Keys, all under a prefix so that deployments and test runs can share one Redis:
//! - `{prefix}kv:{key}`: a value, written with `SET key value PX ttl`;
//! - `{prefix}presence:{user_id}`: the user's live endpoints (`scripts.rs` says how they
//!   are laid out and why presence writes are Lua scripts).
//!
//! One [`ConnectionManager`] (a multiplexed connection that reconnects by itself) carries
//! every call. Each call has a deadline ([`DEFAULT_TIMEOUT`]): a stopped or wedged Redis
//! fails callers quickly as `UNAVAILABLE` (retriable, and what `TolerantCache`'s degraded
//! mode keys on) rather than hanging them, and the call after the connection came back
//! succeeds again.
//!
//! Presence reads and refreshes for many users are batched into one round trip: a
//! pipeline of script calls of at most [`BATCH`] keys each, so no single script holds the
//! server for long.
#![forbid(unsafe_code)]

mod scripts;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Script, ServerErrorKind, Value};
use ringchat_core::ports::{Cache, Endpoint};
use ringchat_core::{Error, Result};

/// The deadline of one call, retries of a lost script included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Most keys one script call touches (presence reads and refreshes are split into
/// pipelined calls of this size).
const BATCH: usize = 256;

/// TTLs are clamped to [1 ms, 10 years]: `PX 0` is an error, and scores stay exact doubles.
const MAX_TTL_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// The Redis adapter of the [`Cache`] port. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    /// Connects to `url` (`redis://[user:password@]host:port[/db]`); every key starts with
    /// `key_prefix`. Fails as `UNAVAILABLE` when Redis does not answer within the deadline,
    /// `INVALID_ARGUMENT` when the URL is malformed.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<RedisCache> {
        let shown = redact(url);
        let client = redis::Client::open(url)
            .map_err(|e| Error::invalid(format!("redis url {shown:?}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(DEFAULT_TIMEOUT / 2))
            .set_response_timeout(Some(DEFAULT_TIMEOUT))
            // reconnects are retried a little in the background; callers never wait past
            // their own deadline for them
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_millis(500));
        let conn = tokio::time::timeout(
            DEFAULT_TIMEOUT,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| {
            Error::unavailable(format!(
                "redis at {shown}: no connection within {DEFAULT_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| Error::unavailable(format!("redis at {shown}: {e}")))?;
        let cache = RedisCache {
            conn,
            prefix: key_prefix.to_string(),
            timeout: DEFAULT_TIMEOUT,
        };
        cache.ping().await?;
        tracing::info!(url = %shown, prefix = key_prefix, "redis cache connected");
        Ok(cache)
    }

    /// Answers when Redis does (readiness probes).
    pub async fn ping(&self) -> Result<()> {
        let mut c = self.conn.clone();
        let pong: String = self
            .call("PING", redis::cmd("PING").query_async(&mut c))
            .await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(Error::internal(format!("redis PING answered {pong:?}")))
        }
    }

    /// The server-side id of the connection in use (`CLIENT ID`): for diagnostics, and for
    /// tests that kill the connection from outside (`CLIENT KILL ID`).
    pub async fn client_id(&self) -> Result<i64> {
        let mut c = self.conn.clone();
        self.call(
            "CLIENT ID",
            redis::cmd("CLIENT").arg("ID").query_async(&mut c),
        )
        .await
    }

    fn value_key(&self, key: &str) -> String {
        format!("{}kv:{key}", self.prefix)
    }

    fn presence_key(&self, user_id: i64) -> String {
        format!("{}presence:{user_id}", self.prefix)
    }

    /// Runs one Redis call under the deadline, mapping its failure.
    async fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(|e| map_err(what, e)),
            Err(_) => Err(Error::unavailable(format!(
                "redis {what}: no answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// One script call.
    async fn eval<T: redis::FromRedisValue>(
        &self,
        what: &str,
        script: &Script,
        keys: &[String],
        args: &[&[u8]],
    ) -> Result<T> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(*a);
        }
        let mut c = self.conn.clone();
        // invoke_async sends EVALSHA and loads the script on NOSCRIPT (after a restart)
        self.call(what, inv.invoke_async(&mut c)).await
    }

    /// Many calls of one script in one pipeline (one round trip); the script is loaded
    /// and the pipeline sent again if the server lost it (NOSCRIPT after a restart).
    async fn eval_pipelined(
        &self,
        what: &str,
        script: &Script,
        calls: &[(Vec<String>, Vec<Vec<u8>>)],
    ) -> Result<Vec<Value>> {
        let mut pipe = redis::pipe();
        for (keys, args) in calls {
            pipe.cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(keys.len())
                .arg(keys)
                .arg(args);
        }
        let conn = self.conn.clone();
        self.call(what, async move {
            let mut c = conn;
            match pipe.query_async::<Vec<Value>>(&mut c).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    script.load_async(&mut c).await?;
                    pipe.query_async(&mut c).await
                }
                r => r,
            }
        })
        .await
    }
}

fn clamp_ttl(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TTL_MS)
}

fn member(gateway_id: &str, conn_id: u64) -> String {
    format!("{gateway_id}/{conn_id}")
}

/// `gateway_id/conn_id` (a gateway id may itself hold `/`: the conn id is after the last).
fn parse_member(m: &str) -> Option<Endpoint> {
    let (gw, conn) = m.rsplit_once('/')?;
    Some(Endpoint {
        gateway_id: gw.to_string(),
        conn_id: conn.parse().ok()?,
    })
}

/// Engine failures (connection lost or refused, timeouts, a loading, busy, read-only or
/// full server...) are `UNAVAILABLE`: retriable, and what degraded mode keys on. Only a
/// reply this adapter cannot read is `INTERNAL` (a bug here, not an outage).
fn map_err(what: &str, e: RedisError) -> Error {
    match e.kind() {
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType | ErrorKind::InvalidClientConfig => {
            Error::internal(format!("redis {what}: {e}"))
        }
        _ => Error::unavailable(format!("redis {what}: {e}")),
    }
}

/// The URL without its password, for messages and logs.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<()> {
        let mut c = self.conn.clone();
        let cmd = redis::cmd("SET")
            .arg(self.value_key(key))
            .arg(value.as_ref())
            .arg("PX")
            .arg(clamp_ttl(ttl))
            .to_owned();
        self.call("SET", cmd.query_async::<()>(&mut c)).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let mut c = self.conn.clone();
        let cmd = redis::cmd("GET").arg(self.value_key(key)).to_owned();
        let v: Option<Vec<u8>> = self.call("GET", cmd.query_async(&mut c)).await?;
        Ok(v.map(Bytes::from))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let mut c = self.conn.clone();
        let cmd = redis::cmd("DEL").arg(self.value_key(key)).to_owned();
        self.call("DEL", cmd.query_async::<()>(&mut c)).await
    }

    async fn presence_add(
        &self,
        user_id: i64,
        endpoint: &Endpoint,
        ttl: Duration,
    ) -> Result<usize> {
        let m = member(&endpoint.gateway_id, endpoint.conn_id);
        let ttl = clamp_ttl(ttl).to_string();
        self.eval(
            "presence add",
            &scripts::ADD,
            &[self.presence_key(user_id)],
            &[m.as_bytes(), ttl.as_bytes()],
        )
        .await
    }

    async fn presence_remove(&self, user_id: i64, endpoint: &Endpoint) -> Result<usize> {
        let m = member(&endpoint.gateway_id, endpoint.conn_id);
        self.eval(
            "presence remove",
            &scripts::REMOVE,
            &[self.presence_key(user_id)],
            &[m.as_bytes()],
        )
        .await
    }

    async fn presence_refresh(
        &self,
        gateway_id: &str,
        entries: &[(i64, u64)],
        ttl: Duration,
    ) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let ttl = clamp_ttl(ttl).to_string().into_bytes();
        let calls: Vec<(Vec<String>, Vec<Vec<u8>>)> = entries
            .chunks(BATCH)
            .map(|chunk| {
                let keys = chunk.iter().map(|(u, _)| self.presence_key(*u)).collect();
                let args = std::iter::once(ttl.clone())
                    .chain(
                        chunk
                            .iter()
                            .map(|(_, conn)| member(gateway_id, *conn).into_bytes()),
                    )
                    .collect();
                (keys, args)
            })
            .collect();
        self.eval_pipelined("presence refresh", &scripts::REFRESH, &calls)
            .await?;
        Ok(())
    }

    async fn presence(&self, user_ids: &[i64]) -> Result<HashMap<i64, Vec<Endpoint>>> {
        if user_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let calls: Vec<(Vec<String>, Vec<Vec<u8>>)> = user_ids
            .chunks(BATCH)
            .map(|chunk| {
                let keys = chunk.iter().map(|u| self.presence_key(*u)).collect();
                (keys, Vec::new())
            })
            .collect();
        let replies = self
            .eval_pipelined("presence", &scripts::LIVE, &calls)
            .await?;
        let mut out = HashMap::new();
        for (chunk, reply) in user_ids.chunks(BATCH).zip(replies) {
            let lists: Vec<Vec<String>> = redis::from_redis_value(reply)
                .map_err(|e| Error::internal(format!("redis presence reply: {e}")))?;
            for (user_id, members) in chunk.iter().zip(lists) {
                let mut eps: Vec<Endpoint> = members
                    .iter()
                    .filter_map(|m| {
                        let ep = parse_member(m);
                        if ep.is_none() {
                            tracing::warn!(user_id, member = %m, "malformed presence member");
                        }
                        ep
                    })
                    .collect();
                if !eps.is_empty() {
                    eps.sort();
                    out.insert(*user_id, eps);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_round_trip_even_with_slashes_in_the_gateway_id() {
        for (gw, conn) in [("gw-1", 7), ("dc/a/gw", u64::MAX), ("", 0)] {
            assert_eq!(
                parse_member(&member(gw, conn)),
                Some(Endpoint {
                    gateway_id: gw.to_string(),
                    conn_id: conn
                })
            );
        }
        assert_eq!(parse_member("no-slash"), None);
        assert_eq!(parse_member("gw/not-a-number"), None);
    }

    #[test]
    fn ttls_are_clamped_to_what_redis_accepts() {
        assert_eq!(clamp_ttl(Duration::ZERO), 1);
        assert_eq!(clamp_ttl(Duration::from_micros(10)), 1);
        assert_eq!(clamp_ttl(Duration::from_millis(1500)), 1500);
        assert_eq!(clamp_ttl(Duration::MAX), MAX_TTL_MS);
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("redis://user:secret@10.0.0.1:6379/0"),
            "redis://***@10.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
