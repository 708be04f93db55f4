//! The source API: readers of many splits at once that take new splits while they read,
//! checkpoint notifications for readers and enumerators, and the bad-record policies.

mod common;

use brisk::prelude::*;
use brisk::runtime::checkpoint::coordinator::CheckpointStatus;
use brisk::runtime::checkpoint::{CheckpointId, FINAL_CHECKPOINT};
use brisk::runtime::source::{
    Boundedness, InputStatus, NextSplit, ReaderContext, ReaderOutput, Source, SourceReader, SourceSplit,
    SplitEnumerator,
};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long after the previous one each partition appears.
const DISCOVERY_GAP: Duration = Duration::from_millis(100);
/// Records of partition 0, emitted one per `SLOW_PACE`: it is still being read when the
/// others appear.
const SLOW_RECORDS: u64 = 120;
const SLOW_PACE: Duration = Duration::from_millis(5);
/// Records of every other partition, emitted as fast as possible.
const FAST_RECORDS: u64 = 200;

/// A partition of a pretend broker: records `next..end`, record `i` of partition `p` with
/// event time `p * 1_000_000 + i`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Partition {
    id: u64,
    next: u64,
    end: u64,
}

impl SourceSplit for Partition {
    fn split_id(&self) -> String {
        format!("partition-{}", self.id)
    }
}

/// Checkpoints the reader and the enumerator were told of.
#[derive(Clone, Default)]
struct Notified {
    reader: Arc<Mutex<Vec<CheckpointId>>>,
    enumerator: Arc<Mutex<Vec<CheckpointId>>>,
}

/// `partitions` partitions discovered one by one, every [`DISCOVERY_GAP`].
struct PartitionSource {
    partitions: u64,
    notified: Notified,
}

struct PartitionEnumerator {
    started: Instant,
    discovered: u64,
    partitions: u64,
    returned: Vec<Partition>,
    notified: Notified,
}

impl SplitEnumerator<Partition> for PartitionEnumerator {
    fn next_split(&mut self, _subtask: usize) -> Result<NextSplit<Partition>, BoxError> {
        if let Some(split) = self.returned.pop() {
            return Ok(NextSplit::Split(split));
        }
        let due = (self.started.elapsed().as_millis() / DISCOVERY_GAP.as_millis()) as u64 + 1;
        if self.discovered < due.min(self.partitions) {
            let id = self.discovered;
            self.discovered += 1;
            let end = if id == 0 { SLOW_RECORDS } else { FAST_RECORDS };
            return Ok(NextSplit::Split(Partition { id, next: 0, end }));
        }
        Ok(if self.discovered == self.partitions {
            NextSplit::NoMoreSplits
        } else {
            NextSplit::NotYet(DISCOVERY_GAP / 4)
        })
    }

    fn add_splits_back(&mut self, splits: Vec<Partition>, _subtask: usize) {
        self.returned.extend(splits);
    }

    fn snapshot_state(&mut self) -> Result<Vec<u8>, BoxError> {
        Ok(serde_json::to_vec(&(self.discovered, &self.returned))?)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), BoxError> {
        (self.discovered, self.returned) = serde_json::from_slice(state)?;
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) {
        self.notified.enumerator.lock().unwrap().push(checkpoint);
    }
}

/// One client reading all its partitions, as a Kafka consumer does.
struct PartitionReader {
    partitions: Vec<Partition>,
    slow_due: Instant,
    notified: Notified,
}

impl SourceReader<(u64, u64), Partition> for PartitionReader {
    fn add_splits(&mut self, splits: Vec<Partition>) -> Result<(), BoxError> {
        self.partitions.extend(splits);
        Ok(())
    }

