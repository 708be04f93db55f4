//! The job master of the mini cluster: runs attempts of the job, drives the checkpoint
//! coordinator (triggering at the sources, completing on acknowledgements, notifying tasks),
//! handles savepoint requests, tells the tasks when the whole job finished so sinks commit,
//! and restarts the job from the latest complete checkpoint when a task fails.

use crate::checkpoint::coordinator::{CheckpointCoordinator, Completed};
use crate::checkpoint::restore::JobRestore;
use crate::checkpoint::stats::CheckpointStatsSnapshot;
use crate::checkpoint::storage::{CheckpointStorage, StorageError};
use crate::checkpoint::{
    CheckpointBarrier, CheckpointId, CheckpointingMode, ExternalizedCheckpointRetention, FINAL_CHECKPOINT,
    FailoverStrategy, SnapshotKind, SnapshotLocation, TaskEvent,
};
use crate::error::{JobError, TaskError, lock};
use crate::graph::stream_graph::NodeKind;
use crate::jobmaster::deployer::{Attempt, Deployer, SourceNode};
use crate::jobmaster::job::Deployable;
use crate::jobmaster::queryable::StateLookup;
use crate::jobmaster::restart::RestartTracker;
use crate::jobmaster::result::{JobException, JobExecutionResult, OperatorMetricsSummary, epoch_ms};
use crate::metrics::AccumulatorValue;
use crate::metrics::task_io::{ExecutionState, TaskIoMetrics};
use crate::taskexecutor::deployment::TaskOutcome;
use crate::taskexecutor::mailbox::Mail;
use brisk_core::NonRecoverableError;
use brisk_rpc::JobState;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// A request from a client to the master.
pub(crate) enum ClientCommand {
    /// Take a savepoint into a new directory inside `dir`; stop the job after it if `stop`.
    Savepoint { dir: SnapshotLocation, stop: Option<bool>, reply: Sender<Result<SnapshotLocation, String>> },
}

/// Answers the REST requests about a job that a JobManager forwards to the job's coordinator.
pub trait JobRestEndpoint: Send + Sync {
    /// The answer to `call`.
    fn answer(&self, call: brisk_rpc::RestCall) -> brisk_rpc::RestAnswer;
    /// The job's GET answers worth keeping once it ended, by path (Flink's archived
    /// execution graph).
    fn archive(&self) -> Vec<brisk_rpc::ArchivedJson>;
}

/// A job's REST endpoint, as the API layer (which the runtime does not depend on) gives it.
pub type RestHandler = Box<dyn JobRestEndpoint>;

/// A deployed task as clients see it.
#[derive(Clone)]
pub(crate) struct PublishedTask {
    /// The attempt it belongs to.
    pub attempt: usize,
    /// Its live counters.
    pub metrics: Arc<TaskIoMetrics>,
    /// Where it is in its life.
    pub state: ExecutionState,
}

/// What clients and the master share.
pub(crate) struct JobControl {
    cancel: AtomicBool,
    /// Set with `cancel` when the job is suspended rather than cancelled.
    suspend: AtomicBool,
    commands: Mutex<VecDeque<ClientCommand>>,
    /// Where the running tasks' keyed state is looked up, in task order (queryable state).
    pub state_lookups: Mutex<Vec<Option<Arc<dyn StateLookup>>>>,
    /// The running tasks, in task order: their attempt, live metrics and state.
    pub task_metrics: Mutex<Vec<PublishedTask>>,
    /// Records read by the sources, over all attempts.
    pub records_read: Arc<AtomicU64>,
    /// Set when the job has ended.
    pub finished: AtomicBool,
    /// Where the job is in its life cycle.
    pub state: Mutex<JobState>,
    /// When it started, in epoch milliseconds.
    pub start_time_ms: i64,
    /// When it ended, in epoch milliseconds.
    pub end_time_ms: Mutex<Option<i64>>,
    /// Restarts after failures (of the job or of a region), Flink's `numRestarts`.
    pub restarts: AtomicU64,
    /// For each restart, the checkpoint it restored (`None`: it started over) and when.
    pub restored: Mutex<Vec<(Option<CheckpointId>, i64)>>,
    /// Answers the REST requests a JobManager forwards to this job (set by the API layer,
    /// which the runtime does not depend on).
    pub rest: std::sync::OnceLock<RestHandler>,
    /// The statistics of the checkpoints so far.
    pub checkpoint_stats: Mutex<CheckpointStatsSnapshot>,
    /// The failures handled so far, oldest first.
    pub exceptions: Mutex<Vec<JobException>>,
    /// The job's id.
    pub job_id: String,
    /// Where the job's checkpoints go (`None`: checkpointing is off).
    pub checkpoint_location: Option<SnapshotLocation>,
    /// The newest checkpoint id there when the job started (earlier runs' checkpoints).
    pub earlier_checkpoints: CheckpointId,
}

impl JobControl {
    /// The shared state of a new job with id `job_id`, checkpointing to `storage`.
    pub fn new(job_id: String, storage: Option<&CheckpointStorage>) -> Self {
        JobControl {
            job_id,
            checkpoint_location: storage.map(|s| s.location().clone()),
            // An unlistable storage fails the first checkpoint with a clear error anyway.
            earlier_checkpoints: storage.and_then(|s| s.newest_checkpoint_id().ok().flatten()).unwrap_or(0),
            exceptions: Mutex::new(Vec::new()),
            cancel: AtomicBool::new(false),
            suspend: AtomicBool::new(false),
            commands: Mutex::new(VecDeque::new()),
            state_lookups: Mutex::new(Vec::new()),
            task_metrics: Mutex::new(Vec::new()),
            records_read: Arc::new(AtomicU64::new(0)),
            finished: AtomicBool::new(false),
            state: Mutex::new(JobState::Running),
            start_time_ms: epoch_ms(),
            end_time_ms: Mutex::new(None),
            restarts: AtomicU64::new(0),
            restored: Mutex::new(Vec::new()),
            rest: std::sync::OnceLock::new(),
            checkpoint_stats: Mutex::new(CheckpointStatsSnapshot::default()),
        }
    }

