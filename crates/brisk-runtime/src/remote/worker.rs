//! A job's worker process: the artifact started by a TaskManager in worker mode. It rebuilds
//! the job graph, registers with the job's coordinator (which refuses a different graph),
//! and runs the subtasks the coordinator deploys to it: channels between its own tasks are
//! in-process, channels to other workers go over TCP, readers ask the coordinator's
//! enumerators for splits. It ends when the coordinator says the job ended or goes away.

use super::protocol::{
    DeployTasks, JobProtocol, JobRequest, JobResponse, METRICS_INTERVAL, RemoteMail, RemoteTaskEvent, TaskMetricsReport,
};
use crate::checkpoint::SnapshotLocation;
use crate::checkpoint::restore::JobRestore;
use crate::checkpoint::storage::CompletedCheckpoint;
use crate::checkpoint::{FINAL_CHECKPOINT, TaskEvent};
use crate::error::{JobError, lock};
use crate::graph::execution_plan::ExecutionPlan;
use crate::graph::stream_graph::{ErasedEnumerator, NodeKind, TypeOps};
use crate::jobmaster::job::Deployable;
use crate::jobmaster::queryable::StateLookup;
use crate::metrics::task_io::TaskIoMetrics;
use crate::network::channel::{CancelToken, TaskWaker};
use crate::network::tcp::{ConnectionManager, NetworkError};
use crate::source::{EncodedNextSplit, RemoteEnumerator, SplitRequests};
use crate::taskexecutor::deployment::{SubtaskRuntime, TaskOutcome, run_subtask};
use crate::taskexecutor::mailbox::Mailbox;
use crate::taskexecutor::wiring::{ChannelEnds, Placement, WiringRequest, network_channel_id, wire};
use brisk_core::BoxError;
use brisk_rpc::{Role, RpcConnection};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long a call to the coordinator may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A running task of this worker, as the coordinator's messages reach it.
struct LocalTask {
    mailbox: Mailbox,
    waker: Arc<TaskWaker>,
    cancel: CancelToken,
    generation: u64,
    metrics: Arc<TaskIoMetrics>,
}

/// What the connection's handler shares with the worker's main thread.
struct WorkerShared {
    tasks: Mutex<HashMap<usize, LocalTask>>,
    /// Outcomes of ended tasks not forwarded yet, with their wiring's generation.
    outcomes: Mutex<HashMap<usize, (u64, TaskOutcome)>>,
    ended: Condvar,
    /// Set when the coordinator says the job ended.
    shutdown: AtomicBool,
}

