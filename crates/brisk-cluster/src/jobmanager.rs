//! The JobManager process (Flink's dispatcher and resource manager): it accepts TaskManagers
//! and clients on its RPC port, keeps the registered TaskManagers and their slots, and asks
//! each for a heartbeat every `heartbeat.interval`. A TaskManager that does not answer for
//! `heartbeat.timeout`, or whose connection breaks, is lost: its slots are gone.

use crate::config::ClusterConfig;
use crate::dispatcher::{Dispatcher, WorkerTemplate};
use crate::{ClusterError, lock, taskmanager::process_id};
use brisk_rest::{CancelError, ClusterView, RestShutdown, start_cluster_server};
use brisk_rpc::{
    ClusterOverview, Hello, JobInfo, JobSubmission, RegistrationAck, Request, Response, RestAnswer, RestCall, Role,
    RpcConnection, TaskManagerInfo, TaskManagerRegistration, WorkerLaunch,
};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a savepoint may take.
const SAVEPOINT_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long a TaskManager may take to fetch an artifact and start a worker.
const WORKER_START_TIMEOUT: Duration = Duration::from_secs(120);

/// A registered TaskManager.
struct Registered {
    registration: TaskManagerRegistration,
    connection: RpcConnection,
    /// Slots given to jobs, by job id.
    allocated: HashMap<String, usize>,
    last_heartbeat: Instant,
    /// What its last heartbeat said of its memory: in use, and of its host.
    memory: (u64, u64),
}

impl Registered {
    fn free_slots(&self) -> usize {
        self.registration.slots.saturating_sub(self.allocated.values().sum())
    }
}

/// A job's coordinator process.
enum CoordinatorProcess {
    /// Started by this JobManager.
    Child(std::process::Child),
    /// Started by an earlier JobManager (recovered from the job store), with its pid if known.
    Adopted(Option<u32>),
}

/// Slots of one TaskManager given to a job.
struct Grant {
    connection: RpcConnection,
    resource_id: String,
    slots: usize,
}

struct State {
    id: String,
    config: ClusterConfig,
    /// Where coordinators reach this JobManager.
    address: String,
    taskmanagers: Mutex<Vec<Registered>>,
    /// Slots of recovered jobs on TaskManagers that have not registered again yet, by
    /// resource id.
    recovered_allocations: Mutex<HashMap<String, Vec<(String, usize)>>>,
    dispatcher: Dispatcher,
    shutting_down: AtomicBool,
    /// Where its REST API listens, once it does.
    rest_address: OnceLock<SocketAddr>,
    /// Stops the REST API with the JobManager.
    rest_server: Mutex<Option<RestShutdown>>,
}

