//! What one client may cost the gateway: connections per address and overall, HTTP
//! requests per address, accounts created per address. Shared by all cores (an atomic and
//! short-held locks, taken once per connection or request, never per frame); the
//! per-frame limit lives with each connection ([`crate::ws`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::GatewayConfig;
use ringchat_core::dynamic::{number, Reconfigure};
use ringchat_core::limits::{KeyedLimiter, Rate};

/// File descriptors kept back from the connection cap for the store, the admin port,
/// the bus and logs.
const FD_RESERVE: usize = 512;

pub struct Limits {
    pub http: KeyedLimiter<IpAddr>,
    pub accounts: KeyedLimiter<IpAddr>,
    /// Client frames per connection (taken by each connection as it opens).
    frames: Mutex<Rate>,
    max_total: usize,
    max_per_ip: AtomicUsize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// An open connection, counted until dropped.
pub struct ConnSlot {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.limits.total.fetch_sub(1, Relaxed);
        let mut map = self.limits.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Full,
    TooManyFromAddress,
}

impl Limits {
    pub fn new(config: &GatewayConfig, open_files: usize) -> Arc<Limits> {
        let max_total = match config.max_connections {
            0 => open_files.saturating_sub(FD_RESERVE).max(64),
            n => n,
        };
        Arc::new(Limits {
            http: KeyedLimiter::new(Rate::new(
                f64::from(config.http_requests_per_sec),
                f64::from(config.http_requests_burst),
            )),
            accounts: KeyedLimiter::new(Rate::per_minute(
                f64::from(config.accounts_per_minute),
                f64::from(config.accounts_burst),
            )),
            frames: Mutex::new(Rate::new(
                f64::from(config.rate_limit_per_sec),
                f64::from(config.rate_limit_burst),
            )),
            max_total,
            max_per_ip: AtomicUsize::new(config.max_connections_per_ip.max(1)),
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a new connection from `ip`, or refuses it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, Refused> {
        if self.total.fetch_add(1, Relaxed) >= self.max_total {
            self.total.fetch_sub(1, Relaxed);
            return Err(Refused::Full);
        }
        let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.max_per_ip.load(Relaxed) {
            drop(map);
            self.total.fetch_sub(1, Relaxed);
            return Err(Refused::TooManyFromAddress);
        }
        *n += 1;
        Ok(ConnSlot {
            limits: self.clone(),
            ip,
        })
    }

    /// The frame rate a connection opened now gets.
    pub fn frame_rate(&self) -> Rate {
        *self.frames.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn connections(&self) -> usize {
        self.total.load(Relaxed)
    }

    pub fn max_connections(&self) -> usize {
        self.max_total
    }

    /// At the connection cap: not ready for more clients.
    pub fn at_capacity(&self) -> bool {
        self.connections() >= self.max_total
    }
}

/// The gateway's settings that change through discovery without a restart (see
/// `ringchat_core::dynamic`): the per-address HTTP and account limits at once, the
/// per-connection frame rate for connections opened from then on.
impl Reconfigure for Limits {
    fn reconfigure(&self, key: &str, value: &str) -> ringchat_core::Result<bool> {
        let n = || number::<u32>(key, value, 1..=10_000_000).map(f64::from);
        let per_sec = |l: &KeyedLimiter<IpAddr>, rate: Option<f64>, burst: Option<f64>| {
            let r = l.rate();
            l.set_rate(Rate::new(
                rate.unwrap_or(r.per_sec),
                burst.unwrap_or(r.burst),
            ));
        };
        match key {
            "gateway.http_requests_per_sec" => per_sec(&self.http, Some(n()?), None),
            "gateway.http_requests_burst" => per_sec(&self.http, None, Some(n()?)),
            "gateway.accounts_per_minute" => per_sec(&self.accounts, Some(n()? / 60.0), None),
            "gateway.accounts_burst" => per_sec(&self.accounts, None, Some(n()?)),
            "gateway.rate_limit_per_sec" | "gateway.rate_limit_burst" => {
                let v = n()?;
                let mut r = self.frames.lock().unwrap_or_else(|p| p.into_inner());
                *r = if key.ends_with("per_sec") {
                    Rate::new(v, r.burst)
                } else {
                    Rate::new(r.per_sec, v)
                };
            }
            "gateway.max_connections_per_ip" => self
                .max_per_ip
                .store(number::<usize>(key, value, 1..=10_000_000)?, Relaxed),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Raises the soft open-file limit to the hard one (a server that holds one descriptor per
/// client wants all it may have) and returns the limit in force.
pub fn raise_open_file_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the rlimit struct we own, nothing else
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                lim = wanted;
            }
        }
    }
    usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
}

/// Logs at most one line per `every`, counting what it kept quiet.
pub struct QuietLog {
    every: Duration,
    last: std::cell::Cell<Option<std::time::Instant>>,
    suppressed: std::cell::Cell<u64>,
}

impl QuietLog {
    pub fn new(every: Duration) -> Self {
        QuietLog {
            every,
            last: std::cell::Cell::new(None),
            suppressed: std::cell::Cell::new(0),
        }
    }

    /// `Some(n)` when a line may be written now (`n` lines were suppressed since the last).
    pub fn allow(&self) -> Option<u64> {
        let now = std::time::Instant::now();
        match self.last.get() {
            Some(t) if now.duration_since(t) < self.every => {
                self.suppressed.set(self.suppressed.get() + 1);
                None
            }
            _ => {
                self.last.set(Some(now));
                Some(self.suppressed.replace(0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_per_address_and_overall() {
        let config = GatewayConfig {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..GatewayConfig::default()
        };
        let l = Limits::new(&config, 20_000);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let a1 = l.admit(a).unwrap();
        let _a2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).err(), Some(Refused::TooManyFromAddress));
        let _b1 = l.admit(b).unwrap();
        assert_eq!(l.admit(b).err(), Some(Refused::Full));
        assert!(l.at_capacity());
        drop(a1);
        assert!(!l.at_capacity());
        l.admit(b).unwrap();
    }

    #[test]
    fn the_default_cap_stays_below_the_open_file_limit() {
        let l = Limits::new(&GatewayConfig::default(), 20_000);
        assert_eq!(l.max_connections(), 20_000 - FD_RESERVE);
    }

    #[test]
    fn limits_change_through_dynamic_settings_and_bad_values_are_refused() {
        let l = Limits::new(&GatewayConfig::default(), 20_000);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(l
            .reconfigure("gateway.max_connections_per_ip", "1")
            .unwrap());
        let _a1 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).err(), Some(Refused::TooManyFromAddress));
        assert!(l.reconfigure("gateway.rate_limit_per_sec", "7").unwrap());
        assert!(l.reconfigure("gateway.rate_limit_burst", "9").unwrap());
        assert_eq!(l.frame_rate(), Rate::new(7.0, 9.0));
        assert!(l.reconfigure("gateway.http_requests_burst", "2").unwrap());
        assert!(l.http.take(&a).is_ok() && l.http.take(&a).is_ok());
        assert!(l.http.take(&a).is_err(), "the new burst holds at once");
        assert!(l.reconfigure("gateway.accounts_per_minute", "120").unwrap());
        assert_eq!(l.accounts.rate().per_sec, 2.0);
        assert!(l.reconfigure("gateway.rate_limit_per_sec", "0").is_err());
        assert!(l.reconfigure("gateway.rate_limit_per_sec", "fast").is_err());
        assert_eq!(
            l.frame_rate(),
            Rate::new(7.0, 9.0),
            "a refused value changes nothing"
        );
        assert!(!l.reconfigure("logic.large_group_threshold", "5").unwrap());
    }
}
