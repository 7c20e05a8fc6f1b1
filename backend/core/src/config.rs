//! Typed configuration for every ringchat process.
//!
//! One file format for all binaries: a TOML file (optional) overlaid with `RINGCHAT_*`
//! environment variables, where `__` separates the section from the key:
//! `RINGCHAT_LOGIC__LARGE_GROUP_THRESHOLD=100` sets `[logic] large_group_threshold`.
//! The loader takes the environment as a map, so tests never touch `std::env`.
//! Every default works out of the box for the embedded profile on one machine.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Errors found while loading or validating configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid config value {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// A secret string that never shows in `Debug` output or logs.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    pub auth: AuthConfig,
    pub store: StoreConfig,
    pub cache: CacheConfig,
    pub bus: BusConfig,
    pub discovery: DiscoveryConfig,
    pub logic: LogicConfig,
    pub repo: RepoConfig,
    pub task: TaskConfig,
    pub runtime: RuntimeConfig,
    /// The `[gateway]` section, read and validated by the gateway
    /// (`im_gateway::config::GatewayConfig`); other services ignore it, so one file can
    /// serve every process.
    pub gateway: toml::Table,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// This instance's id: the gateway id in topic names, the instance id in discovery.
    pub id: String,
    /// 0..=1023, distinguishes message-id generators of different store writers: every
    /// im-repo of a deployment needs its own.
    pub worker_id: u16,
    /// The host other services reach this instance's gRPC port at, as registered in
    /// discovery (the port is the one actually bound).
    pub advertise_host: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: "gw-1".into(),
            worker_id: 1,
            advertise_host: "127.0.0.1".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The HS256 key tokens are signed with. There is no default: the embedded profile
    /// generates one in its data directory on first start (`jwt.secret`, mode 0600), and
    /// the distributed services refuse to start without one.
    pub jwt_secret: Secret,
    /// Lifetime of an issued token.
    pub token_ttl_secs: u64,
    /// Argon2id memory cost in KiB (OWASP's 19 MiB by default).
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    /// Password hashes computed at once (each holds `argon2_memory_kib`); 0 = one per CPU.
    pub hash_workers: usize,
    /// Hashes waiting for a worker at most; beyond, logins and registrations get 429.
    pub hash_queue: usize,
    /// Failed logins per minute per username, and per client address (and their bursts).
    pub login_failures_per_minute: u32,
    pub login_failures_burst: u32,
    pub login_address_per_minute: u32,
    pub login_address_burst: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_secret: Secret::new(""),
            token_ttl_secs: 7 * 24 * 3600,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            hash_workers: 0,
            hash_queue: 64,
            login_failures_per_minute: 10,
            login_failures_burst: 10,
            login_address_per_minute: 60,
            login_address_burst: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://path/to/file.db` (embedded) or `mysql://user:pass@host/db` (distributed).
    pub url: String,
    /// A read replica (MySQL only) that history and list queries use; empty = the primary.
    pub read_url: String,
    pub max_connections: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://data/ringchat.db".into(),
            read_url: String::new(),
            max_connections: 8,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// `memory://` (embedded) or `redis://host:port` (distributed).
    pub url: String,
    /// Prefix of every key ringchat writes (several deployments can share one Redis).
    pub key_prefix: String,
    /// Session cache entries (token -> user) live this long.
    pub session_ttl_secs: u64,
    /// A connection's presence entry expires unless refreshed within this time.
    pub presence_ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            url: "memory://".into(),
            key_prefix: "ringchat:".into(),
            session_ttl_secs: 30 * 60,
            presence_ttl_secs: 5 * 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// `memory://` (embedded) or `kafka://host:port[,host:port...]` (distributed).
    pub url: String,
    /// Partitions per topic (of the in-process bus; of topics ringchat creates in Kafka).
    pub partitions: u32,
    /// Replication factor of topics ringchat creates in Kafka.
    pub replication: u32,
    /// Put before every topic and consumer-group name (several deployments, or test runs,
    /// can share one Kafka cluster): `prod.` gives `prod.im-upstream-topic`.
    pub topic_prefix: String,
    /// Records a partition holds before publishers wait (in-process bus).
    pub partition_capacity: usize,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            url: "memory://".into(),
            partitions: 8,
            replication: 1,
            topic_prefix: String::new(),
            partition_capacity: 16 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// `static://` (embedded) or `etcd://host:port[,host:port...]` (distributed). With
    /// etcd, services find im-logic and im-repo through it (balanced over the live
    /// instances) and `logic_url` / `repo_url` are not used.
    pub url: String,
    /// Key prefix in etcd.
    pub prefix: String,
    /// Static entries: service name -> addresses.
    pub services: HashMap<String, Vec<String>>,
    /// Registration lease.
    pub ttl_secs: u64,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            url: "static://".into(),
            prefix: "/ringchat".into(),
            services: HashMap::new(),
            ttl_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogicConfig {
    pub listen: String,
    /// Health, readiness and Prometheus metrics (HTTP; port 0 picks one, logged).
    pub admin_listen: String,
    /// Where im-logic reaches im-repo in the distributed profile.
    pub repo_url: String,
    /// Groups with more members than this fan out through im-task.
    pub large_group_threshold: u32,
    /// Largest message content accepted, in bytes.
    pub max_content_bytes: usize,
    /// Concurrent consumers of the upstream topic (each owns some partitions).
    pub upstream_consumers: u32,
    /// Most upstream messages appended in one store transaction.
    pub append_batch: usize,
    /// How long a batch of sends is retried (with backoff) while the store or bus fails
    /// transiently; after that each send of it is answered with an `error` frame.
    pub retry_budget_secs: u64,
    /// Messages per second a user may send (all connections and HTTP together), and the
    /// burst.
    pub user_sends_per_sec: u32,
    pub user_sends_burst: u32,
    /// The v1 `POST /api/friends` sends a friend request (the other side accepts) instead
    /// of making friends at once. Off by default: the GoChat web client expects friends.
    pub friends_need_consent: bool,
    /// How long after sending a message its sender may revoke it (a group's owner and
    /// admins may revoke any message of the group at any time), and edit it.
    pub revoke_window_secs: u64,
    pub edit_window_secs: u64,
}

