//! Checkpoints and recovery end to end: with failures injected many times (errors and panics
//! in operators, failures inside snapshotting), the committed output of the exactly-once file
//! sink equals a failure-free run's exactly, with both state backends, aligned and unaligned;
//! at-least-once loses nothing; savepoints rescale a job 2 → 4 → 1 keeping every count;
//! checkpoint files are deleted when no longer needed. Expected outputs come from a sequential
//! model of the job (`reference`), independent of the engine.

mod common;

use brisk::core::Configuration;
use brisk::prelude::*;
use brisk::runtime::checkpoint::{CheckpointConfig, CheckpointingMode, FailoverStrategy};
use brisk::runtime::failure::{FailureInjector, InjectionPoint, PlannedFailure};
use brisk::runtime::jobmaster::restart::RestartStrategy;
use brisk::sinks::FileSink;
use common::{committed_lines, read_sorted_lines, temp_dir, wait_until};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEYS: u64 = 50;

#[derive(Clone, Copy, Debug)]
struct Setup {
    rocksdb: bool,
    mode: CheckpointingMode,
    unaligned: bool,
    parallelism: usize,
    /// Incremental RocksDB checkpoints (SST files shared between checkpoints).
    incremental: bool,
    /// Task managers of the mini cluster: channels between two go over TCP.
    task_managers: usize,
}

impl Setup {
    /// Exactly-once, aligned, heap backend, full snapshots.
    fn exactly_once(parallelism: usize) -> Self {
        Setup {
            rocksdb: false,
            mode: CheckpointingMode::ExactlyOnce,
            unaligned: false,
            parallelism,
            incremental: false,
            task_managers: 1,
        }
    }
}

fn environment(setup: Setup, checkpoints: impl Into<SnapshotLocation>) -> StreamExecutionEnvironment {
    let mut config = Configuration::new();
    config.set("minicluster.number-of-taskmanagers", setup.task_managers);
    let env = StreamExecutionEnvironment::create_local_environment(setup.parallelism);
    env.configure(&config).expect("a valid configuration");
    env.set_checkpoint_config(CheckpointConfig {
        interval: Some(Duration::from_millis(50)),
        mode: setup.mode,
        unaligned: setup.unaligned,
        directory: Some(checkpoints.into()),
        retained: 2,
        incremental: setup.incremental,
        ..CheckpointConfig::default()
    });
    env.set_restart_strategy(RestartStrategy::FixedDelay { attempts: 20, delay: Duration::from_millis(10) });
    if setup.rocksdb {
        env.set_state_backend(StateBackendConfig { kind: StateBackendKind::RocksDb, ..StateBackendConfig::default() });
    }
    env
}

/// Keyed running counts and 100 ms tumbling event-time window sums over a rate-limited
/// generated stream, both written through the exactly-once file sink.
fn declare_job(env: &StreamExecutionEnvironment, records: u64, out: &Path) {
    let events = env
        .from_source(
            DataGeneratorSource::new(|i| (i % KEYS, i as i64), records).with_rate_limit(60_000.0),
            WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|e: &(u64, i64), _| e.1 / 10),
            "events",
        )
        .uid("events");
    let keyed = events.key_by(|e: &(u64, i64)| e.0);
    keyed
        .map(|e| (e.0, 1i64))
        .key_by(|e: &(u64, i64)| e.0)
        .sum(|e: &mut (u64, i64)| &mut e.1)
        .uid("running-counts")
        .map(|(k, n)| format!("count,{k},{n}"))
        .add_sink(FileSink::text(out.join("counts")))
        .uid("counts-sink");
    keyed
        .window(TumblingEventTimeWindows::of(Duration::from_millis(100)))
        .apply(|k: &u64, w: &TimeWindow, els: Vec<(u64, i64)>, out: &mut Collector<'_, String>| {
            out.collect(format!("window,{k},{},{},{}", w.start, els.len(), els.iter().map(|e| e.1).sum::<i64>()))
        })
        .uid("windows")
        .add_sink(FileSink::text(out.join("windows")))
        .uid("windows-sink");
}

