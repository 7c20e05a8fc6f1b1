//! The gateway's settings: the `[gateway]` section of the shared config file (and its
//! `RINGCHAT_GATEWAY__*` overrides), typed and validated here, where they are used. The
//! other sections are `ringchat_core::Config`'s.

use std::collections::HashMap;
use std::path::Path;

use ringchat_core::config::{section, string_or_list, ConfigError};
use ringchat_core::Config;
use serde::{Deserialize, Serialize};

/// What a gateway process reads: the shared sections and its own.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub config: Config,
    pub gateway: GatewayConfig,
}

impl Settings {
    /// Loads `path` (if given) with `RINGCHAT_*` overrides from `env`, and validates both
    /// the shared sections and `[gateway]`.
    pub fn load(
        path: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        Self::from_config(Config::load(path, env)?)
    }

    /// As [`Settings::load`], from TOML text.
    pub fn from_toml_and_env(
        text: &str,
        env: &HashMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        Self::from_config(Config::from_toml_and_env(text, env)?)
    }

    pub fn from_config(config: Config) -> Result<Settings, ConfigError> {
        let gateway = GatewayConfig::from_config(&config)?;
        Ok(Settings { config, gateway })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Client WebSocket + HTTP API.
    pub listen: String,
    /// Health, readiness and Prometheus metrics.
    pub admin_listen: String,
    /// Where the distributed `im-gateway` reaches im-logic with static discovery.
    pub logic_url: String,
    /// Monoio worker threads ("cores"); 0 = one per CPU.
    pub workers: usize,
    /// Pin worker `i` to CPU `i % cpus`.
    pub pin_workers: bool,
    /// `auto` (io_uring if the kernel has it, else epoll), `uring` or `legacy`.
    pub driver: String,
    /// io_uring submission queue entries per worker.
    pub uring_entries: u32,
    /// Largest WebSocket text message accepted; larger ones get `MESSAGE_TOO_LARGE`.
    pub max_message_bytes: usize,
    /// Largest WebSocket frame read at all; beyond it the socket closes with 1009.
    pub max_frame_bytes: usize,
    /// Frames a connection may have queued before it counts as a slow consumer.
    pub send_queue_frames: usize,
    /// Bytes a connection may have queued before it counts as a slow consumer.
    pub send_queue_bytes: usize,
    /// A connection silent this long is closed (clients ping every 30 s).
    pub heartbeat_timeout_secs: u64,
    /// How often presence entries are refreshed in the cache.
    pub presence_refresh_secs: u64,
    /// Client frames per second per connection (token bucket), and its burst: every
    /// frame counts (sends, mark-read, ping, invalid ones).
    pub rate_limit_per_sec: u32,
    pub rate_limit_burst: u32,
    /// HTTP requests (upgrades included) per second per client address, and the burst.
    pub http_requests_per_sec: u32,
    pub http_requests_burst: u32,
    /// Accounts (register and guest) created per minute per client address, and the burst.
    pub accounts_per_minute: u32,
    pub accounts_burst: u32,
    /// Open connections (HTTP and WebSocket) at most; 0 = the open-file limit less a
    /// reserve for the store, the admin port and the bus.
    pub max_connections: usize,
    /// Open connections per client address at most.
    pub max_connections_per_ip: usize,
    /// Largest HTTP request body.
    pub http_max_body_bytes: usize,
    /// Largest HTTP request head (request line and headers).
    pub http_max_head_bytes: usize,
    /// Once a request has begun, its whole head must arrive within this (slowloris).
    pub http_head_timeout_secs: u64,
    /// An idle keep-alive connection is closed after this.
    pub http_idle_timeout_secs: u64,
    /// Allowed CORS origins; `*` allows any (the embedded/dev default). In the
    /// environment: a comma-separated list.
    #[serde(deserialize_with = "string_or_list")]
    pub cors_origins: Vec<String>,
    /// On shutdown, how long to wait for in-flight sends to be acknowledged.
    pub shutdown_grace_secs: u64,
    /// Bytes read from a socket at a time, into one buffer per core that its connections
    /// share (a connection waits for input without a buffer of its own).
    pub read_buffer_bytes: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: "0.0.0.0:8080".into(),
            admin_listen: "127.0.0.1:8081".into(),
            logic_url: "http://127.0.0.1:9001".into(),
            workers: 0,
            pin_workers: false,
            driver: "auto".into(),
            uring_entries: 1024,
            max_message_bytes: 64 * 1024,
            max_frame_bytes: 1024 * 1024,
            send_queue_frames: 4096,
            send_queue_bytes: 8 * 1024 * 1024,
            heartbeat_timeout_secs: 90,
            presence_refresh_secs: 60,
            rate_limit_per_sec: 100,
            rate_limit_burst: 200,
            http_requests_per_sec: 100,
            http_requests_burst: 400,
            accounts_per_minute: 30,
            accounts_burst: 30,
            max_connections: 0,
            max_connections_per_ip: 1000,
            http_max_body_bytes: 1024 * 1024,
            http_max_head_bytes: 16 * 1024,
            http_head_timeout_secs: 10,
            http_idle_timeout_secs: 60,
            cors_origins: vec!["*".into()],
            shutdown_grace_secs: 10,
            read_buffer_bytes: 64 * 1024,
        }
    }
}

