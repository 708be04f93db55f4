//! The embedded mini cluster: turns a job graph into subtasks (one thread each), connects
//! them with channels and runs them under a job master (see `master.rs`) that coordinates
//! checkpoints and restarts the job after failures. It follows the same JobGraph →
//! ExecutionGraph → deployment path a standalone cluster does, in one process.

use crate::chain::take_panicked_operator;
use crate::channel::{CancelToken, TaskWaker};
use crate::checkpoint::coordinator::{CheckpointStats, TaskDescriptor};
use crate::checkpoint::restore::{JobRestore, TaskRestore};
use crate::checkpoint::storage::load_snapshot;
use crate::checkpoint::{CheckpointConfig, CheckpointId, RestartStrategy, SnapshotLocation, TaskEvent};
use crate::context::{ExecutionMode, OperatorInfo, TaskContext, TaskEvents, TaskInfo};
use crate::error::{JobError, TaskError, TaskResult, lock};
use crate::failure::FailureInjector;
use crate::graph::{
    ErasedEnumerator, ErasedOutput, ErasedReceiver, ErasedSender, NetworkSettings, NodeKind, SideOutputs,
    SourceFactory, StreamGraph, TypeOps,
};
use crate::job_graph::{GraphDefaults, JobGraph};
use crate::mailbox::{Mail, Mailbox};
use crate::master::{JobControl, open_checkpoint_storage, run_master};
use crate::metrics::{AccumulatorRegistry, AccumulatorValue, TaskReport};
use crate::partitioner::{PartitionerSpec, connected_consumers};
use crate::task::{StreamTask, run_task};
use crate::time::{Clock, ProcessingTimeService, SystemClock};
use brisk_core::job_graph::JobGraphDescription;
use brisk_core::key_group::{assign_to_key_group, operator_index_for_key_group};
use brisk_core::{Configuration, Data, Key};
use brisk_state::StateBackendConfig;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// How a job runs.
#[derive(Clone)]
pub struct JobOptions {
    /// Defaults for graph resolution.
    pub defaults: GraphDefaults,
    /// Streaming or batch.
    pub execution_mode: ExecutionMode,
    /// Longest time a record waits in a partly filled buffer; `None` sends only full buffers
    /// (and flushes whenever a task goes idle).
    pub buffer_timeout: Option<Duration>,
    /// Bytes per network buffer.
    pub buffer_bytes: usize,
    /// Buffers each channel holds before its producer is backpressured.
    pub buffers_per_channel: usize,
    /// The job's configuration, visible to operators.
    pub config: Arc<Configuration>,
    /// The processing-time clock.
    pub clock: Arc<dyn Clock>,
    /// How often a running job logs its progress; `None` never.
    pub progress_interval: Option<Duration>,
    /// Task slots of the mini cluster; `None` sizes it to what the job needs.
    pub task_slots: Option<usize>,
    /// The keyed state backend.
    pub state_backend: StateBackendConfig,
    /// Interval of periodic watermark generation.
    pub auto_watermark_interval: Duration,
    /// Checkpointing.
    pub checkpoint: CheckpointConfig,
    /// What happens after a failure.
    pub restart_strategy: RestartStrategy,
    /// Start from this savepoint or retained checkpoint.
    pub restore_from: Option<SnapshotLocation>,
    /// Start even if the savepoint has state for operators the job does not have.
    pub allow_non_restored_state: bool,
    /// Planned failures (recovery tests).
    pub failures: FailureInjector,
}

impl JobOptions {
    /// Options with Flink-like defaults for a job called `job_name`.
    pub fn new(job_name: impl Into<String>) -> Self {
        JobOptions {
            defaults: GraphDefaults {
                job_name: job_name.into(),
                parallelism: 1,
                max_parallelism: None,
                chaining_enabled: true,
            },
            execution_mode: ExecutionMode::Streaming,
            buffer_timeout: Some(Duration::from_millis(1)),
            buffer_bytes: 32 * 1024,
            buffers_per_channel: 4,
            config: Arc::new(Configuration::new()),
            clock: Arc::new(SystemClock),
            progress_interval: Some(Duration::from_secs(10)),
            task_slots: None,
            state_backend: StateBackendConfig::default(),
            auto_watermark_interval: crate::watermark::DEFAULT_AUTO_WATERMARK_INTERVAL,
            checkpoint: CheckpointConfig::default(),
            restart_strategy: RestartStrategy::None,
            restore_from: None,
            allow_non_restored_state: false,
            failures: FailureInjector::default(),
        }
    }
}

