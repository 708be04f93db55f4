//! Redis Streams as a source: each stream is a split, read by one consumer of the source's
//! consumer group (named after the stream, so a rescaled job takes over its pending entries).
//! The last id emitted is in the checkpoint; entries are acknowledged (XACK) when the
//! checkpoint that covers them completes. After a restore, the consumer's pending entries up
//! to the checkpointed id are acknowledged (their effects are in the restored state) and the
//! newer ones emitted again: exactly once.

use super::connect;
use crate::unbounded::AssignedSplits;
use brisk::runtime::checkpoint::CheckpointId;
use brisk::runtime::source::{
    Boundedness, InputStatus, ReaderContext, ReaderOutput, Source, SourceReader, SourceSplit, SplitEnumerator,
};
use brisk_core::BoxError;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{Commands, Value};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Entries a reader asks for per stream and poll.
const ENTRIES_PER_READ: usize = 512;
/// How long a reader with nothing to read waits before it asks again.
const IDLE_WAIT: Duration = Duration::from_millis(10);

/// One entry of a stream, as a deserializer sees it.
#[derive(Debug)]
pub struct RedisStreamEntry<'a> {
    /// The stream.
    pub stream: &'a str,
    /// The entry's id (`<ms>-<seq>`).
    pub id: &'a str,
    /// Its fields.
    pub fields: Vec<(&'a str, &'a [u8])>,
}

/// Turns an entry into an element, or says what is wrong with it.
type EntryDeserializer<T> = Arc<dyn Fn(&RedisStreamEntry<'_>) -> Result<T, String> + Send + Sync>;

/// A stream, and the last entry emitted from it (what a checkpoint stores).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisStreamSplit {
    /// The stream's key.
    pub stream: String,
    /// The id of the last entry emitted (`None`: none yet).
    pub last_id: Option<String>,
}

impl SourceSplit for RedisStreamSplit {
    fn split_id(&self) -> String {
        self.stream.clone()
    }
}

/// Reads Redis Streams with a consumer group; build one with [`RedisStreamSource::builder`].
pub struct RedisStreamSource<T> {
    url: String,
    streams: Vec<String>,
    group: String,
    start_at_end: bool,
    deserializer: EntryDeserializer<T>,
}

/// Configures a [`RedisStreamSource`].
pub struct RedisStreamSourceBuilder<T> {
    url: Option<String>,
    streams: Vec<String>,
    group: Option<String>,
    start_at_end: bool,
    deserializer: Option<EntryDeserializer<T>>,
}

impl<T> RedisStreamSource<T> {
    /// A builder; a group created by the source starts at the streams' first entries.
    pub fn builder() -> RedisStreamSourceBuilder<T> {
        RedisStreamSourceBuilder {
            url: None,
            streams: Vec::new(),
            group: None,
            start_at_end: false,
            deserializer: None,
        }
    }
}

impl<T> RedisStreamSourceBuilder<T> {
    /// The server, as `redis://host:port/db`.
    pub fn url(mut self, url: &str) -> Self {
        self.url = Some(url.to_string());
        self
    }

    /// The streams to read.
    pub fn streams(mut self, streams: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.streams = streams.into_iter().map(Into::into).collect();
        self
    }

    /// The consumer group (created, with the streams, when missing).
    pub fn group(mut self, group: &str) -> Self {
        self.group = Some(group.to_string());
        self
    }

    /// A group the source creates reads only entries added after it (`$`), not the streams'
    /// first entries.
    pub fn start_at_end(mut self) -> Self {
        self.start_at_end = true;
        self
    }

