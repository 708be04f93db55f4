//! The Kafka source: partitions as splits, one consumer per reader.

use super::{KafkaDeserializer, KafkaRecord, OffsetsInitializer, client_config, property};
use brisk::runtime::checkpoint::{CheckpointId, FINAL_CHECKPOINT};
use brisk::runtime::source::{
    Boundedness, InputStatus, NextSplit, ReaderContext, ReaderOutput, Source, SourceReader, SourceSplit,
    SplitEnumerator,
};
use brisk_core::BoxError;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Records a reader emits per poll at most (about one network buffer).
const RECORDS_PER_POLL: usize = 1024;
/// How long a reader with nothing to read waits before it polls its consumer again.
const IDLE_WAIT: Duration = Duration::from_millis(10);

/// One partition of a topic, and how far it has been read (what a checkpoint stores).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaSplit {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The next offset to read.
    pub next: i64,
    /// In bounded mode: the offset to stop before.
    pub stop: Option<i64>,
}

impl SourceSplit for KafkaSplit {
    fn split_id(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

/// Which topics a source reads.
#[derive(Clone, Debug)]
enum Topics {
    List(Vec<String>),
    Pattern(regex::Regex),
}

impl Topics {
    fn matches(&self, topic: &str) -> bool {
        match self {
            Topics::List(topics) => topics.iter().any(|t| t == topic),
            Topics::Pattern(pattern) => pattern.is_match(topic),
        }
    }
}

/// What a Kafka source was configured with.
struct Settings {
    properties: Vec<(String, String)>,
    topics: Topics,
    starting: OffsetsInitializer,
    stopping: Option<OffsetsInitializer>,
    discovery_interval: Option<Duration>,
    /// How long metadata and offset requests may take.
    request_timeout: Duration,
}

impl Settings {
    fn servers(&self) -> &str {
        property(&self.properties, "bootstrap.servers").unwrap_or("?")
    }
}

/// Reads Kafka topics (Flink's `KafkaSource`); build one with [`KafkaSource::builder`].
pub struct KafkaSource<T> {
    settings: Arc<Settings>,
    deserializer: KafkaDeserializer<T>,
}

/// Configures a [`KafkaSource`].
pub struct KafkaSourceBuilder<T> {
    properties: Vec<(String, String)>,
    topics: Option<Result<Topics, String>>,
    starting: OffsetsInitializer,
    stopping: Option<OffsetsInitializer>,
    discovery_interval: Duration,
    request_timeout: Duration,
    deserializer: Option<KafkaDeserializer<T>>,
}

impl<T> KafkaSource<T> {
    /// A builder with Flink's defaults: earliest offsets, unbounded, partitions discovered
    /// every 5 minutes.
    pub fn builder() -> KafkaSourceBuilder<T> {
        KafkaSourceBuilder {
            properties: Vec::new(),
            topics: None,
            starting: OffsetsInitializer::Earliest,
            stopping: None,
            discovery_interval: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
            deserializer: None,
        }
    }
}

impl<T> KafkaSourceBuilder<T> {
    /// The brokers to start from (`host:port,...`).
    pub fn bootstrap_servers(self, servers: &str) -> Self {
        self.property("bootstrap.servers", servers)
    }

    /// The consumer group offsets are committed to (and read from, with
    /// [`OffsetsInitializer::Committed`]).
    pub fn group_id(self, group: &str) -> Self {
        self.property("group.id", group)
    }

    /// The topics to read.
    pub fn topics(mut self, topics: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.topics = Some(Ok(Topics::List(topics.into_iter().map(Into::into).collect())));
        self
    }

    /// Every topic whose whole name matches the regular expression `pattern`, also topics
    /// created later (found by partition discovery).
    pub fn topic_pattern(mut self, pattern: &str) -> Self {
        self.topics = Some(
            regex::Regex::new(&format!("^(?:{pattern})$"))
                .map(Topics::Pattern)
                .map_err(|e| format!("invalid topic pattern '{pattern}': {e}")),
        );
        self
    }

    /// Where readers start in each partition found at the start (later partitions start at
    /// their earliest offset).
    pub fn starting_offsets(mut self, offsets: OffsetsInitializer) -> Self {
        self.starting = offsets;
        self
    }

    /// Makes the source bounded: each partition is read up to the offset `offsets` gives when
    /// the job starts (latest or by timestamp); no partitions are discovered later.
    pub fn bounded(mut self, offsets: OffsetsInitializer) -> Self {
        self.stopping = Some(offsets);
        self
    }

    /// How often new partitions and topics are looked for (Flink's
    /// `partition.discovery.interval.ms`); zero turns discovery off.
    pub fn partition_discovery_interval(mut self, interval: Duration) -> Self {
        self.discovery_interval = interval;
        self
    }

    /// How long metadata and offset requests to the brokers may take before the source fails.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// A librdkafka client property.
    pub fn property(mut self, key: &str, value: &str) -> Self {
        self.properties.push((key.to_string(), value.to_string()));
        self
    }

    /// Turns each record into an element.
    pub fn deserializer(mut self, f: impl Fn(&KafkaRecord<'_>) -> Result<T, String> + Send + Sync + 'static) -> Self {
        self.deserializer = Some(Arc::new(f));
        self
    }

    /// Turns each record's value into an element (a tombstone is a bad record).
    pub fn value_deserializer(self, f: impl Fn(&[u8]) -> Result<T, String> + Send + Sync + 'static) -> Self {
        self.deserializer(move |record| match record.value {
            Some(value) => f(value),
            None => Err("the record has no value (a tombstone)".into()),
        })
    }

    /// The source, or what is missing or wrong in its configuration.
    pub fn build(self) -> Result<KafkaSource<T>, String> {
        if property(&self.properties, "bootstrap.servers").is_none() {
            return Err("the Kafka source needs bootstrap servers".into());
        }
        let topics = self.topics.ok_or("the Kafka source needs topics or a topic pattern")??;
        let deserializer = self.deserializer.ok_or("the Kafka source needs a deserializer")?;
        let mut properties = self.properties;
        // Offsets live in checkpoints; they are committed when checkpoints complete.
        properties.push(("enable.auto.commit".into(), "false".into()));
        properties.push(("enable.auto.offset.store".into(), "false".into()));
        if property(&properties, "group.id").is_none() {
            // librdkafka's consumers need a group even when they assign partitions manually.
            properties.push(("group.id".into(), "brisk-kafka-source".into()));
            properties.push(("brisk.no-group".into(), "true".into()));
        }
        let discovery_interval =
            (!self.discovery_interval.is_zero() && self.stopping.is_none()).then_some(self.discovery_interval);
        let settings = Settings {
            properties,
            topics,
            starting: self.starting,
            stopping: self.stopping,
            discovery_interval,
            request_timeout: self.request_timeout,
        };
        Ok(KafkaSource { settings: Arc::new(settings), deserializer })
    }
}

impl Settings {
    /// A consumer with the source's properties (without Brisk's own markers).
    fn consumer(&self) -> Result<BaseConsumer, BoxError> {
        let properties: Vec<(String, String)> =
            self.properties.iter().filter(|(k, _)| !k.starts_with("brisk.")).cloned().collect();
        client_config(&properties)
            .create()
            .map_err(|e| format!("cannot create a Kafka consumer for {}: {e}", self.servers()).into())
    }

    /// Whether offsets are committed to a group the user named.
    fn commits(&self) -> bool {
        property(&self.properties, "brisk.no-group").is_none()
    }
}

/// The reader that owns `partition` of `topic` among `readers` (as Flink assigns them: a
/// topic's partitions go round robin from a start that depends on the topic).
fn owner(topic: &str, partition: i32, readers: usize) -> usize {
    let start = topic.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    ((start.wrapping_mul(31) & 0x7FFF_FFFF) as usize + partition.max(0) as usize) % readers.max(1)
}

/// Hands out partitions; discovers new ones.
struct KafkaEnumerator {
    settings: Arc<Settings>,
    consumer: BaseConsumer,
    readers: usize,
    known: BTreeSet<(String, i32)>,
    pending: Vec<VecDeque<KafkaSplit>>,
    next_discovery: Option<Instant>,
}

/// A topic being read was deleted: its partitions cannot be read further (their offsets stay
/// in the last checkpoint, should it be created again).
#[derive(Debug, thiserror::Error)]
#[error("topic '{topic}' was deleted from the Kafka brokers at {servers}")]
struct TopicDeleted {
    topic: String,
    servers: String,
}

impl KafkaEnumerator {
    /// Finds partitions not seen before and queues them for their readers; partitions found
    /// at the start begin at the configured offsets, later ones at their earliest.
    fn discover(&mut self) -> Result<(), BoxError> {
        let settings = self.settings.clone();
        let timeout = settings.request_timeout;
        let unreachable = |e: &dyn std::fmt::Display| -> BoxError {
            format!("cannot read the topics of the Kafka brokers at {}: {e}", settings.servers()).into()
        };
        let metadata = self.consumer.fetch_metadata(None, timeout).map_err(|e| unreachable(&e))?;
        // A topic being read that the brokers no longer list (or list as unknown) was deleted.
        let listed: BTreeSet<&str> = metadata
            .topics()
            .iter()
            .filter(|t| t.error() != Some(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART))
            .map(|t| t.name())
            .collect();
        if let Some((topic, _)) = self.known.iter().find(|(topic, _)| !listed.contains(topic.as_str())) {
            return Err(Box::new(TopicDeleted { topic: topic.clone(), servers: settings.servers().to_string() }));
        }
        let first = self.known.is_empty();
        let mut found = Vec::new();
        for topic in metadata.topics() {
            if !settings.topics.matches(topic.name()) || topic.name().starts_with("__") {
                continue;
            }
            for partition in topic.partitions() {
                let key = (topic.name().to_string(), partition.id());
                if !self.known.contains(&key) {
                    found.push(key);
                }
            }
        }
        if first
            && settings.stopping.is_some()
            && let Topics::List(topics) = &settings.topics
            && let Some(missing) = topics.iter().find(|t| !found.iter().any(|(f, _)| f == *t))
        {
            return Err(
                format!("topic '{missing}' does not exist on the Kafka brokers at {}", settings.servers()).into()
            );
        }
        let starting = if first { settings.starting.clone() } else { OffsetsInitializer::Earliest };
        for (topic, partition) in found {
            let next = self.resolve(&topic, partition, &starting)?;
            let stop = match &settings.stopping {
                Some(stopping) => Some(self.resolve(&topic, partition, stopping)?),
                None => None,
            };
            info!(topic = %topic, partition, next, stop, "Kafka partition discovered");
            let reader = owner(&topic, partition, self.readers);
            self.pending[reader].push_back(KafkaSplit { topic: topic.clone(), partition, next, stop });
            self.known.insert((topic, partition));
        }
        Ok(())
    }

    /// The offset `initializer` gives in `partition` of `topic`.
    fn resolve(&self, topic: &str, partition: i32, initializer: &OffsetsInitializer) -> Result<i64, BoxError> {
        let settings = &self.settings;
        let timeout = settings.request_timeout;
        let failed = |what: &str, e: &dyn std::fmt::Display| -> BoxError {
            format!(
                "cannot read the {what} of {topic}-{partition} from the Kafka brokers at {}: {e}",
                settings.servers()
            )
            .into()
        };
        let (low, high) =
            self.consumer.fetch_watermarks(topic, partition, timeout).map_err(|e| failed("offsets", &e))?;
        Ok(match initializer {
            OffsetsInitializer::Earliest => low,
            OffsetsInitializer::Latest => high,
            OffsetsInitializer::Timestamp(ms) => {
                let mut list = TopicPartitionList::new();
                list.add_partition_offset(topic, partition, Offset::Offset(*ms)).map_err(|e| failed("offsets", &e))?;
                let found =
                    self.consumer.offsets_for_times(list, timeout).map_err(|e| failed("offsets by time", &e))?;
                match found.find_partition(topic, partition).map(|p| p.offset()) {
                    Some(Offset::Offset(offset)) => offset,
                    _ => high,
                }
            }
            OffsetsInitializer::Committed { reset } => {
                let mut list = TopicPartitionList::new();
                list.add_partition(topic, partition);
                let committed =
                    self.consumer.committed_offsets(list, timeout).map_err(|e| failed("committed offsets", &e))?;
                match committed.find_partition(topic, partition).map(|p| p.offset()) {
                    Some(Offset::Offset(offset)) => offset,
                    _ => self.resolve(topic, partition, reset)?,
                }
            }
            OffsetsInitializer::Specific(offsets) => {
                match offsets.iter().find(|((t, p), _)| t == topic && *p == partition) {
                    Some((_, offset)) => *offset,
                    None => low,
                }
            }
        })
    }
}

impl SplitEnumerator<KafkaSplit> for KafkaEnumerator {
    fn next_split(&mut self, subtask: usize) -> Result<NextSplit<KafkaSplit>, BoxError> {
        if let Some(split) = self.pending.get_mut(subtask).and_then(VecDeque::pop_front) {
            return Ok(NextSplit::Split(split));
        }
        let Some(due) = self.next_discovery else { return Ok(NextSplit::NoMoreSplits) };
        let now = Instant::now();
        if now >= due {
            let interval = self.settings.discovery_interval.unwrap_or_default();
            self.next_discovery = Some(now + interval);
            // A failed discovery is retried at the next interval: the partitions being read
            // are not affected, unless their topic is gone.
            match self.discover() {
                Err(e) if e.is::<TopicDeleted>() => return Err(e),
                Err(e) => warn!("Kafka partition discovery failed: {e}"),
                Ok(()) => {}
            }
            if let Some(split) = self.pending.get_mut(subtask).and_then(VecDeque::pop_front) {
                return Ok(NextSplit::Split(split));
            }
        }
        let due = self.next_discovery.unwrap_or(now);
        Ok(NextSplit::NotYet(due.saturating_duration_since(now).max(Duration::from_millis(1))))
    }

    fn add_splits_back(&mut self, splits: Vec<KafkaSplit>, _subtask: usize) {
        // Back to the reader that owns them now (the parallelism may have changed).
        for split in splits {
            self.known.insert((split.topic.clone(), split.partition));
            let reader = owner(&split.topic, split.partition, self.readers);
            self.pending[reader].push_front(split);
        }
    }

    fn snapshot_state(&mut self) -> Result<Vec<u8>, BoxError> {
        let pending: Vec<&KafkaSplit> = self.pending.iter().flatten().collect();
        Ok(brisk_state::codec::encode(&(&self.known, pending))?)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let (known, pending): (BTreeSet<(String, i32)>, Vec<KafkaSplit>) = brisk_state::codec::decode(state)?;
        self.known = known;
        self.pending.iter_mut().for_each(VecDeque::clear);
        self.add_splits_back(pending, usize::MAX);
        Ok(())
    }
}

/// The next offset to read, by topic and partition.
type Positions = BTreeMap<(String, i32), i64>;

/// One consumer reading every partition of its subtask.
struct KafkaReader<T> {
    settings: Arc<Settings>,
    consumer: BaseConsumer,
    deserializer: KafkaDeserializer<T>,
    /// The partitions being read, with their split ids (few per reader: found by a scan,
    /// without allocating per record).
    splits: Vec<(KafkaSplit, String)>,
    /// Splits whose end was reached when they were added.
    ended: Vec<String>,
    /// The final offsets of the partitions read to their end (committed to the group too).
    finished: Positions,
    /// Positions taken at each checkpoint not yet completed.
    snapshots: VecDeque<(CheckpointId, Positions)>,
}

impl<T> KafkaReader<T> {
    fn partition_list(&self, partitions: &[(&str, i32, i64)]) -> Result<TopicPartitionList, BoxError> {
        let mut list = TopicPartitionList::new();
        for (topic, partition, offset) in partitions {
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(|e| format!("invalid offset {offset} for {topic}-{partition}: {e}"))?;
        }
        Ok(list)
    }

    /// Commits `positions` to the consumer group (best effort, as Flink: the checkpoint holds
    /// the offsets that count).
    fn commit(&self, positions: &Positions) {
        if !self.settings.commits() || positions.is_empty() {
            return;
        }
        let partitions: Vec<(&str, i32, i64)> = positions.iter().map(|((t, p), o)| (t.as_str(), *p, *o)).collect();
        let committed = self
            .partition_list(&partitions)
            .and_then(|list| self.consumer.commit(&list, CommitMode::Async).map_err(Into::into));
        if let Err(e) = committed {
            warn!(servers = self.settings.servers(), "cannot commit offsets to the consumer group: {e}");
        }
    }

    /// Stops reading the finished partition at `index`; its split id.
    fn finish(&mut self, index: usize) -> String {
        let (split, id) = self.splits.swap_remove(index);
        if let Ok(list) = self.partition_list(&[(&split.topic, split.partition, split.next)]) {
            let _ = self.consumer.incremental_unassign(&list);
        }
        self.finished.insert((split.topic, split.partition), split.next);
        id
    }

    /// The next offset of every partition read, finished or not.
    fn positions(&self) -> Positions {
        let mut positions = self.finished.clone();
        positions.extend(self.splits.iter().map(|(s, _)| ((s.topic.clone(), s.partition), s.next)));
        positions
    }
}

impl<T: 'static> SourceReader<T, KafkaSplit> for KafkaReader<T> {
    fn add_splits(&mut self, splits: Vec<KafkaSplit>) -> Result<(), BoxError> {
        let mut assign = Vec::new();
        for split in splits {
            let id = split.split_id();
            if split.stop.is_some_and(|stop| split.next >= stop) {
                self.finished.insert((split.topic, split.partition), split.next);
                self.ended.push(id);
                continue;
            }
            assign.push((split.topic.clone(), split.partition, split.next));
            self.splits.push((split, id));
        }
        if !assign.is_empty() {
            let partitions: Vec<(&str, i32, i64)> = assign.iter().map(|(t, p, o)| (t.as_str(), *p, *o)).collect();
            let list = self.partition_list(&partitions)?;
            self.consumer
                .incremental_assign(&list)
                .map_err(|e| format!("cannot assign Kafka partitions at {}: {e}", self.settings.servers()))?;
        }
        Ok(())
    }

    fn poll(&mut self, out: &mut ReaderOutput<'_, T>) -> Result<InputStatus, BoxError> {
        for id in self.ended.drain(..) {
            out.split_finished(id);
        }
        let mut read = 0;
        while read < RECORDS_PER_POLL && !out.should_yield() {
            let message = match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    // librdkafka reconnects by itself; what it cannot fix fails the source.
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition)
                            | Some(rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed)
                            | Some(rdkafka::types::RDKafkaErrorCode::SaslAuthenticationFailed)
                    ) {
                        return Err(format!("reading Kafka at {} failed: {e}", self.settings.servers()).into());
                    }
                    warn!(servers = self.settings.servers(), "Kafka consumer error (retrying): {e}");
                    break;
                }
            };
            read += 1;
            let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
            let Some(index) = self.splits.iter().position(|(s, _)| s.partition == partition && s.topic == topic) else {
                continue;
            };
            let (split, id) = &mut self.splits[index];
            if offset < split.next {
                continue;
            }
            let past_end = split.stop.is_some_and(|stop| offset >= stop);
            if !past_end {
                let headers = message
                    .headers()
                    .map(|h| h.iter().map(|header| (header.key, header.value)).collect())
                    .unwrap_or_default();
                let record = KafkaRecord {
                    topic: message.topic(),
                    partition: message.partition(),
                    offset,
                    timestamp: message.timestamp().to_millis(),
                    key: message.key(),
                    value: message.payload(),
                    headers,
                };
                let mut output = out.split(id.as_str());
                match (self.deserializer)(&record) {
                    Ok(value) => match record.timestamp {
                        Some(timestamp) => output.collect_with_timestamp(value, timestamp),
                        None => output.collect(value),
                    },
                    Err(reason) => output.bad_record(offset.max(0) as u64, reason, record.value.unwrap_or_default()),
                }
                drop(output);
                split.next = offset + 1;
            }
            let ended = past_end || split.stop.is_some_and(|stop| split.next >= stop);
            // The message borrows the consumer, which unassigns the partition.
            drop(message);
            if ended {
                let id = self.finish(index);
                out.split_finished(id);
            }
        }
        Ok(if read > 0 { InputStatus::MoreAvailable } else { InputStatus::NothingAvailable(Some(IDLE_WAIT)) })
    }

    fn takes_splits_while_reading(&self) -> bool {
        true
    }

    fn snapshot_state(&mut self, checkpoint: CheckpointId) -> Vec<KafkaSplit> {
        if self.settings.commits() {
            self.snapshots.push_back((checkpoint, self.positions()));
        }
        self.splits.iter().map(|(split, _)| split.clone()).collect()
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), BoxError> {
        if checkpoint == FINAL_CHECKPOINT {
            // The job finished: everything read is final.
            self.snapshots.clear();
            self.commit(&self.positions());
            return Ok(());
        }
        let mut newest = None;
        while self.snapshots.front().is_some_and(|(id, _)| *id <= checkpoint) {
            newest = self.snapshots.pop_front();
        }
        if let Some((_, positions)) = newest {
            self.commit(&positions);
        }
        Ok(())
    }
}

