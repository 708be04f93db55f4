//! The Kafka sink: at least once (the producer flushed at every checkpoint) or exactly once
//! (a Kafka transaction per checkpoint, committed when the checkpoint completes).

use super::{client_config, property, transactions};
use brisk::prelude::{Sink, SinkContext, SinkWriter, WriterInitContext};
use brisk::sinks::END_OF_INPUT;
use brisk_core::{BoxError, NonRecoverableError};
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Turns an element into a record's key (optional) and value.
pub type KafkaSerializer<T> = Arc<dyn Fn(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + Sync>;

/// What the sink promises about each record (Flink's `DeliveryGuarantee`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryGuarantee {
    /// Every record sent before a checkpoint's barrier is acknowledged before the checkpoint
    /// completes; a restore may write some records again.
    AtLeastOnce,
    /// Each subtask writes a Kafka transaction per checkpoint, committed when the checkpoint
    /// completes: `read_committed` consumers see every record once.
    ExactlyOnce,
}

/// A pre-committed Kafka transaction, kept in checkpoints: enough to commit it after a
/// restore without the producer that opened it, and to know where its subtask's sequence of
/// transactions was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaCommittable {
    /// `<prefix>-<subtask>-<sequence>`.
    pub transactional_id: String,
    /// The producer id the coordinator gave the transaction's producer.
    pub producer_id: i64,
    /// That producer's epoch.
    pub epoch: i16,
    /// The subtask that wrote it.
    pub subtask: usize,
    /// Its place in the subtask's transactions (1, 2, ...; continued after a restore).
    pub sequence: u64,
    /// Whether records went into it (an empty one needs no commit).
    pub written: bool,
}

/// Producers of pre-committed transactions, kept by the subtask that opened them until their
/// checkpoint completes.
type Prepared = Arc<Mutex<HashMap<String, BaseProducer<ProducerEvents>>>>;

/// Writes to a Kafka topic (Flink's `KafkaSink`), with a [`DeliveryGuarantee`]; build one with
/// [`KafkaSink::builder`].
pub struct KafkaSink<T> {
    properties: Arc<Vec<(String, String)>>,
    topic: String,
    serializer: KafkaSerializer<T>,
    flush_timeout: Duration,
    guarantee: DeliveryGuarantee,
    transactional_id_prefix: String,
    prepared: Prepared,
}

impl<T> Clone for KafkaSink<T> {
    fn clone(&self) -> Self {
        KafkaSink {
            properties: self.properties.clone(),
            topic: self.topic.clone(),
            serializer: self.serializer.clone(),
            flush_timeout: self.flush_timeout,
            guarantee: self.guarantee,
            transactional_id_prefix: self.transactional_id_prefix.clone(),
            // Each subtask keeps its own producers.
            prepared: Prepared::default(),
        }
    }
}

/// Configures a [`KafkaSink`].
pub struct KafkaSinkBuilder<T> {
    properties: Vec<(String, String)>,
    topic: Option<String>,
    serializer: Option<KafkaSerializer<T>>,
    flush_timeout: Duration,
    guarantee: DeliveryGuarantee,
    transactional_id_prefix: Option<String>,
}

impl<T> KafkaSink<T> {
    /// A builder for an at-least-once sink; a checkpoint waits up to a minute for the brokers'
    /// acknowledgements.
    pub fn builder() -> KafkaSinkBuilder<T> {
        KafkaSinkBuilder {
            properties: Vec::new(),
            topic: None,
            serializer: None,
            flush_timeout: Duration::from_secs(60),
            guarantee: DeliveryGuarantee::AtLeastOnce,
            transactional_id_prefix: None,
        }
    }

    fn servers(&self) -> &str {
        property(&self.properties, "bootstrap.servers").unwrap_or("?")
    }

    /// A producer with `properties` on top of the sink's.
    fn producer(&self, properties: &[(&str, &str)]) -> Result<BaseProducer<ProducerEvents>, BoxError> {
        let mut config = client_config(&self.properties);
        for (key, value) in properties {
            config.set(*key, *value);
        }
        if properties.iter().any(|(key, _)| *key == "transactional.id") {
            // librdkafka tells its producer id only in its "eos" debug log.
            config.set("debug", "eos").set_log_level(RDKafkaLogLevel::Debug);
        }
        config.create_with_context(ProducerEvents::default()).map_err(|e| {
            format!("cannot create a Kafka producer for '{}' at {}: {e}", self.topic, self.servers()).into()
        })
    }