/// The monoio drivers `gateway.driver` names.
pub const DRIVERS: [&str; 3] = ["auto", "uring", "legacy"];

impl GatewayConfig {
    /// The `[gateway]` section of `config`, validated.
    pub fn from_config(config: &Config) -> Result<GatewayConfig, ConfigError> {
        let gateway: GatewayConfig = section(&config.gateway, "gateway")?;
        gateway.validate()?;
        Ok(gateway)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        fn check(ok: bool, key: &'static str, reason: String) -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid { key, reason })
            }
        }
        fn address(value: &str, key: &'static str) -> Result<(), ConfigError> {
            check(
                value.parse::<std::net::SocketAddr>().is_ok(),
                key,
                format!("{value:?} is no ip:port address (e.g. 0.0.0.0:8080)"),
            )
        }
        address(&self.listen, "gateway.listen")?;
        address(&self.admin_listen, "gateway.admin_listen")?;
        check(
            self.logic_url.starts_with("http://") || self.logic_url.starts_with("https://"),
            "gateway.logic_url",
            format!("{:?} is no http:// or https:// URL", self.logic_url),
        )?;
        check(
            DRIVERS.contains(&self.driver.as_str()),
            "gateway.driver",
            format!("{:?} is none of auto, uring, legacy", self.driver),
        )?;
        check(
            self.workers <= MAX_WORKERS,
            "gateway.workers",
            format!(
                "{} cores is more than {MAX_WORKERS} (0 = one per CPU)",
                self.workers
            ),
        )?;
        check(
            self.uring_entries.is_power_of_two() && (8..=32_768).contains(&self.uring_entries),
            "gateway.uring_entries",
            format!(
                "{} is not a power of two from 8 to 32768",
                self.uring_entries
            ),
        )?;
        for (value, key) in [
            (self.max_message_bytes, "gateway.max_message_bytes"),
            (self.max_frame_bytes, "gateway.max_frame_bytes"),
            (self.send_queue_frames, "gateway.send_queue_frames"),
            (self.send_queue_bytes, "gateway.send_queue_bytes"),
            (
                self.max_connections_per_ip,
                "gateway.max_connections_per_ip",
            ),
            (self.http_max_body_bytes, "gateway.http_max_body_bytes"),
            (self.read_buffer_bytes, "gateway.read_buffer_bytes"),
        ] {
            check(value > 0, key, "must be > 0".into())?;
        }
        for (value, key) in [
            (self.rate_limit_per_sec, "gateway.rate_limit_per_sec"),
            (self.rate_limit_burst, "gateway.rate_limit_burst"),
            (self.http_requests_per_sec, "gateway.http_requests_per_sec"),
            (self.http_requests_burst, "gateway.http_requests_burst"),
            (self.accounts_per_minute, "gateway.accounts_per_minute"),
            (self.accounts_burst, "gateway.accounts_burst"),
        ] {
            check(value > 0, key, "must be > 0".into())?;
        }
        for (value, key) in [
            (
                self.heartbeat_timeout_secs,
                "gateway.heartbeat_timeout_secs",
            ),
            (self.presence_refresh_secs, "gateway.presence_refresh_secs"),
            (
                self.http_head_timeout_secs,
                "gateway.http_head_timeout_secs",
            ),
            (
                self.http_idle_timeout_secs,
                "gateway.http_idle_timeout_secs",
            ),
        ] {
            check(value > 0, key, "must be > 0".into())?;
        }
        check(
            self.max_message_bytes <= self.max_frame_bytes,
            "gateway.max_message_bytes",
            format!(
                "{} is larger than gateway.max_frame_bytes ({}): such messages could never arrive",
                self.max_message_bytes, self.max_frame_bytes
            ),
        )?;
        check(
            self.http_max_head_bytes >= 1024,
            "gateway.http_max_head_bytes",
            "must be at least 1024".into(),
        )?;
        check(
            !self.cors_origins.is_empty(),
            "gateway.cors_origins",
            "must name at least one origin (or `*`)".into(),
        )?;
        Ok(())
    }
}