    /// Moves the job to `state`; a terminal state also records the end time.
    fn set_state(&self, state: JobState) {
        *lock(&self.state) = state;
        if state.is_terminal() {
            *lock(&self.end_time_ms) = Some(epoch_ms());
        }
    }

    pub fn request_cancel(&self) {
        self.cancel.store(true, Ordering::Release);
    }

    /// Stops the job as cancelling does, but keeps its checkpoints: the job ends with
    /// [`JobError::Suspended`], for its cluster to restore it from the latest checkpoint.
    pub fn request_suspend(&self) {
        self.suspend.store(true, Ordering::Release);
        self.request_cancel();
    }

    /// Publishes task `task` of attempt `attempt`, just deployed, with its live `metrics`.
    pub fn publish_task(&self, task: usize, attempt: usize, metrics: Arc<TaskIoMetrics>) {
        let deployed = PublishedTask { attempt, metrics, state: ExecutionState::Deploying };
        let mut published = lock(&self.task_metrics);
        match published.get_mut(task) {
            Some(slot) => *slot = deployed,
            None => published.push(deployed),
        }
    }

    /// Task `task` of the running attempt moved to `state`.
    fn set_task_state(&self, task: usize, state: ExecutionState) {
        if let Some(published) = lock(&self.task_metrics).get_mut(task) {
            published.state = state;
        }
    }

    /// Makes `lookup` the way to task `task`'s keyed state.
    pub(crate) fn publish_state_lookup(&self, task: usize, lookup: Arc<dyn StateLookup>) {
        let mut published = lock(&self.state_lookups);
        if published.len() <= task {
            published.resize(task + 1, None);
        }
        published[task] = Some(lookup);
    }

    /// The error of a job stopped on request: suspended or cancelled.
    fn stopped(&self, job_name: &str) -> JobError {
        if self.suspend.load(Ordering::Acquire) {
            JobError::Suspended(job_name.to_string())
        } else {
            JobError::Cancelled(job_name.to_string())
        }
    }

    /// Asks for a savepoint and waits for it.
    pub fn savepoint(&self, dir: SnapshotLocation, stop: Option<bool>) -> Result<SnapshotLocation, JobError> {
        if self.finished.load(Ordering::Acquire) {
            return Err(JobError::InvalidJob("the job has already ended: no savepoint can be taken".into()));
        }
        let (reply, answer) = std::sync::mpsc::channel();
        lock(&self.commands).push_back(ClientCommand::Savepoint { dir, stop, reply });
        match answer.recv() {
            Ok(Ok(path)) => Ok(path),
            Ok(Err(reason)) => Err(JobError::InvalidJob(format!("savepoint failed: {reason}"))),
            Err(_) => Err(JobError::InvalidJob("savepoint failed: the job ended first".into())),
        }
    }
}

/// How an attempt ended.
enum AttemptEnd {
    /// Every task finished and committed.
    Finished(Vec<TaskOutcome>),
    /// A task failed (the first real cause).
    Failed { task: String, cause: TaskError },
    /// The client cancelled the job.
    Cancelled,
}

struct SavepointRequest {
    id: CheckpointId,
    stop: bool,
    reply: Sender<Result<SnapshotLocation, String>>,
}

/// The master's state across attempts.
struct Master {
    deployable: Deployable,
    control: Arc<JobControl>,
    coordinator: Option<CheckpointCoordinator>,
    savepoints: Vec<SavepointRequest>,
    stopped_with: Option<SnapshotLocation>,
    /// Set when too many checkpoints failed: the attempt ends as a failure.
    checkpoint_failure: bool,
    /// Barriers of checkpoints in progress, for tasks that finish their input meanwhile.
    in_progress: Vec<CheckpointBarrier>,
    /// When the last failure happened, until the restarted tasks all run.
    failed_at: Option<Instant>,
    recoveries: Vec<Duration>,
    /// Per restart that redeployed tasks: the checkpoint it restored (None: from the start).
    restarts: RestartState,
    /// The checkpoint the running tasks' source readers are accounted from: the newest
    /// completed one, or the one the attempt started from.
    last_completed: Option<CheckpointId>,
    /// What a restart restores when no checkpoint completed yet: the snapshot the job
    /// started from, or the one the last full restart used.
    fallback: Option<JobRestore>,
    /// The newest checkpoint id in the storage when the job started: checkpoints up to it
    /// belong to earlier runs (another timeline) and are never restored by a restart.
    earlier_runs: CheckpointId,
    deployer: Box<dyn Deployer>,
}