    /// Turns each entry into an element.
    pub fn deserializer(
        mut self,
        f: impl Fn(&RedisStreamEntry<'_>) -> Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        self.deserializer = Some(Arc::new(f));
        self
    }

    /// The source, or what is missing or wrong in its configuration.
    pub fn build(self) -> Result<RedisStreamSource<T>, String> {
        let url = self.url.ok_or("the Redis Streams source needs a url (redis://host:port/db)")?;
        redis::Client::open(url.as_str()).map_err(|e| format!("invalid Redis url '{url}': {e}"))?;
        if self.streams.is_empty() {
            return Err("the Redis Streams source needs streams".into());
        }
        let group = self.group.ok_or("the Redis Streams source needs a consumer group")?;
        let deserializer = self.deserializer.ok_or("the Redis Streams source needs a deserializer")?;
        Ok(RedisStreamSource { url, streams: self.streams, group, start_at_end: self.start_at_end, deserializer })
    }
}

/// Orders stream ids (`<ms>-<seq>`) numerically.
fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// Where a stream's reading is.
struct Reading {
    split: RedisStreamSplit,
    consumer: String,
    /// Reading the consumer's pending entries after this id (after a restore); `None`: new
    /// entries (`>`).
    pending_after: Option<String>,
    /// Entries emitted and not acknowledged yet, oldest first.
    unacked: VecDeque<String>,
}

/// One connection reading the streams of a subtask.
struct RedisStreamReader<T> {
    url: String,
    group: String,
    connection: redis::Connection,
    deserializer: EntryDeserializer<T>,
    streams: Vec<Reading>,
    /// The last id of each stream at each checkpoint not yet completed.
    snapshots: VecDeque<(CheckpointId, Vec<(String, String)>)>,
}

impl<T> RedisStreamReader<T> {
    fn failed(&self, what: &str, e: &dyn std::fmt::Display) -> BoxError {
        format!("cannot {what} at {}: {e}", self.url).into()
    }
}

impl<T: 'static> SourceReader<T, RedisStreamSplit> for RedisStreamReader<T> {
    fn add_splits(&mut self, splits: Vec<RedisStreamSplit>) -> Result<(), BoxError> {
        for split in splits {
            let consumer = format!("brisk-{}", split.stream);
            // Entries this consumer got but no completed checkpoint covers come again first.
            let pending_after = Some("0".to_string());
            self.streams.push(Reading { split, consumer, pending_after, unacked: VecDeque::new() });
        }
        Ok(())
    }

