//! Checkpoints and recovery end to end: with failures injected many times (errors and panics
//! in operators, failures inside snapshotting), the committed output of the exactly-once file
//! sink equals a failure-free run's exactly, with both state backends, aligned and unaligned;
//! at-least-once loses nothing; savepoints rescale a job 2 → 4 → 1 keeping every count;
//! checkpoint files are deleted when no longer needed.

mod common;

use brisk::prelude::*;
use brisk::runtime::checkpoint::coordinator::CheckpointStatus;
use brisk::runtime::checkpoint::{CheckpointConfig, CheckpointingMode, FailoverStrategy, RestartStrategy};
use brisk::runtime::failure::{FailureInjector, InjectionPoint, PlannedFailure};
use brisk::sinks::FileSink;
use common::temp_dir;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEYS: u64 = 50;

/// Committed lines of a file sink's directory (hidden in-progress and pending files excluded).
fn committed_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).expect("output directory") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if !name.starts_with('.') {
            lines.extend(std::fs::read_to_string(&path).expect("read part").lines().map(String::from));
        }
    }
    lines.sort();
    lines
}

#[derive(Clone, Copy, Debug)]
struct Setup {
    rocksdb: bool,
    mode: CheckpointingMode,
    unaligned: bool,
    parallelism: usize,
    /// Incremental RocksDB checkpoints (SST files shared between checkpoints).
    incremental: bool,
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
        }
    }
}