impl LogicConfig {
    pub fn retry_budget(&self) -> Duration {
        Duration::from_secs(self.retry_budget_secs)
    }
}

impl Default for LogicConfig {
    fn default() -> Self {
        LogicConfig {
            listen: "127.0.0.1:9001".into(),
            admin_listen: "127.0.0.1:9101".into(),
            repo_url: "http://127.0.0.1:9002".into(),
            large_group_threshold: 500,
            max_content_bytes: 64 * 1024,
            upstream_consumers: 2,
            append_batch: 256,
            retry_budget_secs: 30,
            user_sends_per_sec: 100,
            user_sends_burst: 200,
            friends_need_consent: false,
            revoke_window_secs: 120,
            edit_window_secs: 900,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepoConfig {
    pub listen: String,
    /// Health, readiness and Prometheus metrics (HTTP; port 0 picks one, logged).
    pub admin_listen: String,
}

impl Default for RepoConfig {
    fn default() -> Self {
        RepoConfig {
            listen: "127.0.0.1:9002".into(),
            admin_listen: "127.0.0.1:9102".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskConfig {
    /// Health, readiness and Prometheus metrics (HTTP; port 0 picks one, logged).
    pub admin_listen: String,
    /// Where im-task reaches im-repo in the distributed profile.
    pub repo_url: String,
    /// Members fetched and routed per step of a large-group fan-out.
    pub fanout_batch: u32,
    /// `log` (default) or `webhook`.
    pub notifier: String,
    /// Target of the webhook notifier (`http://...`).
    pub webhook_url: String,
    pub webhook_timeout_ms: u64,
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            admin_listen: "127.0.0.1:9103".into(),
            repo_url: "http://127.0.0.1:9002".into(),
            fanout_batch: 1000,
            notifier: "log".into(),
            webhook_url: String::new(),
            webhook_timeout_ms: 5000,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Worker threads of the backend's tokio runtime; 0 = one per CPU.
    pub worker_threads: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// How log lines are written to stderr.
    pub format: LogFormat,
    /// Which: `info`, `debug`, or directives per target (`info,im_logic=debug`), as
    /// `RUST_LOG` takes them (which wins when set). A dynamic setting too.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// The form of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event, spans before it: `message{trace_id=...}: ...`.
    #[default]
    Text,
    /// One JSON object per line, for log collectors: the event's fields at the top level,
    /// the spans (and their `trace_id`) in `span` and `spans`.
    Json,
}

impl CacheConfig {
    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_secs)
    }
    pub fn presence_ttl(&self) -> Duration {
        Duration::from_secs(self.presence_ttl_secs)
    }
}

impl Config {
    /// Loads `path` (if given) and applies `RINGCHAT_*` overrides from `env`, then validates.
    pub fn load(path: Option<&Path>, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?,
            None => String::new(),
        };
        Self::from_toml_and_env(&text, env)
    }

    /// Parses TOML text and applies `RINGCHAT_*` overrides from `env`, then validates.
    pub fn from_toml_and_env(
        text: &str,
        env: &HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let mut root: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        let mut keys: Vec<_> = env.keys().filter(|k| k.starts_with("RINGCHAT_")).collect();
        keys.sort();
        // an override takes the type of the setting it overrides (`RINGCHAT_NODE__ID=7` is
        // the string "7", as `id = "7"` in the file would be)
        let defaults = toml::Value::try_from(Config::default())
            .map_err(|e| ConfigError::Parse(format!("defaults: {e}")))?;
        for key in keys {
            let path: Vec<String> = key["RINGCHAT_".len()..]
                .split("__")
                .map(|s| s.to_ascii_lowercase())
                .collect();
            if path.len() < 2 || path.iter().any(String::is_empty) {
                // RINGCHAT_CONFIG and the like are not overrides
                continue;
            }
            let kind = path
                .iter()
                .try_fold(&defaults, |v, seg| v.get(seg.as_str()));
            set_path(&mut root, &path, env_value(&env[key], kind))?;
        }
        let config: Config = toml::Value::Table(root)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        fn check(ok: bool, key: &'static str, reason: &str) -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    key,
                    reason: reason.into(),
                })
            }
        }
        check(
            !self.node.id.is_empty()
                && self
                    .node
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'),
            "node.id",
            "must be non-empty and use only [A-Za-z0-9._-] (it is part of topic names)",
        )?;
        check(
            self.node.worker_id < 1024,
            "node.worker_id",
            "must be < 1024",
        )?;
        check(
            self.auth.jwt_secret.expose().is_empty() || self.auth.jwt_secret.expose().len() >= 16,
            "auth.jwt_secret",
            "must be at least 16 bytes",
        )?;
        check(
            self.auth.token_ttl_secs > 0,
            "auth.token_ttl_secs",
            "must be > 0",
        )?;
        check(
            self.auth.argon2_memory_kib >= 8 && self.auth.argon2_iterations >= 1,
            "auth.argon2_memory_kib",
            "argon2 needs at least 8 KiB and 1 iteration",
        )?;
        check(
            self.store.max_connections > 0,
            "store.max_connections",
            "must be > 0",
        )?;
        check(self.bus.partitions > 0, "bus.partitions", "must be > 0")?;
        check(self.bus.replication > 0, "bus.replication", "must be > 0")?;
        check(
            self.bus.partition_capacity > 0,
            "bus.partition_capacity",
            "must be > 0",
        )?;
        check(
            self.cache.presence_ttl_secs > 0,
            "cache.presence_ttl_secs",
            "must be > 0",
        )?;
        check(
            self.cache.session_ttl_secs > 0,
            "cache.session_ttl_secs",
            "must be > 0",
        )?;
        check(
            self.logic.max_content_bytes > 0,
            "logic.max_content_bytes",
            "must be > 0",
        )?;
        check(
            self.logic.upstream_consumers > 0,
            "logic.upstream_consumers",
            "must be > 0",
        )?;
        check(
            self.logic.append_batch > 0,
            "logic.append_batch",
            "must be > 0",
        )?;
        check(
            self.task.fanout_batch > 0,
            "task.fanout_batch",
            "must be > 0",
        )?;
        check(
            matches!(self.task.notifier.as_str(), "log" | "webhook"),
            "task.notifier",
            "must be `log` or `webhook`",
        )?;
        check(
            self.task.notifier != "webhook" || self.task.webhook_url.starts_with("http://"),
            "task.webhook_url",
            "the webhook notifier needs an http:// URL",
        )?;
        check(
            crate::bootstrap::parse_log_filter(&self.log.level).is_some(),
            "log.level",
            "not a log filter (`info`, `debug`, `info,im_logic=debug`, ...)",
        )?;
        Ok(())
    }