/// Per-operator totals over all subtasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorMetricsSummary {
    /// Stable operator id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Number of subtasks.
    pub parallelism: usize,
    /// Records received.
    pub records_in: u64,
    /// Records emitted.
    pub records_out: u64,
    /// User counters, summed.
    pub counters: BTreeMap<String, u64>,
}

/// The outcome of a finished job (Flink's `JobExecutionResult`).
#[derive(Clone, Debug)]
pub struct JobExecutionResult {
    /// The job's name.
    pub job_name: String,
    /// Wall time from deployment to the last task's end.
    pub net_runtime: Duration,
    /// Operators in graph order.
    pub operators: Vec<OperatorMetricsSummary>,
    /// Accumulators merged over all subtasks.
    pub accumulators: BTreeMap<String, AccumulatorValue>,
    /// The executed job graph.
    pub job_graph: JobGraphDescription,
    /// Every checkpoint and savepoint the job took, in order.
    pub checkpoints: Vec<CheckpointStats>,
    /// How often the job restarted after failures.
    pub restarts: usize,
    /// Per restart: from the failure to every task of the new attempt running with its
    /// restored state.
    pub recoveries: Vec<Duration>,
    /// Per restart: the checkpoint (or savepoint) it restored, `None` when it started over
    /// because no checkpoint had completed yet.
    pub restored_checkpoints: Vec<Option<CheckpointId>>,
    /// The savepoint written by stop-with-savepoint, if the job was stopped with one.
    pub savepoint: Option<SnapshotLocation>,
}

impl JobExecutionResult {
    /// The job's runtime (Flink's `getNetRuntime`).
    pub fn net_runtime(&self) -> Duration {
        self.net_runtime
    }

    /// An accumulator's merged value.
    pub fn accumulator(&self, name: &str) -> Option<&AccumulatorValue> {
        self.accumulators.get(name)
    }

    /// The metrics of the first operator called `name`.
    pub fn operator(&self, name: &str) -> Option<&OperatorMetricsSummary> {
        self.operators.iter().find(|o| o.name == name)
    }
}

/// One node's operator in a subtask's chain, with where its outputs go.
struct ChainedOperator {
    kind: NodeKind,
    info: OperatorInfo,
    output_type: Arc<dyn TypeOps>,
    outputs: Vec<OutputGroup>,
}

/// The consumers of one of an operator's outputs (main or a side output).
struct OutputGroup {
    side_output: Option<String>,
    type_ops: Arc<dyn TypeOps>,
    targets: Vec<OutputTarget>,
}

enum OutputTarget {
    Chained(Box<ChainedOperator>),
    Network { partitioner: PartitionerSpec, senders: Vec<ErasedSender>, consumer_max_parallelism: usize },
}

/// Everything a subtask's thread needs to build and run its task.
struct SubtaskDeployment {
    info: TaskInfo,
    head: ChainedOperator,
    inputs: [Vec<ErasedReceiver>; 2],
    input_type: Option<Arc<dyn TypeOps>>,
    enumerator: Option<ErasedEnumerator>,
    waker: Arc<TaskWaker>,
    mailbox: Mailbox,
    restore: Option<Arc<TaskRestore>>,
}

/// How one subtask ended.
pub(crate) struct TaskOutcome {
    pub task_name: String,
    pub result: TaskResult<TaskReport>,
}

/// A source node's operator id, factory and split enumerator.
pub(crate) type SourceNode = (String, Box<dyn SourceFactory>, ErasedEnumerator);

/// One attempt at running the job: its tasks, and what the master needs to reach them.
pub(crate) struct Attempt {
    /// Set when the whole attempt is cancelled.
    pub cancel: CancelToken,
    pub wakers: Vec<Arc<TaskWaker>>,
    /// Every subtask's mailbox, by vertex and subtask index.
    pub mailboxes: Vec<Vec<Mailbox>>,
    /// Each task's thread until the master collected its outcome.
    pub threads: Vec<Option<JoinHandle<TaskOutcome>>>,
    /// Source nodes: operator id, factory and enumerator.
    pub sources: Vec<SourceNode>,
    /// Task index of each source subtask.
    pub source_tasks: Vec<usize>,
    /// What the coordinator records per task.
    pub tasks: Vec<TaskDescriptor>,
    /// The pipelined region of each task: tasks connected by channels share one.
    pub region_of: Vec<usize>,
    /// What stops the tasks of each region.
    pub region_cancel: Vec<CancelToken>,
}

