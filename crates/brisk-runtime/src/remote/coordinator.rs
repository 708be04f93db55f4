//! A job's coordinator process: the artifact started by the JobManager in coordinator mode.
//! It plans the job, gets slots from the JobManager (which starts a worker process on each
//! TaskManager that gives some), waits for the workers to register with the same job graph,
//! and runs the job master with a [`RemoteDeployer`]: tasks run in the workers, split
//! enumerators here. When the job ends it tells the JobManager and the workers.

use super::protocol::{DeployTasks, JobProtocol, JobRequest, JobResponse, RemoteMail, RemoteTaskEvent};
use crate::checkpoint::restore::JobRestore;
use crate::checkpoint::{SnapshotLocation, TaskEvent};
use crate::error::{JobError, TaskError, lock};
use crate::executor::JOB_RESULT_FILE_ENV;
use crate::jobmaster::deployer::{Deployer, Restarted, SourceNode, TaskHandle};
use crate::jobmaster::job::Deployable;
use crate::jobmaster::master::JobControl;
use crate::jobmaster::queryable::{QUERY_TIMEOUT, StateLookup};
use crate::metrics::task_io::TaskIoMetrics;
use crate::taskexecutor::deployment::TaskOutcome;
use crate::taskexecutor::mailbox::Mail;
use crate::taskexecutor::output::StateQuery;
use brisk_rpc::{Cluster, Hello, Request, Response, Role, RpcConnection};
use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long a call to a worker or the JobManager may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long workers may take to start and register.
const WORKER_REGISTRATION_TIMEOUT: Duration = Duration::from_secs(120);

/// A registered worker.
struct WorkerEntry {
    connection: RpcConnection<JobProtocol>,
    data_address: String,
}

/// What the coordinator's connection handlers share with its job master.
#[derive(Default)]
struct CoordinatorShared {
    fingerprint: String,
    workers: Mutex<HashMap<usize, WorkerEntry>>,
    /// Why a worker was refused, to fail the job with.
    refused: Mutex<Option<String>>,
    /// Where task reports go: the job master's events, once it runs.
    events: Mutex<Option<Sender<TaskEvent>>>,
    /// The enumerators of the running attempt by operator id.
    sources: Mutex<Vec<SourceNode>>,
    /// Outcomes of ended tasks by task, with their wiring's generation.
    outcomes: Mutex<HashMap<usize, (u64, TaskOutcome)>>,
    /// Deployed tasks that have not ended: their worker and wiring generation.
    running: Mutex<HashMap<usize, (usize, u64)>>,
    changed: Condvar,
    /// The live metrics of the deployed tasks, with their wiring generation, as their
    /// workers report them.
    metrics: Mutex<HashMap<usize, (u64, Arc<TaskIoMetrics>)>>,
    /// Records read by each worker's sources; their sum is the job's.
    records_read_by_worker: Mutex<HashMap<usize, u64>>,
    records_read: Arc<AtomicU64>,
}

impl CoordinatorShared {
    /// A task ended (reported by its worker, or its worker went away).
    fn ended(&self, task: usize, generation: u64, outcome: TaskOutcome) {
        {
            let mut running = lock(&self.running);
            if running.get(&task).is_some_and(|(_, g)| *g == generation) {
                running.remove(&task);
            }
        }
        lock(&self.outcomes).insert(task, (generation, outcome));
        self.changed.notify_all();
        if let Some(events) = lock(&self.events).as_ref() {
            let _ = events.send(TaskEvent::Ended(task));
        }
    }

    /// Ends the running tasks of `worker` when its connection closes (the process died).
    fn watch(self: Arc<Self>, worker: usize, connection: RpcConnection<JobProtocol>) {
        while !connection.is_closed() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let lost: Vec<(usize, u64)> =
            lock(&self.running).iter().filter(|(_, (w, _))| *w == worker).map(|(t, (_, g))| (*t, *g)).collect();
        if !lost.is_empty() {
            warn!(worker, address = %connection.peer(), tasks = lost.len(), "a worker process went away");
        }
        for (task, generation) in lost {
            let cause = format!("the worker process running this task ({}) went away", connection.peer());
            self.ended(
                task,
                generation,
                TaskOutcome { task_name: format!("task {task}"), result: Err(TaskError::msg(cause)) },
            );
        }
    }

