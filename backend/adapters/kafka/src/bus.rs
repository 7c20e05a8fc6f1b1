//! [`KafkaBus`]: the producer side, topic creation, and the factory of subscriptions.
//!
//! One `FutureProducer` serves every publisher of the process: idempotent, `acks=all`, a
//! short linger so concurrent publishes share a produce request, and the Java client's
//! partitioner (murmur2), so a key (a conversation id upstream) maps to the same partition
//! from any Kafka client and its records stay in order. `publish` returns when the delivery
//! report arrives, that is when every in-sync replica has the record.
//!
//! Topics are created on first use (through the admin API; one that exists is fine) and
//! remembered, so later publishes and subscriptions go straight to the broker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use ringchat_core::ports::{Bus, Subscription};
use ringchat_core::{Error, Result};
use tokio::sync::OnceCell;

use crate::context::BusContext;
use crate::errors::{from_kafka, timed_out};
use crate::lag::{LagRegistry, LagSource, PartitionLag};
use crate::options::{ms, KafkaOptions, KafkaTuning};
use crate::subscription::KafkaSubscription;

/// The Kafka bus of one process; cheap to clone (clones share the clients).
#[derive(Clone)]
pub struct KafkaBus {
    inner: Arc<Inner>,
}

struct Inner {
    opts: KafkaOptions,
    tuning: KafkaTuning,
    producer: FutureProducer<BusContext>,
    admin: AdminClient<BusContext>,
    /// Topics known to exist (created by us, or found existing), each behind a cell so
    /// the first publishes to a new topic send one creation request between them.
    topics: Mutex<HashMap<String, Arc<OnceCell<()>>>>,
    /// Every live subscription, for [`KafkaBus::lag`].
    lags: LagRegistry,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("opts", &self.inner.opts)
            .finish_non_exhaustive()
    }
}

impl KafkaBus {
    /// Creates the clients with the default [`KafkaTuning`].
    ///
    /// Does not wait for the brokers: librdkafka connects in the background and keeps
    /// reconnecting, so a service starts while Kafka is briefly away; the first publish or
    /// topic creation says `UNAVAILABLE` if it still is.
    pub async fn connect(opts: &KafkaOptions) -> Result<KafkaBus> {
        Self::connect_tuned(opts, KafkaTuning::default()).await
    }

    pub async fn connect_tuned(opts: &KafkaOptions, tuning: KafkaTuning) -> Result<KafkaBus> {
        if opts.brokers.trim().is_empty() {
            return Err(Error::invalid("kafka: no brokers given"));
        }
        if opts.partitions < 1 || opts.replication < 1 {
            return Err(Error::invalid(
                "kafka: partitions and replication must be at least 1",
            ));
        }
        let producer: FutureProducer<BusContext> = client_config(opts)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", ms(tuning.linger))
            .set("message.timeout.ms", ms(tuning.publish_timeout))
            // the Java client's partitioner: a key lands on the same partition from any client
            .set("partitioner", "murmur2_random")
            .create_with_context(BusContext)
            .map_err(|e| from_kafka("creating the producer", &e))?;
        let admin: AdminClient<BusContext> = client_config(opts)
            .create_with_context(BusContext)
            .map_err(|e| from_kafka("creating the admin client", &e))?;
        Ok(KafkaBus {
            inner: Arc::new(Inner {
                opts: opts.clone(),
                tuning,
                producer,
                admin,
                topics: Mutex::new(HashMap::new()),
                lags: LagRegistry::default(),
            }),
        })
    }

    /// Creates the topics that do not exist yet (with the configured partitions and
    /// replication); a topic that exists is left as it is.
    pub async fn ensure_topics(&self, topics: &[&str]) -> Result<()> {
        for topic in topics {
            self.ensure_topic(topic).await?;
        }
        Ok(())
    }

    /// Creates `topic` unless this bus already knows it exists; concurrent callers share
    /// one creation request.
    async fn ensure_topic(&self, topic: &str) -> Result<()> {
        let once = {
            let mut topics = self.inner.topics.lock().expect("topics lock");
            match topics.get(topic) {
                Some(once) => once.clone(),
                None => topics.entry(topic.to_string()).or_default().clone(),
            }
        };
        // a failed creation leaves the cell empty: the next caller tries again
        once.get_or_try_init(|| self.create_topic(topic))
            .await
            .map(|_| ())
    }