impl Attempt {
    /// Cancels every task of the attempt.
    pub fn cancel(&self) {
        self.cancel.cancel();
        self.region_cancel.iter().for_each(CancelToken::cancel);
        self.wakers.iter().for_each(|w| w.wake());
    }

    /// Cancels the tasks of `region`.
    pub fn cancel_region(&self, region: usize) {
        if let Some(token) = self.region_cancel.get(region) {
            token.cancel();
        }
        self.tasks_of(region).for_each(|t| self.wakers[t].wake());
    }

    /// The tasks of `region`.
    pub fn tasks_of(&self, region: usize) -> impl Iterator<Item = usize> + '_ {
        self.region_of.iter().enumerate().filter(move |(_, r)| **r == region).map(|(t, _)| t)
    }

    /// Number of regions.
    pub fn regions(&self) -> usize {
        self.region_cancel.len()
    }

    /// Sends `mail` to every task.
    pub fn broadcast(&self, mail: impl Fn() -> Mail) {
        self.mailboxes.iter().flatten().for_each(|m| m.send(mail()));
    }

    /// The mailbox of task `index` (deployment order).
    pub fn mailbox(&self, index: usize) -> Option<&Mailbox> {
        self.mailboxes.iter().flatten().nth(index)
    }
}

/// The resolved job the master redeploys after failures.
pub(crate) struct Deployable {
    pub graph: StreamGraph,
    pub job: JobGraph,
    pub options: JobOptions,
}

/// A running job: wait for it, cancel it, or take savepoints (Flink's `JobClient`).
pub struct JobClient {
    job_name: String,
    /// Cancelling and savepoints, also reachable through `Deref`.
    controller: JobController,
    master: JoinHandle<Result<JobExecutionResult, JobError>>,
    graph: StreamGraphSummary,
}

struct StreamGraphSummary {
    /// Parallelism and max parallelism of each vertex.
    vertices: Vec<(usize, usize)>,
    description: JobGraphDescription,
}

/// A handle on a running job that can be shared with other threads (e.g. a signal handler).
#[derive(Clone)]
pub struct JobController {
    control: Arc<JobControl>,
}

/// `cancel`, `trigger_savepoint` and `stop_with_savepoint` on the client itself.
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
}

impl JobClient {
    /// The job's name.
    pub fn job_name(&self) -> &str {
        &self.job_name
    }

    /// The job graph being executed.
    pub fn job_graph(&self) -> &JobGraphDescription {
        &self.graph.description
    }

    /// A handle for other threads.
    pub fn controller(&self) -> JobController {
        self.controller.clone()
    }

    /// The checkpoints taken so far.
    pub fn checkpoint_history(&self) -> Vec<CheckpointStats> {
        lock(&self.controller.control.history).clone()
    }