/// What [`declare_job`] commits over `records` generated events, computed sequentially: per
/// key, every running count from 1 up; per key and 100 ms window, its size and sum.
fn reference(records: u64) -> Vec<String> {
    let mut per_key = BTreeMap::new();
    let mut windows: BTreeMap<(u64, i64), (u64, i64)> = BTreeMap::new();
    let mut lines = Vec::new();
    for i in 0..records {
        let (key, value) = (i % KEYS, i as i64);
        let n = per_key.entry(key).or_insert(0u64);
        *n += 1;
        lines.push(format!("count,{key},{n}"));
        let ts = value / 10;
        let window = windows.entry((key, ts - ts % 100)).or_default();
        window.0 += 1;
        window.1 += value;
    }
    lines.extend(windows.iter().map(|((k, start), (n, sum))| format!("window,{k},{start},{n},{sum}")));
    lines.sort();
    lines
}

/// The committed lines of both sinks under `out` (`finished`: asserting none is pending).
fn job_output(out: &Path, finished: bool) -> Vec<String> {
    let read = if finished { read_sorted_lines } else { committed_lines };
    let mut lines = read(&out.join("counts"));
    lines.extend(read(&out.join("windows")));
    lines.sort();
    lines
}

fn run_job(setup: Setup, records: u64, failures: FailureInjector, name: &str) -> (Vec<String>, JobExecutionResult) {
    common::init_logging();
    let dir = temp_dir(name);
    let env = environment(setup, dir.join("checkpoints"));
    env.set_failure_injector(failures);
    declare_job(&env, records, &dir.join("out"));
    let result = env.execute(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    (job_output(&dir.join("out"), true), result)
}

fn plan(records: u64) -> FailureInjector {
    // Records pass about four operators each; failures spread over the run, the first after
    // the first checkpoints completed (each restart restores one).
    let at = |f: f64| (records as f64 * 4.0 * f) as u64;
    FailureInjector::new(vec![
        PlannedFailure { after_records: at(0.3), point: InjectionPoint::Record, panic: false },
        PlannedFailure { after_records: at(0.42), point: InjectionPoint::Record, panic: true },
        PlannedFailure { after_records: at(0.54), point: InjectionPoint::SyncSnapshot, panic: false },
        PlannedFailure { after_records: at(0.66), point: InjectionPoint::AsyncSnapshot, panic: false },
        PlannedFailure { after_records: at(0.8), point: InjectionPoint::Record, panic: false },
    ])
}

/// Asserts that every failure of [`plan`] fired, each restarting the job once from a
/// completed checkpoint.
fn assert_plan_fired(name: &str, failures: &FailureInjector, result: &JobExecutionResult) {
    let fired = failures.fired_failures();
    assert_eq!(failures.fired_at(InjectionPoint::Record), 3, "{name}: record failures fired: {fired:?}");
    assert_eq!(fired.iter().filter(|f| f.panic).count(), 1, "{name}: one of them a panic: {fired:?}");
    assert_eq!(failures.fired_at(InjectionPoint::SyncSnapshot), 1, "{name}: {fired:?}");
    assert_eq!(failures.fired_at(InjectionPoint::AsyncSnapshot), 1, "{name}: {fired:?}");
    assert_eq!(result.restarts, 5, "{name}: one restart per failure");
    assert_eq!(result.restored_checkpoints.len(), 5, "{name}: {:?}", result.restored_checkpoints);
    assert!(
        result.restored_checkpoints.iter().all(Option::is_some),
        "{name}: every restart restored a checkpoint: {:?}",
        result.restored_checkpoints
    );
}

fn exactly_once_equals_failure_free(setup: Setup, name: &str) {
    let records = 30_000;
    let expected = reference(records);
    let (clean, result) = run_job(setup, records, FailureInjector::default(), &format!("{name}-clean"));
    assert_eq!(result.restarts, 0);
    assert!(clean == expected, "{name}: the failure-free run differs from the reference");
    let failures = plan(records);
    let (actual, failed) = run_job(setup, records, failures.clone(), &format!("{name}-failures"));
    assert_plan_fired(name, &failures, &failed);
    assert!(
        actual == expected,
        "{name}: committed output with failures differs from the reference: {} lines for {}; {}; restored \
         checkpoints {:?}; failures {:?}",
        actual.len(),
        expected.len(),
        difference(&actual, &expected),
        failed.restored_checkpoints,
        failures.fired_failures()
    );
}

/// What `actual` has too many and too few of against `expected` (both sorted), with examples.
fn difference(actual: &[String], expected: &[String]) -> String {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    actual.iter().for_each(|l| *counts.entry(l).or_default() += 1);
    expected.iter().for_each(|l| *counts.entry(l).or_default() -= 1);
    let extra: Vec<&str> = counts.iter().filter(|(_, n)| **n > 0).map(|(l, _)| *l).collect();
    let missing: Vec<&str> = counts.iter().filter(|(_, n)| **n < 0).map(|(l, _)| *l).collect();
    let sample = |lines: &[&str]| lines.iter().take(5).copied().collect::<Vec<_>>().join(" | ");
    format!(
        "{} distinct lines too many (e.g. {}), {} missing (e.g. {})",
        extra.len(),
        sample(&extra),
        missing.len(),
        sample(&missing)
    )
}

#[test]
fn exactly_once_aligned_heap() {
    exactly_once_equals_failure_free(Setup::exactly_once(2), "eo-aligned-heap");
}

#[test]
fn exactly_once_unaligned_heap() {
    exactly_once_equals_failure_free(Setup { unaligned: true, ..Setup::exactly_once(3) }, "eo-unaligned-heap");
}

/// Without failures, the job over TCP between task managers commits exactly the reference.
#[test]
fn task_managers_over_tcp_give_the_reference_output() {
    for (setup, name) in [
        (Setup { task_managers: 2, ..Setup::exactly_once(2) }, "tcp-aligned"),
        (Setup { unaligned: true, task_managers: 3, ..Setup::exactly_once(3) }, "tcp-unaligned"),
    ] {
        let (output, result) = run_job(setup, 30_000, FailureInjector::default(), name);
        assert_eq!(result.restarts, 0);
        assert!(output == reference(30_000), "{name}: the committed output differs from the reference");
    }
}

#[test]
fn exactly_once_aligned_over_tcp_between_task_managers() {
    exactly_once_equals_failure_free(Setup { task_managers: 2, ..Setup::exactly_once(2) }, "eo-aligned-tcp");
}

#[test]
fn exactly_once_unaligned_over_tcp_between_task_managers() {
    exactly_once_equals_failure_free(
        Setup { unaligned: true, task_managers: 3, ..Setup::exactly_once(3) },
        "eo-unaligned-tcp",
    );
}

#[cfg(feature = "rocksdb")]
#[test]
fn exactly_once_aligned_rocksdb() {
    exactly_once_equals_failure_free(Setup { rocksdb: true, ..Setup::exactly_once(2) }, "eo-aligned-rocksdb");
}

#[cfg(feature = "rocksdb")]
#[test]
fn exactly_once_unaligned_rocksdb() {
    exactly_once_equals_failure_free(
        Setup { rocksdb: true, unaligned: true, ..Setup::exactly_once(2) },
        "eo-unaligned-rocksdb",
    );
}

/// Per (kind, key, window): the largest count seen, from `count,k,n` and
/// `window,k,start,count,sum` lines.
fn counts_by_key(lines: &[String]) -> BTreeMap<(String, String, String), u64> {
    let mut counts = BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let (key, count) = match f.as_slice() {
            ["count", k, n] => ((f[0].to_string(), k.to_string(), String::new()), n.parse().unwrap_or(0)),
            ["window", k, start, n, _] => {
                ((f[0].to_string(), k.to_string(), start.to_string()), n.parse().unwrap_or(0))
            }
            _ => panic!("unexpected line {line}"),
        };
        let entry = counts.entry(key).or_insert(0);
        *entry = (*entry).max(count);
    }
    counts
}

