//! Rate limits: a token bucket, and a map of them keyed by who is limited (a client
//! address, a user, a username). Used by the gateway (per connection, per address) and by
//! im-logic (per user, per login name).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

/// A rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: f64,
}

impl Rate {
    pub fn new(per_sec: f64, burst: f64) -> Rate {
        Rate {
            per_sec: per_sec.max(f64::MIN_POSITIVE),
            burst: burst.max(1.0),
        }
    }

    /// `n` per minute, with a burst of `burst`.
    pub fn per_minute(n: f64, burst: f64) -> Rate {
        Rate::new(n / 60.0, burst)
    }
}

impl TokenBucket {
    pub fn full(rate: Rate) -> TokenBucket {
        TokenBucket {
            tokens: rate.burst,
            last: Instant::now(),
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let earned = now.saturating_duration_since(self.last).as_secs_f64() * rate.per_sec;
        self.tokens = (self.tokens + earned).min(rate.burst);
        self.last = now;
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self, rate: Rate) -> Result<(), Duration> {
        self.refill(rate, Instant::now());
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                ((1.0 - self.tokens) / rate.per_sec).min(86_400.0),
            ))
        }
    }

    fn is_full(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= rate.burst
    }
}

/// One bucket per key, created full on first use. The map forgets keys whose buckets
/// have refilled, so it stays as small as the set of recently active keys. The rate can
/// change while it runs (dynamic config): buckets keep their tokens, capped at the new
/// burst.
pub struct KeyedLimiter<K> {
    inner: Mutex<Limiter<K>>,
    sweep_at: usize,
}

struct Limiter<K> {
    rate: Rate,
    buckets: HashMap<K, TokenBucket>,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn new(rate: Rate) -> Self {
        KeyedLimiter {
            inner: Mutex::new(Limiter {
                rate,
                buckets: HashMap::new(),
            }),
            sweep_at: 4096,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Limiter<K>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a token for `key`, or says how long until one is there.
    pub fn take(&self, key: &K) -> Result<(), Duration> {
        let mut l = self.lock();
        let rate = l.rate;
        if l.buckets.len() >= self.sweep_at {
            let now = Instant::now();
            l.buckets.retain(|_, b| !b.is_full(rate, now));
        }
        l.buckets
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::full(rate))
            .take(rate)
    }

    /// Puts back a token taken for `key` (the attempt turned out not to count).
    pub fn give_back(&self, key: &K) {
        let mut l = self.lock();
        let burst = l.rate.burst;
        if let Some(b) = l.buckets.get_mut(key) {
            b.tokens = (b.tokens + 1.0).min(burst);
        }
    }

    pub fn rate(&self) -> Rate {
        self.lock().rate
    }

    /// Changes the rate from now on.
    pub fn set_rate(&self, rate: Rate) {
        let mut l = self.lock();
        l.rate = rate;
        for b in l.buckets.values_mut() {
            b.tokens = b.tokens.min(rate.burst);
        }
    }

    pub fn tracked(&self) -> usize {
        self.lock().buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_says_when_to_come_back() {
        let rate = Rate::new(10.0, 3.0);
        let mut b = TokenBucket::full(rate);
        for _ in 0..3 {
            b.take(rate).unwrap();
        }
        let wait = b.take(rate).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
    }

    #[test]
    fn keys_are_limited_apart_and_idle_keys_are_forgotten() {
        let mut l = KeyedLimiter::new(Rate::new(1000.0, 2.0));
        l.sweep_at = 4;
        for k in 0..2 {
            l.take(&k).unwrap();
            l.take(&k).unwrap();
            assert!(l.take(&k).is_err());
        }
        l.take(&7).unwrap();
        std::thread::sleep(Duration::from_millis(10));
        l.take(&8).unwrap();
        l.take(&9).unwrap();
        // the sweep dropped the refilled buckets
        assert!(l.tracked() < 5, "{}", l.tracked());
    }
}