impl State {
    fn taskmanagers(&self) -> std::sync::MutexGuard<'_, Vec<Registered>> {
        lock(&self.taskmanagers)
    }

    fn overview(&self) -> ClusterOverview {
        let taskmanagers = self
            .taskmanagers()
            .iter()
            .map(|t| TaskManagerInfo {
                resource_id: t.registration.resource_id.clone(),
                host: t.registration.host.clone(),
                pid: t.registration.pid,
                address: t.connection.peer().to_string(),
                slots: t.registration.slots,
                free_slots: t.free_slots(),
                last_heartbeat_ms_ago: t.last_heartbeat.elapsed().as_millis() as u64,
                memory_used: t.memory.0,
                physical_memory: t.memory.1,
            })
            .collect();
        ClusterOverview {
            jobmanager_id: self.id.clone(),
            version: brisk_rpc::BRISK_VERSION.into(),
            taskmanagers,
            rest_address: self.rest_address.get().map(ToString::to_string),
        }
    }

    fn register(self: &Arc<Self>, connection: &RpcConnection, registration: TaskManagerRegistration) -> Response {
        let resource_id = registration.resource_id.clone();
        let previous = {
            let mut taskmanagers = self.taskmanagers();
            let previous = taskmanagers
                .iter()
                .position(|t| t.registration.resource_id == resource_id)
                .map(|i| taskmanagers.remove(i));
            // A TaskManager registering again keeps the slots its running jobs hold, also
            // across a restart of this JobManager (from the job store).
            let mut allocated: HashMap<String, usize> =
                previous.as_ref().map(|p| p.allocated.clone()).unwrap_or_default();
            let recovered = lock(&self.recovered_allocations).remove(&resource_id);
            for (job, slots) in recovered.unwrap_or_default() {
                *allocated.entry(job).or_default() += slots;
            }
            taskmanagers.push(Registered {
                allocated,
                registration: registration.clone(),
                connection: connection.clone(),
                last_heartbeat: Instant::now(),
                memory: previous.as_ref().map_or((0, 0), |p| p.memory),
            });
            previous
        };
        if let Some(previous) = previous {
            // The TaskManager registered again (it lost us): its old connection is stale.
            previous.connection.close();
        }
        info!(
            taskmanager = %resource_id, host = %registration.host, pid = registration.pid, slots = registration.slots,
            address = %connection.peer(), "TaskManager registered"
        );
        let state = self.clone();
        let monitored = connection.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("heartbeat {resource_id}"))
            .spawn(move || state.monitor(resource_id, monitored));
        if let Err(e) = spawned {
            return Response::Error(format!("the JobManager cannot watch this TaskManager: {e}"));
        }
        Response::Registered(RegistrationAck {
            jobmanager_id: self.id.clone(),
            heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u64,
            heartbeat_timeout_ms: self.config.heartbeat_timeout.as_millis() as u64,
        })
    }

    /// Asks `connection`'s TaskManager for heartbeats until it is lost or deregistered.
    fn monitor(&self, resource_id: String, connection: RpcConnection) {
        let (interval, timeout) = (self.config.heartbeat_interval, self.config.heartbeat_timeout);
        let mut last = Instant::now();
        let reason = loop {
            std::thread::sleep(interval);
            if self.shutting_down.load(Ordering::Acquire) {
                return;
            }
            if connection.is_closed() {
                break "its connection closed".to_string();
            }
            let wait = timeout.saturating_sub(last.elapsed()).max(Duration::from_millis(1));
            match connection.call(Request::Heartbeat { jobmanager_id: self.id.clone() }, wait) {
                Ok(Response::Heartbeat(beat)) => {
                    last = Instant::now();
                    let mut taskmanagers = self.taskmanagers();
                    match taskmanagers.iter_mut().find(|t| t.registration.resource_id == resource_id) {
                        // Registered again on another connection: that one is watched now.
                        Some(t) if t.connection.peer() != connection.peer() => return,
                        Some(t) => {
                            t.last_heartbeat = last;
                            t.memory = (beat.memory_used, beat.physical_memory);
                        }
                        None => return,
                    }
                }
                Ok(other) => break format!("it answered a heartbeat with {other:?}"),
                Err(e) if last.elapsed() >= timeout => {
                    break format!("no heartbeat for {} ms (heartbeat.timeout): {e}", last.elapsed().as_millis());
                }
                Err(_) if connection.is_closed() => break "its connection closed".to_string(),
                Err(_) => {}
            }
        };
        let removed = {
            let mut taskmanagers = self.taskmanagers();
            taskmanagers
                .iter()
                .position(|t| t.registration.resource_id == resource_id && t.connection.peer() == connection.peer())
                .map(|i| taskmanagers.remove(i))
        };
        connection.close();
        if let Some(lost) = &removed {
            for job in lost.allocated.keys() {
                self.dispatcher.deallocated(job, Some(&resource_id));
            }
        }
        if let Some(lost) = removed {
            warn!(
                taskmanager = %resource_id, address = %connection.peer(), slots = lost.registration.slots,
                "TaskManager lost: {reason}; its slots are no longer available"
            );
        }
    }

    fn handle(self: &Arc<Self>, connection: &RpcConnection, request: Request) -> Response {
        let role = connection.peer_hello().role;
        let dispatcher = &self.dispatcher;
        match (role, request) {
            (Role::TaskManager, Request::RegisterTaskManager(registration)) => {
                if registration.slots == 0 {
                    return Response::Error("a TaskManager must offer at least one slot".into());
                }
                self.register(connection, registration)
            }
            (Role::TaskManager, Request::FetchArtifact { job_id, offset }) => {
                dispatcher.artifact_chunk(&job_id, offset)
            }
            (_, Request::ClusterOverview) => Response::Overview(self.overview()),
            (Role::Client, Request::UploadArtifact { upload, data }) => {
                dispatcher.upload(connection.peer(), upload, &data)
            }
            (Role::Client, Request::SubmitJob(submission)) => {
                let submitted = dispatcher
                    .take_upload(connection.peer(), submission.upload)
                    .and_then(|upload| self.submit(upload, submission));
                match submitted {
                    Ok(job_id) => Response::JobSubmitted { job_id },
                    Err(e) => Response::Error(e),
                }
            }
            (Role::Client, Request::JobStatus { job_id }) => match dispatcher.info(&job_id) {
                Some(info) => Response::Job(info),
                None => Response::Error(format!("no job with id {job_id}")),
            },
            (Role::Client, Request::ListJobs) => Response::Jobs(dispatcher.list()),
            (Role::Client, Request::CancelJob { job_id }) => match dispatcher.cancel(&job_id) {
                Ok(()) => Response::Ack,
                Err(e) => Response::Error(e.to_string()),
            },
            (Role::Client, Request::TriggerSavepoint { job_id, directory, stop }) => {
                match self.savepoint(&job_id, directory, stop) {
                    Ok(path) => Response::SavepointCompleted { path },
                    Err(e) => Response::Error(e),
                }
            }
            (Role::Coordinator, Request::RegisterCoordinator(registration)) => {
                let template = match dispatcher.coordinator_registered(&registration, connection) {
                    Ok(template) => template,
                    Err(e) => return Response::Error(e),
                };
                let (job_id, slots) = (&registration.job_id, registration.slots);
                let started = self.start_workers(job_id, slots, 0, &template, connection);
                if matches!(started, Response::SlotsGranted { .. }) {
                    dispatcher.running(job_id, slots);
                }
                started
            }
            (Role::Coordinator, Request::ReattachCoordinator { job_id }) => {
                match dispatcher.reattach(&job_id, connection) {
                    Ok(()) => Response::Ack,
                    Err(e) => Response::Error(e),
                }
            }
            (Role::Coordinator, Request::RequestWorkers { job_id, slots, first_worker }) => {
                match dispatcher.worker_template(&job_id) {
                    Ok(template) => self.start_workers(&job_id, slots, first_worker, &template, connection),
                    Err(e) => Response::Error(e),
                }
            }
            (Role::Coordinator, Request::JobFinished { job_id, failure, archive }) => {
                dispatcher.finish_with_archive(&job_id, failure, &archive);
                self.release(&job_id);
                Response::Ack
            }
            (role, other) => Response::Error(format!("the JobManager does not serve {other:?} from a {role}")),
        }
    }

    /// Has the coordinator of `job_id` take a savepoint into `directory` (and stop the job
    /// after it, with `stop`); its location.
    fn savepoint(&self, job_id: &str, directory: String, stop: Option<bool>) -> Result<String, String> {
        let coordinator = self.dispatcher.coordinator(job_id)?;
        info!(job_id, directory = %directory, stop = stop.is_some(), "savepoint requested");
        let request = Request::TriggerSavepoint { job_id: job_id.to_string(), directory, stop };
        match coordinator.call(request, SAVEPOINT_TIMEOUT) {
            Ok(Response::SavepointCompleted { path }) => Ok(path),
            Ok(other) => Err(format!("unexpected answer from the job's coordinator: {other:?}")),
            Err(e) => Err(format!("the savepoint failed: {e}")),
        }
    }

    /// Makes `submission` with the artifact file `upload` a job and starts its coordinator.
    fn submit(self: &Arc<Self>, upload: PathBuf, submission: JobSubmission) -> Result<String, String> {
        // A reactive job starts on every free slot (at least one, which it waits for).
        let parallelism = self.config.reactive.then(|| self.free_slots().max(1));
        let (job_id, child) = self.dispatcher.submit(upload, submission, &self.address, parallelism)?;
        self.supervise(job_id.clone(), CoordinatorProcess::Child(child));
        Ok(job_id)
    }

    /// Gives job `job_id` `slots` slots and starts a worker (numbered from `first_worker`)
    /// on each TaskManager that gave some; answers `coordinator` with each new worker's slots.
    fn start_workers(
        &self,
        job_id: &str,
        slots: usize,
        first_worker: usize,
        template: &WorkerTemplate,
        coordinator: &RpcConnection,
    ) -> Response {
        let grants = match self.allocate(job_id, slots, coordinator) {
            Ok(grants) => grants,
            Err(e) => return Response::Error(e),
        };
        for (i, grant) in grants.iter().enumerate() {
            let launch = WorkerLaunch {
                job_id: job_id.to_string(),
                worker: first_worker + i,
                slots: grant.slots,
                args: template.args.clone(),
                config: template.config.clone(),
                coordinator: template.coordinator.clone(),
            };
            if let Err(e) = grant.connection.call(Request::StartWorker(launch), WORKER_START_TIMEOUT) {
                // A coordinator gone meanwhile had all the job's slots released (and its
                // workers stopped) already; a newer one may hold slots under the same indices.
                if !coordinator.is_closed() {
                    self.give_back(job_id, first_worker, &grants);
                }
                return Response::Error(format!(
                    "cannot start worker {} on the TaskManager at {}: {e}",
                    first_worker + i,
                    grant.connection.peer()
                ));
            }
        }
        info!(job_id, slots, workers = grants.len(), first_worker, "started the job's workers");
        Response::SlotsGranted { worker_slots: grants.iter().map(|g| g.slots).collect() }
    }

    /// Slots no job holds.
    fn free_slots(&self) -> usize {
        self.taskmanagers().iter().map(Registered::free_slots).sum()
    }

    /// Takes `slots` free slots for `job_id`, waiting up to `slot.request.timeout` for them
    /// while its `coordinator` is there.
    fn allocate(&self, job_id: &str, slots: usize, coordinator: &RpcConnection) -> Result<Vec<Grant>, String> {
        let deadline = Instant::now() + self.config.slot_request_timeout;
        let mut logged = false;
        loop {
            {
                let mut taskmanagers = self.taskmanagers();
                // Checked before granting, under the lock a release takes: slots granted to a job
                // whose coordinator is gone would stay taken, as its release already happened.
                if coordinator.is_closed() || self.dispatcher.is_stopping(job_id) {
                    return Err(format!(
                        "job {job_id} stopped (or its coordinator went away) while it waited for slots"
                    ));
                }
                let free: usize = taskmanagers.iter().map(Registered::free_slots).sum();
                if free >= slots {
                    let mut grants = Vec::new();
                    let mut needed = slots;
                    for t in taskmanagers.iter_mut() {
                        let take = t.free_slots().min(needed);
                        if take > 0 {
                            *t.allocated.entry(job_id.to_string()).or_default() += take;
                            let resource_id = t.registration.resource_id.clone();
                            grants.push(Grant { connection: t.connection.clone(), resource_id, slots: take });
                            needed -= take;
                        }
                    }
                    drop(taskmanagers);
                    for grant in &grants {
                        self.dispatcher.allocated(job_id, &grant.resource_id, grant.slots);
                    }
                    return Ok(grants);
                }
                if Instant::now() >= deadline {
                    let total: usize = taskmanagers.iter().map(|t| t.registration.slots).sum();
                    return Err(format!(
                        "the job needs {slots} slots, but only {free} of the cluster's {total} slots ({} TaskManagers) \
                         are free; waited {} s (slot.request.timeout)",
                        taskmanagers.len(),
                        self.config.slot_request_timeout.as_secs()
                    ));
                }
                if !logged {
                    info!(job_id, slots, free, "the job waits for free slots");
                    logged = true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Watches the coordinator process of `job_id` on a thread of its own until the job
    /// ended: when the process exits, frees the job's slots, and starts a new coordinator
    /// if the job is to go on (suspended for rescaling, or lost while this JobManager was
    /// down).
    fn supervise(self: &Arc<Self>, job_id: String, process: CoordinatorProcess) {
        let state = self.clone();
        let name = format!("job {job_id}");
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            let mut process = process;
            loop {
                let adopted = matches!(process, CoordinatorProcess::Adopted(_));
                let status = match process {
                    CoordinatorProcess::Child(mut child) => {
                        child.wait().map_or_else(|e| e.to_string(), |s| s.to_string())
                    }
                    CoordinatorProcess::Adopted(pid) => loop {
                        if state.dispatcher.info(&job_id).is_none_or(|j| j.state.is_terminal()) {
                            return;
                        }
                        if pid.is_none_or(|pid| !process_runs(pid)) {
                            break "the process is gone".to_string();
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    },
                };
                let again = state.dispatcher.coordinator_exited(&job_id, &status, adopted);
                state.release(&job_id);
                if !again {
                    state.dispatcher.discard_cancelled_checkpoints(&job_id);
                    return;
                }
                let parallelism = state.config.reactive.then(|| state.free_slots().max(1));
                match state.dispatcher.restart(&job_id, &state.address, parallelism) {
                    Ok(child) => process = CoordinatorProcess::Child(child),
                    Err(e) => {
                        warn!(job_id = %job_id, "cannot start the job again: {e}");
                        state.dispatcher.finish(&job_id, Some(format!("the job could not start again: {e}")));
                        state.dispatcher.discard_cancelled_checkpoints(&job_id);
                        return;
                    }
                }
            }
        });
        if let Err(e) = spawned {
            warn!("cannot watch a job's coordinator process: {e}");
        }
    }

    /// In reactive mode: rescales each running job to the slots it could have, once they
    /// stayed the same for `jobmanager.adaptive-scheduler.resource-stabilization-timeout`.
    fn rescale_reactive_jobs(&self) {
        let mut pending: HashMap<String, (usize, Instant)> = HashMap::new();
        while !self.shutting_down.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(100));
            let free = self.free_slots();
            let jobs = self.dispatcher.rescalable_jobs();
            pending.retain(|id, _| jobs.iter().any(|(j, ..)| j == id));
            for (job_id, parallelism, held, max_parallelism) in jobs {
                let target = (held + free).min(max_parallelism).max(1);
                if target == parallelism {
                    pending.remove(&job_id);
                    continue;
                }
                let since = pending.entry(job_id.clone()).or_insert((target, Instant::now()));
                if since.0 != target {
                    *since = (target, Instant::now());
                }
                if since.1.elapsed() < self.config.resource_stabilization_timeout {
                    continue;
                }
                pending.remove(&job_id);
                info!(job_id = %job_id, from = parallelism, to = target, "rescaling the job to the available slots (reactive mode)");
                if let Err(e) = self.dispatcher.request_restart(&job_id) {
                    warn!(job_id = %job_id, "cannot rescale the job: {e}");
                }
            }
        }
    }

    /// Undoes one request's `grants` (of workers numbered from `first_worker`) after a worker
    /// failed to start: stops those started (the failed one may have started too late) and
    /// frees their slots, leaving the job's other workers and slots alone.
    fn give_back(&self, job_id: &str, first_worker: usize, grants: &[Grant]) {
        for (i, grant) in grants.iter().enumerate() {
            let workers = Some(vec![first_worker + i]);
            let _ = grant.connection.post(Request::StopWorkers { job_id: job_id.to_string(), workers });
            self.dispatcher.returned(job_id, &grant.resource_id, grant.slots);
        }
        let mut taskmanagers = self.taskmanagers();
        for grant in grants {
            // A TaskManager lost meanwhile took its slots with it.
            if let Some(t) = taskmanagers.iter_mut().find(|t| t.registration.resource_id == grant.resource_id)
                && let Some(held) = t.allocated.get_mut(job_id)
            {
                *held = held.saturating_sub(grant.slots);
                if *held == 0 {
                    t.allocated.remove(job_id);
                }
            }
        }
    }

    /// Frees the slots of `job_id` and stops its workers that still run.
    fn release(&self, job_id: &str) {
        self.dispatcher.deallocated(job_id, None);
        for held in lock(&self.recovered_allocations).values_mut() {
            held.retain(|(job, _)| job != job_id);
        }
        for t in self.taskmanagers().iter_mut() {
            if t.allocated.remove(job_id).is_some() {
                let _ = t.connection.post(Request::StopWorkers { job_id: job_id.to_string(), workers: None });
            }
        }
    }
}