/// Runs the tasks the coordinator at `coordinator` deploys to worker `index` of the job
/// `deployable`; returns when the job ended.
pub(crate) fn run_worker(deployable: Deployable, coordinator: &str, index: usize) -> Result<(), JobError> {
    let host = std::env::var("BRISK_WORKER_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let network = ConnectionManager::bind(format!("{host}:0")).map_err(|e| JobError::Exchange(e.to_string()))?;
    let shared = Arc::new(WorkerShared {
        tasks: Mutex::new(HashMap::new()),
        outcomes: Mutex::new(HashMap::new()),
        ended: Condvar::new(),
        shutdown: AtomicBool::new(false),
    });
    // The handler deploys on the connection's reader thread: it must never wait for the main
    // thread, which may itself be waiting for an answer that thread has to read.
    let worker: Arc<Mutex<Option<Worker>>> = Arc::new(Mutex::new(None));
    let deploying = worker.clone();
    let failures = deployable.options.failures.clone();
    if deployable.options.checkpoint.is_enabled() {
        // As in the mini cluster: a planned failure waits for a completed checkpoint.
        failures.disarm();
    }
    let handling = shared.clone();
    let handler = move |_: &RpcConnection<JobProtocol>, request: JobRequest| match request {
        JobRequest::Mail { task, mail } => {
            if let RemoteMail::Complete(id) = &mail
                && *id != FINAL_CHECKPOINT
            {
                failures.arm();
            }
            if let Some(t) = lock(&handling.tasks).get(&task) {
                t.mailbox.send(mail.into_mail());
            }
            JobResponse::Ack
        }
        JobRequest::QueryState { task, query } => {
            let mailbox = lock(&handling.tasks).get(&task).map(|t| t.mailbox.clone());
            JobResponse::State(mailbox.map_or(Ok(None), |m| m.lookup(query)))
        }
        JobRequest::Cancel { tasks } => {
            let running = lock(&handling.tasks);
            for t in tasks.iter().filter_map(|t| running.get(t)) {
                t.cancel.cancel();
                t.waker.wake();
            }
            JobResponse::Ack
        }
        JobRequest::Deploy(deploy) => match lock(&deploying).as_mut() {
            Some(worker) => match worker.deploy(deploy) {
                Ok(()) => JobResponse::Ack,
                Err(e) => JobResponse::Error(format!("worker {index}: {e}")),
            },
            None => JobResponse::Error(format!("worker {index} is not ready")),
        },
        JobRequest::Shutdown => {
            handling.shutdown.store(true, Ordering::Release);
            JobResponse::Ack
        }
        other => JobResponse::Error(format!("a worker does not serve {other:?}")),
    };
    let connection = RpcConnection::<JobProtocol>::connect(coordinator, Role::Worker, handler, CALL_TIMEOUT)
        .map_err(|e| JobError::Worker(format!("cannot reach the job's coordinator: {e}")))?;
    let fingerprint = deployable.plan.fingerprint.clone();
    let data_address = network.local_addr().to_string();
    info!(worker = index, coordinator, data = %data_address, "worker registering with the job's coordinator");
    let (events, receiver) = mpsc::channel();
    let records_read = Arc::new(AtomicU64::new(0));
    let forwarder = {
        let (shared, connection) = (shared.clone(), connection.clone());
        std::thread::Builder::new()
            .name(format!("worker {index} events"))
            .spawn(move || forward_events(receiver, &shared, &connection))
            .map_err(JobError::Spawn)?
    };
    *lock(&worker) = Some(Worker {
        deployable,
        index,
        network,
        events,
        shared: shared.clone(),
        splits: Arc::new(CoordinatorSplits { connection: connection.clone() }),
        restores: HashMap::new(),
        threads: Vec::new(),
        records_read: records_read.clone(),
    });
    // Only now: the coordinator deploys as soon as it has seen the registration.
    let registration = JobRequest::RegisterWorker { worker: index, fingerprint, data_address };
    connection.call(registration, CALL_TIMEOUT).map_err(|e| JobError::Worker(format!("registration refused: {e}")))?;

    let mut reported = Instant::now();
    while !shared.shutdown.load(Ordering::Acquire) {
        if connection.is_closed() {
            warn!(worker = index, "the job's coordinator went away; cancelling this worker's tasks");
            break;
        }
        if reported.elapsed() >= METRICS_INTERVAL {
            reported = Instant::now();
            let tasks = lock(&shared.tasks)
                .iter()
                .map(|(task, t)| TaskMetricsReport { task: *task, generation: t.generation, values: t.metrics.read() })
                .collect();
            let records_read = records_read.load(Ordering::Relaxed);
            let _ = connection.post(JobRequest::Metrics { worker: index, records_read, tasks });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for t in lock(&shared.tasks).values() {
        t.cancel.cancel();
        t.waker.wake();
    }
    let threads = lock(&worker).as_mut().map(|w| std::mem::take(&mut w.threads)).unwrap_or_default();
    threads.into_iter().for_each(|t| drop(t.join()));
    // Dropping the worker drops the last senders of the task events: the forwarder ends.
    drop(lock(&worker).take());
    let _ = forwarder.join();
    connection.close();
    Ok(())
}

/// The worker's tasks and what deploys them, used by the connection's handler.
struct Worker {
    deployable: Deployable,
    index: usize,
    network: ConnectionManager,
    events: Sender<TaskEvent>,
    shared: Arc<WorkerShared>,
    splits: Arc<CoordinatorSplits>,
    /// Checkpoints read for restores, by location.
    restores: HashMap<String, JobRestore>,
    threads: Vec<JoinHandle<()>>,
    records_read: Arc<AtomicU64>,
}

impl Worker {
    fn deploy(&mut self, deploy: DeployTasks) -> Result<(), JobError> {
        let plan = &self.deployable.plan;
        if deploy.worker_of_task.len() != plan.tasks.len() {
            return Err(JobError::Worker(format!(
                "the deployment names {} tasks, this worker's plan has {}",
                deploy.worker_of_task.len(),
                plan.tasks.len()
            )));
        }
        // Workers that were lost have no address; no task may be placed on them.
        let mut addresses = Vec::with_capacity(deploy.data_addresses.len());
        for address in &deploy.data_addresses {
            addresses.push(match address.as_str() {
                "" => None,
                a => Some(
                    a.parse::<SocketAddr>().map_err(|e| JobError::Worker(format!("bad data address '{a}': {e}")))?,
                ),
            });
        }
        if let Some(w) = deploy.worker_of_task.iter().find(|w| addresses.get(**w).is_none_or(Option::is_none)) {
            return Err(JobError::Worker(format!("the deployment places tasks on worker {w}, which has no address")));
        }
        let addresses: Vec<SocketAddr> =
            addresses.into_iter().map(|a| a.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))).collect();
        let restore = match &deploy.restore {
            Some(location) => {
                if !self.restores.contains_key(location) {
                    let checkpoint = SnapshotLocation::parse(location)
                        .map_err(|e| e.to_string())
                        .and_then(|l| CompletedCheckpoint::open_verified_at(&l).map_err(|e| e.to_string()))
                        .map_err(JobError::Worker)?;
                    self.restores.insert(location.clone(), JobRestore::new(checkpoint));
                }
                self.restores.get(location)
            }
            None => None,
        };
        let placement = WorkerPlacement {
            me: self.index,
            worker_of_task: &deploy.worker_of_task,
            addresses: &addresses,
            network: &self.network,
            generation: deploy.generation,
        };
        let Deployable { graph, job, .. } = &self.deployable;
        let enumerators: Vec<(String, ErasedEnumerator)> = job
            .vertices
            .iter()
            .filter(|v| matches!(graph.nodes[v.head].kind, NodeKind::Source(_)))
            .map(|v| {
                let operator_id = job.operator_ids[v.head].clone();
                let remote = RemoteEnumerator { operator_id: operator_id.clone(), requests: self.splits.clone() };
                (operator_id, Arc::new(remote) as ErasedEnumerator)
            })
            .collect();
        let region_cancel: Vec<CancelToken> = (0..plan.regions).map(|_| CancelToken::new()).collect();
        let request = WiringRequest {
            deployable: &self.deployable,
            restore,
            attempt: deploy.attempt,
            enumerators: &enumerators,
            only: deploy.only,
            region_cancel: &region_cancel,
        };
        let wiring = wire(&request, &placement)?;
        let first_failure: Vec<Arc<AtomicBool>> = (0..plan.regions).map(|_| Arc::new(AtomicBool::new(false))).collect();
        self.threads.retain(|t| !t.is_finished());
        for (task, deployment) in wiring.deployments.into_iter().enumerate() {
            let Some(deployment) = deployment else { continue };
            let region = plan.tasks[task].region;
            let metrics = TaskIoMetrics::new();
            lock(&self.shared.tasks).insert(
                task,
                LocalTask {
                    mailbox: deployment.mailbox.clone(),
                    waker: deployment.waker.clone(),
                    cancel: region_cancel[region].clone(),
                    generation: deploy.generation,
                    metrics: metrics.clone(),
                },
            );
            let runtime = SubtaskRuntime {
                index: task,
                options: self.deployable.options.clone(),
                cancel: region_cancel[region].clone(),
                wakers: wiring.wakers.clone(),
                events: self.events.clone(),
                records_read: self.records_read.clone(),
                metrics,
                first_failure: first_failure[region].clone(),
            };
            let (shared, generation) = (self.shared.clone(), deploy.generation);
            let name = deployment.info.name_with_subtask();
            let thread = std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    let outcome = run_subtask(deployment, runtime);
                    lock(&shared.outcomes).insert(task, (generation, outcome));
                    shared.ended.notify_all();
                })
                .map_err(JobError::Spawn)?;
            self.threads.push(thread);
        }
        Ok(())
    }
}