/// The job's checkpoint storage, if checkpointing is enabled (by default under the system
/// temp directory). A job a cluster runs (`in_cluster`) checkpoints into a directory named
/// by its id under the configured one, as in Flink: a cluster's jobs share
/// `state.checkpoints.dir`, and must never overwrite, delete or restore each other's
/// checkpoints.
pub(crate) fn open_checkpoint_storage(
    deployable: &Deployable,
    job_id: &str,
    in_cluster: bool,
) -> Result<Option<CheckpointStorage>, JobError> {
    let config = &deployable.options.checkpoint;
    if !config.is_enabled() {
        return Ok(None);
    }
    let configured = config.directory.clone().map(|dir| if in_cluster { dir.join(job_id) } else { dir });
    let location = configured.unwrap_or_else(|| {
        // One directory per job: two jobs of the same name (or two runs at once) must never
        // delete or restore each other's checkpoints, while a cluster restarting the job (same
        // id) finds them. Resuming after a crash needs the directory, so it is logged; users
        // who plan to resume set execution.checkpointing.dir.
        let job = sanitize(&deployable.options.defaults.job_name);
        let dir = std::env::temp_dir().join("brisk-checkpoints").join(format!("{job}-{job_id}"));
        info!(dir = %dir.display(), "checkpoints go to a directory of this job (set execution.checkpointing.dir to choose one)");
        SnapshotLocation::Local(dir)
    });
    CheckpointStorage::open(location).map(Some).map_err(|e| JobError::InvalidJob(e.to_string()))
}

/// Runs the job to its end: attempts, checkpoints, restarts.
pub(crate) fn run_master(
    deployable: Deployable,
    storage: Option<CheckpointStorage>,
    deployer: Box<dyn Deployer>,
    first: Attempt,
    restore: Option<JobRestore>,
    receiver: Receiver<TaskEvent>,
    control: Arc<JobControl>,
) -> Result<JobExecutionResult, JobError> {
    let job_name = deployable.options.defaults.job_name.clone();
    let started = Instant::now();
    let config = deployable.options.checkpoint.clone();
    let restart_strategy = deployable.options.restart_strategy.clone();
    let newest = control.earlier_checkpoints;
    let coordinator = storage.map(|storage| {
        let max_parallelism = deployable
            .job
            .vertices
            .iter()
            .flat_map(|v| v.nodes.iter().map(|n| (deployable.job.operator_ids[*n].clone(), v.max_parallelism)))
            .collect();
        CheckpointCoordinator::new(
            config.clone(),
            storage,
            job_name.clone(),
            max_parallelism,
            restore.as_ref().map(|r| r.id()).unwrap_or(0).max(newest),
        )
    });
    let mut master = Master {
        deployable,
        control: control.clone(),
        coordinator,
        savepoints: Vec::new(),
        stopped_with: None,
        checkpoint_failure: false,
        in_progress: Vec::new(),
        failed_at: None,
        recoveries: Vec::new(),
        restarts: RestartState { tracker: RestartTracker::new(restart_strategy), count: 0 },
        last_completed: restore.as_ref().map(JobRestore::id),
        fallback: restore,
        earlier_runs: newest,
        deployer,
    };
    let mut attempt = first;
    let result = loop {
        if let Some(c) = &mut master.coordinator {
            c.start_attempt(attempt.tasks.clone());
        }
        let end = master.run_attempt(&mut attempt, &receiver);
        master.publish_checkpoint_stats();
        match end {
            AttemptEnd::Finished(outcomes) => break Ok(master.result(&job_name, outcomes, started)),
            AttemptEnd::Cancelled => {
                let stopped = control.stopped(&job_name);
                info!(job = %job_name, "{stopped}");
                if let Some(c) = &master.coordinator
                    && matches!(stopped, JobError::Cancelled(_))
                    && master.deployable.options.checkpoint.retention
                        == ExternalizedCheckpointRetention::DeleteOnCancellation
                {
                    c.storage().delete_all();
                }
                break Err(stopped);
            }
            AttemptEnd::Failed { task, cause } => {
                master.fail_savepoints("the job restarted");
                let mut failure = (task, cause);
                let mut cancelled = false;
                // A checkpoint that cannot be read now (the object store is unreachable), or no
                // slots for lost workers yet, counts as one more failure: retried after the
                // strategy's delay (Flink's job waits in RESTARTING for resources).
                let next = loop {
                    let (task, cause) = &failure;
                    lock(&control.exceptions).push(JobException::now(task, cause));
                    if cause.is_non_recoverable() {
                        warn!(job = %job_name, task = %task, error = %cause, "a restart cannot fix this error; failing the job");
                        break Err(None);
                    }
                    let Some(delay) = master.restarts.tracker.on_failure() else { break Err(None) };
                    master.restarts.count += 1;
                    control.restarts.fetch_add(1, Ordering::Relaxed);
                    control.set_state(JobState::Restarting);
                    warn!(job = %job_name, task = %task, error = %cause, restart = master.restarts.count, delay_ms = delay.as_millis() as u64, "task failed; restarting the job");
                    if !sleep_unless_cancelled(&control, delay) {
                        cancelled = true;
                        break Err(None);
                    }
                    let restore = match master.restore_point() {
                        Ok(restore) => restore,
                        Err(e) => {
                            failure = ("checkpoint storage".into(), e);
                            continue;
                        }
                    };
                    master.fallback = restore.clone();
                    master.last_completed = restore.as_ref().map(JobRestore::id);
                    lock(&control.restored).push((master.last_completed, epoch_ms()));
                    master.arm_failures_after_restart();
                    let number = master.restarts.count;
                    match deploy_attempt(&master.deployable, master.deployer.as_mut(), restore.as_ref(), number) {
                        Ok(next) => break Ok(next),
                        // Cancelled or suspended while it waited for slots.
                        Err(_) if control.cancel.load(Ordering::Acquire) => {
                            cancelled = true;
                            break Err(None);
                        }
                        // Nothing was deployed: the next attempt starts clean.
                        Err(JobError::SlotsUnavailable(reason)) => {
                            failure = ("deployment".into(), TaskError::msg(reason))
                        }
                        Err(e) => break Err(Some(e)),
                    }
                };
                attempt = match next {
                    Ok(next) => {
                        control.set_state(JobState::Running);
                        next
                    }
                    Err(Some(e)) => break Err(e),
                    Err(None) if cancelled => break Err(control.stopped(&job_name)),
                    Err(None) => {
                        let (task, cause) = failure;
                        warn!(job = %job_name, task = %task, error = %cause, "job failed");
                        break Err(JobError::TaskFailed { job: job_name.clone(), task, cause });
                    }
                };
            }
        }
    };
    master.fail_savepoints("the job ended");
    control.set_state(match &result {
        Ok(_) => JobState::Finished,
        Err(JobError::Cancelled(_)) => JobState::Canceled,
        // Suspended: its cluster starts it again.
        Err(JobError::Suspended(_)) => JobState::Restarting,
        Err(_) => JobState::Failed,
    });
    control.finished.store(true, Ordering::Release);
    result.map(|mut r| {
        r.savepoint = master.stopped_with.clone();
        r
    })
}