#[cfg(feature = "rocksdb")]
#[test]
fn exactly_once_incremental_rocksdb() {
    let setup = Setup { rocksdb: true, incremental: true, ..Setup::exactly_once(2) };
    exactly_once_equals_failure_free(setup, "eo-incremental-rocksdb");
}

#[cfg(feature = "rocksdb")]
#[test]
fn incremental_checkpoints_share_files_and_clean_them_up() {
    let setup = Setup { rocksdb: true, incremental: true, ..Setup::exactly_once(2) };
    let dir = temp_dir("incremental-files");
    let env = environment(setup, dir.join("checkpoints"));
    declare_job(&env, 30_000, &dir.join("out"));
    let client = env.execute_async("incremental").unwrap();
    let shared = dir.join("checkpoints/shared");
    let mut most = 0;
    while !client.is_finished() {
        most = most.max(std::fs::read_dir(&shared).map(|d| d.count()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(5));
    }
    let result = client.wait().unwrap();
    assert!(result.checkpoints.completed >= 3);
    assert!(most > 0, "SST files were stored once, under shared/");
    assert!(!shared.exists(), "a finished job deletes its shared files");
}

#[test]
fn at_least_once_loses_nothing() {
    let setup = Setup { mode: CheckpointingMode::AtLeastOnce, ..Setup::exactly_once(2) };
    let records = 20_000;
    let expected = reference(records);
    let failures = plan(records);
    let (actual, failed) = run_job(setup, records, failures.clone(), "alo-failures");
    assert_plan_fired("at-least-once", &failures, &failed);
    // Records may be counted twice after a recovery, never missed: every running count and
    // every window is there, with at least the failure-free count.
    let (expected, actual) = (counts_by_key(&expected), counts_by_key(&actual));
    for (key, count) in &expected {
        let got = actual.get(key).copied().unwrap_or(0);
        assert!(got >= *count, "{key:?}: {got} < {count}");
    }
}

#[test]
fn checkpoints_are_deleted_when_no_longer_needed() {
    let setup = Setup::exactly_once(2);
    let dir = temp_dir("checkpoint-cleanup");
    let env = environment(setup, dir.join("checkpoints"));
    declare_job(&env, 20_000, &dir.join("out"));
    let client = env.execute_async("cleanup").unwrap();
    let mut most = 0;
    while !client.is_finished() {
        let count = std::fs::read_dir(dir.join("checkpoints")).map(|d| d.count()).unwrap_or(0);
        most = most.max(count);
        std::thread::sleep(Duration::from_millis(5));
    }
    let result = client.wait().unwrap();
    let completed = result.checkpoints.completed;
    assert!(completed >= 3, "{completed} checkpoints completed");
    assert!(most <= 3, "at most the 2 retained checkpoints and one in progress existed at once ({most})");
    let left: Vec<PathBuf> = std::fs::read_dir(dir.join("checkpoints"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a finished job keeps no checkpoints: {left:?}");
}

/// Runs the counting job with `setup` from `restore` (if any), checkpointing into `name`;
/// with `stop`, stops it with a savepoint as soon as it committed output beyond what earlier
/// runs left, and returns the savepoint. Asserts that the run contributed output and, when
/// stopped, left some for the next run.
fn run_until_savepoint(
    setup: Setup,
    restore: Option<&SnapshotLocation>,
    out: &Path,
    name: &str,
    stop: bool,
    records: u64,
) -> Option<SnapshotLocation> {
    let before = job_output(out, false).len();
    let env = environment(setup, out.parent().expect("parent").join(name));
    if let Some(path) = restore {
        env.set_savepoint_restore(path.clone(), false);
    }
    declare_job(&env, records, out);
    let client = env.execute_async(name).unwrap();
    let savepoint = stop.then(|| {
        wait_until("committed output", || job_output(out, false).len() > before);
        client
            .stop_with_savepoint(out.parent().expect("parent").join("savepoints"), false)
            .expect("stop with savepoint")
    });
    let result = client.wait().expect("job ends");
    assert_eq!(result.savepoint, savepoint);
    let after = job_output(out, true).len();
    assert!(after > before, "{name}: the run committed output ({before} lines before, {after} after)");
    if stop {
        assert!(after < reference(records).len(), "{name}: stopped before the end ({after} lines)");
    }
    savepoint
}

#[test]
fn rescaling_through_savepoints_keeps_every_count() {
    let records = 60_000;
    let out = temp_dir("rescale").join("out");
    let first = run_until_savepoint(Setup::exactly_once(2), None, &out, "p2", true, records).expect("savepoint at p=2");
    let second =
        run_until_savepoint(Setup::exactly_once(4), Some(&first), &out, "p4", true, records).expect("savepoint at p=4");
    run_until_savepoint(Setup::exactly_once(1), Some(&second), &out, "p1", false, records);
    let actual = job_output(&out, true);
    assert_eq!(actual.len(), reference(records).len());
    assert!(actual == reference(records), "rescaled runs together committed exactly the reference output");
}

#[test]
fn restoring_needs_matching_operators_unless_allowed() {
    let setup = Setup::exactly_once(1);
    let dir = temp_dir("non-restored");
    let out = dir.join("out");
    let savepoint = run_until_savepoint(setup, None, &out, "p1", true, 50_000).expect("savepoint");
    let env = environment(setup, dir.join("chk2"));
    env.set_savepoint_restore(savepoint.clone(), false);
    env.from_sequence(1, 10).uid("another-source").print();
    let err = env.execute("other job").unwrap_err().to_string();
    assert!(err.contains("state for operators the job does not have") && err.contains("uid()"), "{err}");
    let env = environment(setup, dir.join("chk3"));
    env.set_savepoint_restore(savepoint.clone(), true);
    env.from_sequence(1, 10).uid("another-source").add_sink(DiscardingSink);
    env.execute("other job, state dropped").expect("allowed to drop state");
}

#[cfg(feature = "rocksdb")]
#[test]
fn savepoints_move_between_state_backends() {
    let records = 40_000;
    let out = temp_dir("backend-switch").join("out");
    // Heap (in-memory reduce values and window panes) → RocksDB → heap.
    let heap = Setup::exactly_once(2);
    let rocksdb = Setup { rocksdb: true, ..heap };
    let first = run_until_savepoint(heap, None, &out, "heap", true, records).expect("heap savepoint");
    let second = run_until_savepoint(rocksdb, Some(&first), &out, "rocksdb", true, records).expect("RocksDB savepoint");
    run_until_savepoint(heap, Some(&second), &out, "heap-again", false, records);
    let actual = job_output(&out, true);
    assert_eq!(actual.len(), reference(records).len());
    assert!(actual == reference(records), "the job continued exactly across backends");
}

/// Opens counted per subtask, and a map that fails once, in subtask `fail_in`, after 3000
/// records.
#[derive(Clone)]
struct FailOnce {
    opens: Arc<Mutex<Vec<usize>>>,
    failed: Arc<AtomicBool>,
    fail_in: usize,
    subtask: usize,
    seen: u64,
}

impl RichFunction for FailOnce {
    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> Result<(), BoxError> {
        self.subtask = ctx.index_of_this_subtask();
        self.seen = 0;
        self.opens.lock().expect("opens").push(self.subtask);
        Ok(())
    }
}

impl RichMapFunction<u64, String> for FailOnce {
    fn map(&mut self, value: u64) -> Result<String, BoxError> {
        self.seen += 1;
        if self.subtask == self.fail_in && self.seen == 3000 && !self.failed.swap(true, Ordering::SeqCst) {
            return Err(format!("planned failure in subtask {}", self.subtask).into());
        }
        Ok(value.to_string())
    }
}

/// Runs source → map → sink with only forward exchanges (each subtask its own pipelined
/// region) at parallelism 3; returns the committed lines, how often each subtask opened, and
/// the result.
fn run_forward_job(
    name: &str,
    failover: FailoverStrategy,
    fail: bool,
    failures: FailureInjector,
) -> (Vec<String>, Vec<usize>, JobExecutionResult) {
    let records = 30_000;
    let dir = temp_dir(name);
    let setup = Setup::exactly_once(3);
    let env = environment(setup, dir.join("checkpoints"));
    let mut config = CheckpointConfig {
        interval: Some(Duration::from_millis(50)),
        directory: Some(dir.join("checkpoints").into()),
        retained: 2,
        ..CheckpointConfig::default()
    };
    config.failover = failover;
    env.set_checkpoint_config(config);
    env.set_failure_injector(failures);
    let opens = Arc::new(Mutex::new(Vec::new()));
    let map =
        FailOnce { opens: opens.clone(), failed: Arc::new(AtomicBool::new(!fail)), fail_in: 1, subtask: 0, seen: 0 };
    env.from_source(
        DataGeneratorSource::new(|i| i, records).with_rate_limit(60_000.0),
        WatermarkStrategy::no_watermarks(),
        "numbers",
    )
    .uid("numbers")
    .rich_map(map)
    .uid("fail-once")
    .add_sink(FileSink::text(dir.join("out")))
    .uid("sink")
    .disable_chaining();
    let result = env.execute(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut opens = opens.lock().expect("opens").clone();
    opens.sort_unstable();
    (read_sorted_lines(&dir.join("out")), opens, result)
}

/// What the forward job commits: every generated number once.
fn forward_reference() -> Vec<String> {
    let mut lines: Vec<String> = (0..30_000u64).map(|i| i.to_string()).collect();
    lines.sort();
    lines
}

#[test]
fn a_failure_restarts_only_its_pipelined_region() {
    let expected = forward_reference();
    let (clean, opens, _) =
        run_forward_job("region-clean", FailoverStrategy::Region, false, FailureInjector::default());
    assert!(clean == expected, "the failure-free run differs from the reference");
    assert_eq!(opens, vec![0, 1, 2]);
    let (actual, opens, result) =
        run_forward_job("region-failover", FailoverStrategy::Region, true, FailureInjector::default());
    assert_eq!(result.restarts, 1);
    assert_eq!(opens, vec![0, 1, 1, 2], "only subtask 1's region restarted");
    assert_eq!(result.restored_checkpoints.len(), 1);
    assert_eq!(actual.len(), expected.len(), "same number of committed lines");
    assert!(actual == expected, "committed output differs from the reference");
    let (actual, opens, result) =
        run_forward_job("full-failover", FailoverStrategy::Full, true, FailureInjector::default());
    assert_eq!(result.restarts, 1);
    assert_eq!(opens, vec![0, 0, 1, 1, 2, 2], "the full strategy restarts every task");
    assert!(actual == expected, "committed output differs from the reference");
}

/// Region failover with channels over TCP: the source (p=2) rescales into map and sink (p=4) on
/// two task managers, so the region of source subtask 1 (slot 1, the first task manager) and
/// map subtasks 2 and 3 (slots 2 and 3, the second) talks over TCP. A failure in map subtask 2
/// restarts only that region, with new TCP channels, and the output stays exactly once.
#[test]
fn a_region_restarts_with_its_channels_over_tcp() {
    let dir = temp_dir("region-tcp");
    let env = environment(Setup { task_managers: 2, ..Setup::exactly_once(4) }, dir.join("checkpoints"));
    let opens = Arc::new(Mutex::new(Vec::new()));
    let map =
        FailOnce { opens: opens.clone(), failed: Arc::new(AtomicBool::new(false)), fail_in: 2, subtask: 0, seen: 0 };
    env.from_source(
        DataGeneratorSource::new(|i| i, 30_000).with_rate_limit(60_000.0),
        WatermarkStrategy::no_watermarks(),
        "numbers",
    )
    .set_parallelism(2)
    .uid("numbers")
    .rescale()
    .rich_map(map)
    .uid("fail-once")
    .add_sink(FileSink::text(dir.join("out")))
    .uid("sink");
    let result = env.execute("region-tcp").unwrap_or_else(|e| panic!("region-tcp: {e}"));
    let mut opens = opens.lock().expect("opens").clone();
    opens.sort_unstable();
    assert_eq!(result.restarts, 1);
    assert_eq!(opens, vec![0, 1, 2, 2, 3, 3], "only the region of map subtasks 2 and 3 restarted");
    assert_eq!(result.exceptions.len(), 1, "{:?}", result.exceptions);
    assert!(result.exceptions[0].message.contains("planned failure in subtask 2"), "{:?}", result.exceptions);
    let actual = read_sorted_lines(&dir.join("out"));
    assert!(actual == forward_reference(), "committed output differs from the reference");
}

/// A checkpoint that fails (no failure tolerated) fails the whole attempt even when the job
/// has several regions: it restarts and ends with exactly-once output.
#[test]
fn a_failed_checkpoint_restarts_a_job_of_several_regions() {
    let failures = FailureInjector::new(vec![PlannedFailure {
        after_records: 20_000,
        point: InjectionPoint::AsyncSnapshot,
        panic: false,
    }]);
    let (actual, opens, result) =
        run_forward_job("regions-checkpoint-failure", FailoverStrategy::Region, false, failures.clone());
    assert_eq!(failures.fired_at(InjectionPoint::AsyncSnapshot), 1, "the planned failure fired");
    assert_eq!(result.restarts, 1, "the failed checkpoint restarted the job once");
    assert_eq!(opens, vec![0, 0, 1, 1, 2, 2], "every task restarted");
    assert!(actual == forward_reference(), "committed output differs from the reference");
}