/// The JobManager as its REST server sees it.
struct RestView(Arc<State>);

impl ClusterView for RestView {
    fn overview(&self) -> ClusterOverview {
        self.0.overview()
    }

    fn jobs(&self) -> Vec<JobInfo> {
        self.0.dispatcher.list()
    }

    fn forward(&self, job_id: &str, call: RestCall, timeout: Duration) -> Result<RestAnswer, String> {
        let coordinator = self.0.dispatcher.coordinator(job_id)?;
        match coordinator.call(Request::RestCall(call), timeout) {
            Ok(Response::Rest(answer)) => Ok(answer),
            Ok(other) => Err(format!("unexpected answer from the job's coordinator: {other:?}")),
            Err(e) => Err(format!("the job's coordinator did not answer: {e}")),
        }
    }

    fn archived(&self, job_id: &str, path: &str) -> Option<String> {
        self.0.dispatcher.archived(job_id, path)
    }

    fn cancel(&self, job_id: &str) -> Result<(), CancelError> {
        self.0.dispatcher.cancel(job_id)
    }

    fn savepoint(&self, job_id: &str, directory: String, stop: Option<bool>) -> Result<String, String> {
        self.0.savepoint(job_id, directory, stop)
    }

    fn submit(
        &self,
        artifact: &Path,
        name: &str,
        args: Vec<String>,
        config: Vec<(String, String)>,
    ) -> Result<String, String> {
        let upload = self.0.dispatcher.upload_file();
        std::fs::copy(artifact, &upload).map_err(|e| format!("cannot copy '{}': {e}", artifact.display()))?;
        let submission = JobSubmission { upload: 0, artifact_name: name.to_string(), args, config };
        self.0.submit(upload, submission)
    }
}

