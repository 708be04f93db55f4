//! Corrupt input to the restore path. A keyed job with unaligned checkpoints (so that records
//! in flight are stored with them), on the heap backend and on RocksDB with incremental
//! checkpoints (SST files under `shared/`), is stopped with a savepoint while it still has
//! input, keeping its last checkpoints. Then every file of the newest checkpoint (metadata, task
//! state with its in-flight records, shared SST files) and of the savepoint is damaged, case by
//! case, as proptest chooses (a flipped bit, a truncation, two byte ranges swapped, the file
//! deleted) and the job is restored:
//! - from the checkpoint directory, `latest_valid` picks the newest checkpoint that does not
//!   contain the file, logging a warning that names it (or, when every checkpoint contains it,
//!   fails naming it), and the job restored from that checkpoint ends with exactly the
//!   sequential reference output;
//! - from the savepoint (nothing older to fall back to) the job is refused with an error naming
//!   the file (without its `_metadata` the directory is no savepoint: the error names it and
//!   the missing file); an unchanged savepoint restores to the reference output.
//!
//! Never a panic, never a hang (each restore runs on a thread with a deadline), never a wrong
//! result. A CRC-32 detects every flipped bit and truncation, so detection is asserted exactly:
//! only a swap of two equal byte ranges, which changes nothing, may restore the newest.
//!
//! `PROPTEST_CASES` sets the number of cases per file (default 6).

mod common;

use brisk::prelude::*;
use brisk::runtime::checkpoint::storage::{CheckpointStorage, CompletedCheckpoint, METADATA_FILE, SHARED_DIR};
use brisk::runtime::checkpoint::{CheckpointConfig, ExternalizedCheckpointRetention};
use brisk::runtime::jobmaster::restart::RestartStrategy;
use brisk::sinks::CollectSink;
use common::temp_dir;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const KEYS: u64 = 16;
const RECORDS: u64 = 20_000;
/// Records per second of the first run: below what the slow consumer can take (a task blocked
/// by backpressure would not see the trigger of a checkpoint), but not by much, so that records
/// queue in the channels.
const SLOW_RATE: f64 = 8_000.0;
const PARALLELISM: usize = 2;
/// When the totals are emitted: after every record's timestamp, so only at the end of input.
const END: i64 = 1 << 40;
/// Longest a restore may take before the case counts as a hang.
const DEADLINE: Duration = Duration::from_secs(60);

/// Per key: the number of records and the sum of their values (keyed value state), emitted
/// once as `key,count,sum` when the input has ended. `slow` holds the task back now and then,
/// so that the exchange before it fills up and unaligned checkpoints store in-flight records.
#[derive(Clone)]
struct Totals {
    count: Option<ValueState<i64>>,
    sum: Option<ValueState<i64>>,
    slow: bool,
    seen: u64,
}

impl RichFunction for Totals {
    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> Result<(), BoxError> {
        self.count = Some(ctx.get_state(&ValueStateDescriptor::new("count"))?);
        self.sum = Some(ctx.get_state(&ValueStateDescriptor::new("sum"))?);
        Ok(())
    }
}

impl KeyedProcessFunction<u64, (u64, i64), String> for Totals {
    fn process_element(
        &mut self,
        value: (u64, i64),
        ctx: &mut KeyedProcessContext<'_, u64, String>,
        _: &mut Collector<'_, String>,
    ) -> Result<(), BoxError> {
        let (Some(count), Some(sum)) = (&self.count, &self.sum) else { return Err("not opened".into()) };
        let previous = count.value()?;
        if previous.is_none() {
            ctx.timer_service().register_event_time_timer(END)?;
        }
        count.update(previous.unwrap_or(0) + 1)?;
        sum.update(sum.value()?.unwrap_or(0) + value.1)?;
        self.seen += 1;
        if self.slow && self.seen.is_multiple_of(16) {
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _: i64,
        ctx: &mut KeyedProcessContext<'_, u64, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), BoxError> {
        let (Some(count), Some(sum)) = (&self.count, &self.sum) else { return Err("not opened".into()) };
        out.collect(format!("{},{},{}", ctx.get_current_key(), count.value()?.unwrap_or(0), sum.value()?.unwrap_or(0)));
        Ok(())
    }
}

fn declare_job(env: &StreamExecutionEnvironment, slow: bool) -> CollectResult<String> {
    let (sink, output) = CollectSink::new();
    let source = DataGeneratorSource::new(|i| (i % KEYS, i as i64), RECORDS);
    env.from_source(
        if slow { source.with_rate_limit(SLOW_RATE) } else { source },
        WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|e: &(u64, i64), _| e.1),
        "events",
    )
    .uid("events")
    .key_by(|e: &(u64, i64)| e.0)
    .process(Totals { count: None, sum: None, slow, seen: 0 })
    .uid("totals")
    .add_sink(sink)
    .uid("collect");
    output
}