    async fn create_topic(&self, topic: &str) -> Result<()> {
        let new = NewTopic::new(
            topic,
            self.inner.opts.partitions,
            TopicReplication::Fixed(self.inner.opts.replication),
        );
        let timeout = self.inner.tuning.request_timeout;
        let options = AdminOptions::new()
            .request_timeout(Some(timeout))
            .operation_timeout(Some(timeout));
        let what = format!("creating topic {topic}");
        let results = tokio::time::timeout(
            timeout + Duration::from_secs(1),
            self.inner.admin.create_topics([&new], &options),
        )
        .await
        .map_err(|_| timed_out(&what, timeout))?
        .map_err(|e| from_kafka(&what, &e))?;
        match results.into_iter().next() {
            Some(Ok(_)) => tracing::info!(topic, "kafka topic created"),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {
                tracing::debug!(topic, "kafka topic exists")
            }
            Some(Err((_, code))) => return Err(from_kafka(&what, &KafkaError::AdminOp(code))),
            None => return Err(Error::internal(format!("kafka: {what}: no result"))),
        }
        Ok(())
    }

    /// Joins `group` on `topic`, with the Kafka-only extra (lag) that the port's
    /// [`Bus::subscribe`] hides behind `Box<dyn Subscription>`.
    pub async fn subscription(&self, topic: &str, group: &str) -> Result<KafkaSubscription> {
        self.ensure_topic(topic).await?;
        let tuning = &self.inner.tuning;
        let consumer: StreamConsumer<BusContext> = client_config(&self.inner.opts)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", ms(tuning.fetch_wait))
            .set("session.timeout.ms", ms(tuning.session_timeout))
            // several heartbeats per session, and a rebalance is noticed within a second
            .set(
                "heartbeat.interval.ms",
                ms((tuning.session_timeout / 5).min(Duration::from_secs(1))),
            )
            .create_with_context(BusContext)
            .map_err(|e| from_kafka("creating a consumer", &e))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| from_kafka(&format!("subscribing to {topic}"), &e))?;
        let consumer = Arc::new(consumer);
        self.inner.lags.add(LagSource {
            group: group.to_string(),
            consumer: Arc::downgrade(&consumer),
        });
        tracing::debug!(topic, group, "kafka subscription joined");
        Ok(KafkaSubscription::new(
            topic,
            group,
            consumer,
            tuning.request_timeout,
        ))
    }

    /// The lag of every live subscription of this bus, per partition it owns (none until
    /// the group gave it partitions), for a service to export as a gauge. Asks the broker
    /// for the high watermarks: call it per metrics scrape, not per record.
    pub async fn lag(&self) -> Result<Vec<PartitionLag>> {
        self.inner
            .lags
            .measure(self.inner.tuning.request_timeout)
            .await
    }

    async fn send(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<()> {
        let timeout = self.inner.tuning.publish_timeout;
        let what = || format!("publishing to {topic}");
        let publish = async {
            self.ensure_topic(topic).await?;
            let mut record = FutureRecord::to(topic).key(key).payload(payload);
            if let Some(headers) = headers {
                record = record.headers(headers);
            }
            // Waits for room in librdkafka's queue, then for the delivery report.
            match self.inner.producer.send(record, timeout).await {
                Ok(_) => Ok(()),
                Err((e, _)) => Err(from_kafka(&what(), &e)),
            }
        };
        // The one deadline over topic creation, queueing and delivery: a broker that is
        // away never makes a publisher hang.
        tokio::time::timeout(timeout, publish)
            .await
            .map_err(|_| timed_out(&what(), timeout))?
    }
}

fn client_config(opts: &KafkaOptions) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &opts.brokers)
        .set("client.id", &opts.client_id)
        // rdkafka derives librdkafka's log level from the `log` crate, which ringchat does
        // not set up: take it from tracing (librdkafka's debug lines need `debug=` anyway)
        .set_log_level(
            if tracing::enabled!(target: "librdkafka", tracing::Level::INFO) {
                RDKafkaLogLevel::Info
            } else {
                RDKafkaLogLevel::Warning
            },
        );
    config
}

#[async_trait]
impl Bus for KafkaBus {
    async fn publish(&self, topic: &str, key: &[u8], payload: Bytes) -> Result<()> {
        self.send(topic, key, &payload, None).await
    }

    async fn publish_with_headers(
        &self,
        topic: &str,
        key: &[u8],
        payload: Bytes,
        headers: &[(&str, &[u8])],
    ) -> Result<()> {
        let owned = headers.iter().fold(
            OwnedHeaders::new_with_capacity(headers.len()),
            |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(*v),
                })
            },
        );
        self.send(topic, key, &payload, Some(owned)).await
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>> {
        Ok(Box::new(self.subscription(topic, group).await?))
    }

    async fn lag(&self) -> Result<Vec<PartitionLag>> {
        KafkaBus::lag(self).await
    }
}
