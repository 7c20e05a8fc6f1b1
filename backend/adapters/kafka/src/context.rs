//! The librdkafka client context: its log lines and errors go to `tracing` (rdkafka's
//! default writes to the `log` crate, which ringchat does not collect).

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

/// Context of every client the bus creates.
#[derive(Clone, Copy, Default)]
pub(crate) struct BusContext;

impl ClientContext for BusContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, line: &str) {
        use RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", fac, "{line}")
            }
            L::Warning => tracing::warn!(target: "librdkafka", fac, "{line}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", fac, "{line}"),
            L::Debug => tracing::debug!(target: "librdkafka", fac, "{line}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, reason, "kafka client error");
    }
}

impl ConsumerContext for BusContext {}