struct RestartState {
    tracker: RestartTracker,
    count: usize,
}

/// Failed pipelined regions of an attempt, on their way back.
struct RegionStates {
    /// The failure that brought each region down (the first real cause).
    failure: Vec<Option<TaskOutcome>>,
    /// When each region that is down starts again.
    restart_at: Vec<Option<Instant>>,
    /// What each region that is down restores (no checkpoint can complete meanwhile).
    restore: Vec<Option<JobRestore>>,
    /// Set when the restart strategy gave up: the attempt fails with it.
    job_failure: Option<TaskOutcome>,
}

impl RegionStates {
    fn new(regions: usize) -> Self {
        RegionStates {
            failure: (0..regions).map(|_| None).collect(),
            restart_at: vec![None; regions],
            restore: (0..regions).map(|_| None).collect(),
            job_failure: None,
        }
    }

    /// Records a task failure; a real cause replaces a consequence of one.
    fn failed(&mut self, region: usize, outcome: TaskOutcome) {
        let is_cause = |o: &TaskOutcome| o.result.as_ref().is_err_and(|e| !e.is_consequence());
        let slot = &mut self.failure[region];
        if slot.as_ref().is_none_or(|known| !is_cause(known) && is_cause(&outcome)) {
            *slot = Some(outcome);
        }
    }

    /// Whether a region is down.
    fn recovering(&self) -> bool {
        self.failure.iter().any(Option::is_some) || self.restart_at.iter().any(Option::is_some)
    }
}

/// Each source node's split enumerator, restored from `restore`.
fn create_enumerators(deployable: &Deployable, restore: Option<&JobRestore>) -> Result<Vec<SourceNode>, JobError> {
    let Deployable { graph, job, options, .. } = deployable;
    let mut sources = Vec::new();
    for v in &job.vertices {
        if let NodeKind::Source(factory) = &graph.nodes[v.head].kind {
            let operator = &graph.nodes[v.head].name;
            let failed = |cause: brisk_core::BoxError| JobError::TaskFailed {
                job: options.defaults.job_name.clone(),
                task: v.name.clone(),
                cause: TaskError::User(cause).in_operator(operator),
            };
            let enumerator = factory.create_enumerator(v.parallelism, restore.map_or(0, |r| r.id())).map_err(failed)?;
            let operator_id = job.operator_ids[v.head].clone();
            if let Some(r) = restore
                && let Some(state) = r.enumerator_state(&operator_id)
            {
                let readers = r.raw_states(&operator_id).map_err(|e| failed(e.into()))?;
                factory.restore_enumerator(&enumerator, r.id(), state, &readers).map_err(failed)?;
            }
            sources.push((operator_id, factory.clone_box(), enumerator));
        }
    }
    Ok(sources)
}

/// Starts attempt `number` of the job, restored from `restore`: its split enumerators here,
/// its tasks wherever `deployer` puts them.
pub(crate) fn deploy_attempt(
    deployable: &Deployable,
    deployer: &mut dyn Deployer,
    restore: Option<&JobRestore>,
    number: usize,
) -> Result<Attempt, JobError> {
    let sources = create_enumerators(deployable, restore)?;
    let handles = deployer.deploy(deployable, &sources, restore, number)?;
    Ok(Attempt::new(deployable, sources, handles))
}

