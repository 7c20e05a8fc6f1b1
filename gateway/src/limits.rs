//! What one client may cost the gateway: connections per address and overall, HTTP
//! requests per address, accounts created per address. Shared by all cores (an atomic and
//! short-held locks, taken once per connection or request, never per frame); the
//! per-frame limit lives with each connection ([`crate::ws`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringchat_core::config::GatewayConfig;
use ringchat_core::limits::{KeyedLimiter, Rate};

/// File descriptors kept back from the connection cap for the store, the admin port,
/// the bus and logs.
const FD_RESERVE: usize = 512;

pub struct Limits {
    pub http: KeyedLimiter<IpAddr>,
    pub accounts: KeyedLimiter<IpAddr>,
    max_total: usize,
    max_per_ip: usize,
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
            max_total,
            max_per_ip: config.max_connections_per_ip.max(1),
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
        if *n >= self.max_per_ip {
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
}