    fn handle(self: &Arc<Self>, connection: &RpcConnection<JobProtocol>, request: JobRequest) -> JobResponse {
        match request {
            JobRequest::RegisterWorker { worker, fingerprint, data_address } => {
                if fingerprint != self.fingerprint {
                    let reason = format!(
                        "worker {worker} built a different job graph (fingerprint {fingerprint}) than the coordinator \
                         ({}): the program must declare the same job in every process (is it non-deterministic, or \
                         did its arguments or configuration differ?)",
                        self.fingerprint
                    );
                    *lock(&self.refused) = Some(reason.clone());
                    self.changed.notify_all();
                    return JobResponse::Error(reason);
                }
                info!(worker, data = %data_address, address = %connection.peer(), "worker registered");
                lock(&self.workers).insert(worker, WorkerEntry { connection: connection.clone(), data_address });
                self.changed.notify_all();
                let (watching, watched) = (self.clone(), connection.clone());
                if let Err(e) = std::thread::Builder::new()
                    .name(format!("watch worker {worker}"))
                    .spawn(move || watching.watch(worker, watched))
                {
                    return JobResponse::Error(format!("the coordinator cannot watch this worker: {e}"));
                }
                JobResponse::Ack
            }
            JobRequest::Event(event) => {
                let event = match event {
                    RemoteTaskEvent::Acknowledge(ack) => TaskEvent::Acknowledge(ack),
                    RemoteTaskEvent::Decline { checkpoint, reason } => TaskEvent::Decline { checkpoint, reason },
                    RemoteTaskEvent::InputFinished(task) => TaskEvent::InputFinished(task),
                    RemoteTaskEvent::Running(task) => TaskEvent::Running(task),
                    RemoteTaskEvent::Ended { task, generation, task_name, result } => {
                        let result = result.map_err(|e| e.into_error());
                        self.ended(task, generation, TaskOutcome { task_name, result });
                        return JobResponse::Ack;
                    }
                };
                if let Some(events) = lock(&self.events).as_ref() {
                    let _ = events.send(event);
                }
                JobResponse::Ack
            }
            JobRequest::NextSplit { operator_id, subtask } => {
                let sources = lock(&self.sources);
                match sources.iter().find(|(id, _, _)| *id == operator_id) {
                    Some((_, factory, enumerator)) => match factory.next_split_encoded(enumerator, subtask) {
                        Ok(next) => JobResponse::Split(next),
                        Err(e) => JobResponse::Error(format!("split enumerator of {operator_id}: {e}")),
                    },
                    None => JobResponse::Error(format!("no source with operator id {operator_id}")),
                }
            }
            JobRequest::ResumeReader { operator_id, subtask } => {
                if let Some((_, factory, enumerator)) = lock(&self.sources).iter().find(|(id, _, _)| *id == operator_id)
                {
                    factory.resume_reader(enumerator, subtask);
                }
                JobResponse::Ack
            }
            JobRequest::Metrics { worker, records_read, tasks } => {
                let metrics = lock(&self.metrics);
                for report in tasks {
                    if let Some((_, m)) = metrics.get(&report.task).filter(|(g, _)| *g == report.generation) {
                        m.set(&report.values);
                    }
                }
                let mut read = lock(&self.records_read_by_worker);
                read.insert(worker, records_read);
                self.records_read.store(read.values().sum(), Ordering::Relaxed);
                JobResponse::Ack
            }
            other => JobResponse::Error(format!("a coordinator does not serve {other:?}")),
        }
    }
}