    fn poll(&mut self, out: &mut ReaderOutput<'_, (u64, u64)>) -> Result<InputStatus, BoxError> {
        let now = Instant::now();
        let mut emitted = false;
        for p in &mut self.partitions {
            let batch = if p.id == 0 {
                if now < self.slow_due {
                    continue;
                }
                self.slow_due = now + SLOW_PACE;
                1
            } else {
                50
            };
            let id = p.split_id();
            let mut split = out.split(&id);
            for _ in 0..batch.min(p.end - p.next) {
                split.collect_with_timestamp((p.id, p.next), (p.id * 1_000_000 + p.next) as i64);
                p.next += 1;
                emitted = true;
            }
            drop(split);
            if p.next == p.end {
                out.split_finished(id);
            }
        }
        self.partitions.retain(|p| p.next < p.end);
        Ok(if emitted { InputStatus::MoreAvailable } else { InputStatus::NothingAvailable(Some(SLOW_PACE)) })
    }

    fn takes_splits_while_reading(&self) -> bool {
        true
    }

    fn snapshot_state(&mut self, _checkpoint: CheckpointId) -> Vec<Partition> {
        self.partitions.clone()
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), BoxError> {
        self.notified.reader.lock().unwrap().push(checkpoint);
        Ok(())
    }
}

impl Source<(u64, u64)> for PartitionSource {
    type Split = Partition;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn create_enumerator(&self, _parallelism: usize) -> Result<Box<dyn SplitEnumerator<Partition>>, BoxError> {
        Ok(Box::new(PartitionEnumerator {
            started: Instant::now(),
            discovered: 0,
            partitions: self.partitions,
            returned: Vec::new(),
            notified: self.notified.clone(),
        }))
    }

    fn create_reader(&self, _: &ReaderContext) -> Result<Box<dyn SourceReader<(u64, u64), Partition>>, BoxError> {
        Ok(Box::new(PartitionReader {
            partitions: Vec::new(),
            slow_due: Instant::now(),
            notified: self.notified.clone(),
        }))
    }
}

/// Each record with its event time and the watermark when it arrived.
#[derive(Clone)]
struct SeenAt;

impl RichFunction for SeenAt {}

impl KeyedProcessFunction<u8, (u64, u64), (u64, u64, i64, i64)> for SeenAt {
    fn process_element(
        &mut self,
        (partition, i): (u64, u64),
        ctx: &mut KeyedProcessContext<'_, u8, (u64, u64, i64, i64)>,
        out: &mut Collector<'_, (u64, u64, i64, i64)>,
    ) -> Result<(), BoxError> {
        let timestamp = ctx.timestamp().ok_or("no timestamp")?;
        out.collect((partition, i, timestamp, ctx.timer_service().current_watermark()));
        Ok(())
    }
}

/// A record as [`SeenAt`] saw it: partition, index, event time, watermark.
type Seen = (u64, u64, i64, i64);

/// The partition source read at parallelism 1; its records in arrival order.
fn read_partitions(partitions: u64, config: &[(&str, &str)]) -> (Vec<Seen>, Notified, brisk::JobExecutionResult) {
    let mut configuration = Configuration::new();
    for (key, value) in config {
        configuration.set(*key, *value);
    }
    let env = StreamExecutionEnvironment::from_configuration(&configuration).unwrap();
    env.set_parallelism(1);
    let notified = Notified::default();
    let source = PartitionSource { partitions, notified: notified.clone() };
    let strategy = WatermarkStrategy::for_monotonous_timestamps();
    let seen = env.from_source(source, strategy, "partitions").key_by(|_: &(u64, u64)| 0u8).process(SeenAt);
    let collected = seen.collect_async();
    let result = env.execute("partitions").unwrap();
    (collected.take(), notified, result)
}