    /// A transactional producer for transaction `sequence` of `subtask` with its transactions
    /// initialised (which aborts what an earlier producer with that id left open), and its
    /// producer id.
    fn transactional_producer(
        &self,
        subtask: usize,
        sequence: u64,
    ) -> Result<(BaseProducer<ProducerEvents>, KafkaCommittable), BoxError> {
        let transactional_id = format!("{}-{subtask}-{sequence}", self.transactional_id_prefix);
        let producer = self.producer(&[("transactional.id", &transactional_id)])?;
        producer.init_transactions(self.flush_timeout).map_err(|e| {
            format!("cannot initialise Kafka transaction '{transactional_id}' at {}: {e}", self.servers())
        })?;
        // The log line arrives through the producer's main queue.
        let deadline = std::time::Instant::now() + self.flush_timeout;
        let (producer_id, epoch) = loop {
            producer.poll(Duration::ZERO);
            if let Some(found) = producer.context().producer_id() {
                break found;
            }
            if std::time::Instant::now() >= deadline {
                return Err(
                    format!("librdkafka did not report the producer id of transaction '{transactional_id}'").into()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let committable = KafkaCommittable { transactional_id, producer_id, epoch, subtask, sequence, written: false };
        Ok((producer, committable))
    }

    /// Aborts the transactions failed attempts may have left open (Flink's probing): for this
    /// subtask and those of an earlier, larger parallelism that map to it, the transactions
    /// after the last one in the restored checkpoint (`last`, by subtask), up to the first
    /// never used (epoch 0). Every attempt continues its subtask's sequence from the restored
    /// checkpoint, so the ids it used follow on without gaps.
    fn abort_lingering(
        &self,
        subtask: usize,
        parallelism: usize,
        last: &BTreeMap<usize, u64>,
        restored: bool,
    ) -> Result<(), BoxError> {
        for old_subtask in (subtask..).step_by(parallelism.max(1)) {
            let mut sequence = match last.get(&old_subtask) {
                Some(sequence) => sequence + 1,
                // A fresh start: an earlier run with this prefix may have left some open.
                None if old_subtask == subtask && !restored => 1,
                None if old_subtask == subtask => continue,
                None => return Ok(()),
            };
            loop {
                let (_, found) = self.transactional_producer(old_subtask, sequence)?;
                if found.epoch == 0 {
                    break;
                }
                tracing::info!(transactional_id = %found.transactional_id, "aborted a lingering Kafka transaction");
                sequence += 1;
            }
        }
        Ok(())
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

    /// How long a checkpoint waits for the brokers to acknowledge what was sent (and a
    /// transaction for its coordinator).
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// At least once (the default) or exactly once.
    pub fn delivery_guarantee(mut self, guarantee: DeliveryGuarantee) -> Self {
        self.guarantee = guarantee;
        self
    }

    /// What the transactional ids of an exactly-once sink start with; unique per job that
    /// writes to the same cluster, and kept across restores from savepoints.
    pub fn transactional_id_prefix(mut self, prefix: &str) -> Self {
        self.transactional_id_prefix = Some(prefix.to_string());
        self
    }

    /// The sink, or what is missing in its configuration.
    pub fn build(self) -> Result<KafkaSink<T>, String> {
        if property(&self.properties, "bootstrap.servers").is_none() {
            return Err("the Kafka sink needs bootstrap servers".into());
        }
        let topic = self.topic.filter(|t| !t.is_empty()).ok_or("the Kafka sink needs a topic")?;
        let serializer = self.serializer.ok_or("the Kafka sink needs a serializer")?;
        if property(&self.properties, "transactional.id").is_some() {
            return Err("the Kafka sink names its transactions itself: set a transactional id prefix, \
                        not 'transactional.id'"
                .into());
        }
        let transactional_id_prefix = match self.guarantee {
            DeliveryGuarantee::ExactlyOnce => {
                check_recoverable(&self.properties)?;
                self.transactional_id_prefix
                    .filter(|p| !p.is_empty())
                    .ok_or("an exactly-once Kafka sink needs a transactional id prefix")?
            }
            DeliveryGuarantee::AtLeastOnce => String::new(),
        };
        let mut properties = self.properties;
        // A transaction lives from the checkpoint before its records to the commit after its
        // own checkpoint, and through restarts; librdkafka's default (1 min) is too short for
        // that, so the broker's default maximum.
        if self.guarantee == DeliveryGuarantee::ExactlyOnce && property(&properties, "transaction.timeout.ms").is_none()
        {
            properties.push(("transaction.timeout.ms".into(), DEFAULT_TRANSACTION_TIMEOUT_MS.into()));
        }
        Ok(KafkaSink {
            properties: Arc::new(properties),
            topic,
            serializer,
            flush_timeout: self.flush_timeout,
            guarantee: self.guarantee,
            transactional_id_prefix,
            prepared: Prepared::default(),
        })
    }
}

/// The transaction timeout of an exactly-once sink unless set (15 min, the broker's default
/// `transaction.max.timeout.ms`).
const DEFAULT_TRANSACTION_TIMEOUT_MS: &str = "900000";

/// Whether a restored transaction can be committed through these properties: the recovery
/// speaks plain TCP to `host:port` brokers.
fn check_recoverable(properties: &[(String, String)]) -> Result<(), String> {
    if let Some(protocol) = property(properties, "security.protocol")
        && !protocol.eq_ignore_ascii_case("plaintext")
    {
        return Err(format!(
            "the exactly-once Kafka sink commits restored transactions over plain TCP; \
             security.protocol '{protocol}' is not supported yet"
        ));
    }
    let servers = property(properties, "bootstrap.servers").unwrap_or_default();
    for server in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let port = server.rsplit_once(':').and_then(|(host, port)| (!host.is_empty()).then_some(port));
        if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
            return Err(format!("the exactly-once Kafka sink needs bootstrap servers as host:port, not '{server}'"));
        }
    }
    Ok(())
}

/// What a producer's callbacks learn: its first failed delivery (which fails the writer at its
/// next call) and, for a transactional producer, its producer id and epoch.
#[derive(Clone, Default)]
pub struct ProducerEvents(Arc<Mutex<Events>>);

#[derive(Default)]
struct Events {
    failed: Option<String>,
    producer_id: Option<(i64, i16)>,
}

impl ProducerEvents {
    fn lock(&self) -> std::sync::MutexGuard<'_, Events> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn producer_id(&self) -> Option<(i64, i16)> {
        self.lock().producer_id
    }
}

/// The producer id and epoch in librdkafka's "Acquired PID{Id:1000,Epoch:0}" log line.
fn parse_producer_id(message: &str) -> Option<(i64, i16)> {
    let rest = &message[message.find("Acquired PID{Id:")? + "Acquired PID{Id:".len()..];
    let (id, rest) = rest.split_once(",Epoch:")?;
    let epoch = rest.split('}').next()?;
    Some((id.parse().ok()?, epoch.parse().ok()?))
}

impl ClientContext for ProducerEvents {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Debug => {
                if facility == "GETPID"
                    && let Some(pid) = parse_producer_id(message)
                {
                    self.lock().producer_id = Some(pid);
                }
            }
            RDKafkaLogLevel::Info | RDKafkaLogLevel::Notice => tracing::info!("librdkafka: {facility} {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!("librdkafka: {facility} {message}"),
            _ => tracing::error!("librdkafka: {facility} {message}"),
        }
    }
}