/// The coordinator's connection to the JobManager, dialed again (and the job reattached) when
/// the JobManager restarts.
struct JobManagerLink {
    address: String,
    job_id: String,
    control: Arc<JobControl>,
    connection: Mutex<RpcConnection<Cluster>>,
    /// Set when the job ended: no more reconnecting.
    finished: AtomicBool,
}

impl JobManagerLink {
    /// Connects to the JobManager at `address`; its requests (cancel, savepoints) reach `control`.
    fn connect(address: &str, control: &Arc<JobControl>) -> Result<RpcConnection<Cluster>, brisk_rpc::RpcError> {
        let control = control.clone();
        let handler = move |_: &RpcConnection<Cluster>, request: Request| match request {
            Request::CancelJob { .. } => {
                control.request_cancel();
                Response::Ack
            }
            Request::SuspendJob { .. } => {
                control.request_suspend();
                Response::Ack
            }
            Request::RestCall(call) => match control.rest.get() {
                Some(handler) => Response::Rest(handler.answer(call)),
                None => Response::Error("this job's coordinator serves no REST requests".into()),
            },
            Request::TriggerSavepoint { directory, stop, .. } => {
                let taken = SnapshotLocation::parse(&directory)
                    .map_err(|e| format!("invalid savepoint directory: {e}"))
                    .and_then(|dir| control.savepoint(dir, stop).map_err(|e| e.to_string()));
                match taken {
                    Ok(path) => Response::SavepointCompleted { path: path.to_string() },
                    Err(e) => Response::Error(e),
                }
            }
            other => Response::Error(format!("a job coordinator does not serve {other:?}")),
        };
        RpcConnection::<Cluster>::connect(address, Role::Coordinator, handler, CALL_TIMEOUT)
    }

    fn current(&self) -> RpcConnection<Cluster> {
        lock(&self.connection).clone()
    }

    fn call(&self, request: Request, timeout: Duration) -> Result<Response, brisk_rpc::RpcError> {
        self.current().call(request, timeout)
    }