impl<T: Send + 'static> Source<T> for KafkaSource<T> {
    type Split = KafkaSplit;

    fn boundedness(&self) -> Boundedness {
        if self.settings.stopping.is_some() { Boundedness::Bounded } else { Boundedness::ContinuousUnbounded }
    }

    fn create_enumerator(&self, parallelism: usize) -> Result<Box<dyn SplitEnumerator<KafkaSplit>>, BoxError> {
        let settings = self.settings.clone();
        let mut enumerator = KafkaEnumerator {
            consumer: settings.consumer()?,
            readers: parallelism.max(1),
            known: BTreeSet::new(),
            pending: (0..parallelism.max(1)).map(|_| VecDeque::new()).collect(),
            next_discovery: settings.discovery_interval.map(|interval| Instant::now() + interval),
            settings,
        };
        enumerator.discover()?;
        Ok(Box::new(enumerator))
    }

    fn create_reader(&self, _: &ReaderContext) -> Result<Box<dyn SourceReader<T, KafkaSplit>>, BoxError> {
        Ok(Box::new(KafkaReader {
            consumer: self.settings.consumer()?,
            settings: self.settings.clone(),
            deserializer: self.deserializer.clone(),
            splits: Vec::new(),
            ended: Vec::new(),
            finished: BTreeMap::new(),
            snapshots: VecDeque::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topics_partitions_go_round_robin_over_the_readers() {
        let owners: Vec<usize> = (0..6).map(|p| owner("events", p, 3)).collect();
        let first = owners[0];
        assert_eq!(owners, (0..6).map(|p| (first + p) % 3).collect::<Vec<_>>());
    }

    #[test]
    fn the_builder_names_what_is_missing() {
        let missing = |b: KafkaSourceBuilder<String>| b.build().err().unwrap();
        assert!(missing(KafkaSource::builder().topics(["t"])).contains("bootstrap servers"));
        assert!(missing(KafkaSource::builder().bootstrap_servers("h:1")).contains("topics"));
        let no_format = KafkaSource::<String>::builder().bootstrap_servers("h:1").topics(["t"]);
        assert!(missing(no_format).contains("deserializer"));
        let bad = KafkaSource::<String>::builder().bootstrap_servers("h:1").topic_pattern("(");
        assert!(missing(bad.value_deserializer(super::super::formats::utf8)).contains("invalid topic pattern"));
    }
}
