//! Command-line plumbing shared by the example jobs: logging, and the environment from the
//! flags every job takes.

use anyhow::{Context, bail};
use brisk::prelude::*;
use brisk::runtime::checkpoint::coordinator::CheckpointStatus;
use brisk::runtime::checkpoint::stats::CheckpointStatsSnapshot;
use brisk::runtime::checkpoint::storage::CheckpointStorage;
use brisk::runtime::checkpoint::{SnapshotKind, SnapshotLocation};
use brisk::runtime::failure::FailureInjector;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use brisk::runtime::logging::init_logging;

/// An example's `main`: logging set up, the flags parsed, `run` run, its error printed with
/// its causes and turned into a failing exit code.
pub fn main<A: clap::Parser>(run: fn(A) -> anyhow::Result<()>) -> std::process::ExitCode {
    init_logging();
    match run(A::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Flags every example job shares, on top of its own.
#[derive(clap::Args, Debug, Default)]
pub struct CommonArgs {
    /// Parallelism of every operator (default: number of CPU cores).
    #[arg(long)]
    pub parallelism: Option<String>,
    /// streaming (a result per record) or batch (final results only).
    #[arg(long, value_name = "streaming|batch")]
    pub execution_mode: Option<String>,
    /// Where keyed state lives: hashmap (memory) or rocksdb (local disk; needs the `rocksdb` feature).
    #[arg(long, value_name = "hashmap|rocksdb")]
    pub state_backend: Option<String>,
    /// Directory for RocksDB's local files (default: the system temp directory).
    #[arg(long, value_name = "PATH")]
    pub state_dir: Option<PathBuf>,
    /// YAML configuration file with Flink-style keys (e.g. parallelism.default); flags win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve the REST API (Flink's paths) and Prometheus metrics on this port of 127.0.0.1
    /// while the job runs (rest.port; 0: any free port).
    #[arg(long, value_name = "PORT")]
    pub rest_port: Option<u16>,
    #[command(flatten)]
    pub checkpoints: CheckpointArgs,
}

/// Checkpointing, savepoint and recovery flags every example job shares.
#[derive(clap::Args, Debug, Default)]
pub struct CheckpointArgs {
    /// Take a checkpoint every DURATION (e.g. 1s); --output then goes through the exactly-once file sink.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub checkpoint_interval: Option<Duration>,
    /// Where checkpoints are written: a path, file:// or s3://bucket/path URL (default: a directory under the system temp directory).
    #[arg(long, value_name = "PATH", value_parser = location)]
    pub checkpoint_dir: Option<SnapshotLocation>,
    /// exactly-once (aligned barriers) or at-least-once.
    #[arg(long, value_name = "exactly-once|at-least-once")]
    pub checkpointing_mode: Option<String>,
    /// Unaligned checkpoints: barriers overtake in-flight records, which are stored with the checkpoint.
    #[arg(long)]
    pub unaligned: bool,
    /// On SIGTERM or Ctrl-C: stop with a savepoint in a new directory inside PATH (or s3:// URL), print its path, exit 0.
    #[arg(long, value_name = "PATH", value_parser = location)]
    pub savepoint_dir: Option<SnapshotLocation>,
    /// Start from this savepoint or retained checkpoint (a directory or s3:// URL), or from the newest complete checkpoint in a checkpoint directory (as given to --checkpoint-dir).
    #[arg(long, value_name = "PATH", value_parser = location)]
    pub from_savepoint: Option<SnapshotLocation>,
    /// With --from-savepoint: drop state of operators the job no longer has instead of failing.
    #[arg(long, requires = "from_savepoint")]
    pub allow_non_restored_state: bool,
    /// Inject K failures at seeded random points of the run; each is recovered by the restart strategy.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub inject_failures: usize,
    /// Seed of the injected failures' points.
    #[arg(long, value_name = "SEED", default_value_t = 42)]
    pub failure_seed: u64,
    /// Throttle the source to N records per second (over all its subtasks).
    #[arg(long, value_name = "N")]
    pub source_rate: Option<f64>,
}

fn location(text: &str) -> Result<SnapshotLocation, String> {
    SnapshotLocation::parse(text)
}

fn duration(text: &str) -> Result<Duration, String> {
    brisk::core::time::parse_duration(text).map_err(|e| e.to_string())
}

impl CheckpointArgs {
    /// Whether the job takes checkpoints (needed for failures and savepoints too).
    pub fn enabled(&self) -> bool {
        self.checkpoint_interval.is_some()
    }

    fn apply(&self, configuration: &mut Configuration) -> anyhow::Result<()> {
        if (self.inject_failures > 0 || self.savepoint_dir.is_some()) && self.checkpoint_interval.is_none() {
            bail!(
                "--inject-failures and --savepoint-dir need --checkpoint-interval (recovery and savepoints use checkpoints)"
            );
        }
        if let Some(interval) = self.checkpoint_interval {
            if interval.is_zero() {
                bail!(
                    "invalid --checkpoint-interval 0s: use a positive interval, or leave it out to disable checkpoints"
                );
            }
            configuration.set("execution.checkpointing.interval", format!("{}ms", interval.as_millis()));
        }
        if let Some(dir) = &self.checkpoint_dir {
            configuration.set("execution.checkpointing.dir", dir);
        }
        if let Some(mode) = &self.checkpointing_mode {
            mode.parse::<brisk::runtime::checkpoint::CheckpointingMode>()
                .map_err(anyhow::Error::msg)
                .context("invalid --checkpointing-mode")?;
            configuration.set("execution.checkpointing.mode", mode);
        }
        if self.unaligned {
            configuration.set("execution.checkpointing.unaligned.enabled", true);
        }
        if let Some(given) = &self.from_savepoint {
            let (path, chosen) =
                given.resolve_restore_point().map_err(|e| anyhow::anyhow!("invalid --from-savepoint: {e}"))?;
            match chosen {
                Some(id) => eprintln!("resuming from checkpoint chk-{id} (the newest complete one in {given})"),
                None => eprintln!("resuming from {path}"),
            }
            configuration.set(brisk::options::SAVEPOINT_PATH.key, &path);
            configuration.set(brisk::options::SAVEPOINT_IGNORE_UNCLAIMED.key, self.allow_non_restored_state);
        }
        if let Some(rate) = self.source_rate
            && !(rate.is_finite() && rate > 0.0)
        {
            bail!("invalid --source-rate {rate}: expected a positive number of records per second");
        }
        Ok(())
    }

    /// Failures for `--inject-failures`, spread over about `expected_records` processed records.
    pub fn failure_injector(&self, expected_records: u64) -> FailureInjector {
        FailureInjector::seeded(self.inject_failures, self.failure_seed, expected_records)
    }
}

/// The shortest pause [`Throttle`] sleeps.
const MIN_THROTTLE_SLEEP: Duration = Duration::from_millis(1);

/// Passes records on at most `rate` per second per subtask (`--source-rate`, split over the
/// subtasks by the caller).
#[derive(Clone)]
pub struct Throttle {
    per_subtask: f64,
    total: f64,
    started: Option<Instant>,
    passed: u64,
}

impl Throttle {
    /// `rate` records per second over all subtasks.
    pub fn new(rate: f64) -> Self {
        Throttle { per_subtask: rate, total: rate, started: None, passed: 0 }
    }
}

impl RichFunction for Throttle {
    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> Result<(), BoxError> {
        self.per_subtask = self.total / ctx.number_of_parallel_subtasks().max(1) as f64;
        Ok(())
    }
}

impl<T: Send + 'static> RichMapFunction<T, T> for Throttle {
    fn map(&mut self, value: T) -> Result<T, BoxError> {
        let started = *self.started.get_or_insert_with(Instant::now);
        self.passed += 1;
        let due = Duration::from_secs_f64(self.passed as f64 / self.per_subtask);
        match due.checked_sub(started.elapsed()) {
            // A sleep takes at least ~50 µs: sleeping per record would cap the rate far below
            // the one asked for, so records pass until they are a millisecond ahead.
            Some(wait) if wait >= MIN_THROTTLE_SLEEP => std::thread::sleep(wait),
            Some(_) => {}
            // Fell behind (the process was stalled): go on at the rate from here rather than
            // catch up in a burst faster than the rate.
            None => self.started = Some(Instant::now() - due),
        }
        Ok(value)
    }
}

/// Total bytes of the input paths (files, or files in directories), for estimates.
pub fn input_bytes(paths: &[PathBuf]) -> u64 {
    fn size(path: &Path) -> u64 {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => m.len(),
            Ok(m) if m.is_dir() => {
                std::fs::read_dir(path).map(|d| d.filter_map(|e| e.ok()).map(|e| size(&e.path())).sum()).unwrap_or(0)
            }
            _ => 0,
        }
    }
    paths.iter().map(|p| size(p)).sum()
}