/// A running JobManager; dropping it stops it.
pub struct JobManager {
    state: Arc<State>,
    local_addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl JobManager {
    /// Listens on `jobmanager.bind-host:jobmanager.rpc.port` (port 0: any free one) and serves
    /// TaskManagers and clients on background threads.
    pub fn start(config: ClusterConfig) -> Result<JobManager, ClusterError> {
        let addr = format!("{}:{}", config.bind_host, config.rpc_port);
        let listener = TcpListener::bind(&addr).map_err(|source| ClusterError::Bind { addr: addr.clone(), source })?;
        let local_addr = listener.local_addr().map_err(|source| ClusterError::Bind { addr, source })?;
        let id = format!("jobmanager-{}-{}", process_id(), unique_suffix());
        let dir = config.upload_dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("brisk-{id}")));
        let (dispatcher, recovered) = Dispatcher::new(dir.clone())
            .map_err(|e| ClusterError::Config(format!("cannot create '{}' (web.upload.dir): {e}", dir.display())))?;
        let mut recovered_allocations: HashMap<String, Vec<(String, usize)>> = HashMap::new();
        for job in &recovered {
            for (resource_id, slots) in &job.allocations {
                recovered_allocations.entry(resource_id.clone()).or_default().push((job.job_id.clone(), *slots));
            }
        }
        let state = Arc::new(State {
            id,
            address: format!("{}:{}", config.rpc_address, local_addr.port()),
            config,
            taskmanagers: Mutex::new(Vec::new()),
            recovered_allocations: Mutex::new(recovered_allocations),
            dispatcher,
            shutting_down: AtomicBool::new(false),
            rest_address: OnceLock::new(),
            rest_server: Mutex::new(None),
        });
        if let Some(port) = state.config.rest_port {
            let config = &state.config;
            let view: Arc<dyn ClusterView> = Arc::new(RestView(state.clone()));
            let jars = state.dispatcher.jars_dir();
            let (address, serving) =
                start_cluster_server(&config.rest_bind_address, port, config.rest.clone(), jars, view)
                    .map_err(ClusterError::Config)?;
            let _ = state.rest_address.set(address);
            *lock(&state.rest_server) = Some(serving);
        }
        for job in recovered {
            state.supervise(job.job_id, CoordinatorProcess::Adopted(job.pid));
        }
        if state.config.reactive {
            let rescaling = state.clone();
            std::thread::Builder::new()
                .name("reactive rescaling".into())
                .spawn(move || rescaling.rescale_reactive_jobs())
                .map_err(ClusterError::Spawn)?;
        }
        let accepting = state.clone();
        let acceptor = std::thread::Builder::new()
            .name("jobmanager accept".into())
            .spawn(move || accept_loop(accepting, listener))
            .map_err(ClusterError::Spawn)?;
        info!(address = %local_addr, id = %state.id, version = brisk_rpc::BRISK_VERSION, "JobManager listening");
        Ok(JobManager { state, local_addr, acceptor: Some(acceptor) })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The registered TaskManagers and their slots.
    pub fn overview(&self) -> ClusterOverview {
        self.state.overview()
    }