#[test]
fn a_reader_takes_new_splits_while_it_reads_and_keeps_a_watermark_per_split() {
    let (records, _, _) = read_partitions(3, &[]);
    let count = |p: u64| records.iter().filter(|r| r.0 == p).count() as u64;
    assert_eq!((count(0), count(1), count(2)), (SLOW_RECORDS, FAST_RECORDS, FAST_RECORDS));
    // Partitions found while partition 0 was being read were read beside it, not after it.
    let last_slow = records.iter().rposition(|r| r.0 == 0).unwrap();
    for p in [1, 2] {
        let first = records.iter().position(|r| r.0 == p).unwrap();
        assert!(first < last_slow, "partition {p} waited for partition 0 to end");
    }
    // The watermark is the smallest of the splits': partition 0's records are never late,
    // though the others' event times are far ahead.
    let late: Vec<_> = records.iter().filter(|(_, _, ts, wm)| ts <= wm).collect();
    assert!(late.is_empty(), "late records: {:?}", &late[..late.len().min(5)]);
    let watermarks: Vec<i64> = records.iter().map(|r| r.3).collect();
    assert!(watermarks.windows(2).all(|w| w[0] <= w[1]), "the watermark went back");
}

#[test]
fn readers_and_enumerators_hear_of_completed_checkpoints() {
    let config = [("execution.checkpointing.interval", "30 ms"), ("web.checkpoints.history", "1000")];
    let (records, notified, result) = read_partitions(3, &config);
    assert_eq!(records.len() as u64, SLOW_RECORDS + 2 * FAST_RECORDS);
    let completed: Vec<CheckpointId> =
        result.checkpoints.history().filter(|c| c.status == CheckpointStatus::Completed).map(|c| c.id).collect();
    assert!(completed.len() >= 3, "{completed:?}");
    assert_eq!(*notified.enumerator.lock().unwrap(), completed, "the enumerator hears of each, in order");
    let reader = notified.reader.lock().unwrap().clone();
    assert!(!reader.is_empty());
    assert!(reader.windows(2).all(|w| w[0] < w[1]), "{reader:?}");
    let unknown: Vec<_> = reader.iter().filter(|id| !completed.contains(id) && **id != FINAL_CHECKPOINT).collect();
    assert!(unknown.is_empty(), "the reader heard of checkpoints that did not complete: {unknown:?}");
}

/// Numbers, one per line, with a line that is no number (byte 4) and one that is no text
/// (byte 8).
fn numbers_file(name: &str) -> std::path::PathBuf {
    let dir = common::temp_dir(name);
    let path = dir.join("numbers.txt");
    std::fs::write(&path, b"1\n2\nx\n4\n\xff\n6\n").unwrap();
    path
}

fn numbers(env: &StreamExecutionEnvironment, path: &std::path::Path, policy: BadRecordPolicy) -> DataStream<i64> {
    let format = |line: &str| line.parse::<i64>().map_err(|e| format!("'{line}' is not a number: {e}"));
    let source = FileSource::for_record_format([path], format);
    env.from_source(source, WatermarkStrategy::no_watermarks(), "numbers").on_bad_records(policy)
}

#[test]
fn a_bad_record_fails_the_job_by_default_naming_source_split_offset_and_line() {
    let path = numbers_file("bad-records-fail");
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(1);
    let error = numbers(&env, &path, BadRecordPolicy::Fail).execute_and_collect("fail").unwrap_err().to_string();
    for part in ["source 'Source: numbers'", "numbers.txt:0+12", "offset 4", "line 3", "'x' is not a number"] {
        assert!(error.contains(part), "{part} missing: {error}");
    }
}

#[test]
fn skipped_bad_records_are_counted() {
    let path = numbers_file("bad-records-skip");
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(1);
    let collected = numbers(&env, &path, BadRecordPolicy::Skip).collect_async();
    let client = env.execute_async("skip").unwrap();
    let controller = client.controller();
    client.wait().unwrap();
    assert_eq!(collected.take(), vec![1, 2, 4, 6]);
    let errors: u64 = controller.metrics().iter().map(|m| m.values.records_in_errors).sum();
    assert_eq!(errors, 2, "numRecordsInErrors");
}