/// Runs the job; with `--savepoint-dir`, SIGTERM (or Ctrl-C) stops it with a savepoint whose
/// path is printed. Prints the checkpoint history at the end (stderr).
pub fn execute(
    env: &StreamExecutionEnvironment,
    job_name: &str,
    args: &CheckpointArgs,
    failures: &FailureInjector,
) -> anyhow::Result<JobExecutionResult> {
    if let Some(dir) = &args.savepoint_dir {
        // Checked now rather than when the signal comes.
        CheckpointStorage::open(dir.clone()).with_context(|| format!("invalid --savepoint-dir '{dir}'"))?;
    }
    let client = env.execute_async(job_name)?;
    if let Some(dir) = args.savepoint_dir.clone() {
        let controller = client.controller();
        let mut signals =
            signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])
                .context("cannot install the SIGTERM handler")?;
        std::thread::Builder::new().name("savepoint on SIGTERM".into()).spawn(move || {
            if signals.forever().next().is_some() {
                match controller.stop_with_savepoint(dir, false) {
                    Ok(path) => println!("savepoint: {path}"),
                    Err(e) => eprintln!("error: stop-with-savepoint failed: {e}"),
                }
            }
        })?;
    }
    let result = client.wait()?;
    if args.enabled() {
        eprint!("{}", checkpoint_history(&result.checkpoints));
        if args.inject_failures > 0 {
            eprintln!(
                "injected failures: {} of {} fired; restarts: {}",
                failures.fired(),
                args.inject_failures,
                result.restarts
            );
        }
        for (i, restored) in result.restored_checkpoints.iter().enumerate() {
            match restored {
                Some(id) => eprintln!("restart {}: restored checkpoint {id}", i + 1),
                None => eprintln!("restart {}: started over (no checkpoint had completed)", i + 1),
            }
        }
        for (i, recovery) in result.recoveries.iter().enumerate() {
            eprintln!("recovery {}: running again {:.1?} after the failure", i + 1, recovery);
        }
    }
    Ok(result)
}

