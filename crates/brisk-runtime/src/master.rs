//! The job master of the mini cluster: runs attempts of the job, drives the checkpoint
//! coordinator (triggering at the sources, completing on acknowledgements, notifying tasks),
//! handles savepoint requests, tells the tasks when the whole job finished so sinks commit,
//! and restarts the job from the latest complete checkpoint when a task fails.

use crate::checkpoint::config::RestartTracker;
use crate::checkpoint::coordinator::{CheckpointCoordinator, CheckpointStats, Completed};
use crate::checkpoint::restore::JobRestore;
use crate::checkpoint::storage::CheckpointStorage;
use crate::checkpoint::{
    CheckpointBarrier, CheckpointId, ExternalizedCheckpointRetention, FINAL_CHECKPOINT, SnapshotKind, SnapshotLocation,
    TaskEvent,
};
use crate::error::{JobError, TaskError, lock};
use crate::mailbox::{Mail, Mailbox};
use crate::metrics::AccumulatorValue;
use crate::minicluster::{Attempt, Deployable, JobExecutionResult, OperatorMetricsSummary, TaskOutcome, deploy};
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

/// What clients and the master share.
pub(crate) struct JobControl {
    cancel: AtomicBool,
    commands: Mutex<VecDeque<ClientCommand>>,
    /// Mailboxes of the running attempt's tasks (queryable state).
    pub mailboxes: Mutex<Vec<Vec<Mailbox>>>,
    /// Records read by the sources, over all attempts.
    pub records_read: Arc<AtomicU64>,
    /// Set when the job has ended.
    pub finished: AtomicBool,
    /// The checkpoint history so far.
    pub history: Mutex<Vec<CheckpointStats>>,
}

impl JobControl {
    pub fn new() -> Self {
        JobControl {
            cancel: AtomicBool::new(false),
            commands: Mutex::new(VecDeque::new()),
            mailboxes: Mutex::new(Vec::new()),
            records_read: Arc::new(AtomicU64::new(0)),
            finished: AtomicBool::new(false),
            history: Mutex::new(Vec::new()),
        }
    }

    pub fn request_cancel(&self) {
        self.cancel.store(true, Ordering::Release);
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
}

/// The job's checkpoint storage, if checkpointing is enabled (by default under the system
/// temp directory).
pub(crate) fn open_checkpoint_storage(deployable: &Deployable) -> Result<Option<CheckpointStorage>, JobError> {
    let config = &deployable.options.checkpoint;
    if !config.is_enabled() {
        return Ok(None);
    }
    let location = config.directory.clone().unwrap_or_else(|| {
        let job = sanitize(&deployable.options.defaults.job_name);
        SnapshotLocation::Local(std::env::temp_dir().join("brisk-checkpoints").join(job))
    });
    CheckpointStorage::open(location).map(Some).map_err(|e| JobError::InvalidJob(e.to_string()))
}

/// Runs the job to its end: attempts, checkpoints, restarts.
pub(crate) fn run_master(
    deployable: Deployable,
    storage: Option<CheckpointStorage>,
    first: Attempt,
    restore: Option<JobRestore>,
    events: Sender<TaskEvent>,
    receiver: Receiver<TaskEvent>,
    control: Arc<JobControl>,
) -> Result<JobExecutionResult, JobError> {
    let job_name = deployable.options.defaults.job_name.clone();
    let started = Instant::now();
    let config = deployable.options.checkpoint.clone();
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
            restore.as_ref().map(|r| r.id()).unwrap_or(0),
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
    };
    let mut restarts =
        RestartState { tracker: RestartTracker::new(master.deployable.options.restart_strategy.clone()), count: 0 };
    let mut attempt = first;
    let mut initial = restore;
    let result = loop {
        if let Some(c) = &mut master.coordinator {
            c.start_attempt(attempt.tasks.clone());
        }
        let end = master.run_attempt(&mut attempt, &receiver);
        master.publish_history();
        match end {
            AttemptEnd::Finished(outcomes) => break Ok(master.result(&job_name, outcomes, started, restarts.count)),
            AttemptEnd::Cancelled => {
                info!(job = %job_name, "job cancelled");
                if let Some(c) = &master.coordinator
                    && master.deployable.options.checkpoint.retention
                        == ExternalizedCheckpointRetention::DeleteOnCancellation
                {
                    c.storage().delete_all();
                }
                break Err(JobError::Cancelled(job_name.clone()));
            }
            AttemptEnd::Failed { task, cause } => {
                let Some(delay) = restarts.tracker.on_failure() else {
                    warn!(job = %job_name, task = %task, error = %cause, "job failed");
                    break Err(JobError::TaskFailed { job: job_name.clone(), task, cause });
                };
                restarts.count += 1;
                warn!(job = %job_name, task = %task, error = %cause, restart = restarts.count, delay_ms = delay.as_millis() as u64, "task failed; restarting the job");
                if !sleep_unless_cancelled(&control, delay) {
                    break Err(JobError::Cancelled(job_name.clone()));
                }
                let latest = master.coordinator.as_ref().and_then(|c| c.storage().latest_valid()).map(JobRestore::new);
                // Before the first checkpoint of this run, the snapshot the job started from.
                let restore = latest.or_else(|| initial.take());
                if let Some(r) = &restore {
                    info!(job = %job_name, checkpoint = r.id(), "restoring from checkpoint");
                    initial = Some(r.clone());
                }
                let (events_for_tasks, number) = (events.clone(), attempt.number + 1);
                attempt = match deploy(&master.deployable, restore.as_ref(), number, &events_for_tasks, &control) {
                    Ok(a) => a,
                    Err(e) => break Err(e),
                };
            }
        }
    };
    master.fail_savepoints("the job ended");
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

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
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
    fn publish_history(&self) {
        if let Some(c) = &self.coordinator {
            *lock(&self.control.history) = c.history().to_vec();
        }
    }

