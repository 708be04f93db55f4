//! The embedded mini cluster: the job master and a deployer that runs every subtask as a
//! thread of this process, connected by in-process channels. It follows the same JobGraph →
//! execution plan → deployment path a standalone cluster does, in one process.

mod local_deployer;

use crate::checkpoint::SnapshotLocation;
use crate::checkpoint::config::CheckpointConfig;
use crate::checkpoint::restore::JobRestore;
use crate::checkpoint::stats::CheckpointStatsSnapshot;
use crate::checkpoint::storage::load_snapshot;
use crate::error::{JobError, TaskError, lock};
use crate::graph::execution_plan::ExecutionPlan;
use crate::graph::job_graph::JobGraph;
use crate::graph::stream_graph::StreamGraph;
use crate::jobmaster::deployer::Deployer;
use crate::jobmaster::job::{Deployable, JobOptions, new_job_id};
use crate::jobmaster::master::{JobControl, RestHandler, deploy_attempt, open_checkpoint_storage, run_master};
use crate::jobmaster::result::{JobException, JobExecutionResult};
use crate::metrics::task_io::SubtaskMetrics;
use crate::network::partitioner::{KeyParser, PartitionKind};
use crate::taskexecutor::output::StateQuery;
use brisk_core::job_graph::JobGraphDescription;
use brisk_core::key_group::{key_group_for_hash, key_hash, operator_index_for_key_group};
use brisk_core::{Data, Key};
use brisk_rpc::JobState;
use local_deployer::LocalDeployer;
use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// A running job: wait for it, cancel it, or take savepoints (Flink's `JobClient`).
pub struct JobClient {
    job_name: String,
    /// Cancelling, savepoints and what the job reports, also reachable through `Deref`.
    controller: JobController,
    master: JoinHandle<Result<JobExecutionResult, JobError>>,
}

struct StreamGraphSummary {
    /// Parallelism and max parallelism of each vertex.
    vertices: Vec<(usize, usize)>,
    description: JobGraphDescription,
    /// Its checkpointing settings.
    checkpoint: CheckpointConfig,
    /// How each vertex reads its key from text, if it is keyed.
    key_parsers: Vec<Option<KeyParser>>,
}

/// A handle on a running job that can be shared with other threads (a signal handler, the
/// REST server): it controls the job and reads what it reports without pausing its tasks.
#[derive(Clone)]
pub struct JobController {
    control: Arc<JobControl>,
    graph: Arc<StreamGraphSummary>,
}

/// The methods of [`JobController`] on the client itself.
impl std::ops::Deref for JobClient {
    type Target = JobController;

    fn deref(&self) -> &JobController {
        &self.controller
    }
}

impl JobController {
    /// Cancels the job; `wait` then returns [`JobError::Cancelled`].
    pub fn cancel(&self) {
        self.control.request_cancel();
    }

    /// Writes a savepoint into a new directory inside `dir`; returns its location.
    pub fn trigger_savepoint(&self, dir: impl Into<SnapshotLocation>) -> Result<SnapshotLocation, JobError> {
        self.control.savepoint(dir.into(), None)
    }

    /// Takes a savepoint and stops the job after it (with `drain`, the final watermark first
    /// flushes event-time state, as if the input had ended).
    pub fn stop_with_savepoint(
        &self,
        dir: impl Into<SnapshotLocation>,
        drain: bool,
    ) -> Result<SnapshotLocation, JobError> {
        self.control.savepoint(dir.into(), Some(drain))
    }

    /// The job's id (32 hex digits).
    pub fn job_id(&self) -> &str {
        &self.control.job_id
    }

    /// The job's name.
    pub fn job_name(&self) -> &str {
        &self.graph.description.job_name
    }

    /// Where the job is in its life cycle.
    pub fn state(&self) -> JobState {
        *lock(&self.control.state)
    }

    /// When the job started and, once it ended, when it ended (epoch milliseconds).
    pub fn times(&self) -> (i64, Option<i64>) {
        (self.control.start_time_ms, *lock(&self.control.end_time_ms))
    }

    /// How often the job (or a region of it) restarted after a failure.
    pub fn restarts(&self) -> u64 {
        self.control.restarts.load(Ordering::Relaxed)
    }

    /// Lets `handler` answer the REST requests that a JobManager forwards to this job (a job
    /// run as a cluster's coordinator); the first handler stays.
    pub fn serve_rest(&self, handler: RestHandler) {
        let _ = self.control.rest.set(handler);
    }

    /// For each restart so far, the checkpoint it restored (`None`: it started over) and
    /// when (epoch milliseconds).
    pub fn restored_checkpoints(&self) -> Vec<Option<(u64, i64)>> {
        lock(&self.control.restored).iter().map(|(id, at)| id.map(|id| (id, *at))).collect()
    }