fn environment(setup: Setup, checkpoints: impl Into<SnapshotLocation>) -> StreamExecutionEnvironment {
    let env = StreamExecutionEnvironment::create_local_environment(setup.parallelism);
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
    if setup.rocksdb && StateBackendConfig::ROCKSDB_AVAILABLE {
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

fn run_job(setup: Setup, records: u64, failures: FailureInjector, name: &str) -> (Vec<String>, JobExecutionResult) {
    common::init_logging();
    let dir = temp_dir(name);
    let env = environment(setup, dir.join("checkpoints"));
    env.set_failure_injector(failures);
    declare_job(&env, records, &dir.join("out"));
    let result = env.execute(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut lines = committed_lines(&dir.join("out/counts"));
    lines.extend(committed_lines(&dir.join("out/windows")));
    lines.sort();
    (lines, result)
}

fn plan(records: u64) -> FailureInjector {
    // Records pass about four operators each; failures spread over the run.
    let at = |f: f64| (records as f64 * 4.0 * f) as u64;
    FailureInjector::new(vec![
        PlannedFailure { after_records: at(0.15), point: InjectionPoint::Record, panic: false },
        PlannedFailure { after_records: at(0.35), point: InjectionPoint::Record, panic: true },
        PlannedFailure { after_records: at(0.5), point: InjectionPoint::SyncSnapshot, panic: false },
        PlannedFailure { after_records: at(0.65), point: InjectionPoint::AsyncSnapshot, panic: false },
        PlannedFailure { after_records: at(0.8), point: InjectionPoint::Record, panic: false },
    ])
}

fn exactly_once_equals_failure_free(setup: Setup, name: &str) {
    let records = 30_000;
    let (expected, clean) = run_job(setup, records, FailureInjector::default(), &format!("{name}-clean"));
    assert_eq!(clean.restarts, 0);
    assert_eq!(
        expected.iter().filter(|l| l.starts_with("count,")).count() as u64,
        records,
        "one running count per record"
    );
    let (actual, failed) = run_job(setup, records, plan(records), &format!("{name}-failures"));
    assert!(failed.restarts >= 3, "{name}: the planned failures restarted the job ({} restarts)", failed.restarts);
    assert!(
        failed.checkpoints.iter().filter(|c| c.status == CheckpointStatus::Completed).count() >= 2,
        "{name}: checkpoints completed between the failures: {:?}",
        failed.checkpoints
    );
    assert_eq!(actual.len(), expected.len(), "{name}: same number of committed lines");
    assert!(actual == expected, "{name}: committed output differs from the failure-free run");
}

#[test]
fn exactly_once_aligned_heap() {
    exactly_once_equals_failure_free(Setup::exactly_once(2), "eo-aligned-heap");
}

#[test]
fn exactly_once_unaligned_heap() {
    exactly_once_equals_failure_free(Setup { unaligned: true, ..Setup::exactly_once(3) }, "eo-unaligned-heap");
}

#[test]
fn exactly_once_aligned_rocksdb() {
    exactly_once_equals_failure_free(Setup { rocksdb: true, ..Setup::exactly_once(2) }, "eo-aligned-rocksdb");
}

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

#[test]
fn exactly_once_incremental_rocksdb() {
    let setup = Setup { rocksdb: true, incremental: true, ..Setup::exactly_once(2) };
    exactly_once_equals_failure_free(setup, "eo-incremental-rocksdb");
}

#[test]
fn incremental_checkpoints_share_files_and_clean_them_up() {
    if !StateBackendConfig::ROCKSDB_AVAILABLE {
        return;
    }
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
    assert!(result.checkpoints.iter().filter(|c| c.status == CheckpointStatus::Completed).count() >= 3);
    assert!(most > 0, "SST files were stored once, under shared/");
    assert!(!shared.exists(), "a finished job deletes its shared files");
}

#[test]
fn at_least_once_loses_nothing() {
    let setup = Setup { mode: CheckpointingMode::AtLeastOnce, ..Setup::exactly_once(2) };
    let records = 20_000;
    let (expected, _) = run_job(setup, records, FailureInjector::default(), "alo-clean");
    let (actual, failed) = run_job(setup, records, plan(records), "alo-failures");
    assert!(failed.restarts >= 3);
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
    let completed = result.checkpoints.iter().filter(|c| c.status == CheckpointStatus::Completed).count();
    assert!(completed >= 3, "{completed} checkpoints completed");
    assert!(most <= 3, "at most the 2 retained checkpoints and one in progress existed at once ({most})");
    let left: Vec<PathBuf> = std::fs::read_dir(dir.join("checkpoints"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a finished job keeps no checkpoints: {left:?}");
}

/// Runs the counting job from `restore` (if any) at `parallelism`, stops it with a savepoint
/// after about `stop_after` records, and returns the savepoint.
fn run_until_savepoint(
    parallelism: usize,
    restore: Option<&SnapshotLocation>,
    out: &Path,
    stop_after: Option<u64>,
    records: u64,
) -> Option<SnapshotLocation> {
    let setup = Setup::exactly_once(parallelism);
    let dir = out.parent().expect("parent").join(format!("chk-p{parallelism}"));
    let env = environment(setup, &dir);
    if let Some(path) = restore {
        env.set_savepoint_restore(path.clone(), false);
    }
    declare_job(&env, records, out);
    let client = env.execute_async("rescale").unwrap();
    let savepoint = stop_after.map(|n| {
        let written = |dir: &Path| std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        // Wait until the job made progress (part files appear), then stop it.
        let started = std::time::Instant::now();
        while written(&out.join("counts")) < parallelism && started.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(n));
        client
            .stop_with_savepoint(out.parent().expect("parent").join("savepoints"), false)
            .expect("stop with savepoint")
    });
    let result = client.wait().expect("job ends");
    assert_eq!(result.savepoint, savepoint);
    savepoint
}

#[test]
fn rescaling_through_savepoints_keeps_every_count() {
    let records = 60_000;
    let dir = temp_dir("rescale");
    let (expected, _) = run_job(Setup::exactly_once(2), records, FailureInjector::default(), "rescale-reference");
    let out = dir.join("out");
    let first = run_until_savepoint(2, None, &out, Some(100), records).expect("savepoint at p=2");
    let second = run_until_savepoint(4, Some(&first), &out, Some(100), records).expect("savepoint at p=4");
    run_until_savepoint(1, Some(&second), &out, None, records);
    let mut actual = committed_lines(&out.join("counts"));
    actual.extend(committed_lines(&out.join("windows")));
    actual.sort();
    assert_eq!(actual.len(), expected.len());
    assert!(actual == expected, "rescaled runs together committed exactly the failure-free output");
}

#[test]
fn restoring_needs_matching_operators_unless_allowed() {
    let setup = Setup::exactly_once(1);
    let dir = temp_dir("non-restored");
    let out = dir.join("out");
    let savepoint = run_until_savepoint(1, None, &out, Some(30), 10_000).expect("savepoint");
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

#[test]
fn savepoints_move_between_state_backends() {
    let records = 40_000;
    let (expected, _) = run_job(Setup::exactly_once(2), records, FailureInjector::default(), "backends-reference");
    let dir = temp_dir("backend-switch");
    let out = dir.join("out");
    // Heap (in-memory reduce values and window panes) → RocksDB → heap.
    let run = |rocksdb: bool, restore: Option<&SnapshotLocation>, stop: bool| {
        let setup = Setup { rocksdb, ..Setup::exactly_once(2) };
        let env = environment(setup, dir.join(format!("chk-{rocksdb}")));
        if let Some(path) = restore {
            env.set_savepoint_restore(path.clone(), false);
        }
        declare_job(&env, records, &out);
        let client = env.execute_async("backend switch").unwrap();
        let savepoint = stop.then(|| {
            std::thread::sleep(Duration::from_millis(150));
            client.stop_with_savepoint(dir.join("savepoints"), false).expect("savepoint")
        });
        client.wait().expect("job ends");
        savepoint
    };
    let first = run(false, None, true).expect("heap savepoint");
    let second = run(true, Some(&first), true).expect("RocksDB savepoint");
    run(false, Some(&second), false);
    let mut actual = committed_lines(&out.join("counts"));
    actual.extend(committed_lines(&out.join("windows")));
    actual.sort();
    assert_eq!(actual.len(), expected.len());
    assert!(actual == expected, "the job continued exactly across backends");
}

/// Opens counted per subtask, and a map that fails once, in subtask 1, after 3000 records.
#[derive(Clone)]
struct FailOnce {
    opens: Arc<Mutex<Vec<usize>>>,
    failed: Arc<AtomicBool>,
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
        if self.subtask == 1 && self.seen == 3000 && !self.failed.swap(true, Ordering::SeqCst) {
            return Err("planned failure in subtask 1".into());
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
    let map = FailOnce { opens: opens.clone(), failed: Arc::new(AtomicBool::new(!fail)), subtask: 0, seen: 0 };
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
    (committed_lines(&dir.join("out")), opens, result)
}

#[test]
fn a_failure_restarts_only_its_pipelined_region() {
    let (expected, opens, _) =
        run_forward_job("region-clean", FailoverStrategy::Region, false, FailureInjector::default());
    assert_eq!(expected.len(), 30_000);
    assert_eq!(opens, vec![0, 1, 2]);
    let (actual, opens, result) =
        run_forward_job("region-failover", FailoverStrategy::Region, true, FailureInjector::default());
    assert_eq!(result.restarts, 1);
    assert_eq!(opens, vec![0, 1, 1, 2], "only subtask 1's region restarted");
    assert_eq!(actual.len(), expected.len(), "same number of committed lines");
    assert!(actual == expected, "committed output differs from the failure-free run");
    let (actual, opens, result) =
        run_forward_job("full-failover", FailoverStrategy::Full, true, FailureInjector::default());
    assert_eq!(result.restarts, 1);
    assert_eq!(opens, vec![0, 0, 1, 1, 2, 2], "the full strategy restarts every task");
    assert!(actual == expected, "committed output differs from the failure-free run");
}

/// A checkpoint that fails (no failure tolerated) fails the whole attempt even when the job
/// has several regions: it restarts and ends with exactly-once output.
#[test]
fn a_failed_checkpoint_restarts_a_job_of_several_regions() {
    let (expected, _, _) =
        run_forward_job("regions-checkpoint-clean", FailoverStrategy::Region, false, FailureInjector::default());
    let failures = FailureInjector::new(vec![PlannedFailure {
        after_records: 20_000,
        point: InjectionPoint::AsyncSnapshot,
        panic: false,
    }]);
    let (actual, opens, result) =
        run_forward_job("regions-checkpoint-failure", FailoverStrategy::Region, false, failures);
    assert_eq!(result.restarts, 1, "the failed checkpoint restarted the job once");
    assert_eq!(opens, vec![0, 0, 1, 1, 2, 2], "every task restarted");
    assert!(actual == expected, "committed output differs from the failure-free run");
}