/// What the job emits over all records, computed sequentially.
fn reference() -> Vec<String> {
    let mut totals: BTreeMap<u64, (i64, i64)> = BTreeMap::new();
    for i in 0..RECORDS {
        let total = totals.entry(i % KEYS).or_default();
        total.0 += 1;
        total.1 += i as i64;
    }
    let mut lines: Vec<String> = totals.iter().map(|(k, (n, sum))| format!("{k},{n},{sum}")).collect();
    lines.sort();
    lines
}

fn backend(env: &StreamExecutionEnvironment, rocksdb: bool) {
    if rocksdb {
        env.set_state_backend(StateBackendConfig { kind: StateBackendKind::RocksDb, ..StateBackendConfig::default() });
    }
}

/// What the first run left: its retained checkpoints and a savepoint.
struct Snapshots {
    checkpoints: PathBuf,
    savepoint: PathBuf,
}

/// Runs the job slowly with unaligned checkpoints every 20 ms (incremental on RocksDB) until
/// three have completed, then stops it with a savepoint; its last three checkpoints stay.
/// Whether the newest holds records in flight depends on timing: runs again until it does.
fn take_snapshots(rocksdb: bool) -> Snapshots {
    common::init_logging();
    let name = if rocksdb { "corrupt-source-rocksdb" } else { "corrupt-source-heap" };
    for attempt in 1..=10 {
        let snapshots = run_until_stopped(&format!("{name}-{attempt}"), rocksdb);
        let storage = CheckpointStorage::open(snapshots.checkpoints.clone().into()).expect("open");
        let completed = storage.completed_ids().expect("list");
        assert!(completed.len() >= 2, "at least two completed checkpoints remain: {completed:?}");
        let all: Vec<CompletedCheckpoint> =
            completed.iter().map(|id| storage.load(&CheckpointStorage::checkpoint_name(*id)).expect("load")).collect();
        let savepoint = CompletedCheckpoint::load(&snapshots.savepoint).expect("the savepoint reads back");
        let in_flight = |c: &CompletedCheckpoint| {
            (0..c.metadata.tasks.len())
                .filter_map(|t| c.task_state(t).expect("a task file reads back"))
                .map(|s| s.in_flight.iter().map(|(_, r)| r.len()).sum::<usize>())
                .sum::<usize>()
        };
        eprintln!(
            "{name}, run {attempt}: checkpoints {completed:?} with {:?} records in flight, savepoint with {}",
            all.iter().map(in_flight).collect::<Vec<_>>(),
            in_flight(&savepoint)
        );
        if rocksdb {
            assert!(
                all[0].metadata.tasks.iter().any(|t| !t.shared.is_empty()),
                "the newest refers to shared SST files"
            );
        }
        if in_flight(&all[0]) > 0 {
            return snapshots;
        }
    }
    panic!("{name}: in ten runs, the newest checkpoint never held records in flight");
}

fn run_until_stopped(name: &str, rocksdb: bool) -> Snapshots {
    let dir = temp_dir(name);
    let env = StreamExecutionEnvironment::create_local_environment(PARALLELISM);
    env.set_checkpoint_config(CheckpointConfig {
        interval: Some(Duration::from_millis(20)),
        unaligned: true,
        directory: Some(dir.join("checkpoints").into()),
        retained: 3,
        incremental: rocksdb,
        retention: ExternalizedCheckpointRetention::RetainOnCancellation,
        ..CheckpointConfig::default()
    });
    env.set_restart_strategy(RestartStrategy::None);
    backend(&env, rocksdb);
    let _ = declare_job(&env, true);
    let client = env.execute_async(name).expect("start the job");
    common::wait_until("three completed checkpoints", || client.checkpoint_stats().completed >= 3);
    let savepoint = client.stop_with_savepoint(dir.join("savepoints"), false).expect("stop with a savepoint");
    client.wait().expect("the job stops");
    Snapshots { checkpoints: dir.join("checkpoints"), savepoint: savepoint.local_dir() }
}

fn snapshots(rocksdb: bool) -> &'static Snapshots {
    static HEAP: OnceLock<Snapshots> = OnceLock::new();
    static ROCKSDB: OnceLock<Snapshots> = OnceLock::new();
    if rocksdb { ROCKSDB.get_or_init(|| take_snapshots(true)) } else { HEAP.get_or_init(|| take_snapshots(false)) }
}

/// Runs the job from `snapshot` to the end of its input at full speed; its output, sorted.
fn restore_job(snapshot: &Path, rocksdb: bool) -> Result<Vec<String>, JobError> {
    let env = StreamExecutionEnvironment::create_local_environment(PARALLELISM);
    env.set_restart_strategy(RestartStrategy::None);
    env.set_savepoint_restore(snapshot.to_path_buf(), false);
    backend(&env, rocksdb);
    let output = declare_job(&env, false);
    env.execute("restored")?;
    let mut lines = output.take();
    lines.sort();
    Ok(lines)
}