/// Forwards the tasks' reports to the coordinator, each task's end with its outcome.
fn forward_events(receiver: Receiver<TaskEvent>, shared: &WorkerShared, connection: &RpcConnection<JobProtocol>) {
    for event in receiver {
        let remote = match event {
            TaskEvent::Acknowledge(ack) => RemoteTaskEvent::Acknowledge(ack),
            TaskEvent::Decline { checkpoint, reason } => RemoteTaskEvent::Decline { checkpoint, reason },
            TaskEvent::InputFinished(task) => RemoteTaskEvent::InputFinished(task),
            TaskEvent::Running(task) => RemoteTaskEvent::Running(task),
            TaskEvent::Ended(task) => {
                // The task's thread reports its end just before it hands over its outcome.
                let mut outcomes = lock(&shared.outcomes);
                let (generation, outcome) = loop {
                    if let Some(entry) = outcomes.remove(&task) {
                        break entry;
                    }
                    outcomes = shared.ended.wait(outcomes).unwrap_or_else(std::sync::PoisonError::into_inner);
                };
                RemoteTaskEvent::ended(task, generation, outcome)
            }
        };
        if let Err(e) = connection.post(JobRequest::Event(remote)) {
            warn!("cannot report to the job's coordinator: {e}");
        }
    }
}