impl ProducerContext for ProducerEvents {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.lock().failed.get_or_insert_with(|| e.to_string());
        }
    }
}

/// One subtask's producer: for an exactly-once sink, the producer of the open transaction.
pub struct KafkaWriter<T> {
    producer: Option<BaseProducer<ProducerEvents>>,
    /// The open transaction (exactly once).
    transaction: Option<KafkaCommittable>,
    /// The producer of the next transaction, initialised in the background while this one
    /// runs, so that the barrier does not wait for the coordinator's round trip.
    next: Option<PreparedProducer>,
    subtask: usize,
    sink: KafkaSink<T>,
}

/// A transactional producer being created and initialised on a thread of its own.
type PreparedProducer = std::thread::JoinHandle<Result<(BaseProducer<ProducerEvents>, KafkaCommittable), String>>;

impl<T: 'static> KafkaWriter<T> {
    fn producer(&self) -> Result<&BaseProducer<ProducerEvents>, BoxError> {
        match &self.producer {
            Some(producer) => Ok(producer),
            None => Err(format!("a record for '{}' came after the end of the input", self.sink.topic).into()),
        }
    }

    /// The first failed delivery so far, as an error naming topic and brokers.
    fn check_deliveries(&self) -> Result<(), BoxError> {
        let Some(producer) = &self.producer else { return Ok(()) };
        match producer.context().lock().failed.take() {
            Some(e) => {
                Err(format!("a record could not be written to '{}' at {}: {e}", self.sink.topic, self.sink.servers())
                    .into())
            }
            None => Ok(()),
        }
    }

    /// Opens the subtask's transaction `sequence`, which the next barrier pre-commits (with
    /// the producer prepared for it, if any), and starts preparing the one after it. The ids
    /// stay dense: a prepared producer is always the next of the sequence.
    fn begin_transaction(&mut self, sequence: u64) -> Result<(), BoxError> {
        let prepared = match self.next.take() {
            Some(next) => next.join().map_err(|_| "the thread preparing a Kafka producer failed".to_string())??,
            None => self.sink.transactional_producer(self.subtask, sequence)?,
        };
        let (producer, transaction) = prepared;
        if transaction.sequence != sequence {
            return Err(format!("Kafka transaction {sequence} expected, {} prepared", transaction.sequence).into());
        }
        producer.begin_transaction().map_err(|e| {
            format!("cannot begin Kafka transaction '{}' at {}: {e}", transaction.transactional_id, self.sink.servers())
        })?;
        self.producer = Some(producer);
        self.transaction = Some(transaction);
        let (sink, subtask) = (self.sink.clone(), self.subtask);
        self.next = Some(std::thread::spawn(move || {
            sink.transactional_producer(subtask, sequence + 1).map_err(|e| e.to_string())
        }));
        Ok(())
    }
}

