//! Figures a component keeps itself, read when scraped.
//!
//! A component that counts on a hot path keeps plain atomics (one relaxed add per event,
//! no registry types in its code); [`Readings`] turns them into Prometheus families at
//! scrape time, one closure per figure.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

enum Read {
    Counter(Box<dyn Fn() -> u64 + Send + Sync>),
    Gauge(Box<dyn Fn() -> i64 + Send + Sync>),
}

struct Reading {
    name: &'static str,
    help: &'static str,
    read: Read,
}

/// Unlabelled counters and gauges whose values closures read at each scrape.
#[derive(Default)]
pub struct Readings {
    readings: Vec<Reading>,
}

impl Readings {
    pub fn new() -> Readings {
        Readings::default()
    }

    /// A counter `{name}_total` (give `name` without the suffix).
    pub fn counter(
        mut self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Readings {
        debug_assert!(!name.ends_with("_total"), "{name}: the encoder adds _total");
        self.readings.push(Reading {
            name,
            help,
            read: Read::Counter(Box::new(read)),
        });
        self
    }

    /// A gauge `name`.
    pub fn gauge<T: Into<i64>>(
        mut self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> T + Send + Sync + 'static,
    ) -> Readings {
        self.readings.push(Reading {
            name,
            help,
            read: Read::Gauge(Box::new(move || read().into())),
        });
        self
    }
}

impl fmt::Debug for Readings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.readings.iter().map(|r| r.name))
            .finish()
    }
}

impl Collector for Readings {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        for r in &self.readings {
            match &r.read {
                Read::Counter(read) => {
                    let m = encoder.encode_descriptor(r.name, r.help, None, MetricType::Counter)?;
                    ConstCounter::new(read()).encode(m)?;
                }
                Read::Gauge(read) => {
                    let m = encoder.encode_descriptor(r.name, r.help, None, MetricType::Gauge)?;
                    ConstGauge::new(read()).encode(m)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;

    use super::*;
    use crate::Metrics;

    #[test]
    fn values_are_read_at_each_scrape() {
        let n = Arc::new(AtomicU64::new(0));
        let seen = n.clone();
        let mut m = Metrics::new();
        m.register_collector(
            Readings::new()
                .counter("x_events", "events", move || seen.load(Relaxed))
                .gauge("x_level", "level", || -3i64),
        );
        assert!(m.encode().contains("\nx_events_total 0\n"));
        n.fetch_add(5, Relaxed);
        let text = m.encode();
        assert!(
            text.contains("# TYPE x_events_total counter\nx_events_total 5\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE x_level gauge\nx_level -3\n"),
            "{text}"
        );
    }
}
