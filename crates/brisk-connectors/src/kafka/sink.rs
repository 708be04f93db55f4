//! The Kafka sink: at least once, the producer flushed at every checkpoint.

use super::{client_config, property};
use brisk::prelude::{RuntimeContext, Sink, SinkContext, SinkWriter};
use brisk_core::BoxError;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Turns an element into a record's key (optional) and value.
pub type KafkaSerializer<T> = Arc<dyn Fn(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + Sync>;

/// Writes to a Kafka topic (Flink's `KafkaSink` with `DeliveryGuarantee.AT_LEAST_ONCE`): each
/// checkpoint waits until every record sent before its barrier is acknowledged by the brokers;
/// build one with [`KafkaSink::builder`].
pub struct KafkaSink<T> {
    properties: Arc<Vec<(String, String)>>,
    topic: String,
    serializer: KafkaSerializer<T>,
    flush_timeout: Duration,
}

impl<T> Clone for KafkaSink<T> {
    fn clone(&self) -> Self {
        KafkaSink {
            properties: self.properties.clone(),
            topic: self.topic.clone(),
            serializer: self.serializer.clone(),
            flush_timeout: self.flush_timeout,
        }
    }
}

/// Configures a [`KafkaSink`].
pub struct KafkaSinkBuilder<T> {
    properties: Vec<(String, String)>,
    topic: Option<String>,
    serializer: Option<KafkaSerializer<T>>,
    flush_timeout: Duration,
}

impl<T> KafkaSink<T> {
    /// A builder; a checkpoint waits up to a minute for the brokers' acknowledgements.
    pub fn builder() -> KafkaSinkBuilder<T> {
        KafkaSinkBuilder {
            properties: Vec::new(),
            topic: None,
            serializer: None,
            flush_timeout: Duration::from_secs(60),
        }
    }
}

impl<T> KafkaSinkBuilder<T> {
    /// The brokers to start from (`host:port,...`).
    pub fn bootstrap_servers(self, servers: &str) -> Self {
        self.property("bootstrap.servers", servers)
    }

    /// The topic written to.
    pub fn topic(mut self, topic: &str) -> Self {
        self.topic = Some(topic.to_string());
        self
    }

    /// A librdkafka producer property.
    pub fn property(mut self, key: &str, value: &str) -> Self {
        self.properties.push((key.to_string(), value.to_string()));
        self
    }

    /// Each element's key and value.
    pub fn serializer(mut self, f: impl Fn(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + Sync + 'static) -> Self {
        self.serializer = Some(Arc::new(f));
        self
    }

    /// Each element's value (records without a key).
    pub fn value_serializer(self, f: impl Fn(&T) -> Vec<u8> + Send + Sync + 'static) -> Self {
        self.serializer(move |value| (None, f(value)))
    }

    /// How long a checkpoint waits for the brokers to acknowledge what was sent.
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// The sink, or what is missing in its configuration.
    pub fn build(self) -> Result<KafkaSink<T>, String> {
        if property(&self.properties, "bootstrap.servers").is_none() {
            return Err("the Kafka sink needs bootstrap servers".into());
        }
        let topic = self.topic.filter(|t| !t.is_empty()).ok_or("the Kafka sink needs a topic")?;
        let serializer = self.serializer.ok_or("the Kafka sink needs a serializer")?;
        Ok(KafkaSink { properties: Arc::new(self.properties), topic, serializer, flush_timeout: self.flush_timeout })
    }
}

/// Keeps the first failed delivery, which fails the writer at its next call.
#[derive(Clone, Default)]
struct Deliveries(Arc<Mutex<Option<String>>>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failed = self.0.lock().unwrap_or_else(|e| e.into_inner());
            failed.get_or_insert_with(|| e.to_string());
        }
    }
}

/// One subtask's producer.
pub struct KafkaWriter<T> {
    producer: BaseProducer<Deliveries>,
    deliveries: Deliveries,
    sink: KafkaSink<T>,
}

impl<T> KafkaWriter<T> {
    fn servers(&self) -> &str {
        property(&self.sink.properties, "bootstrap.servers").unwrap_or("?")
    }

    /// The first failed delivery so far, as an error naming topic and brokers.
    fn check_deliveries(&self) -> Result<(), BoxError> {
        match self.deliveries.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(e) => {
                Err(format!("a record could not be written to '{}' at {}: {e}", self.sink.topic, self.servers()).into())
            }
            None => Ok(()),
        }
    }
}

impl<T: Send + 'static> SinkWriter<T, ()> for KafkaWriter<T> {
    fn write(&mut self, value: T, ctx: &SinkContext<'_>) -> Result<(), BoxError> {
        let (key, payload) = (self.sink.serializer)(&value);
        let mut record = BaseRecord::to(&self.sink.topic).payload(&payload);
        if let Some(key) = &key {
            record = record.key(key);
        }
        if let Some(timestamp) = ctx.timestamp() {
            record = record.timestamp(timestamp);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                // The producer's queue is full: let it deliver, then try again (backpressure).
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), again)) => {
                    record = again;
                    self.producer.poll(Duration::from_millis(100));
                    self.check_deliveries()?;
                }
                Err((e, _)) => {
                    return Err(format!("cannot write to '{}' at {}: {e}", self.sink.topic, self.servers()).into());
                }
            }
        }
        self.producer.poll(Duration::ZERO);
        self.check_deliveries()
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        self.producer.flush(self.sink.flush_timeout).map_err(|e| {
            format!(
                "the Kafka brokers at {} did not acknowledge the records written to '{}' within {:?}: {e}",
                self.servers(),
                self.sink.topic,
                self.sink.flush_timeout
            )
        })?;
        self.check_deliveries()
    }
}

impl<T: Send + 'static> Sink<T> for KafkaSink<T> {
    type Committable = ();
    type Writer = KafkaWriter<T>;

    fn create_writer(&mut self, _: &RuntimeContext<'_>) -> Result<KafkaWriter<T>, BoxError> {
        let deliveries = Deliveries::default();
        let producer = client_config(&self.properties)
            .create_with_context(deliveries.clone())
            .map_err(|e| format!("cannot create a Kafka producer for '{}': {e}", self.topic))?;
        Ok(KafkaWriter { producer, deliveries, sink: self.clone() })
    }
}