/// Runs `f` on its own thread: its result, or a test failure if it panicked or did not end
/// within [`DEADLINE`].
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T, TestCaseError> {
    let (done, result) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = done.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match result.recv_timeout(DEADLINE) {
        Ok(Ok(value)) => {
            let _ = thread.join();
            Ok(value)
        }
        Ok(Err(panic)) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(TestCaseError::fail(format!("{what} panicked: {message}")))
        }
        Err(_) => Err(TestCaseError::fail(format!("{what} did not end within {DEADLINE:?}: a hang"))),
    }
}

/// Warnings logged on this thread while `f` runs.
fn with_warnings<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("logs").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&logs.0.lock().expect("logs")).into_owned();
    (out, text)
}

/// One way to damage a file.
#[derive(Clone, Debug)]
enum Mutation {
    /// Flips bit `.1` of the byte at `.0`.
    FlipBit(Index, u8),
    /// Cuts the file to a shorter length.
    Truncate(Index),
    /// Swaps two byte ranges of the same length that do not overlap (start, start, length).
    Swap(Index, Index, Index),
    /// Deletes the file.
    Delete,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        any::<Index>().prop_map(Mutation::Truncate),
        any::<(Index, Index, Index)>().prop_map(|(a, b, len)| Mutation::Swap(a, b, len)),
        Just(Mutation::Delete),
    ]
}

/// Applies `mutation` to the file at `path`; whether its contents changed.
fn mutate(path: &Path, mutation: &Mutation) -> bool {
    let original = std::fs::read(path).expect("read the file to damage");
    let mut bytes = original.clone();
    let n = bytes.len();
    match mutation {
        Mutation::Delete => {
            std::fs::remove_file(path).expect("delete");
            return true;
        }
        _ if n < 2 => bytes.clear(),
        Mutation::FlipBit(at, bit) => bytes[at.index(n)] ^= 1 << bit,
        Mutation::Truncate(len) => bytes.truncate(len.index(n)),
        Mutation::Swap(a, b, len) => {
            let len = 1 + len.index(n / 2);
            let a = a.index(n - 2 * len + 1);
            let b = a + len + b.index(n - a - 2 * len + 1);
            let first = bytes[a..a + len].to_vec();
            bytes.copy_within(b..b + len, a);
            bytes[b..b + len].copy_from_slice(&first);
        }
    }
    std::fs::write(path, &bytes).expect("write the damaged file");
    bytes != original
}

/// A copy (not hard links: shared files are linked) of directory `from` at `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The files of the checkpoint or savepoint in `dir`, relative to its parent: its own and the
/// shared files its tasks refer to.
fn files_of(dir: &Path) -> Vec<PathBuf> {
    let name = PathBuf::from(dir.file_name().expect("a name"));
    let checkpoint = CompletedCheckpoint::load(dir).expect("an intact snapshot");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| name.join(e.expect("entry").file_name()))
        .filter(|f| !f.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
        .collect();
    files.extend(checkpoint.metadata.tasks.iter().flat_map(|t| &t.shared).map(|s| Path::new(SHARED_DIR).join(s)));
    files.sort();
    files.dedup();
    files
}

fn label(rocksdb: bool) -> &'static str {
    if rocksdb { "rocksdb" } else { "heap" }
}

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(6);
    Config {
        cases,
        max_shrink_iters: 16,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..Config::default()
    }
}

static CASES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn case_dir(name: &str) -> PathBuf {
    temp_dir(&format!("{name}-{}", CASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)))
}