    /// Looks up the value of keyed state `state` for `key` in the running job (Flink's
    /// queryable state): asked of the subtask owning the key in every keyed vertex.
    pub fn query_state<K: Key, V: Data>(&self, state: &str, key: &K) -> Result<Option<V>, JobError> {
        let encoded = brisk_state::codec::encode(key)
            .map_err(|e| JobError::InvalidJob(format!("cannot encode key {key:?}: {e}")))?;
        let mailboxes = lock(&self.controller.control.mailboxes).clone();
        for (vertex, (parallelism, max_parallelism)) in self.graph.vertices.iter().enumerate() {
            let key_group = assign_to_key_group(key, *max_parallelism);
            let subtask = operator_index_for_key_group(*max_parallelism, *parallelism, key_group);
            let Some(mailbox) = mailboxes.get(vertex).and_then(|m| m.get(subtask)) else { continue };
            let (reply, answer) = std::sync::mpsc::channel();
            mailbox.send(Mail::QueryState { state: state.to_string(), key_group, key: encoded.clone(), reply });
            let query_failed = |reason: String| {
                JobError::InvalidJob(format!("query of state '{state}' for key {key:?} failed: {reason}"))
            };
            match answer.recv_timeout(Duration::from_secs(30)) {
                Ok(Ok(Some(bytes))) => {
                    return brisk_state::codec::decode::<V>(&bytes)
                        .map(Some)
                        .map_err(|e| query_failed(format!("value does not decode: {e}")));
                }
                Ok(Ok(None)) => {}
                Ok(Err(reason)) => return Err(query_failed(reason)),
                // The task has ended (or is busy past the timeout): it cannot answer.
                Err(_) => {}
            }
        }
        Ok(None)
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
    let job = JobGraph::build(&graph, &options.defaults)?;
    let job_name = options.defaults.job_name.clone();
    let subtasks: usize = job.vertices.iter().map(|v| v.parallelism).sum();
    info!(job = %job_name, tasks = job.vertices.len(), subtasks, "submitting job");
    debug!("execution plan:\n{}", job.description.to_plan_string());
    if options.checkpoint.is_enabled() && options.execution_mode == ExecutionMode::Batch {
        return Err(JobError::InvalidJob(
            "checkpointing is not supported in BATCH execution mode (bounded jobs recompute on failure); use STREAMING"
                .into(),
        ));
    }
    let summary = StreamGraphSummary {
        vertices: job.vertices.iter().map(|v| (v.parallelism, v.max_parallelism)).collect(),
        description: job.description.clone(),
    };
    let deployable = Deployable { graph, job, options };
    let storage = open_checkpoint_storage(&deployable)?;
    let restore = initial_restore(&deployable)?;
    let control = Arc::new(JobControl::new());
    let (events, receiver) = std::sync::mpsc::channel();
    let first = deploy(&deployable, restore.as_ref(), 0, &events, &control)?;
    if let Some(interval) = deployable.options.progress_interval {
        start_progress_reporter(job_name.clone(), control.clone(), interval);
    }
    let master_control = control.clone();
    let master = std::thread::Builder::new()
        .name(format!("{job_name} master"))
        .spawn(move || run_master(deployable, storage, first, restore, events, receiver, master_control))
        .map_err(JobError::Spawn)?;
    Ok(JobClient { job_name, controller: JobController { control }, master, graph: summary })
}

/// Runs `graph` to completion.
pub fn execute(graph: StreamGraph, options: JobOptions) -> Result<JobExecutionResult, JobError> {
    submit(graph, options)?.wait()
}

/// The tasks of one deployment, wired together, before their threads start.
struct Plan {
    wakers: Vec<Arc<TaskWaker>>,
    /// By vertex and subtask.
    mailboxes: Vec<Vec<Mailbox>>,
    /// In task order; `None` for tasks outside the region being deployed.
    deployments: Vec<Option<SubtaskDeployment>>,
    tasks: Vec<TaskDescriptor>,
    source_tasks: Vec<usize>,
    region_of: Vec<usize>,
}

/// Each source node's split enumerator, restored from `restore`.
fn create_enumerators(deployable: &Deployable, restore: Option<&JobRestore>) -> Result<Vec<SourceNode>, JobError> {
    let Deployable { graph, job, options } = deployable;
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
                let readers = r.raw_states(&operator_id);
                factory.restore_enumerator(&enumerator, r.id(), state, &readers).map_err(failed)?;
            }
            sources.push((operator_id, factory.clone_box(), enumerator));
        }
    }
    Ok(sources)
}