/// Restarts the tasks of `region` alone (region failover), restored from `restore`: their
/// readers get back the splits they held then and those they got since.
fn redeploy_region(
    deployable: &Deployable,
    deployer: &mut dyn Deployer,
    attempt: &mut Attempt,
    region: usize,
    restore: Option<&JobRestore>,
    number: usize,
) -> Result<(), JobError> {
    for &task in &attempt.source_tasks {
        if attempt.region_of[task] != region {
            continue;
        }
        let descriptor = &attempt.tasks[task];
        let Some(operator_id) = descriptor.operator_ids.first() else { continue };
        let Some((_, factory, enumerator)) = attempt.sources.iter().find(|(id, _, _)| id == operator_id) else {
            continue;
        };
        let from = restore.map_or(0, |r| r.id());
        let failed = |e: brisk_core::BoxError| JobError::TaskFailed {
            job: deployable.options.defaults.job_name.clone(),
            task: operator_id.clone(),
            cause: TaskError::User(e),
        };
        let state = match restore {
            Some(r) => {
                r.raw_state_of(operator_id, descriptor.subtask, descriptor.parallelism).map_err(|e| failed(e.into()))?
            }
            None => None,
        };
        factory.reset_reader(enumerator, descriptor.subtask, from, state.as_deref()).map_err(failed)?;
    }
    let restarted = deployer.redeploy_region(deployable, &attempt.sources, region, restore, number)?;
    attempt.replace(restarted);
    Ok(())
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// A checkpoint storage error as a task failure: when no checkpoint can be read at all, no
/// restart can fix it (restarting from scratch would repeat committed output); an object
/// store that cannot be reached now may answer later.
fn restore_error(error: StorageError) -> TaskError {
    match error {
        StorageError::NoValidCheckpoint { .. } => TaskError::User(Box::new(NonRecoverableError::new(error))),
        other => TaskError::msg(other.to_string()),
    }
}

fn sleep_unless_cancelled(control: &JobControl, delay: Duration) -> bool {
    let until = Instant::now() + delay;
    while Instant::now() < until {
        if control.cancel.load(Ordering::Acquire) {
            return false;
        }
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
    }
    !control.cancel.load(Ordering::Acquire)
}

impl Master {
    /// Lets the next planned failure fire after a restart; with checkpoints, only the next
    /// completed checkpoint does, so every injected failure has a checkpoint to restore.
    fn arm_failures_after_restart(&self) {
        if self.coordinator.is_none() {
            self.deployable.options.failures.arm();
        }
    }

    fn publish_checkpoint_stats(&self) {
        if let Some(c) = &self.coordinator {
            *lock(&self.control.checkpoint_stats) = c.stats().clone();
        }
    }

    /// The latest valid checkpoint, else the fallback; an error when the checkpoints cannot
    /// be read now.
    fn restore_point(&self) -> Result<Option<JobRestore>, TaskError> {
        let of_this_run = |id: CheckpointId| id > self.earlier_runs;
        let latest = match &self.coordinator {
            Some(c) if c.storage().newest_checkpoint_id().ok().flatten().is_some_and(of_this_run) => c
                .storage()
                .latest_valid()
                .map_err(restore_error)?
                .filter(|c| of_this_run(c.metadata.id))
                .map(JobRestore::new),
            _ => None,
        };
        let restore = latest.or_else(|| self.fallback.clone());
        if let Some(r) = &restore {
            info!(checkpoint = r.id(), "restoring from checkpoint");
        }
        Ok(restore)
    }

    fn fail_savepoints(&mut self, reason: &str) {
        for request in self.savepoints.drain(..) {
            let _ = request.reply.send(Err(reason.to_string()));
        }
    }

    /// Runs one attempt until all its tasks ended. With region failover, a failed region's
    /// tasks are restarted within the attempt while the other regions keep running.
    fn run_attempt(&mut self, attempt: &mut Attempt, receiver: &Receiver<TaskEvent>) -> AttemptEnd {
        let tasks = attempt.task_count();
        let regional = self.coordinator.is_some()
            && self.deployable.options.checkpoint.failover == FailoverStrategy::Region
            && attempt.regions() > 1;
        let mut regions = RegionStates::new(attempt.regions());
        let mut ended = vec![false; tasks];
        let mut outcomes: Vec<Option<TaskOutcome>> = (0..tasks).map(|_| None).collect();
        let mut input_finished = vec![false; tasks];
        let mut running = vec![false; tasks];
        let mut final_sent = false;
        let mut cancelled = false;
        let mut first_end: Option<Instant> = None;
        loop {
            let stopping = cancelled || attempt.cancel.is_cancelled() || regions.job_failure.is_some();
            if ended.iter().all(|e| *e) && (stopping || !regions.recovering()) {
                break;
            }
            if !cancelled && self.control.cancel.load(Ordering::Acquire) {
                cancelled = true;
                attempt.cancel();
            }
            let wait = self
                .coordinator
                .as_ref()
                .and_then(|c| c.next_due())
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(50));
            match receiver.recv_timeout(wait.clamp(Duration::from_millis(1), Duration::from_millis(50))) {
                Ok(TaskEvent::Ended(task)) => {
                    if let Some(e) = ended.get_mut(task) {
                        *e = true;
                    }
                    first_end.get_or_insert_with(Instant::now);
                    let Some(outcome) = attempt.take_outcome(task) else {
                        continue;
                    };
                    self.control.set_task_state(
                        task,
                        match &outcome.result {
                            Ok(_) => ExecutionState::Finished,
                            Err(TaskError::Cancelled) => ExecutionState::Canceled,
                            Err(_) => ExecutionState::Failed,
                        },
                    );
                    if outcome.result.is_err() && !cancelled {
                        if regional && regions.job_failure.is_none() && !attempt.cancel.is_cancelled() {
                            let region = attempt.region_of[task];
                            attempt.cancel_region(region);
                            regions.failed(region, outcome);
                            continue;
                        }
                        attempt.cancel();
                    }
                    outcomes[task] = Some(outcome);
                }
                Ok(TaskEvent::Running(task)) => {
                    self.control.set_task_state(task, ExecutionState::Running);
                    if let Some(r) = running.get_mut(task) {
                        *r = true;
                    }
                    if running.iter().all(|r| *r)
                        && let Some(failed_at) = self.failed_at.take()
                    {
                        self.recoveries.push(failed_at.elapsed());
                    }
                }
                Ok(TaskEvent::InputFinished(task)) => {
                    self.control.set_task_state(task, ExecutionState::Finished);
                    if let Some(f) = input_finished.get_mut(task) {
                        *f = true;
                    }
                    // It will see no more barriers: it snapshots on request instead.
                    for barrier in &self.in_progress {
                        if self.coordinator.as_ref().is_some_and(|c| c.awaits(barrier.id, task)) {
                            attempt.send(task, Mail::TriggerCheckpoint(barrier.clone()));
                        }
                    }
                }
                Ok(TaskEvent::Acknowledge(ack)) => {
                    let completed = self.coordinator.as_mut().and_then(|c| c.acknowledge(ack));
                    match completed {
                        Some(Ok(done)) => self.on_completed(attempt, done),
                        Some(Err(reason)) => self.on_failed_checkpoint(attempt, 0, reason),
                        None => {}
                    }
                }
                Ok(TaskEvent::Decline { checkpoint, reason }) => self.on_failed_checkpoint(attempt, checkpoint, reason),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if cancelled || attempt.cancel.is_cancelled() {
                continue;
            }
            if regional {
                let reset = self.recover_regions(attempt, &mut regions, &ended);
                if !reset.is_empty() {
                    // The restarted tasks wait for the job's end again, to commit then.
                    final_sent = false;
                }
                for task in reset {
                    ended[task] = false;
                    running[task] = false;
                    input_finished[task] = false;
                }
                if regions.recovering() {
                    // No checkpoint can complete without the failed tasks.
                    continue;
                }
            }
            self.handle_commands(attempt, &input_finished);
            if let Some(c) = &mut self.coordinator {
                let now = Instant::now();
                let (expired, must_fail) = c.expire(now);
                for id in expired {
                    self.in_progress.retain(|b| b.id != id);
                    attempt.broadcast(|| Mail::CheckpointAborted(id));
                    attempt.sources.iter().for_each(|(_, f, e)| f.resume_enumerator(e));
                }
                if must_fail {
                    self.fail_job_for_checkpoints(attempt);
                    continue;
                }
                if !input_finished.iter().all(|f| *f) && c.is_due(now) {
                    self.trigger(attempt, SnapshotKind::Checkpoint, None, None, &input_finished);
                }
            }
            // The final commit waits for every snapshot in progress: once sinks committed what
            // follows the last checkpoint, a restart from it (a snapshot failing afterwards)
            // would replay and commit those records a second time.
            let checkpoints_pending = self.coordinator.as_ref().is_some_and(|c| c.has_pending());
            if !final_sent && input_finished.iter().all(|f| *f) && !checkpoints_pending {
                // Every task is done: sinks may commit what they hold.
                final_sent = true;
                attempt.broadcast(|| Mail::CheckpointComplete(FINAL_CHECKPOINT));
            }
        }
        let outcomes: Vec<TaskOutcome> = outcomes
            .into_iter()
            .zip(attempt.join_all())
            .map(|(outcome, late)| match (outcome, late) {
                (Some(outcome), _) | (None, Some(outcome)) => outcome,
                (None, None) => TaskOutcome { task_name: "unknown".into(), result: Err(TaskError::Cancelled) },
            })
            .collect();
        if cancelled {
            return AttemptEnd::Cancelled;
        }
        if std::mem::take(&mut self.checkpoint_failure) {
            let tolerable = self.deployable.options.checkpoint.tolerable_failures;
            return AttemptEnd::Failed {
                task: "checkpoint coordinator".into(),
                cause: TaskError::msg(format!(
                    "more than {tolerable} checkpoints failed in a row (execution.checkpointing.tolerable-failed-checkpoints)"
                )),
            };
        }
        let failure = regions.job_failure.take().map(Ok).unwrap_or_else(|| {
            let position = outcomes
                .iter()
                .position(|o| o.result.as_ref().is_err_and(|e| !e.is_consequence()))
                .or_else(|| outcomes.iter().position(|o| o.result.is_err()));
            Err(position)
        });
        let failure = match failure {
            Ok(outcome) => Some(outcome),
            Err(Some(i)) => {
                self.failed_at = first_end;
                let mut outcomes = outcomes;
                Some(outcomes.swap_remove(i))
            }
            Err(None) => return AttemptEnd::Finished(outcomes),
        };
        match failure.map(|o| (o.task_name, o.result)) {
            Some((task, Err(cause))) => AttemptEnd::Failed { task, cause },
            _ => AttemptEnd::Failed { task: "job master".into(), cause: TaskError::msg("a failure was lost") },
        }
    }

    /// Region failover: schedules the restart of regions whose tasks all ended after a
    /// failure (or fails the job when the restart strategy says so), and restarts those whose
    /// delay passed. Returns the tasks that were started again.
    fn recover_regions(&mut self, attempt: &mut Attempt, regions: &mut RegionStates, ended: &[bool]) -> Vec<usize> {
        let now = Instant::now();
        let mut restarted = Vec::new();
        for region in 0..attempt.regions() {
            let down = attempt.tasks_of(region).all(|t| ended[t]);
            if down
                && regions.restart_at[region].is_none()
                && let Some(failure) = &regions.failure[region]
            {
                let error = failure.result.as_ref().err().map(ToString::to_string).unwrap_or_default();
                if failure.result.as_ref().is_err_and(TaskError::is_non_recoverable) {
                    warn!(task = %failure.task_name, error = %error, "a restart cannot fix this error; failing the job");
                    regions.job_failure = regions.failure[region].take();
                    attempt.cancel();
                    return restarted;
                }
                // The whole job restarts instead when a stop-with-savepoint is under way (sources
                // of other regions may have stopped already), or when the checkpoint to restore
                // is not the one the readers' split log starts from (a newer one is unreadable).
                let stop_pending = self.in_progress.iter().any(|b| b.stop.is_some());
                let restore = self.restore_point();
                let escalate = stop_pending
                    || restore.as_ref().map_or(true, |r| r.as_ref().map(JobRestore::id) != self.last_completed);
                if escalate {
                    regions.job_failure = regions.failure[region].take();
                    attempt.cancel();
                    return restarted;
                }
                match self.restarts.tracker.on_failure() {
                    Some(delay) => {
                        lock(&self.control.exceptions).push(JobException::now(&failure.task_name, &error));
                        self.restarts.count += 1;
                        self.control.restarts.fetch_add(1, Ordering::Relaxed);
                        warn!(task = %failure.task_name, error = %error, region, restart = self.restarts.count, delay_ms = delay.as_millis() as u64, "task failed; restarting its pipelined region");
                        regions.restart_at[region] = Some(now + delay);
                        regions.restore[region] = restore.ok().flatten();
                        let restored = regions.restore[region].as_ref().map(JobRestore::id);
                        lock(&self.control.restored).push((restored, epoch_ms()));
                        self.failed_at.get_or_insert(now);
                        self.abandon_checkpoints(attempt, "a region restarted");
                    }
                    None => {
                        warn!(task = %failure.task_name, error = %error, "job failed");
                        regions.job_failure = regions.failure[region].take();
                        attempt.cancel();
                        return restarted;
                    }
                }
            }
            if regions.restart_at[region].is_some_and(|at| now >= at) {
                regions.restart_at[region] = None;
                regions.failure[region] = None;
                let restore = regions.restore[region].take();
                let number = self.restarts.count;
                self.arm_failures_after_restart();
                match redeploy_region(
                    &self.deployable,
                    self.deployer.as_mut(),
                    attempt,
                    region,
                    restore.as_ref(),
                    number,
                ) {
                    Ok(()) => restarted.extend(attempt.tasks_of(region)),
                    Err(e) => {
                        regions.job_failure = Some(TaskOutcome {
                            task_name: format!("region {region}"),
                            result: Err(TaskError::msg(format!("cannot restart the region: {e}"))),
                        });
                        attempt.cancel();
                        return restarted;
                    }
                }
            }
        }
        restarted
    }

    /// Abandons the checkpoints in progress (tasks restart), without counting them as failed.
    fn abandon_checkpoints(&mut self, attempt: &Attempt, reason: &str) {
        let Some(c) = &mut self.coordinator else { return };
        for id in c.abandon_pending(reason) {
            self.in_progress.retain(|b| b.id != id);
            attempt.broadcast(|| Mail::CheckpointAborted(id));
            if let Some(i) = self.savepoints.iter().position(|s| s.id == id) {
                let request = self.savepoints.swap_remove(i);
                let _ = request.reply.send(Err(reason.to_string()));
            }
        }
        attempt.sources.iter().for_each(|(_, f, e)| f.resume_enumerator(e));
        self.publish_checkpoint_stats();
    }

    fn fail_job_for_checkpoints(&mut self, attempt: &Attempt) {
        warn!("too many checkpoints failed in a row; failing the job");
        self.checkpoint_failure = true;
        attempt.cancel();
    }

    /// Starts a checkpoint or savepoint at the sources.
    fn trigger(
        &mut self,
        attempt: &Attempt,
        kind: SnapshotKind,
        dir: Option<SnapshotLocation>,
        stop: Option<bool>,
        input_finished: &[bool],
    ) -> Option<CheckpointId> {
        let coordinator = self.coordinator.as_mut()?;
        let mut enumerators = Vec::new();
        let id = coordinator.next_checkpoint_id();
        for (operator_id, factory, enumerator) in &attempt.sources {
            match factory.snapshot_enumerator(enumerator, id) {
                Ok(state) => enumerators.push((operator_id.clone(), state)),
                Err(e) => {
                    warn!(error = %e, "cannot snapshot a source's splits; skipping the checkpoint");
                    attempt.sources.iter().for_each(|(_, f, e)| f.resume_enumerator(e));
                    return None;
                }
            }
        }
        let (id, timestamp) = match coordinator.begin(kind, dir, enumerators) {
            Ok(started) => started,
            Err(e) => {
                warn!(error = %e, "cannot start a checkpoint");
                attempt.sources.iter().for_each(|(_, f, e)| f.resume_enumerator(e));
                return None;
            }
        };
        let (target, remote) = coordinator.directory(id)?;
        if let Err(e) = std::fs::create_dir_all(&target) {
            coordinator.fail(id, format!("cannot create '{}': {e}", target.display()));
            attempt.sources.iter().for_each(|(_, f, e)| f.resume_enumerator(e));
            return None;
        }
        let config = &self.deployable.options.checkpoint;
        // Barriers of savepoints, and of checkpoints that start aligned (an alignment timeout),
        // travel in order with the records.
        let overtaking = kind == SnapshotKind::Checkpoint
            && config.unaligned
            && config.mode == CheckpointingMode::ExactlyOnce
            && config.aligned_checkpoint_timeout.is_zero();
        let barrier = CheckpointBarrier {
            id,
            timestamp,
            kind,
            stop,
            target: target.into(),
            remote: remote.map(Into::into),
            overtaking,
        };
        // Sources inject the barrier; tasks that finished their input get no barriers and
        // snapshot on request.
        let finished = input_finished.iter().enumerate().filter(|(_, f)| **f).map(|(i, _)| i);
        let mut targets: Vec<usize> = attempt.source_tasks.iter().copied().chain(finished).collect();
        targets.sort_unstable();
        targets.dedup();
        for task in targets {
            attempt.send(task, Mail::TriggerCheckpoint(barrier.clone()));
        }
        self.in_progress.push(barrier);
        Some(id)
    }

    fn on_completed(&mut self, attempt: &Attempt, done: Completed) {
        self.in_progress.retain(|b| b.id > done.id);
        if done.kind == SnapshotKind::Checkpoint {
            self.last_completed = Some(done.id);
            // A planned failure may fire once the job has a checkpoint to come back to.
            self.deployable.options.failures.arm();
            attempt.sources.iter().for_each(|(_, f, e)| f.enumerator_checkpoint_completed(e, done.id));
        }
        attempt.broadcast(|| Mail::CheckpointComplete(done.id));
        self.publish_checkpoint_stats();
        if let Some(i) = self.savepoints.iter().position(|s| s.id == done.id) {
            let request = self.savepoints.swap_remove(i);
            info!(path = %done.path, "savepoint written");
            if request.stop {
                self.stopped_with = Some(done.path.clone());
            }
            let _ = request.reply.send(Ok(done.path));
        }
    }

    fn on_failed_checkpoint(&mut self, attempt: &Attempt, id: CheckpointId, reason: String) {
        let Some(c) = &mut self.coordinator else { return };
        if id != 0 && !c.is_pending(id) {
            return;
        }
        let must_fail = c.fail(id, reason.clone());
        self.in_progress.retain(|b| b.id != id);
        attempt.broadcast(|| Mail::CheckpointAborted(id));
        attempt.sources.iter().for_each(|(_, f, e)| f.resume_enumerator(e));
        if let Some(i) = self.savepoints.iter().position(|s| s.id == id) {
            let request = self.savepoints.swap_remove(i);
            let _ = request.reply.send(Err(reason));
        }
        self.publish_checkpoint_stats();
        if must_fail {
            self.fail_job_for_checkpoints(attempt);
        }
    }

    fn handle_commands(&mut self, attempt: &Attempt, input_finished: &[bool]) {
        let commands: Vec<ClientCommand> = lock(&self.control.commands).drain(..).collect();
        for command in commands {
            match command {
                ClientCommand::Savepoint { dir, stop, reply } => {
                    if self.coordinator.is_none() {
                        let _ = reply.send(Err(
                            "savepoints need checkpointing to be enabled (execution.checkpointing.interval)".into(),
                        ));
                        continue;
                    }
                    if input_finished.iter().all(|f| *f) {
                        let _ = reply.send(Err("the job has already processed all its input".into()));
                        continue;
                    }
                    match self.trigger(attempt, SnapshotKind::Savepoint, Some(dir), stop, input_finished) {
                        Some(id) => self.savepoints.push(SavepointRequest { id, stop: stop.is_some(), reply }),
                        None => {
                            let _ = reply.send(Err("the savepoint could not be started".into()));
                        }
                    }
                }
            }
        }
    }

    fn result(&self, job_name: &str, outcomes: Vec<TaskOutcome>, started: Instant) -> JobExecutionResult {
        let job = &self.deployable.job;
        let graph = &self.deployable.graph;
        let mut per_node: Vec<OperatorMetricsSummary> = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| OperatorMetricsSummary {
                id: job.operator_ids[i].clone(),
                name: n.name.clone(),
                parallelism: job.parallelism[i],
                records_in: 0,
                records_out: 0,
                counters: BTreeMap::new(),
            })
            .collect();
        let mut accumulators: BTreeMap<String, AccumulatorValue> = BTreeMap::new();
        for outcome in outcomes {
            let Ok(report) = outcome.result else { continue };
            for op in report.operators {
                if let Some(summary) = per_node.get_mut(op.node_id) {
                    summary.records_in += op.records_in;
                    summary.records_out += op.records_out;
                    for (name, value) in op.counters {
                        *summary.counters.entry(name).or_default() += value;
                    }
                }
            }
            for (name, value) in report.accumulators {
                match accumulators.get_mut(&name) {
                    Some(existing) => existing.merge(&value),
                    None => {
                        accumulators.insert(name, value);
                    }
                }
            }
        }
        let net_runtime = started.elapsed();
        let restarts = self.restarts.count;
        info!(job = %job_name, runtime_ms = net_runtime.as_millis() as u64, restarts, "job finished");
        if let Some(c) = &self.coordinator
            && self.stopped_with.is_none()
        {
            // A finished job needs no checkpoints; a stopped one is resumed from its savepoint.
            c.storage().delete_all();
            if let (None, SnapshotLocation::Local(dir)) =
                (&self.deployable.options.checkpoint.directory, c.storage().location())
            {
                // The run's own default directory, now empty.
                let _ = std::fs::remove_dir(dir);
            }
        }
        JobExecutionResult {
            job_id: self.control.job_id.clone(),
            job_name: job_name.to_string(),
            net_runtime,
            operators: per_node,
            accumulators,
            job_graph: job.description.clone(),
            checkpoints: self.coordinator.as_ref().map(|c| c.stats().clone()).unwrap_or_default(),
            restarts,
            recoveries: self.recoveries.clone(),
            restored_checkpoints: lock(&self.control.restored).iter().map(|(id, _)| *id).collect(),
            exceptions: lock(&self.control.exceptions).clone(),
            savepoint: None,
        }
    }
}