    fn poll(&mut self, out: &mut ReaderOutput<'_, T>) -> Result<InputStatus, BoxError> {
        let mut read = 0;
        for index in 0..self.streams.len() {
            if out.should_yield() {
                break;
            }
            let reading = &self.streams[index];
            let from = reading.pending_after.clone().unwrap_or_else(|| ">".to_string());
            let options = StreamReadOptions::default().group(&self.group, &reading.consumer).count(ENTRIES_PER_READ);
            let stream = reading.split.stream.clone();
            let reply: Option<StreamReadReply> = self
                .connection
                .xread_options(&[&stream], &[&from], &options)
                .map_err(|e| self.failed(&format!("read stream '{stream}'"), &e))?;
            let entries = reply.map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect::<Vec<_>>()).unwrap_or_default();
            let reading = &mut self.streams[index];
            if entries.is_empty() && reading.pending_after.is_some() {
                // Every pending entry is handled: on to new ones.
                reading.pending_after = None;
                continue;
            }
            let mut stale = Vec::new();
            for entry in &entries {
                if let Some(pending) = &mut reading.pending_after {
                    *pending = entry.id.clone();
                }
                let done = reading.split.last_id.as_deref().is_some_and(|last| id_key(&entry.id) <= id_key(last));
                if done {
                    // In the restored state already: acknowledge, do not emit again.
                    stale.push(entry.id.clone());
                    continue;
                }
                let mut fields: Vec<(&str, &[u8])> = entry
                    .map
                    .iter()
                    .filter_map(|(k, v)| match v {
                        Value::BulkString(bytes) => Some((k.as_str(), bytes.as_slice())),
                        _ => None,
                    })
                    .collect();
                fields.sort_unstable_by_key(|(k, _)| *k);
                let record = RedisStreamEntry { stream: &reading.split.stream, id: &entry.id, fields };
                let mut output = out.split(&reading.split.stream);
                match (self.deserializer)(&record) {
                    Ok(value) => output.collect(value),
                    Err(reason) => {
                        let raw = format!("{:?}", record.fields);
                        output.bad_record(id_key(&entry.id).0, format!("entry {}: {reason}", entry.id), raw.as_bytes())
                    }
                }
                drop(output);
                reading.split.last_id = Some(entry.id.clone());
                reading.unacked.push_back(entry.id.clone());
                read += 1;
            }
            if !stale.is_empty() {
                let group = self.group.clone();
                let acked: Result<i64, _> = self.connection.xack(&stream, &group, &stale);
                acked.map_err(|e| self.failed(&format!("acknowledge entries of '{stream}'"), &e))?;
            }
        }
        Ok(if read > 0 { InputStatus::MoreAvailable } else { InputStatus::NothingAvailable(Some(IDLE_WAIT)) })
    }

    fn takes_splits_while_reading(&self) -> bool {
        true
    }

    fn snapshot_state(&mut self, checkpoint: CheckpointId) -> Vec<RedisStreamSplit> {
        let last: Vec<(String, String)> = self
            .streams
            .iter()
            .filter_map(|r| r.split.last_id.clone().map(|id| (r.split.stream.clone(), id)))
            .collect();
        self.snapshots.push_back((checkpoint, last));
        self.streams.iter().map(|r| r.split.clone()).collect()
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), BoxError> {
        let mut covered = None;
        while self.snapshots.front().is_some_and(|(id, _)| *id <= checkpoint) {
            covered = self.snapshots.pop_front();
        }
        let Some((_, last)) = covered else { return Ok(()) };
        for (stream, up_to) in last {
            let Some(reading) = self.streams.iter_mut().find(|r| r.split.stream == stream) else { continue };
            let mut ids = Vec::new();
            while reading.unacked.front().is_some_and(|id| id_key(id) <= id_key(&up_to)) {
                ids.extend(reading.unacked.pop_front());
            }
            if !ids.is_empty() {
                let acked: Result<i64, _> = self.connection.xack(&stream, &self.group, &ids);
                // The next completed checkpoint acknowledges them again; the checkpoint holds
                // the position that counts.
                if let Err(e) = acked {
                    tracing::warn!(stream, url = self.url, "cannot acknowledge stream entries: {e}");
                    ids.into_iter().rev().for_each(|id| reading.unacked.push_front(id));
                }
            }
        }
        Ok(())
    }
}

/// Hands each stream to one reader (round robin).
impl<T: Send + 'static> Source<T> for RedisStreamSource<T> {
    type Split = RedisStreamSplit;

    fn boundedness(&self) -> Boundedness {
        Boundedness::ContinuousUnbounded
    }

    fn create_enumerator(&self, parallelism: usize) -> Result<Box<dyn SplitEnumerator<RedisStreamSplit>>, BoxError> {
        let mut connection = connect(&self.url)?;
        let start = if self.start_at_end { "$" } else { "0" };
        for stream in &self.streams {
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(stream)
                .arg(&self.group)
                .arg(start)
                .arg("MKSTREAM")
                .query(&mut connection);
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => {
                    return Err(format!(
                        "cannot create group '{}' of stream '{stream}' at {}: {e}",
                        self.group, self.url
                    )
                    .into());
                }
            }
        }
        let splits = self.streams.iter().map(|s| RedisStreamSplit { stream: s.clone(), last_id: None }).collect();
        Ok(Box::new(AssignedSplits::new(splits, parallelism)))
    }

    fn create_reader(&self, _: &ReaderContext) -> Result<Box<dyn SourceReader<T, RedisStreamSplit>>, BoxError> {
        Ok(Box::new(RedisStreamReader {
            connection: connect(&self.url)?,
            url: self.url.clone(),
            group: self.group.clone(),
            deserializer: self.deserializer.clone(),
            streams: Vec::new(),
            snapshots: VecDeque::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_order_numerically() {
        assert!(id_key("9-5") < id_key("10-0"));
        assert!(id_key("10-2") < id_key("10-10"));
    }
}