/// Wires channels, mailboxes and operator chains for every task, and the restored state of
/// the tasks of `only` (a region), or of all.
fn plan(
    deployable: &Deployable,
    restore: Option<&JobRestore>,
    attempt: usize,
    sources: &[SourceNode],
    only: Option<usize>,
) -> Result<Plan, JobError> {
    let Deployable { graph, job, options } = deployable;
    // One waker per subtask, so channels can wake their consumer.
    let mut subtask_base = Vec::with_capacity(job.vertices.len());
    let mut wakers = Vec::new();
    for v in &job.vertices {
        subtask_base.push(wakers.len());
        for _ in 0..v.parallelism {
            wakers.push(TaskWaker::new());
        }
    }
    let task_of = |vertex: usize, subtask: usize| subtask_base[vertex] + subtask;

    // Channels of every exchange: senders by (edge, producer subtask), receivers by
    // (consumer vertex, subtask, input). Tasks a channel connects share a region.
    let mut senders: HashMap<(usize, usize), Vec<ErasedSender>> = HashMap::new();
    let mut receivers: HashMap<(usize, usize, usize), Vec<ErasedReceiver>> = HashMap::new();
    let mut regions = RegionBuilder::new(wakers.len());
    for (e, edge) in graph.edges.iter().enumerate() {
        if job.chained[e] {
            continue;
        }
        let (pv, cv) = (job.vertex_of[edge.source], job.vertex_of[edge.target]);
        let (pp, cp) = (job.vertices[pv].parallelism, job.vertices[cv].parallelism);
        let kind = job.partitioners[e].kind;
        for producer in 0..pp {
            for consumer in connected_consumers(kind, producer, pp, cp) {
                let (tx, rx) =
                    edge.type_ops.channel(options.buffers_per_channel, wakers[task_of(cv, consumer)].clone());
                senders.entry((e, producer)).or_default().push(tx);
                receivers.entry((cv, consumer, edge.input)).or_default().push(rx);
                regions.connect(task_of(pv, producer), task_of(cv, consumer));
            }
        }
    }
    let region_of = regions.finish();

    let slots = assign_slots(job, options.task_slots)?;
    let mailboxes: Vec<Vec<Mailbox>> = job
        .vertices
        .iter()
        .enumerate()
        .map(|(vi, v)| (0..v.parallelism).map(|i| Mailbox::new(wakers[task_of(vi, i)].clone())).collect())
        .collect();
    let mut deployments = Vec::new();
    let mut tasks = Vec::new();
    let mut source_tasks = Vec::new();
    for (vi, v) in job.vertices.iter().enumerate() {
        let chain_ids: Vec<String> = v.nodes.iter().map(|n| job.operator_ids[*n].clone()).collect();
        let enumerator = sources.iter().find(|(id, _, _)| *id == job.operator_ids[v.head]).map(|(_, _, e)| e.clone());
        for (subtask, mailbox) in mailboxes[vi].iter().enumerate() {
            let task = task_of(vi, subtask);
            if enumerator.is_some() {
                source_tasks.push(task);
            }
            tasks.push(TaskDescriptor { subtask, parallelism: v.parallelism, operator_ids: chain_ids.clone() });
            let head = chain_for(graph, job, v.head, subtask, &mut senders);
            if only.is_some_and(|r| r != region_of[task]) {
                deployments.push(None);
                continue;
            }
            debug!(task = %v.name, subtask, slot = slots[vi] + subtask, "assigned to slot");
            let task_restore = match restore {
                Some(r) => Some(Arc::new(
                    r.for_subtask(&chain_ids, subtask, v.parallelism, v.max_parallelism)
                        .map_err(JobError::InvalidJob)?,
                )),
                None => None,
            };
            deployments.push(Some(SubtaskDeployment {
                info: TaskInfo {
                    job_name: options.defaults.job_name.clone(),
                    task_name: v.name.clone(),
                    subtask_index: subtask,
                    parallelism: v.parallelism,
                    max_parallelism: v.max_parallelism,
                    attempt_number: attempt,
                },
                head,
                inputs: [
                    receivers.remove(&(vi, subtask, 1)).unwrap_or_default(),
                    receivers.remove(&(vi, subtask, 2)).unwrap_or_default(),
                ],
                input_type: graph.in_edges(v.head).next().map(|(_, e)| e.type_ops.clone()),
                enumerator: enumerator.clone(),
                waker: wakers[task].clone(),
                mailbox: mailbox.clone(),
                restore: task_restore,
            }));
        }
    }
    Ok(Plan { wakers, mailboxes, deployments, tasks, source_tasks, region_of })
}

/// Groups tasks into pipelined regions (union-find over the channels between them).
struct RegionBuilder {
    parent: Vec<usize>,
}

impl RegionBuilder {
    fn new(tasks: usize) -> Self {
        RegionBuilder { parent: (0..tasks).collect() }
    }

    fn root(&mut self, mut task: usize) -> usize {
        while self.parent[task] != task {
            self.parent[task] = self.parent[self.parent[task]];
            task = self.parent[task];
        }
        task
    }

    fn connect(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.root(a), self.root(b));
        self.parent[ra.max(rb)] = ra.min(rb);
    }

    /// The region of each task, numbered from 0 in task order.
    fn finish(mut self) -> Vec<usize> {
        let mut numbers: HashMap<usize, usize> = HashMap::new();
        (0..self.parent.len())
            .map(|task| {
                let root = self.root(task);
                let next = numbers.len();
                *numbers.entry(root).or_insert(next)
            })
            .collect()
    }
}

/// What the subtasks of one region share while they run.
struct RegionRuntime<'a> {
    cancel: CancelToken,
    first_failure: Arc<AtomicBool>,
    wakers: &'a [Arc<TaskWaker>],
    events: &'a Sender<TaskEvent>,
    control: &'a Arc<JobControl>,
}