impl<T: Send + 'static> SinkWriter<T, KafkaCommittable> for KafkaWriter<T> {
    fn write(&mut self, value: T, ctx: &SinkContext<'_>) -> Result<(), BoxError> {
        let (key, payload) = (self.sink.serializer)(&value);
        let size = payload.len() + key.as_ref().map_or(0, Vec::len);
        let mut record = BaseRecord::to(&self.sink.topic).payload(&payload);
        if let Some(key) = &key {
            record = record.key(key);
        }
        if let Some(timestamp) = ctx.timestamp() {
            record = record.timestamp(timestamp);
        }
        if let Some(transaction) = &mut self.transaction {
            transaction.written = true;
        }
        let producer = self.producer()?;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                // The producer's queue is full: let it deliver, then try again (backpressure).
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), again)) => {
                    record = again;
                    producer.poll(Duration::from_millis(100));
                    self.check_deliveries()?;
                }
                // The record is as large after any restart: fail the job with what to change.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                    return Err(NonRecoverableError::new(format!(
                        "a record of {} bytes is over the size limit for '{}' at {} (the producer's message.max.bytes)",
                        size,
                        self.sink.topic,
                        self.sink.servers()
                    ))
                    .into());
                }
                Err((e, _)) => {
                    return Err(format!("cannot write to '{}' at {}: {e}", self.sink.topic, self.sink.servers()).into());
                }
            }
        }
        producer.poll(Duration::ZERO);
        self.check_deliveries()
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        let Some(producer) = &self.producer else { return Ok(()) };
        producer.flush(self.sink.flush_timeout).map_err(|e| {
            format!(
                "the Kafka brokers at {} did not acknowledge the records written to '{}' within {:?}: {e}",
                self.sink.servers(),
                self.sink.topic,
                self.sink.flush_timeout
            )
        })?;
        self.check_deliveries()
    }

    fn prepare_commit(&mut self, checkpoint_id: u64) -> Result<Vec<KafkaCommittable>, BoxError> {
        let Some(transaction) = self.transaction.take() else { return Ok(Vec::new()) };
        let producer = self.producer.take();
        // An empty transaction needs no commit, but its committable keeps the sequence in the
        // checkpoint.
        if transaction.written
            && let Some(producer) = producer
        {
            let mut producers = self.sink.prepared.lock().unwrap_or_else(|e| e.into_inner());
            producers.insert(transaction.transactional_id.clone(), producer);
        }
        if checkpoint_id != END_OF_INPUT {
            self.begin_transaction(transaction.sequence + 1)?;
        }
        Ok(vec![transaction])
    }
}