    /// Where its REST API listens (`None`: `rest.port: -1`).
    pub fn rest_address(&self) -> Option<SocketAddr> {
        self.state.rest_address.get().copied()
    }

    /// Runs until the process is stopped.
    pub fn wait(mut self) {
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }

    /// Stops accepting and closes every connection.
    pub fn shutdown(&mut self) {
        if self.state.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        // `accept` returns only for a connection: make one.
        let _ = TcpStream::connect_timeout(&wake_address(self.local_addr), Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for t in self.state.taskmanagers().drain(..) {
            t.connection.close();
        }
        if let Some(rest) = lock(&self.state.rest_server).take() {
            rest.stop();
        }
    }
}

impl Drop for JobManager {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(state: Arc<State>, listener: TcpListener) {
    for stream in listener.incoming() {
        if state.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                warn!("cannot accept a connection: {e}");
                continue;
            }
        };
        // Handshakes on their own thread: a silent peer must not hold up the others.
        let state = state.clone();
        let spawned = std::thread::Builder::new().name("jobmanager handshake".into()).spawn(move || {
            let handler_state = state.clone();
            let accepted = RpcConnection::accept(
                stream,
                Role::JobManager,
                admit,
                move |connection: &RpcConnection, request| handler_state.handle(connection, request),
                HANDSHAKE_TIMEOUT,
            );
            if let Err(e) = accepted {
                warn!("refused a connection: {e}");
            }
        });
        if let Err(e) = spawned {
            warn!("cannot start a handshake thread: {e}");
        }
    }
}

fn admit(hello: &Hello) -> Result<(), String> {
    match hello.role {
        Role::TaskManager | Role::Client | Role::Coordinator => Ok(()),
        other => Err(format!("a JobManager does not serve a {other}")),
    }
}

/// A connectable address for `addr` (a wildcard address becomes the loopback one).
fn wake_address(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// Eight hex digits that differ between processes and calls (in resource ids).
pub(crate) fn unique_suffix() -> String {
    brisk_core::hash::unique_id("suffix")[..8].to_string()
}

/// Whether process `pid` runs (neither gone nor a zombie).
fn process_runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')').is_some_and(|(_, rest)| !matches!(rest.trim_start().chars().next(), Some('Z' | 'X')))
    })
}