    /// Whether a JWT secret was configured.
    pub fn has_jwt_secret(&self) -> bool {
        !self.auth.jwt_secret.expose().is_empty()
    }
}

/// A list given as a TOML array or as one comma-separated string (environment overrides).
pub fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::One(s) => s
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect(),
        Either::Many(v) => v,
    })
}

/// A section that another crate owns (`[gateway]`), as its typed settings `T`. The core
/// does not know that section's settings, so it keeps an environment override's text as
/// it came (`RINGCHAT_GATEWAY__CORS_ORIGINS=012345` is the text "012345", not the number
/// 12345); here each such text takes the type of `T`'s default for its key, as the core's
/// own sections' overrides do. Unknown keys are refused if `T` refuses them.
pub fn section<T>(table: &toml::Table, name: &str) -> Result<T, ConfigError>
where
    T: serde::de::DeserializeOwned + Serialize + Default,
{
    let defaults = toml::Value::try_from(T::default())
        .map_err(|e| ConfigError::Parse(format!("[{name}] defaults: {e}")))?;
    let mut table = table.clone();
    for (key, value) in table.iter_mut() {
        if let toml::Value::String(text) = value {
            if let Some(typed) = typed_text(text, defaults.get(key.as_str())) {
                *value = typed;
            }
        }
    }
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Parse(format!("[{name}] {e}")))
}

