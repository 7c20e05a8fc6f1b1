//! Scenarios: what load to offer. Read from `perf/scenarios/*.toml`, every field
//! overridable on the command line (`--set key=value`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Every connection in the world room; one message every 1/rate s from a rotating sender.
    World,
    /// `groups` groups of `group_size`; one sender per group at `rate_per_sec` each.
    Group,
    /// `connections / 2` pairs; each side sends at `rate_per_sec`.
    Single,
    /// Connect, hold, measure memory and idle CPU; send nothing.
    Idle,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub kind: Kind,
    /// Total WebSocket connections.
    pub connections: usize,
    /// world: messages/s in total; group: per group; single: per sending side.
    pub rate_per_sec: f64,
    /// Seconds of measured sending (after the ramp).
    pub duration_secs: f64,
    /// Seconds to wait for in-flight deliveries after the last send.
    pub drain_secs: f64,
    /// Seconds to hold the connections (idle scenario).
    pub hold_secs: f64,
    /// Message content size in bytes (the frame adds the JSON envelope).
    pub payload_bytes: usize,
    pub groups: usize,
    pub group_size: usize,
    /// New connections per second during the ramp.
    pub ramp_per_sec: f64,
    /// Loadgen I/O threads per process.
    pub threads: usize,
    /// Worker processes (each under the open-file limit).
    pub processes: usize,
    /// Loopback source addresses to spread connections over (127.0.0.2 ...).
    pub source_addrs: usize,
    /// Microseconds a receive loop keeps polling without sleeping after a wake-up that
    /// found work (0: sleep at once).
    pub recv_spin_us: f64,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "custom".into(),
            kind: Kind::World,
            connections: 100,
            rate_per_sec: 10.0,
            duration_secs: 10.0,
            drain_secs: 2.0,
            hold_secs: 10.0,
            payload_bytes: 100,
            groups: 0,
            group_size: 0,
            ramp_per_sec: 2000.0,
            threads: 1,
            processes: 1,
            source_addrs: 4,
            recv_spin_us: 50.0,
        }
    }
}

impl Scenario {
    pub fn from_toml(text: &str) -> anyhow::Result<Scenario> {
        Ok(toml::from_str(text)?)
    }

    /// Applies `key=value` overrides (TOML values; bare words are strings).
    pub fn set(&mut self, kv: &str) -> anyhow::Result<()> {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--set wants key=value, got {kv:?}"))?;
        let mut table = toml::Table::try_from(&*self)?;
        let value: toml::Value = format!("x = {v}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|t| t.get("x").cloned())
            .unwrap_or_else(|| toml::Value::String(v.to_string()));
        if !table.contains_key(k) {
            anyhow::bail!("unknown scenario key {k:?}");
        }
        table.insert(k.to_string(), value);
        *self = toml::Value::Table(table).try_into()?;
        Ok(())
    }

    pub fn validate(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.connections > 0, "connections must be > 0");
        anyhow::ensure!(
            self.threads > 0 && self.processes > 0,
            "threads and processes must be > 0"
        );
        anyhow::ensure!(self.ramp_per_sec > 0.0, "ramp_per_sec must be > 0");
        anyhow::ensure!(self.payload_bytes >= 32, "payload_bytes must be >= 32");
        match self.kind {
            Kind::Group => {
                anyhow::ensure!(
                    self.groups > 0 && self.group_size >= 2,
                    "group scenarios need groups > 0 and group_size >= 2"
                );
                self.connections = self.groups * self.group_size;
            }
            Kind::Single => {
                anyhow::ensure!(self.connections >= 2, "single needs at least one pair");
                self.connections -= self.connections % 2;
            }
            Kind::World | Kind::Idle => {}
        }
        if self.kind != Kind::Idle {
            anyhow::ensure!(
                self.rate_per_sec > 0.0 && self.duration_secs > 0.0,
                "rate and duration must be > 0"
            );
        }
        Ok(())
    }
}