    /// While the job runs: when the connection closes (the JobManager died), dials again
    /// until a JobManager answers, and reattaches the job to it.
    fn keep(self: Arc<Self>) {
        let finished = || self.finished.load(Ordering::Acquire);
        while !finished() {
            std::thread::sleep(Duration::from_millis(100));
            if !self.current().is_closed() {
                continue;
            }
            warn!(jobmanager = %self.address, "lost the JobManager; connecting again");
            let mut pause = Duration::from_millis(100);
            while !finished() {
                let attached = Self::connect(&self.address, &self.control).and_then(|connection| {
                    connection.call(Request::ReattachCoordinator { job_id: self.job_id.clone() }, CALL_TIMEOUT)?;
                    Ok(connection)
                });
                match attached {
                    Ok(connection) => {
                        *lock(&self.connection) = connection;
                        info!(jobmanager = %self.address, "the job is attached to the JobManager again");
                        break;
                    }
                    Err(e) => {
                        tracing::debug!("cannot reattach the job yet: {e}");
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }
    }
}

/// The coordinator's link to its JobManager and workers, set up before the job master runs.
pub(crate) struct Coordinator {
    shared: Arc<CoordinatorShared>,
    jobmanager: Arc<JobManagerLink>,
    job_id: String,
    /// Slots of each worker, by worker index.
    worker_slots: Vec<usize>,
}

impl Coordinator {
    /// Listens for workers, registers job `job_id` (needing the plan's slots) with the
    /// JobManager at `jobmanager`, and waits for every worker it starts to register.
    pub fn start(
        deployable: &Deployable,
        jobmanager: &str,
        job_id: &str,
        control: Arc<JobControl>,
    ) -> Result<Coordinator, JobError> {
        let failed = |what: &str, e: &dyn std::fmt::Display| JobError::Worker(format!("{what}: {e}"));
        let host = std::env::var("BRISK_COORDINATOR_HOST").unwrap_or_else(|_| "127.0.0.1".into());
        let listener =
            TcpListener::bind(format!("{host}:0")).map_err(|e| failed("cannot listen for the job's workers", &e))?;
        let address = listener.local_addr().map_err(|e| failed("cannot listen for the job's workers", &e))?;
        let shared = Arc::new(CoordinatorShared {
            fingerprint: deployable.plan.fingerprint.clone(),
            records_read: control.records_read.clone(),
            ..Default::default()
        });
        let accepting = shared.clone();
        std::thread::Builder::new()
            .name("coordinator accept".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let handling = accepting.clone();
                    let admit = |hello: &Hello| match hello.role {
                        Role::Worker => Ok(()),
                        other => Err(format!("a job coordinator serves workers, not a {other}")),
                    };
                    let handler = move |c: &RpcConnection<JobProtocol>, r: JobRequest| handling.handle(c, r);
                    if let Err(e) = RpcConnection::accept(stream, Role::Coordinator, admit, handler, CALL_TIMEOUT) {
                        warn!("refused a connection: {e}");
                    }
                }
            })
            .map_err(JobError::Spawn)?;
        let connection =
            JobManagerLink::connect(jobmanager, &control).map_err(|e| failed("cannot reach the JobManager", &e))?;
        let waited = Self::await_workers(deployable, &connection, &shared, job_id, address, &control);
        let worker_slots = match waited {
            Ok(worker_slots) => worker_slots,
            Err(e) => {
                let failure = Request::JobFinished {
                    job_id: job_id.to_string(),
                    failure: Some(e.to_string()),
                    archive: Vec::new(),
                };
                let _ = connection.call(failure, CALL_TIMEOUT);
                connection.close();
                return Err(e);
            }
        };
        let link = Arc::new(JobManagerLink {
            address: jobmanager.to_string(),
            job_id: job_id.to_string(),
            control,
            connection: Mutex::new(connection),
            finished: AtomicBool::new(false),
        });
        let keeping = link.clone();
        std::thread::Builder::new()
            .name("coordinator jobmanager".into())
            .spawn(move || keeping.keep())
            .map_err(JobError::Spawn)?;
        Ok(Coordinator { shared, jobmanager: link, job_id: job_id.to_string(), worker_slots })
    }

    /// Registers the job with the JobManager and waits until every worker it starts has
    /// registered here; returns the slots of each worker.
    fn await_workers(
        deployable: &Deployable,
        connection: &RpcConnection<Cluster>,
        shared: &CoordinatorShared,
        job_id: &str,
        address: std::net::SocketAddr,
        control: &JobControl,
    ) -> Result<Vec<usize>, JobError> {
        let failed = |what: &str, e: &dyn std::fmt::Display| JobError::Worker(format!("{what}: {e}"));
        let registration = brisk_rpc::CoordinatorRegistration {
            job_id: job_id.to_string(),
            job_name: deployable.options.defaults.job_name.clone(),
            slots: deployable.plan.slots,
            address: address.to_string(),
            checkpoint_dir: control.checkpoint_location.as_ref().map(ToString::to_string),
            earlier_checkpoints: control.earlier_checkpoints,
            max_parallelism: deployable.job.vertices.iter().map(|v| v.max_parallelism).min().unwrap_or(1),
            delete_on_cancellation: deployable.options.checkpoint.retention
                == crate::checkpoint::config::ExternalizedCheckpointRetention::DeleteOnCancellation,
        };
        // The JobManager answers once it found the slots (or gave up waiting for them).
        let worker_slots =
            match connection.call(Request::RegisterCoordinator(registration), Duration::from_secs(24 * 3600)) {
                Ok(Response::SlotsGranted { worker_slots }) => worker_slots,
                Ok(other) => return Err(JobError::Worker(format!("unexpected answer from the JobManager: {other:?}"))),
                Err(e) => return Err(failed("the JobManager gave the job no slots", &e)),
            };
        info!(
            job_id,
            workers = worker_slots.len(),
            slots = deployable.plan.slots,
            "slots granted; waiting for the workers"
        );
        wait_for_workers(shared, 0..worker_slots.len())?;
        Ok(worker_slots)
    }

    /// The deployer placing tasks in the workers; task reports go to `events`.
    pub fn deployer(&self, events: Sender<TaskEvent>, control: Arc<JobControl>) -> RemoteDeployer {
        *lock(&self.shared.events) = Some(events);
        let worker_of_slot =
            self.worker_slots.iter().enumerate().flat_map(|(w, n)| std::iter::repeat_n(w, *n)).collect();
        RemoteDeployer {
            shared: self.shared.clone(),
            worker_of_slot,
            generation: 0,
            control,
            jobmanager: self.jobmanager.clone(),
            job_id: self.job_id.clone(),
            next_worker: self.worker_slots.len(),
        }
    }

    /// Lets the workers go and, unless the job was suspended (the JobManager restarts it),
    /// records how it ended in the job result file and tells the JobManager.
    pub fn finish(&self, error: Option<&JobError>) {
        for worker in lock(&self.shared.workers).values() {
            let _ = worker.connection.call(JobRequest::Shutdown, Duration::from_secs(10));
        }
        let suspended = matches!(error, Some(JobError::Suspended(_)));
        if !suspended {
            let failure = error.map(ToString::to_string);
            record_result(&failure);
            self.report_end(failure);
        }
        self.jobmanager.finished.store(true, Ordering::Release);
        self.jobmanager.current().close();
        if suspended {
            // The program's code after `execute` must not run for a job that goes on.
            warn!("the job was suspended by the JobManager, which starts it again from its latest checkpoint");
            std::process::exit(0);
        }
    }

    /// Tells the JobManager the job ended, waiting for one that is restarting just now.
    fn report_end(&self, failure: Option<String>) {
        let archive = self.jobmanager.control.rest.get().map(|rest| rest.archive()).unwrap_or_default();
        let finished = Request::JobFinished { job_id: self.job_id.clone(), failure, archive };
        // The reconnecting thread attaches a restarted JobManager.
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            match self.jobmanager.call(finished.clone(), CALL_TIMEOUT) {
                Ok(_) => break,
                Err(e) if Instant::now() >= deadline => {
                    warn!("cannot tell the JobManager that the job ended (the job result file tells it): {e}");
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

/// Writes how the job ended to the job result file the JobManager named
/// ([`JOB_RESULT_FILE_ENV`]; Flink's job result store), so that a JobManager that was down
/// when the job ended does not run it again.
fn record_result(failure: &Option<String>) {
    let Some(path) = std::env::var_os(JOB_RESULT_FILE_ENV) else { return };
    let path = std::path::PathBuf::from(path);
    let written = serde_json::to_vec(failure)
        .map_err(|e| e.to_string())
        .and_then(|bytes| crate::checkpoint::storage::write_atomically(&path, &bytes).map_err(|e| e.to_string()));
    if let Err(e) = written {
        warn!(file = %path.display(), "cannot write the job result file: {e}");
    }
}

/// Waits until workers `indices` registered (or one was refused).
fn wait_for_workers(shared: &CoordinatorShared, indices: std::ops::Range<usize>) -> Result<(), JobError> {
    let deadline = Instant::now() + WORKER_REGISTRATION_TIMEOUT;
    let mut workers = lock(&shared.workers);
    loop {
        let missing: Vec<String> =
            indices.clone().filter(|w| !workers.contains_key(w)).map(|w| w.to_string()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        if let Some(reason) = lock(&shared.refused).clone() {
            return Err(JobError::Worker(reason));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(JobError::Worker(format!(
                "workers {} did not register within {} s (see the TaskManagers' logs)",
                missing.join(", "),
                WORKER_REGISTRATION_TIMEOUT.as_secs()
            )));
        }
        workers =
            shared.changed.wait_timeout(workers, deadline - now).map(|(w, _)| w).unwrap_or_else(|e| e.into_inner().0);
    }
}

/// Deploys tasks into the job's worker processes.
pub(crate) struct RemoteDeployer {
    shared: Arc<CoordinatorShared>,
    /// The worker holding each slot of the plan.
    worker_of_slot: Vec<usize>,
    generation: u64,
    control: Arc<JobControl>,
    jobmanager: Arc<JobManagerLink>,
    job_id: String,
    /// The index the next new worker gets.
    next_worker: usize,
}

impl RemoteDeployer {
    /// Replaces the workers whose process went away (their TaskManager died): the JobManager
    /// starts new ones on other TaskManagers, which take over their slots.
    fn replace_lost_workers(&mut self) -> Result<(), JobError> {
        // Lost: a worker whose connection closed, or one an earlier request failed to replace.
        let mut workers = lock(&self.shared.workers);
        let gone = |w: &usize| workers.get(w).is_none_or(|e| e.connection.is_closed());
        let slots: Vec<usize> =
            self.worker_of_slot.iter().enumerate().filter(|(_, w)| gone(w)).map(|(s, _)| s).collect();
        let mut lost: Vec<usize> = slots.iter().map(|s| self.worker_of_slot[*s]).collect();
        lost.sort_unstable();
        lost.dedup();
        workers.retain(|_, e| !e.connection.is_closed());
        drop(workers);
        if slots.is_empty() {
            return Ok(());
        }
        warn!(workers = ?lost, slots = slots.len(), "workers were lost; asking the JobManager for new ones");
        // The indices are taken even when the request fails: a worker the JobManager started
        // before a later one failed may still register, and must not pass for a new one.
        let first = self.next_worker;
        self.next_worker += slots.len();
        let request = Request::RequestWorkers { job_id: self.job_id.clone(), slots: slots.len(), first_worker: first };
        let worker_slots = match self.jobmanager.call(request, Duration::from_secs(24 * 3600)) {
            Ok(Response::SlotsGranted { worker_slots }) => worker_slots,
            Ok(other) => return Err(JobError::Worker(format!("unexpected answer from the JobManager: {other:?}"))),
            Err(e) => return Err(JobError::SlotsUnavailable(format!("no new slots for the lost workers: {e}"))),
        };
        let started = first..first + worker_slots.len();
        wait_for_workers(&self.shared, started.clone())?;
        let mut new = worker_slots.iter().enumerate().flat_map(|(i, n)| std::iter::repeat_n(first + i, *n));
        for slot in slots {
            if let Some(worker) = new.next() {
                self.worker_of_slot[slot] = worker;
            }
        }
        info!(first, count = started.len(), "new workers took over the lost ones' slots");
        Ok(())
    }

    fn deploy_tasks(
        &mut self,
        job: &Deployable,
        sources: &[SourceNode],
        restore: Option<&JobRestore>,
        number: usize,
        only: Option<usize>,
    ) -> Result<Restarted, JobError> {
        self.replace_lost_workers()?;
        self.generation += 1;
        *lock(&self.shared.sources) =
            sources.iter().map(|(id, factory, e)| (id.clone(), factory.clone_box(), e.clone())).collect();
        let plan = &job.plan;
        let worker_of_task: Vec<usize> =
            plan.tasks.iter().map(|t| self.worker_of_slot.get(t.slot).copied().unwrap_or(0)).collect();
        let workers = lock(&self.shared.workers);
        let data_addresses: Vec<String> = (0..self.worker_of_slot.iter().max().map_or(0, |m| m + 1))
            .map(|w| workers.get(&w).map(|e| e.data_address.clone()).unwrap_or_default())
            .collect();
        let connections: Vec<(usize, RpcConnection<JobProtocol>)> =
            workers.iter().map(|(w, e)| (*w, e.connection.clone())).collect();
        drop(workers);
        let in_scope: Vec<usize> =
            (0..plan.tasks.len()).filter(|t| only.is_none_or(|r| r == plan.tasks[*t].region)).collect();
        // Before the deployments: a task may end before its worker answers.
        for &task in &in_scope {
            lock(&self.shared.running).insert(task, (worker_of_task[task], self.generation));
        }
        // A producer may dial a consumer whose worker has not wired yet: the exchange accepts
        // a channel opened before its consumer registered.
        for (worker, connection) in &connections {
            let request = JobRequest::Deploy(DeployTasks {
                attempt: number,
                generation: self.generation,
                worker_of_task: worker_of_task.clone(),
                data_addresses: data_addresses.clone(),
                restore: restore.map(|r| r.checkpoint.location().to_string()),
                only,
            });
            connection
                .call(request, CALL_TIMEOUT)
                .map_err(|e| JobError::Worker(format!("cannot deploy to worker {worker}: {e}")))?;
        }
        if only.is_none() {
            lock(&self.control.task_metrics).clear();
        }
        let mut handles: Restarted = Vec::new();
        for task in in_scope {
            let metrics = TaskIoMetrics::new();
            lock(&self.shared.metrics).insert(task, (self.generation, metrics.clone()));
            self.control.publish_task(task, number, metrics);
            let worker = worker_of_task[task];
            let Some((_, connection)) = connections.iter().find(|(w, _)| *w == worker) else {
                return Err(JobError::Worker(format!("worker {worker} is not registered")));
            };
            let lookup = RemoteStateLookup { task, connection: connection.clone() };
            self.control.publish_state_lookup(task, Arc::new(lookup));
            let handle = RemoteTask {
                task,
                generation: self.generation,
                connection: connection.clone(),
                shared: self.shared.clone(),
            };
            handles.push((task, Box::new(handle)));
        }
        Ok(handles)
    }
}

impl Deployer for RemoteDeployer {
    fn deploy(
        &mut self,
        job: &Deployable,
        sources: &[SourceNode],
        restore: Option<&JobRestore>,
        number: usize,
    ) -> Result<Vec<Box<dyn TaskHandle>>, JobError> {
        Ok(self.deploy_tasks(job, sources, restore, number, None)?.into_iter().map(|(_, h)| h).collect())
    }

    fn redeploy_region(
        &mut self,
        job: &Deployable,
        sources: &[SourceNode],
        region: usize,
        restore: Option<&JobRestore>,
        number: usize,
    ) -> Result<Restarted, JobError> {
        self.deploy_tasks(job, sources, restore, number, Some(region))
    }
}

/// The keyed state of a task running in a worker process.
struct RemoteStateLookup {
    task: usize,
    connection: RpcConnection<JobProtocol>,
}

impl StateLookup for RemoteStateLookup {
    fn lookup(&self, query: StateQuery) -> Result<Option<Vec<u8>>, String> {
        // The worker waits up to the timeout for its task; the call allows for the way there.
        match self.connection.call(JobRequest::QueryState { task: self.task, query }, QUERY_TIMEOUT * 2) {
            Ok(JobResponse::State(answer)) => answer,
            Ok(other) => Err(format!("unexpected answer from the worker: {other:?}")),
            // The worker went away: like a task that ended, it holds no state now.
            Err(_) => Ok(None),
        }
    }
}

/// A task running in a worker process.
struct RemoteTask {
    task: usize,
    generation: u64,
    connection: RpcConnection<JobProtocol>,
    shared: Arc<CoordinatorShared>,
}

impl TaskHandle for RemoteTask {
    fn send(&self, mail: Mail) {
        if let Some(mail) = RemoteMail::from_mail(mail) {
            let _ = self.connection.post(JobRequest::Mail { task: self.task, mail });
        }
    }

    fn cancel(&self) {
        let _ = self.connection.post(JobRequest::Cancel { tasks: vec![self.task] });
    }

    fn join(self: Box<Self>) -> TaskOutcome {
        let mut outcomes = lock(&self.shared.outcomes);
        loop {
            if outcomes.get(&self.task).is_some_and(|(g, _)| *g == self.generation)
                && let Some((_, outcome)) = outcomes.remove(&self.task)
            {
                return outcome;
            }
            if self.connection.is_closed() {
                return TaskOutcome {
                    task_name: format!("task {}", self.task),
                    result: Err(TaskError::msg(format!(
                        "the worker process running task {} went away ({})",
                        self.task,
                        self.connection.peer()
                    ))),
                };
            }
            outcomes = self
                .shared
                .changed
                .wait_timeout(outcomes, Duration::from_millis(100))
                .map(|(o, _)| o)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brisk_rpc::RpcError;

    /// A coordinator's worker endpoint for fingerprint `fingerprint`, and a worker connected to it.
    fn connected(fingerprint: &str) -> (Arc<CoordinatorShared>, RpcConnection<JobProtocol>) {
        let shared = Arc::new(CoordinatorShared { fingerprint: fingerprint.into(), ..Default::default() });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let serving = shared.clone();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let handler = move |c: &RpcConnection<JobProtocol>, r: JobRequest| serving.handle(c, r);
            RpcConnection::accept(stream, Role::Coordinator, |_| Ok(()), handler, CALL_TIMEOUT).unwrap();
        });
        let no_requests = |_: &RpcConnection<JobProtocol>, _| JobResponse::Error("none".into());
        let worker = RpcConnection::connect(&address, Role::Worker, no_requests, CALL_TIMEOUT).unwrap();
        (shared, worker)
    }

    fn register(worker: &RpcConnection<JobProtocol>, fingerprint: &str) -> Result<JobResponse, RpcError> {
        let request = JobRequest::RegisterWorker {
            worker: 0,
            fingerprint: fingerprint.into(),
            data_address: "127.0.0.1:1".into(),
        };
        worker.call(request, CALL_TIMEOUT)
    }

    #[test]
    fn a_worker_that_built_another_job_graph_is_refused_and_fails_the_job() {
        let (shared, worker) = connected("aaaa");
        let refused = register(&worker, "bbbb");
        let message = match refused {
            Err(RpcError::Remote { message, .. }) => message,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert!(message.contains("fingerprint bbbb") && message.contains("(aaaa)"), "{message}");
        assert_eq!(lock(&shared.refused).as_deref(), Some(message.as_str()));
        assert!(lock(&shared.workers).is_empty());
    }

    #[test]
    fn a_worker_with_the_same_job_graph_is_registered() {
        let (shared, worker) = connected("aaaa");
        assert!(matches!(register(&worker, "aaaa"), Ok(JobResponse::Ack)));
        assert_eq!(lock(&shared.workers).get(&0).map(|w| w.data_address.clone()), Some("127.0.0.1:1".into()));
        assert!(lock(&shared.refused).is_none());
    }

    #[test]
    fn workers_metrics_reports_update_the_current_tasks_and_the_records_read() {
        use super::super::protocol::TaskMetricsReport;
        use crate::metrics::task_io::TaskIoValues;
        let (shared, worker) = connected("aaaa");
        let (current, stale) = (TaskIoMetrics::new(), TaskIoMetrics::new());
        lock(&shared.metrics).insert(0, (2, current.clone()));
        lock(&shared.metrics).insert(1, (2, stale.clone()));
        let values =
            TaskIoValues { records_in: 7, records_out: 5, current_input_watermark: Some(9), ..Default::default() };
        let tasks = vec![
            TaskMetricsReport { task: 0, generation: 2, values: values.clone() },
            // A report of the task's previous deployment.
            TaskMetricsReport { task: 1, generation: 1, values: values.clone() },
        ];
        let report = JobRequest::Metrics { worker: 0, records_read: 40, tasks };
        assert!(matches!(worker.call(report, CALL_TIMEOUT), Ok(JobResponse::Ack)));
        let other = JobRequest::Metrics { worker: 1, records_read: 2, tasks: Vec::new() };
        assert!(matches!(worker.call(other, CALL_TIMEOUT), Ok(JobResponse::Ack)));
        assert_eq!(current.read(), values);
        assert_eq!(stale.read(), TaskIoValues::default());
        assert_eq!(shared.records_read.load(Ordering::Relaxed), 42);
    }
}