    /// The failures the job handled so far, oldest first (Flink's exception history).
    pub fn exception_history(&self) -> Vec<JobException> {
        lock(&self.control.exceptions).clone()
    }

    /// The job graph being executed.
    pub fn job_graph(&self) -> &JobGraphDescription {
        &self.graph.description
    }

    /// The job's checkpointing settings.
    pub fn checkpoint_config(&self) -> &CheckpointConfig {
        &self.graph.checkpoint
    }

    /// The statistics of the checkpoints taken so far.
    pub fn checkpoint_stats(&self) -> CheckpointStatsSnapshot {
        lock(&self.control.checkpoint_stats).clone()
    }

    /// Looks up the value of keyed state `state` for `key` in the running job (Flink's
    /// queryable state): asked of the subtask owning the key in every keyed vertex.
    pub fn query_state<K: Key, V: Data>(&self, state: &str, key: &K) -> Result<Option<V>, JobError> {
        let encoded = brisk_state::codec::encode(key)
            .map_err(|e| JobError::InvalidJob(format!("cannot encode key {key:?}: {e}")))?;
        let hash = key_hash(key);
        let asked = (0..self.graph.vertices.len()).map(|vertex| (vertex, hash, encoded.clone()));
        let query_failed =
            |reason: String| JobError::InvalidJob(format!("query of state '{state}' for key {key:?} failed: {reason}"));
        match self.ask(state, asked, false).map_err(query_failed)? {
            Some(bytes) => brisk_state::codec::decode::<V>(&bytes)
                .map(Some)
                .map_err(|e| query_failed(format!("value does not decode: {e}"))),
            None => Ok(None),
        }
    }

