//! Consumer lag, measured when metrics are scraped.
//!
//! [`Bus::lag`] asks the broker (a round trip per partition), so it runs once per scrape,
//! bounded by [`LAG_TIMEOUT`], and one scrape at a time: the gauge keeps what the last
//! measurement found. A measurement that fails (the broker is down) clears the gauge and
//! counts in `ringchat_bus_lag_measurement_failures_total` rather than serving stale figures.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use ringchat_core::ports::Bus;

use crate::Metrics;

/// How long a scrape waits for the broker's answer.
pub const LAG_TIMEOUT: Duration = Duration::from_secs(3);

type LagLabels = [(&'static str, String); 3];

/// The lag gauge of one bus and how to refresh it.
pub struct BusLag {
    bus: Arc<dyn Bus>,
    gauge: Family<LagLabels, Gauge>,
    failures: Counter,
    /// One measurement at a time (concurrent scrapes wait for it, then measure again).
    measuring: tokio::sync::Mutex<()>,
}

impl BusLag {
    pub fn new(bus: Arc<dyn Bus>) -> BusLag {
        BusLag {
            bus,
            gauge: Family::default(),
            failures: Counter::default(),
            measuring: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn register(&self, metrics: &mut Metrics) {
        metrics.register(
            "ringchat_bus_consumer_lag",
            "records a consumer group of this process has not processed yet, per partition (measured at scrape)",
            self.gauge.clone(),
        );
        metrics.register(
            "ringchat_bus_lag_measurement_failures",
            "scrapes whose consumer-lag measurement failed or timed out",
            self.failures.clone(),
        );
    }

    /// Measures the lag now and replaces the gauge's figures.
    pub async fn refresh(&self) {
        let _one_at_a_time = self.measuring.lock().await;
        match tokio::time::timeout(LAG_TIMEOUT, self.bus.lag()).await {
            Ok(Ok(lags)) => {
                self.gauge.clear();
                for l in lags {
                    let labels = [
                        ("topic", l.topic),
                        ("group", l.group),
                        ("partition", l.partition.to_string()),
                    ];
                    self.gauge
                        .get_or_create(&labels)
                        .set(i64::try_from(l.lag).unwrap_or(i64::MAX));
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "measuring consumer lag failed");
                self.gauge.clear();
                self.failures.inc();
            }
            Err(_) => {
                tracing::debug!(timeout = ?LAG_TIMEOUT, "measuring consumer lag timed out");
                self.gauge.clear();
                self.failures.inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use ringchat_embedded::MemoryBus;

    use super::*;

    #[tokio::test]
    async fn the_lag_gauge_is_refreshed_per_scrape() {
        let bus = Arc::new(MemoryBus::new(2, 64));
        let mut m = Metrics::new();
        m.bus_lag(bus.clone());
        assert!(
            !m.scrape().await.contains("ringchat_bus_consumer_lag{"),
            "no subscription, no lag"
        );
        let _sub = bus.subscribe("up", "grp").await.unwrap();
        for _ in 0..3 {
            bus.publish("up", b"key", Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
        let text = m.scrape().await;
        let lag: i64 = text
            .lines()
            .filter(|l| {
                l.starts_with("ringchat_bus_consumer_lag{topic=\"up\",group=\"grp\",partition=\"")
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
            .sum();
        assert_eq!(lag, 3, "{text}");
        assert!(text.contains("ringchat_bus_lag_measurement_failures_total 0"));
    }
}