#[test]
fn bad_records_go_to_the_dead_letters_side_output() {
    let path = numbers_file("bad-records-side");
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(1);
    let stream = numbers(&env, &path, BadRecordPolicy::SideOutput);
    let good = stream.collect_async();
    let bad = stream.get_side_output(&dead_letters()).collect_async();
    env.execute("dead letters").unwrap();
    assert_eq!(good.take(), vec![1, 2, 4, 6]);
    let bad = bad.take();
    let found: Vec<(u64, &[u8])> = bad.iter().map(|b| (b.offset, b.raw.as_slice())).collect();
    assert_eq!(found, vec![(4, &b"x"[..]), (8, &b"\xff"[..])]);
    assert!(bad.iter().all(|b| b.source == "Source: numbers" && b.split.contains("numbers.txt")), "{bad:?}");
    assert!(bad[0].reason.contains("'x' is not a number"), "{}", bad[0].reason);
    assert!(bad[1].reason.contains("not valid UTF-8"), "{}", bad[1].reason);

    // Dead letters nobody reads would be lost: the job refuses to run.
    let env = StreamExecutionEnvironment::get_execution_environment();
    let error = numbers(&env, &path, BadRecordPolicy::SideOutput).execute_and_collect("unread").unwrap_err();
    assert!(error.to_string().contains("get_side_output(&dead_letters())"), "{error}");
}

#[test]
fn on_bad_records_applies_only_to_sources() {
    let env = StreamExecutionEnvironment::get_execution_environment();
    let mapped = env.from_sequence(1, 3).map(|x: i64| x).on_bad_records(BadRecordPolicy::Skip);
    let error = mapped.execute_and_collect("not a source").unwrap_err();
    assert!(error.to_string().contains("on_bad_records applies to a stream read from a source"), "{error}");
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Trade {
    symbol: String,
    price: f64,
    quantity: i64,
}

#[test]
fn json_lines_round_trip_through_the_file_sink_and_source() {
    let dir = common::temp_dir("json-lines");
    let trades: Vec<Trade> =
        (0..500).map(|i| Trade { symbol: format!("S\"{}\",x", i % 7), price: i as f64 / 4.0, quantity: i }).collect();
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    env.from_collection(trades.clone()).add_sink(FileSink::json_lines(dir.join("out")));
    env.execute("write json").unwrap();

    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    let source = FileSource::<Trade>::json_lines([dir.join("out")]);
    let mut read =
        env.from_source(source, WatermarkStrategy::no_watermarks(), "json").execute_and_collect("read json").unwrap();
    read.sort_by_key(|t| t.quantity);
    assert_eq!(read, trades);
}

#[test]
fn csv_rows_are_read_field_by_field_and_bad_rows_follow_the_policy() {
    let dir = common::temp_dir("csv-rows");
    let path = dir.join("trades.csv");
    std::fs::write(&path, "ACME,10.5,3\n\"Big, Inc.\",2.25,7\n\"say \"\"hi\"\"\",1,1\nbroken,x,1\nshort\n").unwrap();
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(1);
    let source = FileSource::<(String, f64, i64)>::csv([&path]);
    let read =
        env.from_source(source, WatermarkStrategy::no_watermarks(), "csv").on_bad_records(BadRecordPolicy::SideOutput);
    let good = read.collect_async();
    let bad = read.get_side_output(&dead_letters()).collect_async();
    env.execute("read csv").unwrap();
    let expected = vec![("ACME".to_string(), 10.5, 3), ("Big, Inc.".into(), 2.25, 7), ("say \"hi\"".into(), 1.0, 1)];
    assert_eq!(good.take(), expected);
    let bad: Vec<(u64, String)> =
        bad.take().into_iter().map(|b| (b.offset, String::from_utf8(b.raw).unwrap())).collect();
    assert_eq!(bad, vec![(48, "broken,x,1".to_string()), (59, "short".to_string())]);
}