/// The checkpoint history as a table: the latest checkpoints (`web.checkpoints.history`),
/// then the counts over all of them.
pub fn checkpoint_history(stats: &CheckpointStatsSnapshot) -> String {
    let mut out = String::from(
        "checkpoint history:\n     id  kind        status       size  duration  alignment  sync      async\n",
    );
    for c in stats.history() {
        let status = match &c.status {
            CheckpointStatus::Completed => "completed".to_string(),
            CheckpointStatus::Failed(reason) => format!("failed ({reason})"),
        };
        let kind = match c.kind {
            SnapshotKind::Checkpoint => "checkpoint",
            SnapshotKind::Savepoint => "savepoint",
        };
        out.push_str(&format!(
            "  {:>5}  {kind:<10}  {:<9}  {:>9}  {:>8.1?}  {:>9.1?}  {:>8.1?}  {:>8.1?}\n",
            c.id,
            if status.len() > 9 { "failed" } else { status.as_str() },
            format_bytes(c.size),
            c.duration,
            c.alignment,
            c.sync,
            c.async_part
        ));
        if let CheckpointStatus::Failed(reason) = &c.status {
            out.push_str(&format!("         reason: {reason}\n"));
        }
    }
    let shown = stats.history().len() as u64;
    let hidden = if shown < stats.total() { format!(" (the latest {shown} shown)") } else { String::new() };
    out.push_str(&format!("  {} completed, {} failed{hidden}\n", stats.completed, stats.failed));
    out
}

fn format_bytes(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

impl CommonArgs {
    /// The environment these flags describe.
    pub fn environment(&self) -> anyhow::Result<StreamExecutionEnvironment> {
        let mut configuration = match &self.config {
            Some(path) => Configuration::from_yaml_file(path)?,
            None => Configuration::new(),
        };
        if let Some(p) = &self.parallelism {
            let p: usize = p
                .parse()
                .with_context(|| format!("invalid --parallelism '{p}': expected a whole number of at least 1"))?;
            if p == 0 {
                bail!("invalid --parallelism 0: the parallelism must be at least 1");
            }
            configuration.set(brisk::options::PARALLELISM.key, p);
        }
        if let Some(mode) = &self.execution_mode {
            mode.parse::<RuntimeExecutionMode>().map_err(anyhow::Error::msg).context("invalid --execution-mode")?;
            configuration.set(brisk::options::RUNTIME_MODE.key, mode);
        }
        if let Some(backend) = &self.state_backend {
            configuration.set(brisk::options::STATE_BACKEND_KEY, backend);
        }
        if let Some(dir) = &self.state_dir {
            configuration.set(brisk::options::ROCKSDB_LOCAL_DIR_KEY, dir.display());
        }
        if let Some(port) = self.rest_port {
            configuration.set(brisk::rest::PORT_KEY, port);
        }
        self.checkpoints.apply(&mut configuration)?;
        Ok(StreamExecutionEnvironment::from_configuration(&configuration)?)
    }
}