/// Text as a number or a boolean where the setting (`like`) is one; None: keep the text
/// (a text setting, or text that is not of the setting's type: refused with its name when
/// the section is typed).
fn typed_text(text: &str, like: Option<&toml::Value>) -> Option<toml::Value> {
    match like? {
        toml::Value::Integer(_) => text.parse::<i64>().ok().map(toml::Value::Integer),
        toml::Value::Float(_) => text.parse::<f64>().ok().map(toml::Value::Float),
        toml::Value::Boolean(_) => match text {
            "true" => Some(toml::Value::Boolean(true)),
            "false" => Some(toml::Value::Boolean(false)),
            _ => None,
        },
        _ => None,
    }
}

/// An environment override as a TOML value of the type the overridden setting has by
/// default (`like`). A key the core has no default for (a section another crate owns, or
/// a key no section has) stays text: [`section`] types it, or the load refuses it.
fn env_value(raw: &str, like: Option<&toml::Value>) -> toml::Value {
    typed_text(raw, like).unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set_path(
    root: &mut toml::Table,
    path: &[String],
    value: toml::Value,
) -> Result<(), ConfigError> {
    let (last, parents) = path.split_last().expect("path has at least two segments");
    let mut table = root;
    for seg in parents {
        let entry = table
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| {
            ConfigError::Parse(format!(
                "override of {} crosses a non-table value",
                path.join(".")
            ))
        })?;
    }
    table.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::from_toml_and_env("", &env(&[])).unwrap();
        assert_eq!(c.logic.large_group_threshold, 500);
        assert_eq!(c.cache.session_ttl_secs, 1800);
        assert_eq!(c.cache.presence_ttl_secs, 300);
        assert!(
            !c.has_jwt_secret(),
            "no secret is known to anyone by default"
        );
    }

    #[test]
    fn env_overrides_file() {
        let c = Config::from_toml_and_env(
            "[logic]\nlarge_group_threshold = 10\n[node]\nid = \"a\"\n",
            &env(&[
                ("RINGCHAT_LOGIC__LARGE_GROUP_THRESHOLD", "20"),
                ("RINGCHAT_AUTH__JWT_SECRET", "0123456789abcdef0123"),
                ("RINGCHAT_CONFIG", "ignored.toml"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.logic.large_group_threshold, 20);
        assert_eq!(c.node.id, "a");
        assert!(c.has_jwt_secret());
    }

    #[test]
    fn sections_owned_elsewhere_take_their_types_from_their_defaults() {
        #[derive(Debug, Default, Deserialize, Serialize, PartialEq)]
        #[serde(default, deny_unknown_fields)]
        struct Mine {
            name: String,
            count: u32,
            #[serde(deserialize_with = "string_or_list")]
            list: Vec<String>,
        }
        let c = Config::from_toml_and_env(
            "[gateway]\nlist = [\"a\", \"b\"]\n",
            &env(&[
                ("RINGCHAT_GATEWAY__NAME", "7"),
                ("RINGCHAT_GATEWAY__COUNT", "3"),
            ]),
        )
        .unwrap();
        let mine: Mine = section(&c.gateway, "gateway").unwrap();
        assert_eq!(
            mine,
            Mine {
                name: "7".into(),
                count: 3,
                list: vec!["a".into(), "b".into()]
            }
        );
        let c = Config::from_toml_and_env("", &env(&[("RINGCHAT_GATEWAY__LIST", "x, y")])).unwrap();
        let mine: Mine = section(&c.gateway, "gateway").unwrap();
        assert_eq!(mine.list, vec!["x", "y"]);
        let c = Config::from_toml_and_env("", &env(&[("RINGCHAT_GATEWAY__NOPE", "1")])).unwrap();
        let e = section::<Mine>(&c.gateway, "gateway")
            .unwrap_err()
            .to_string();
        assert!(e.contains("[gateway]") && e.contains("nope"), "{e}");
    }

    #[test]
    fn the_log_format_is_text_or_json() {
        assert_eq!(Config::default().log.format, LogFormat::Text);
        let c = Config::from_toml_and_env("[log]\nformat = \"json\"\n", &env(&[])).unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        let c = Config::from_toml_and_env("", &env(&[("RINGCHAT_LOG__FORMAT", "json")])).unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        let e = Config::from_toml_and_env("", &env(&[("RINGCHAT_LOG__FORMAT", "xml")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("xml") && e.contains("json"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        assert!(Config::from_toml_and_env("[logic]\nnope = 1\n", &env(&[])).is_err());
        assert!(Config::from_toml_and_env("", &env(&[("RINGCHAT_BUS__PARTITIONS", "0")])).is_err());
        assert!(Config::from_toml_and_env("", &env(&[("RINGCHAT_NODE__ID", "a b")])).is_err());
    }

    #[test]
    fn secrets_do_not_leak_into_debug() {
        let mut c = Config::default();
        c.auth.jwt_secret = Secret::new("a-very-secret-value-0123456789");
        assert!(!format!("{c:?}").contains("a-very-secret-value"));
    }
}