/// Starts the thread of task `index`.
fn spawn(
    options: &JobOptions,
    index: usize,
    deployment: SubtaskDeployment,
    region: &RegionRuntime<'_>,
) -> Result<JoinHandle<TaskOutcome>, JobError> {
    let name = deployment.info.name_with_subtask();
    debug!(task = %name, attempt = deployment.info.attempt_number, "deploying subtask");
    let runtime = SubtaskRuntime {
        index,
        options: options.clone(),
        cancel: region.cancel.clone(),
        wakers: region.wakers.to_vec(),
        events: region.events.clone(),
        records_read: region.control.records_read.clone(),
        first_failure: region.first_failure.clone(),
    };
    std::thread::Builder::new().name(name).spawn(move || run_subtask(deployment, runtime)).map_err(JobError::Spawn)
}

/// Builds the tasks of one attempt (restoring `restore`) and starts their threads.
pub(crate) fn deploy(
    deployable: &Deployable,
    restore: Option<&JobRestore>,
    attempt: usize,
    events: &Sender<TaskEvent>,
    control: &Arc<JobControl>,
) -> Result<Attempt, JobError> {
    let sources = create_enumerators(deployable, restore)?;
    let plan = plan(deployable, restore, attempt, &sources, None)?;
    let regions = plan.region_of.iter().max().map_or(0, |r| r + 1);
    let region_cancel: Vec<CancelToken> = (0..regions).map(|_| CancelToken::new()).collect();
    let first_failure: Vec<Arc<AtomicBool>> = (0..regions).map(|_| Arc::new(AtomicBool::new(false))).collect();
    let mut attempt = Attempt {
        cancel: CancelToken::new(),
        wakers: plan.wakers,
        mailboxes: plan.mailboxes,
        threads: Vec::new(),
        sources,
        source_tasks: plan.source_tasks,
        tasks: plan.tasks,
        region_of: plan.region_of,
        region_cancel,
    };
    for (index, deployment) in plan.deployments.into_iter().enumerate() {
        let Some(deployment) = deployment else { continue };
        let region = attempt.region_of[index];
        let runtime = RegionRuntime {
            cancel: attempt.region_cancel[region].clone(),
            first_failure: first_failure[region].clone(),
            wakers: &attempt.wakers,
            events,
            control,
        };
        match spawn(&deployable.options, index, deployment, &runtime) {
            Ok(handle) => attempt.threads.push(Some(handle)),
            Err(e) => {
                attempt.cancel();
                return Err(e);
            }
        }
    }
    *lock(&control.mailboxes) = attempt.mailboxes.clone();
    Ok(attempt)
}

/// Restarts the tasks of `region` alone (region failover), restored from `restore`; their
/// readers get back the splits they held then and those they got since.
pub(crate) fn redeploy_region(
    deployable: &Deployable,
    attempt: &mut Attempt,
    region: usize,
    restore: Option<&JobRestore>,
    number: usize,
    events: &Sender<TaskEvent>,
    control: &Arc<JobControl>,
) -> Result<(), JobError> {
    let plan = plan(deployable, restore, number, &attempt.sources, Some(region))?;
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
        let state = restore.and_then(|r| r.raw_state_of(operator_id, descriptor.subtask, descriptor.parallelism));
        factory.reset_reader(enumerator, descriptor.subtask, from, state).map_err(|e| JobError::TaskFailed {
            job: deployable.options.defaults.job_name.clone(),
            task: operator_id.clone(),
            cause: TaskError::User(e),
        })?;
    }
    attempt.region_cancel[region] = CancelToken::new();
    let runtime_cancel = attempt.region_cancel[region].clone();
    let first_failure = Arc::new(AtomicBool::new(false));
    let mut task = 0;
    for (vi, mailboxes) in plan.mailboxes.iter().enumerate() {
        for (subtask, mailbox) in mailboxes.iter().enumerate() {
            if plan.region_of[task] == region {
                attempt.wakers[task] = plan.wakers[task].clone();
                attempt.mailboxes[vi][subtask] = mailbox.clone();
            }
            task += 1;
        }
    }
    for (index, deployment) in plan.deployments.into_iter().enumerate() {
        let Some(deployment) = deployment else { continue };
        let runtime = RegionRuntime {
            cancel: runtime_cancel.clone(),
            first_failure: first_failure.clone(),
            wakers: &attempt.wakers,
            events,
            control,
        };
        match spawn(&deployable.options, index, deployment, &runtime) {
            Ok(handle) => attempt.threads[index] = Some(handle),
            Err(e) => {
                attempt.cancel();
                return Err(e);
            }
        }
    }
    *lock(&control.mailboxes) = attempt.mailboxes.clone();
    Ok(())
}