    fn fail_savepoints(&mut self, reason: &str) {
        for request in self.savepoints.drain(..) {
            let _ = request.reply.send(Err(reason.to_string()));
        }
    }

    /// Runs one attempt until all its tasks ended.
    fn run_attempt(&mut self, attempt: &mut Attempt, receiver: &Receiver<TaskEvent>) -> AttemptEnd {
        let tasks = attempt.threads.len();
        let mut ended = 0;
        let mut input_finished = vec![false; tasks];
        let mut final_sent = false;
        let mut cancelled = false;
        let mut running = 0;
        let mut first_end: Option<Instant> = None;
        loop {
            if ended == tasks {
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
                Ok(TaskEvent::Ended(_)) => {
                    ended += 1;
                    first_end.get_or_insert_with(Instant::now);
                }
                Ok(TaskEvent::Running(_)) => {
                    running += 1;
                    if running == tasks
                        && let Some(failed_at) = self.failed_at.take()
                    {
                        self.recoveries.push(failed_at.elapsed());
                    }
                }
                Ok(TaskEvent::InputFinished(task)) => {
                    if let Some(f) = input_finished.get_mut(task) {
                        *f = true;
                    }
                    // It will see no more barriers: it snapshots on request instead.
                    if let Some(mailbox) = attempt.mailbox(task) {
                        for barrier in &self.in_progress {
                            if self.coordinator.as_ref().is_some_and(|c| c.awaits(barrier.id, task)) {
                                mailbox.send(Mail::TriggerCheckpoint(barrier.clone()));
                            }
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
            let checkpoints_pending =
                self.savepoints.iter().any(|s| self.coordinator.as_ref().is_some_and(|c| c.is_pending(s.id)));
            if !final_sent && input_finished.iter().all(|f| *f) && !checkpoints_pending {
                // Every task is done: sinks may commit what they hold.
                final_sent = true;
                attempt.broadcast(|| Mail::CheckpointComplete(FINAL_CHECKPOINT));
            }
        }
        let outcomes: Vec<TaskOutcome> = attempt
            .threads
            .drain(..)
            .map(|t| {
                t.join().unwrap_or_else(|_| TaskOutcome {
                    task_name: "unknown".into(),
                    result: Err(TaskError::msg("a task thread died unexpectedly")),
                })
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
        let failure = outcomes
            .iter()
            .position(|o| o.result.as_ref().is_err_and(|e| !e.is_consequence()))
            .or_else(|| outcomes.iter().position(|o| o.result.is_err()));
        if failure.is_some() {
            self.failed_at = first_end;
        }
        match failure {
            Some(i) => {
                let mut outcomes = outcomes;
                let outcome = outcomes.swap_remove(i);
                match outcome.result {
                    Err(cause) => AttemptEnd::Failed { task: outcome.task_name, cause },
                    Ok(_) => AttemptEnd::Finished(outcomes),
                }
            }
            None => AttemptEnd::Finished(outcomes),
        }
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
        for (operator_id, factory, enumerator) in &attempt.sources {
            match factory.snapshot_enumerator(enumerator) {
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
        let target = coordinator.directory(id)?;
        if let Err(e) = std::fs::create_dir_all(&target) {
            coordinator.fail(id, format!("cannot create '{}': {e}", target.display()));
            attempt.sources.iter().for_each(|(_, f, e)| f.resume_enumerator(e));
            return None;
        }
        let barrier = CheckpointBarrier { id, timestamp, kind, stop, target: target.into() };
        // Sources inject the barrier; tasks that finished their input get no barriers and
        // snapshot on request.
        let finished = input_finished.iter().enumerate().filter(|(_, f)| **f).map(|(i, _)| i);
        let mut targets: Vec<usize> = attempt.source_tasks.iter().copied().chain(finished).collect();
        targets.sort_unstable();
        targets.dedup();
        for task in targets {
            if let Some(mailbox) = attempt.mailbox(task) {
                mailbox.send(Mail::TriggerCheckpoint(barrier.clone()));
            }
        }
        self.in_progress.push(barrier);
        Some(id)
    }

    fn on_completed(&mut self, attempt: &Attempt, done: Completed) {
        self.in_progress.retain(|b| b.id > done.id);
        attempt.broadcast(|| Mail::CheckpointComplete(done.id));
        self.publish_history();
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
        self.publish_history();
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

    fn result(
        &self,
        job_name: &str,
        outcomes: Vec<TaskOutcome>,
        started: Instant,
        restarts: usize,
    ) -> JobExecutionResult {
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
        info!(job = %job_name, runtime_ms = net_runtime.as_millis() as u64, restarts, "job finished");
        if let Some(c) = &self.coordinator
            && self.stopped_with.is_none()
        {
            // A finished job needs no checkpoints; a stopped one is resumed from its savepoint.
            c.storage().delete_all();
        }
        JobExecutionResult {
            job_name: job_name.to_string(),
            net_runtime,
            operators: per_node,
            accumulators,
            job_graph: job.description.clone(),
            checkpoints: self.coordinator.as_ref().map(|c| c.history().to_vec()).unwrap_or_default(),
            restarts,
            recoveries: self.recoveries.clone(),
            savepoint: None,
        }
    }
}