impl<T: Send + 'static> Sink<T> for KafkaSink<T> {
    type Committable = KafkaCommittable;
    type Writer = KafkaWriter<T>;

    fn create_writer(&mut self, ctx: &WriterInitContext<'_, '_, KafkaCommittable>) -> Result<KafkaWriter<T>, BoxError> {
        let subtask = ctx.runtime.index_of_this_subtask();
        let mut writer = KafkaWriter { producer: None, transaction: None, next: None, subtask, sink: self.clone() };
        writer.sink.prepared = self.prepared.clone();
        match self.guarantee {
            DeliveryGuarantee::AtLeastOnce => {
                writer.producer = Some(self.producer(&[])?);
            }
            DeliveryGuarantee::ExactlyOnce => {
                let mut last = BTreeMap::new();
                for transaction in ctx.restored_committables {
                    let sequence = last.entry(transaction.subtask).or_insert(0);
                    *sequence = transaction.sequence.max(*sequence);
                }
                let parallelism = ctx.runtime.number_of_parallel_subtasks();
                self.abort_lingering(subtask, parallelism, &last, ctx.restored_checkpoint_id.is_some())?;
                writer.begin_transaction(last.get(&subtask).map_or(1, |sequence| sequence + 1))?;
            }
        }
        Ok(writer)
    }

    fn commit(&mut self, committables: Vec<KafkaCommittable>) -> Result<(), BoxError> {
        for transaction in committables.into_iter().filter(|t| t.written) {
            let producer =
                self.prepared.lock().unwrap_or_else(|e| e.into_inner()).remove(&transaction.transactional_id);
            match producer {
                Some(producer) => producer.commit_transaction(self.flush_timeout).map_err(|e| {
                    format!(
                        "cannot commit Kafka transaction '{}' at {}: {e}",
                        transaction.transactional_id,
                        self.servers()
                    )
                })?,
                // Opened by an attempt before a restore: commit it by its producer id.
                None => transactions::commit(self.servers(), &transaction, self.flush_timeout)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producer_id_is_read_from_librdkafkas_log_line() {
        assert_eq!(parse_producer_id("TxnCoordinator/1: Acquired PID{Id:303468000,Epoch:7}"), Some((303468000, 7)));
        assert_eq!(parse_producer_id("Acquired PID{Id:5,Epoch:0} (previous PID{Id:5,Epoch:-1})"), Some((5, 0)));
        assert_eq!(parse_producer_id("Acquiring ProducerId"), None);
        assert_eq!(parse_producer_id("Acquired PID{Id:x,Epoch:0}"), None);
    }

    fn builder() -> KafkaSinkBuilder<String> {
        KafkaSink::builder()
            .bootstrap_servers("127.0.0.1:9092")
            .topic("out")
            .value_serializer(|v: &String| v.clone().into_bytes())
    }

    #[test]
    fn an_exactly_once_sink_needs_a_transactional_id_prefix_and_names_its_transactions_itself() {
        let error = builder().delivery_guarantee(DeliveryGuarantee::ExactlyOnce).build().err();
        assert_eq!(error.as_deref(), Some("an exactly-once Kafka sink needs a transactional id prefix"));
        let error = builder().property("transactional.id", "mine").build().err().unwrap_or_default();
        assert!(error.contains("set a transactional id prefix"), "{error}");
        let exactly_once =
            || builder().delivery_guarantee(DeliveryGuarantee::ExactlyOnce).transactional_id_prefix("job");
        let sink = exactly_once().build().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(property(&sink.properties, "transaction.timeout.ms"), Some("900000"));
        let error = exactly_once().property("security.protocol", "SASL_SSL").build().err().unwrap_or_default();
        assert!(error.contains("'SASL_SSL' is not supported"), "{error}");
        let error = exactly_once().bootstrap_servers("kafka").build().err().unwrap_or_default();
        assert!(error.contains("host:port, not 'kafka'"), "{error}");
    }
}