/// Places subtasks into the mini cluster's slots as Flink's slot sharing does: subtask `i` of
/// every vertex in a slot sharing group shares slot `i` of that group, so a group needs as
/// many slots as its largest parallelism. Returns the first slot of each vertex.
fn assign_slots(job: &JobGraph, available: Option<usize>) -> Result<Vec<usize>, JobError> {
    let mut groups: Vec<(&str, usize)> = Vec::new();
    for v in &job.vertices {
        match groups.iter_mut().find(|(g, _)| *g == v.slot_sharing_group) {
            Some((_, size)) => *size = (*size).max(v.parallelism),
            None => groups.push((&v.slot_sharing_group, v.parallelism)),
        }
    }
    let needed: usize = groups.iter().map(|(_, size)| size).sum();
    if let Some(available) = available
        && needed > available
    {
        return Err(JobError::InvalidJob(format!(
            "the job needs {needed} task slots ({}), but the cluster has {available}",
            groups.iter().map(|(g, n)| format!("{n} for group '{g}'")).collect::<Vec<_>>().join(", ")
        )));
    }
    let mut first = Vec::with_capacity(job.vertices.len());
    for v in &job.vertices {
        let mut offset = 0;
        for (g, size) in &groups {
            if *g == v.slot_sharing_group {
                break;
            }
            offset += size;
        }
        first.push(offset);
    }
    Ok(first)
}

fn chain_for(
    graph: &StreamGraph,
    job: &JobGraph,
    node: usize,
    subtask: usize,
    senders: &mut HashMap<(usize, usize), Vec<ErasedSender>>,
) -> ChainedOperator {
    let n = &graph.nodes[node];
    let mut outputs: Vec<OutputGroup> = Vec::new();
    for (e, edge) in graph.out_edges(node) {
        let target = if job.chained[e] {
            OutputTarget::Chained(Box::new(chain_for(graph, job, edge.target, subtask, senders)))
        } else {
            let consumer_vertex = &job.vertices[job.vertex_of[edge.target]];
            OutputTarget::Network {
                partitioner: job.partitioners[e].clone(),
                senders: senders.remove(&(e, subtask)).unwrap_or_default(),
                consumer_max_parallelism: consumer_vertex.max_parallelism,
            }
        };
        match outputs.iter_mut().find(|g| g.side_output == edge.side_output) {
            Some(group) => group.targets.push(target),
            None => outputs.push(OutputGroup {
                side_output: edge.side_output.clone(),
                type_ops: edge.type_ops.clone(),
                targets: vec![target],
            }),
        }
    }
    ChainedOperator {
        kind: n.kind.clone_kind(),
        info: OperatorInfo {
            node_id: node,
            operator_id: job.operator_ids[node].clone(),
            name: n.name.clone(),
            uid: n.uid.clone(),
        },
        output_type: n.output_type.clone(),
        outputs,
    }
}

/// Builds the outputs of an operator: its main output and its side outputs.
fn build_outputs(
    op_outputs: Vec<OutputGroup>,
    output_type: &Arc<dyn TypeOps>,
    settings: &NetworkSettings,
) -> TaskResult<(ErasedOutput, SideOutputs)> {
    let mut main = None;
    let mut sides = Vec::new();
    for group in op_outputs {
        let mut targets = Vec::with_capacity(group.targets.len());
        for target in group.targets {
            targets.push(match target {
                OutputTarget::Chained(op) => build_chained(*op, settings)?,
                OutputTarget::Network { partitioner, senders, consumer_max_parallelism } => {
                    let settings = NetworkSettings { consumer_max_parallelism, ..settings.clone() };
                    group.type_ops.network_output(&partitioner, senders, &settings)?
                }
            });
        }
        let combined = group.type_ops.fan_out(targets)?;
        match group.side_output {
            None => main = Some(combined),
            Some(tag) => sides.push((tag, group.type_ops.side_output(combined)?)),
        }
    }
    let main = match main {
        Some(m) => m,
        None => output_type.fan_out(Vec::new())?,
    };
    Ok((main, sides))
}

fn build_chained(op: ChainedOperator, settings: &NetworkSettings) -> TaskResult<ErasedOutput> {
    let (main, sides) = build_outputs(op.outputs, &op.output_type, settings)?;
    match op.kind {
        NodeKind::OneInput(factory) => factory.create(main, sides, op.info),
        _ => Err(TaskError::msg("internal error: only one-input operators can be chained")),
    }
}