    /// [`query_state`](Self::query_state) for people: the key as text (JSON, or a bare string),
    /// read by each keyed vertex as its key type; the value as JSON.
    pub fn query_state_json(&self, state: &str, key: &str) -> Result<Option<serde_json::Value>, JobError> {
        let mut unreadable = Vec::new();
        let mut asked = Vec::new();
        for (vertex, parser) in self.graph.key_parsers.iter().enumerate() {
            match parser.as_ref().map(|read| read(key)) {
                Some(Ok((hash, encoded))) => asked.push((vertex, hash, encoded)),
                Some(Err(e)) => unreadable.push(e),
                None => {}
            }
        }
        if asked.is_empty() {
            let why =
                if unreadable.is_empty() { "the job has no keyed operator".to_string() } else { unreadable.join("; ") };
            return Err(JobError::InvalidJob(format!("cannot look up key '{key}': {why}")));
        }
        let query_failed =
            |reason: String| JobError::InvalidJob(format!("query of state '{state}' for key '{key}' failed: {reason}"));
        match self.ask(state, asked, true).map_err(query_failed)? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| query_failed(format!("the answer is no JSON: {e}"))),
            None => Ok(None),
        }
    }

    /// Asks the subtask owning each (vertex, key hash, encoded key) for state `state` until one
    /// has a value.
    fn ask(
        &self,
        state: &str,
        keys: impl IntoIterator<Item = (usize, u64, Vec<u8>)>,
        json: bool,
    ) -> Result<Option<Vec<u8>>, String> {
        let lookups = lock(&self.control.state_lookups).clone();
        for (vertex, hash, key) in keys {
            let Some((parallelism, max_parallelism)) = self.graph.vertices.get(vertex).copied() else { continue };
            let key_group = key_group_for_hash(hash, max_parallelism);
            let subtask = operator_index_for_key_group(max_parallelism, parallelism, key_group);
            let first_task: usize = self.graph.vertices[..vertex].iter().map(|(p, _)| p).sum();
            let Some(Some(lookup)) = lookups.get(first_task + subtask) else { continue };
            let query = StateQuery { state: state.to_string(), key_group, key, json };
            if let Some(value) = lookup.lookup(query)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// The live metrics of every subtask of the running attempt, in task order (vertex by
    /// vertex); read without pausing the tasks.
    pub fn metrics(&self) -> Vec<SubtaskMetrics> {
        let vertices = &self.graph.description.vertices;
        let mut ids = vertices.iter().enumerate().flat_map(|(v, d)| (0..d.parallelism).map(move |s| (v, s)));
        lock(&self.control.task_metrics)
            .iter()
            .filter_map(|task| {
                let (vertex, subtask) = ids.next()?;
                Some(SubtaskMetrics {
                    vertex,
                    vertex_name: vertices[vertex].name.clone(),
                    subtask,
                    attempt: task.attempt,
                    state: task.state,
                    values: task.metrics.read(),
                })
            })
            .collect()
    }
}

impl JobClient {
    /// A handle for other threads.
    pub fn controller(&self) -> JobController {
        self.controller.clone()
    }

    /// Whether the job has ended.
    pub fn is_finished(&self) -> bool {
        self.master.is_finished()
    }

    /// Waits for the job to end.
    pub fn wait(self) -> Result<JobExecutionResult, JobError> {
        match self.master.join() {
            Ok(result) => result,
            Err(_) => Err(JobError::TaskFailed {
                job: self.job_name,
                task: "job master".into(),
                cause: TaskError::msg("the job master thread died unexpectedly"),
            }),
        }
    }
}

/// Reads the savepoint or checkpoint to start from (the newest complete one when given a
/// checkpoint directory) and checks it fits the job.
fn initial_restore(deployable: &Deployable) -> Result<Option<JobRestore>, JobError> {
    let Some(given) = &deployable.options.restore_from else { return Ok(None) };
    let invalid = |e: String| JobError::InvalidJob(format!("cannot restore from '{given}': {e}"));
    let (path, _) = given.resolve_restore_point().map_err(invalid)?;
    let checkpoint = load_snapshot(&path).map_err(|e| invalid(e.to_string()))?;
    let restore = JobRestore::new(checkpoint);
    let ids: BTreeSet<String> = deployable.job.operator_ids.iter().cloned().collect();
    restore.check_mapping(&ids, deployable.options.allow_non_restored_state).map_err(JobError::InvalidJob)?;
    info!(path = %path, checkpoint = restore.id(), "restoring the job from a snapshot");
    Ok(Some(restore))
}

/// Deploys `graph` into an in-process cluster and starts it.
pub fn submit(graph: StreamGraph, options: JobOptions) -> Result<JobClient, JobError> {
    submit_with(graph, options, None, |deployable, events, control| {
        let deployer = LocalDeployer::new(events, control, deployable.options.task_managers)?;
        Ok((Box::new(deployer), None))
    })
}

/// Runs when the job ended, with why it did not finish (`None`: it finished).
pub(crate) type EndHook = Box<dyn FnOnce(Option<&JobError>) + Send>;

/// Starts `graph` with the job master here and its tasks wherever the deployer that
/// `deployer` makes puts them (with a hook for the job's end); `job_id` names the job when a
/// cluster gave it one.
pub(crate) fn submit_with(
    graph: StreamGraph,
    options: JobOptions,
    job_id: Option<String>,
    deployer: impl FnOnce(
        &Deployable,
        std::sync::mpsc::Sender<crate::checkpoint::TaskEvent>,
        Arc<JobControl>,
    ) -> Result<(Box<dyn Deployer>, Option<EndHook>), JobError>,
) -> Result<JobClient, JobError> {
    let job = JobGraph::build(&graph, &options.defaults)?;
    let job_name = options.defaults.job_name.clone();
    let subtasks: usize = job.vertices.iter().map(|v| v.parallelism).sum();
    let in_cluster = job_id.is_some();
    let job_id = job_id.unwrap_or_else(|| new_job_id(&job_name));
    info!(job = %job_name, job_id = %job_id, tasks = job.vertices.len(), subtasks, "submitting job");
    debug!("execution plan:\n{}", job.description.to_plan_string());
    options.validate()?;
    let summary = StreamGraphSummary {
        vertices: job.vertices.iter().map(|v| (v.parallelism, v.max_parallelism)).collect(),
        description: job.description.clone(),
        checkpoint: options.checkpoint.clone(),
        key_parsers: (0..job.vertices.len())
            .map(|vertex| {
                let keyed = job.edges.iter().find(|e| e.target == vertex && e.kind == PartitionKind::Hash)?;
                job.partitioners.get(keyed.stream_edge)?.key_parser().cloned()
            })
            .collect(),
    };
    let plan = ExecutionPlan::build(&job, options.task_slots)?;
    debug!(fingerprint = %plan.fingerprint, slots = plan.slots, regions = plan.regions, channels = plan.channels.len(), "planned the job");
    let deployable = Deployable { graph, job, plan, options };
    let storage = open_checkpoint_storage(&deployable, &job_id, in_cluster)?;
    let restore = initial_restore(&deployable)?;
    let control = Arc::new(JobControl::new(job_id, storage.as_ref()));
    let (events, receiver) = std::sync::mpsc::channel();
    let (mut deployer, on_end) = deployer(&deployable, events, control.clone())?;
    if deployable.options.checkpoint.is_enabled() {
        // Planned failures wait for a completed checkpoint (the master arms them).
        deployable.options.failures.disarm();
    }
    let first = match deploy_attempt(&deployable, deployer.as_mut(), restore.as_ref(), 0) {
        Ok(first) => first,
        Err(e) => {
            if let Some(hook) = on_end {
                hook(Some(&e));
            }
            return Err(e);
        }
    };
    if let Some(interval) = deployable.options.progress_interval {
        start_progress_reporter(job_name.clone(), control.clone(), interval);
    }
    let master_control = control.clone();
    let master = std::thread::Builder::new()
        .name(format!("{job_name} master"))
        .spawn(move || {
            let result = run_master(deployable, storage, deployer, first, restore, receiver, master_control);
            if let Some(hook) = on_end {
                hook(result.as_ref().err());
            }
            result
        })
        .map_err(JobError::Spawn)?;
    Ok(JobClient { job_name, controller: JobController { control, graph: Arc::new(summary) }, master })
}

/// Runs `graph` to completion.
pub fn execute(graph: StreamGraph, options: JobOptions) -> Result<JobExecutionResult, JobError> {
    submit(graph, options)?.wait()
}

/// Reports how far the job got until it ends: on a terminal, a live line on stderr refreshed
/// every second (at most `interval`); otherwise a log line every `interval`. Records read,
/// their rate, and the last completed checkpoint.
fn start_progress_reporter(job_name: String, control: Arc<JobControl>, interval: Duration) {
    let live = std::io::stderr().is_terminal();
    let every = if live { interval.min(Duration::from_secs(1)) } else { interval };
    let thread_name = format!("{job_name} progress");
    let reporter_job = job_name.clone();
    let spawned = std::thread::Builder::new().name(thread_name).spawn(move || {
        let job_name = reporter_job;
        let started = Instant::now();
        let mut last = (started, 0u64);
        loop {
            let deadline = Instant::now() + every;
            while Instant::now() < deadline {
                if control.finished.load(Ordering::Acquire) {
                    if live {
                        // The line goes; the job's own summary follows.
                        eprint!("\r\x1b[2K");
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(100).min(every));
            }
            let read = control.records_read.load(Ordering::Relaxed);
            let rate = (read - last.1) as f64 / last.0.elapsed().as_secs_f64().max(1e-3);
            last = (Instant::now(), read);
            let checkpoint = last_checkpoint(&control);
            if live {
                eprint!("\r\x1b[2K{}", progress_line(&job_name, started.elapsed(), read, rate, checkpoint));
                let _ = std::io::Write::flush(&mut std::io::stderr());
            } else {
                let (id, age_s) = checkpoint.map_or((None, None), |(id, age)| (Some(id), Some(age.as_secs())));
                info!(
                    job = %job_name, elapsed_s = started.elapsed().as_secs(), records_read = read, records_per_s = rate as u64,
                    last_checkpoint = id, last_checkpoint_age_s = age_s, "progress"
                );
            }
        }
    });
    if let Err(e) = spawned {
        warn!(job = %job_name, error = %e, "cannot start the progress reporter");
    }
}

/// The id of the job's last completed checkpoint and how long ago it completed.
fn last_checkpoint(control: &JobControl) -> Option<(u64, Duration)> {
    let stats = lock(&control.checkpoint_stats);
    let last = [&stats.latest_completed, &stats.latest_savepoint].into_iter().flatten().max_by_key(|c| c.id)?;
    let completed_ms = last.trigger_timestamp_ms + last.duration.as_millis() as i64;
    let age = Duration::from_millis(crate::jobmaster::result::epoch_ms().saturating_sub(completed_ms).max(0) as u64);
    Some((last.id, age))
}

/// The live progress line: elapsed time, records read and their rate, last checkpoint.
fn progress_line(job: &str, elapsed: Duration, read: u64, rate: f64, checkpoint: Option<(u64, Duration)>) -> String {
    let checkpoint = match checkpoint {
        Some((id, age)) => format!("checkpoint {id} {}s ago", age.as_secs()),
        None => "no checkpoint yet".to_string(),
    };
    format!("{job}: {}s, {read} records read, {:.0}/s, {checkpoint}", elapsed.as_secs(), rate)
}

#[cfg(test)]
mod tests {
    use super::progress_line;
    use std::time::Duration;

    #[test]
    fn the_progress_line_shows_records_rate_and_the_last_checkpoint() {
        let line = progress_line(
            "WindowAgg",
            Duration::from_millis(12_400),
            1_500_000,
            120_512.6,
            Some((7, Duration::from_secs(2))),
        );
        assert_eq!(line, "WindowAgg: 12s, 1500000 records read, 120513/s, checkpoint 7 2s ago");
        let line = progress_line("WordCount", Duration::from_secs(1), 10, 10.0, None);
        assert_eq!(line, "WordCount: 1s, 10 records read, 10/s, no checkpoint yet");
    }
}
