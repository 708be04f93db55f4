//! Kafka (librdkafka through `rdkafka`), with Flink's `KafkaSource`/`KafkaSink` concepts.
//!
//! - [`KafkaSource`]: topics by list or pattern; each partition is a split, assigned to a
//!   reader by hash; one consumer per reader reads all its partitions (manual assignment, no
//!   group rebalancing); starting offsets resolved by the enumerator when it discovers a
//!   partition ([`OffsetsInitializer`]); bounded mode stops at offsets resolved at the start;
//!   offsets live in checkpoints and are committed back to the consumer group when a
//!   checkpoint completes; new partitions and topics are discovered periodically; the record
//!   timestamp is the event time; per-partition watermarks.
//! - [`KafkaSink`]: at-least-once (the producer flushed at every checkpoint) or exactly-once
//!   (a transaction per subtask and checkpoint, committed when the checkpoint completes, and
//!   after a restore by producer id and epoch through [`transactions`]).

mod sink;
mod source;
pub mod transactions;

/// Kafka's wire messages, as [`transactions`] speaks them (and tests that watch a broker).
pub use kafka_protocol;
/// The Kafka client the connector is built on, for what it does not wrap (admin, tests).
pub use rdkafka;

pub use sink::{
    DeliveryGuarantee, KafkaCommittable, KafkaSerializer, KafkaSink, KafkaSinkBuilder, KafkaWriter, ProducerEvents,
};
pub use source::{KafkaSource, KafkaSourceBuilder, KafkaSplit};

use rdkafka::ClientConfig;
use std::sync::Arc;

/// One Kafka record, as a deserializer sees it.
#[derive(Debug)]
pub struct KafkaRecord<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp (create or log-append time), in epoch milliseconds.
    pub timestamp: Option<i64>,
    /// Its key.
    pub key: Option<&'a [u8]>,
    /// Its value (`None`: a tombstone).
    pub value: Option<&'a [u8]>,
    /// Its headers, in order.
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

/// Turns a Kafka record into a stream element, or says what is wrong with it (the source's
/// bad-record policy decides what happens then).
pub type KafkaDeserializer<T> = Arc<dyn Fn(&KafkaRecord<'_>) -> Result<T, String> + Send + Sync>;

/// Value deserializers for the common formats.
pub mod formats {
    use serde::de::DeserializeOwned;

    /// The value's bytes.
    pub fn bytes(value: &[u8]) -> Result<Vec<u8>, String> {
        Ok(value.to_vec())
    }

    /// The value as UTF-8 text.
    pub fn utf8(value: &[u8]) -> Result<String, String> {
        std::str::from_utf8(value).map(str::to_string).map_err(|e| format!("the value is not valid UTF-8: {e}"))
    }

    /// The value as JSON of type `T`.
    pub fn json<T: DeserializeOwned>(value: &[u8]) -> Result<T, String> {
        serde_json::from_slice(value).map_err(|e| format!("the value is not the expected JSON: {e}"))
    }
}

/// Where a reader starts, or a bounded source stops, in each partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OffsetsInitializer {
    /// The first offset still in the partition.
    Earliest,
    /// The end of the partition when the source resolves it.
    Latest,
    /// The first record with a timestamp at or after this (epoch ms); the end if none.
    Timestamp(i64),
    /// The consumer group's committed offset; where it has none, `reset` (earliest or latest).
    Committed {
        /// Where to start without a committed offset.
        reset: Box<OffsetsInitializer>,
    },
    /// Given offsets by (topic, partition); other partitions from the earliest.
    Specific(Vec<((String, i32), i64)>),
}

impl OffsetsInitializer {
    /// Flink's `OffsetsInitializer.earliest()`.
    pub fn earliest() -> Self {
        OffsetsInitializer::Earliest
    }

    /// Flink's `OffsetsInitializer.latest()`.
    pub fn latest() -> Self {
        OffsetsInitializer::Latest
    }

    /// Flink's `OffsetsInitializer.timestamp(ms)`.
    pub fn timestamp(epoch_ms: i64) -> Self {
        OffsetsInitializer::Timestamp(epoch_ms)
    }

    /// Flink's `OffsetsInitializer.committedOffsets(reset)`.
    pub fn committed_offsets(reset: OffsetsInitializer) -> Self {
        OffsetsInitializer::Committed { reset: Box::new(reset) }
    }
}

/// The client configuration of `properties` (librdkafka's names: `bootstrap.servers`, ...).
fn client_config(properties: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}

/// The value of property `key`, if set.
fn property<'a>(properties: &'a [(String, String)], key: &str) -> Option<&'a str> {
    properties.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}