/// Damages one file of the newest retained checkpoint; the restore falls back to the newest
/// checkpoint without that file, warning with its name, and ends with the reference output.
fn corrupt_checkpoints_fall_back(rocksdb: bool) {
    let snapshots = snapshots(rocksdb);
    let expected = reference();
    let pristine = CheckpointStorage::open(snapshots.checkpoints.clone().into()).expect("open");
    let ids = pristine.completed_ids().expect("list");
    let newest = ids[0];
    let files_by_id: Vec<(u64, Vec<PathBuf>)> =
        ids.iter().map(|id| (*id, files_of(&pristine.checkpoint_dir(*id)))).collect();
    let newest_files = files_by_id[0].1.clone();
    for file in &newest_files {
        let result = TestRunner::new(config()).run(&mutation(), |mutation| {
            let dir = case_dir(if rocksdb { "corrupt-chk-rocksdb" } else { "corrupt-chk-heap" });
            copy_dir(&snapshots.checkpoints, &dir);
            let path = dir.join(file);
            let changed = mutate(&path, &mutation);
            // The newest checkpoint without the file (the damaged one itself when nothing changed).
            let expected_id = if changed {
                files_by_id.iter().find(|(_, files)| !files.contains(file)).map(|(id, _)| *id)
            } else {
                Some(newest)
            };
            let storage_dir = dir.clone();
            let (chosen, warnings) = bounded("latest_valid", move || {
                with_warnings(|| CheckpointStorage::open(storage_dir.into()).and_then(|s| s.latest_valid()))
            })?;
            let name = path.display().to_string();
            match (chosen, expected_id) {
                (Ok(Some(checkpoint)), Some(id)) => {
                    prop_assert_eq!(
                        checkpoint.metadata.id,
                        id,
                        "{} ({:?}) restores checkpoint {}",
                        file.display(),
                        mutation,
                        id
                    );
                    let metadata_deleted = file.ends_with(METADATA_FILE) && matches!(mutation, Mutation::Delete);
                    // Without its metadata the newest is merely incomplete, as after a crash.
                    if changed && !metadata_deleted {
                        prop_assert!(warnings.contains(&name), "the warning names {}: {}", name, warnings);
                    }
                    let output = bounded("the restored job", move || restore_job(&checkpoint.path, rocksdb))?;
                    let output = output.map_err(|e| TestCaseError::fail(format!("restoring {id} failed: {e}")))?;
                    prop_assert!(output == expected, "checkpoint {} restored exactly: {:?}", id, output);
                    eprintln!(
                        "{}: {} {mutation:?}: restored checkpoint {id} of {newest}",
                        label(rocksdb),
                        file.display()
                    );
                }
                (Err(e), None) => {
                    let message = e.to_string();
                    prop_assert!(message.contains(&name), "the error names {}: {}", name, message);
                    eprintln!("{}: {} {mutation:?}: no checkpoint restorable", label(rocksdb), file.display());
                }
                (chosen, expected) => {
                    return Err(TestCaseError::fail(format!(
                        "{} ({mutation:?}): expected checkpoint {expected:?}, latest_valid gave {:?}",
                        file.display(),
                        chosen.map(|c| c.map(|c| c.metadata.id))
                    )));
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }
}

/// Damages one file of the savepoint: restoring fails with an error naming it (nothing to fall
/// back to), or, when nothing changed, ends with the reference output.
fn corrupt_savepoint_fails(rocksdb: bool) {
    let snapshots = snapshots(rocksdb);
    let expected = reference();
    let files = files_of(&snapshots.savepoint);
    assert!(files.iter().all(|f| !f.starts_with(SHARED_DIR)), "savepoints are self-contained: {files:?}");
    for file in &files {
        let result = TestRunner::new(config()).run(&mutation(), |mutation| {
            let dir = case_dir(if rocksdb { "corrupt-sp-rocksdb" } else { "corrupt-sp-heap" });
            let savepoint = dir.join(snapshots.savepoint.file_name().expect("a name"));
            copy_dir(&snapshots.savepoint, &savepoint);
            let path = dir.join(file);
            let changed = mutate(&path, &mutation);
            let savepoint_dir = savepoint.clone();
            let result = bounded("the restored job", move || restore_job(&savepoint, rocksdb))?;
            match result {
                Ok(output) => {
                    prop_assert!(!changed, "{} ({:?}): the damaged savepoint was restored", file.display(), mutation);
                    prop_assert!(output == expected, "the savepoint restored exactly: {:?}", output);
                }
                Err(e) => {
                    let message = e.to_string();
                    prop_assert!(changed, "the intact savepoint failed: {}", message);
                    prop_assert!(matches!(e, JobError::InvalidJob(_)), "refused before running: {:?}", e);
                    // Without its metadata the directory is no savepoint at all: the error says so.
                    let name = match mutation {
                        Mutation::Delete if file.ends_with(METADATA_FILE) => savepoint_dir.display().to_string(),
                        _ => path.display().to_string(),
                    };
                    prop_assert!(message.contains(&name), "the error names {}: {}", name, message);
                    prop_assert!(file.file_name().is_some_and(|f| message.contains(&*f.to_string_lossy())));
                    eprintln!("{} savepoint: {} {mutation:?}: {message}", label(rocksdb), file.display());
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }
}

#[test]
fn corrupt_heap_checkpoints_fall_back_to_an_older_one() {
    corrupt_checkpoints_fall_back(false);
}

#[test]
fn corrupt_heap_savepoints_fail_naming_the_file() {
    corrupt_savepoint_fails(false);
}

#[cfg(feature = "rocksdb")]
#[test]
fn corrupt_incremental_rocksdb_checkpoints_fall_back_to_an_older_one() {
    corrupt_checkpoints_fall_back(true);
}

#[cfg(feature = "rocksdb")]
#[test]
fn corrupt_rocksdb_savepoints_fail_naming_the_file() {
    corrupt_savepoint_fails(true);
}