/// At most this many gateway cores.
pub const MAX_WORKERS: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn invalid(text: &str, pairs: &[(&str, &str)]) -> String {
        Settings::from_toml_and_env(text, &env(pairs))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_are_valid() {
        let s = Settings::from_toml_and_env("", &env(&[])).unwrap();
        assert_eq!(s.gateway.listen, "0.0.0.0:8080");
        assert_eq!(s.gateway.admin_listen, "127.0.0.1:8081");
        assert_eq!(s.gateway.driver, "auto");
    }

    #[test]
    fn lists_come_from_arrays_or_comma_separated_env() {
        let s = Settings::from_toml_and_env(
            "[gateway]\ncors_origins = [\"http://a\", \"http://b\"]\n",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(s.gateway.cors_origins, vec!["http://a", "http://b"]);
        let s = Settings::from_toml_and_env(
            "",
            &env(&[(
                "RINGCHAT_GATEWAY__CORS_ORIGINS",
                "http://localhost:5173, http://x",
            )]),
        )
        .unwrap();
        assert_eq!(
            s.gateway.cors_origins,
            vec!["http://localhost:5173", "http://x"]
        );
    }

    #[test]
    fn an_override_keeps_its_text_where_the_setting_is_text() {
        // found by the config fuzz target: "012345" was read as the number 12345, then
        // turned back into the text "12345"
        let s = Settings::from_toml_and_env(
            "",
            &env(&[("RINGCHAT_GATEWAY__CORS_ORIGINS", "012345, 1.50")]),
        )
        .unwrap();
        assert_eq!(s.gateway.cors_origins, vec!["012345", "1.50"]);
        let f = Settings::from_toml_and_env(
            "[gateway]\ncors_origins = [\"012345\", \"1.50\"]\n",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(f.gateway.cors_origins, s.gateway.cors_origins);
        // a number in the file where the setting is text is refused, as in every section
        let e = invalid("[gateway]\nlisten = 8080\n", &[]);
        assert!(e.contains("[gateway]") && e.contains("string"), "{e}");
        // text that is not a number, for a number setting, names the setting
        let e = invalid("", &[("RINGCHAT_GATEWAY__WORKERS", "two")]);
        assert!(e.contains("[gateway]") && e.contains("workers"), "{e}");
    }

    #[test]
    fn overrides_take_the_settings_types() {
        let s = Settings::from_toml_and_env(
            "[gateway]\nworkers = 1\n",
            &env(&[
                ("RINGCHAT_GATEWAY__WORKERS", "3"),
                ("RINGCHAT_GATEWAY__PIN_WORKERS", "true"),
                ("RINGCHAT_GATEWAY__LISTEN", "127.0.0.1:0"),
            ]),
        )
        .unwrap();
        assert_eq!((s.gateway.workers, s.gateway.pin_workers), (3, true));
        assert_eq!(s.gateway.listen, "127.0.0.1:0");
    }

    #[test]
    fn bad_driver_worker_counts_queues_and_unknown_keys_are_refused_by_name() {
        let e = invalid("", &[("RINGCHAT_GATEWAY__DRIVER", "epoll")]);
        assert!(e.contains("gateway.driver") && e.contains("epoll"), "{e}");
        let e = invalid("[gateway]\nworkers = 5000\n", &[]);
        assert!(e.contains("gateway.workers"), "{e}");
        let e = invalid("", &[("RINGCHAT_GATEWAY__SEND_QUEUE_FRAMES", "0")]);
        assert!(e.contains("gateway.send_queue_frames"), "{e}");
        let e = invalid("", &[("RINGCHAT_GATEWAY__SEND_QUEUE_BYTES", "0")]);
        assert!(e.contains("gateway.send_queue_bytes"), "{e}");
        let e = invalid("", &[("RINGCHAT_GATEWAY__URING_ENTRIES", "1000")]);
        assert!(e.contains("gateway.uring_entries"), "{e}");
        let e = invalid("", &[("RINGCHAT_GATEWAY__LISTEN", "8080")]);
        assert!(e.contains("gateway.listen"), "{e}");
        let e = invalid(
            "[gateway]\nmax_message_bytes = 2000000\nmax_frame_bytes = 1000000\n",
            &[],
        );
        assert!(e.contains("gateway.max_message_bytes"), "{e}");
        let e = invalid("[gateway]\nlisen = \"0.0.0.0:1\"\n", &[]);
        assert!(e.contains("[gateway]") && e.contains("lisen"), "{e}");
        let e = invalid("", &[("RINGCHAT_GATEWAY__NOPE", "1")]);
        assert!(e.contains("nope"), "{e}");
    }
}