fn build_task(d: SubtaskDeployment, settings: &NetworkSettings) -> TaskResult<Box<dyn StreamTask>> {
    let head = d.head;
    let (main, sides) = build_outputs(head.outputs, &head.output_type, settings)?;
    let [inputs1, inputs2] = d.inputs;
    match head.kind {
        NodeKind::Source(factory) => {
            let enumerator = d.enumerator.ok_or_else(|| TaskError::msg("internal error: source without enumerator"))?;
            factory.create_task(enumerator, main, sides, head.info)
        }
        NodeKind::OneInput(factory) => {
            let link = factory.create(main, sides, head.info)?;
            let input_type = d.input_type.ok_or_else(|| TaskError::msg("internal error: operator without input"))?;
            input_type.one_input_task(inputs1, link)
        }
        NodeKind::TwoInput(factory) => factory.create_task(inputs1, inputs2, main, sides, head.info),
    }
}

/// Logs how many records the sources have read, every `interval`, until the job ends.
fn start_progress_reporter(job_name: String, control: Arc<JobControl>, interval: Duration) {
    let thread_name = format!("{job_name} progress");
    let reporter_job = job_name.clone();
    let spawned = std::thread::Builder::new().name(thread_name).spawn(move || {
        let job_name = reporter_job;
        let started = Instant::now();
        let mut last = (started, 0u64);
        loop {
            let deadline = Instant::now() + interval;
            while Instant::now() < deadline {
                if control.finished.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100).min(interval));
            }
            let read = control.records_read.load(Ordering::Relaxed);
            let rate = (read - last.1) as f64 / last.0.elapsed().as_secs_f64().max(1e-3);
            info!(job = %job_name, elapsed_s = started.elapsed().as_secs(), records_read = read, records_per_s = rate as u64, "progress");
            last = (Instant::now(), read);
        }
    });
    if let Err(e) = spawned {
        warn!(job = %job_name, error = %e, "cannot start the progress reporter");
    }
}

/// What a subtask thread shares with its attempt and the job master.
struct SubtaskRuntime {
    index: usize,
    options: JobOptions,
    cancel: CancelToken,
    wakers: Vec<Arc<TaskWaker>>,
    events: Sender<TaskEvent>,
    records_read: Arc<AtomicU64>,
    first_failure: Arc<AtomicBool>,
}

fn run_subtask(d: SubtaskDeployment, rt: SubtaskRuntime) -> TaskOutcome {
    let task_name = d.info.name_with_subtask();
    let options = &rt.options;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let settings = NetworkSettings {
            subtask_index: d.info.subtask_index,
            consumer_max_parallelism: d.info.max_parallelism,
            buffer_bytes: options.buffer_bytes,
            cancel: rt.cancel.clone(),
        };
        let ctx = TaskContext {
            info: d.info.clone(),
            execution_mode: options.execution_mode,
            config: options.config.clone(),
            processing_time: ProcessingTimeService::new(options.clock.clone()),
            accumulators: AccumulatorRegistry::default(),
            waker: d.waker.clone(),
            cancel: rt.cancel.clone(),
            records_read: rt.records_read.clone(),
            state_backend: options.state_backend.clone(),
            clock: options.clock.clone(),
            mailbox: d.mailbox.clone(),
            auto_watermark_interval: options.auto_watermark_interval,
            checkpoint_config: options.checkpoint.is_enabled().then(|| options.checkpoint.clone()),
            events: TaskEvents::new(rt.index, rt.events.clone()),
            restore: d.restore.clone(),
            failures: options.failures.clone(),
        };
        let mut task = build_task(d, &settings)?;
        run_task(task.as_mut(), &ctx, options.buffer_timeout)
    }));
    let result = result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic payload".into());
        Err(TaskError::Panic { operator: take_panicked_operator().unwrap_or_else(|| task_name.clone()), message })
    });
    if let Err(e) = &result {
        if !e.is_consequence() && !rt.first_failure.swap(true, Ordering::AcqRel) {
            warn!(task = %task_name, error = %e, "task failed; cancelling the attempt");
        }
        rt.cancel.cancel();
        rt.wakers.iter().for_each(|w| w.wake());
    } else {
        debug!(task = %task_name, "task finished");
    }
    let _ = rt.events.send(TaskEvent::Ended(rt.index));
    TaskOutcome { task_name, result }
}