/// Where a worker's channels go: in-process between its own tasks, over TCP otherwise.
struct WorkerPlacement<'a> {
    me: usize,
    worker_of_task: &'a [usize],
    addresses: &'a [SocketAddr],
    network: &'a ConnectionManager,
    generation: u64,
}

impl Placement for WorkerPlacement<'_> {
    fn is_local(&self, task: usize) -> bool {
        self.worker_of_task.get(task) == Some(&self.me)
    }

    fn ends(
        &self,
        plan: &ExecutionPlan,
        index: usize,
        type_ops: &Arc<dyn TypeOps>,
        capacity: usize,
        waker: Arc<TaskWaker>,
        cancel: &CancelToken,
    ) -> Result<ChannelEnds, NetworkError> {
        let channel = &plan.channels[index];
        let (producer, consumer) = (self.worker_of_task[channel.producer], self.worker_of_task[channel.consumer]);
        let id = network_channel_id(self.generation, index);
        Ok(match (producer == self.me, consumer == self.me) {
            (true, true) => {
                let (tx, rx) = type_ops.channel(capacity, waker);
                (Some(tx), Some(rx))
            }
            (true, false) => {
                let peer = self.addresses[consumer];
                (Some(type_ops.remote_output(self.network, peer, id, capacity, cancel)?), None)
            }
            (false, true) => (None, Some(type_ops.remote_input(self.network, id, capacity, waker)?)),
            (false, false) => (None, None),
        })
    }
}

/// Split requests of this worker's readers, answered by the coordinator's enumerators.
struct CoordinatorSplits {
    connection: RpcConnection<JobProtocol>,
}

impl SplitRequests for CoordinatorSplits {
    fn next_split(&self, operator_id: &str, subtask: usize) -> Result<EncodedNextSplit, BoxError> {
        let request = JobRequest::NextSplit { operator_id: operator_id.to_string(), subtask };
        match self.connection.call(request, CALL_TIMEOUT) {
            Ok(JobResponse::Split(next)) => Ok(next),
            Ok(other) => Err(format!("unexpected answer to a split request: {other:?}").into()),
            Err(e) => Err(format!("cannot ask the job's coordinator for a split: {e}").into()),
        }
    }

    fn resume(&self, operator_id: &str, subtask: usize) {
        let _ = self.connection.post(JobRequest::ResumeReader { operator_id: operator_id.to_string(), subtask });
    }
}
