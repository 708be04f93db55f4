//! The TaskManager process: registers its slots with the JobManager, answers its heartbeats,
//! and registers again when the JobManager is lost (no heartbeat for `heartbeat.timeout`, or
//! the connection broke) — so a restarted JobManager gets its TaskManagers back.

use crate::config::ClusterConfig;
use crate::{ClusterError, lock};
use brisk_rpc::{
    RegistrationAck, Request, Response, Role, RpcConnection, RpcError, TaskManagerHeartbeat, TaskManagerRegistration,
    WorkerLaunch,
};
use brisk_runtime::executor::{
    COORDINATOR_ENV, JOB_CONFIG_ENV, JOB_ID_ENV, JOBMANAGER_ENV, PLAN_FILE_ENV, WORKER_INDEX_ENV,
};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The first and the longest pause between attempts to reach the JobManager.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// How long one connection attempt or registration call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the registered TaskManager checks that the JobManager is still there.
const CHECK_EVERY: Duration = Duration::from_millis(50);
/// How long the workers of an ended job may take to end by themselves.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// This process's id.
pub(crate) fn process_id() -> u32 {
    std::process::id()
}

/// A TaskManager: what it offers and where its JobManager is.
pub struct TaskManager {
    config: ClusterConfig,
    jobmanager: String,
    registration: TaskManagerRegistration,
    stop: Arc<AtomicBool>,
    workers: Arc<Workers>,
}

/// The worker processes this TaskManager started, by job.
struct Workers {
    dir: PathBuf,
    jobmanager: String,
    running: Mutex<Running>,
    /// Workers are started by one thread that lives as long as the TaskManager: the kernel
    /// kills a worker when the thread that started it ends (`PR_SET_PDEATHSIG`).
    launcher: Mutex<mpsc::Sender<Launch>>,
    /// Held while an artifact is fetched and its worker started, or while it is removed.
    artifacts: Mutex<()>,
}

/// The workers of each job, started or starting.
#[derive(Default)]
struct Running {
    /// Started workers by job.
    jobs: HashMap<String, Vec<Worker>>,
    /// Workers being started (their artifact fetched) by (job, index): true once they were
    /// stopped meanwhile, so that they do not run on unnoticed.
    starting: HashMap<(String, usize), bool>,
}

/// A started worker process.
struct Worker {
    index: usize,
    slots: usize,
    process: Child,
}

/// A worker to start, and where the result goes.
type Launch = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Starts the launcher thread; it ends when its sender is dropped.
fn start_launcher() -> std::io::Result<mpsc::Sender<Launch>> {
    let (launches, requests) = mpsc::channel::<Launch>();
    std::thread::Builder::new().name("worker launcher".into()).spawn(move || {
        for (mut command, reply) in requests {
            let _ = reply.send(command.spawn());
        }
    })?;
    Ok(launches)
}

impl Workers {
    /// Workers kept under `dir`, fetching artifacts from the JobManager at `jobmanager`.
    fn new(dir: PathBuf, jobmanager: String) -> std::io::Result<Workers> {
        Ok(Workers {
            dir,
            jobmanager,
            running: Mutex::new(Running::default()),
            launcher: Mutex::new(start_launcher()?),
            artifacts: Mutex::new(()),
        })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        lock(&self.running)
    }

    /// The process ids of the workers started here.
    fn pids(&self) -> Vec<u32> {
        self.running().jobs.values().flatten().map(|w| w.process.id()).collect()
    }

    /// Slots used by workers still running.
    fn used_slots(&self) -> usize {
        let mut running = self.running();
        let jobs = &mut running.jobs;
        jobs.values_mut().for_each(|workers| workers.retain_mut(|w| matches!(w.process.try_wait(), Ok(None))));
        jobs.retain(|_, workers| !workers.is_empty());
        jobs.values().flatten().map(|w| w.slots).sum()
    }

    /// Fetches the job's artifact from the JobManager (once per job) and starts the worker,
    /// unless the worker is stopped meanwhile.
    fn start(&self, launch: WorkerLaunch) -> Result<(), String> {
        let key = (launch.job_id.clone(), launch.worker);
        self.running().starting.insert(key.clone(), false);
        let started = self.launch(&launch);
        let mut running = self.running();
        let stopped = running.starting.remove(&key).unwrap_or(true);
        let (mut process, log) = started?;
        if stopped {
            drop(running);
            let _ = process.kill();
            let _ = process.wait();
            return Err(format!("worker {} of job {} was stopped while it started", launch.worker, launch.job_id));
        }
        info!(job_id = %launch.job_id, worker = launch.worker, slots = launch.slots, pid = process.id(), log = %log.display(), "started a worker");
        running.jobs.entry(launch.job_id).or_default().push(Worker {
            index: launch.worker,
            slots: launch.slots,
            process,
        });
        Ok(())
    }

    /// Fetches the artifact if this TaskManager lacks it, and starts the worker's process;
    /// returns it and the worker's log file.
    fn launch(&self, launch: &WorkerLaunch) -> Result<(Child, PathBuf), String> {
        let _artifacts = lock(&self.artifacts);
        let job_dir = self.dir.join(&launch.job_id);
        let artifact = job_dir.join("artifact");
        if !artifact.exists() {
            std::fs::create_dir_all(&job_dir).map_err(|e| format!("cannot create '{}': {e}", job_dir.display()))?;
            self.fetch(&launch.job_id, &artifact)?;
        }
        let log_path = job_dir.join(format!("worker-{}.log", launch.worker));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open '{}': {e}", log_path.display()))?;
        let err_log = log.try_clone().map_err(|e| format!("cannot open '{}': {e}", log_path.display()))?;
        let config =
            serde_json::to_string(&launch.config).map_err(|e| format!("cannot encode the job's configuration: {e}"))?;
        let mut command = Command::new(&artifact);
        // A worker dies with its TaskManager (`kill -9` included), as Flink's tasks die with
        // their TaskManager's JVM: its job restarts its tasks elsewhere.
        // SAFETY: the closure runs in the child between fork and exec and only calls
        // `prctl`, which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
            .args(&launch.args)
            .env_remove(PLAN_FILE_ENV)
            .env_remove(JOBMANAGER_ENV)
            .env(COORDINATOR_ENV, &launch.coordinator)
            .env(WORKER_INDEX_ENV, launch.worker.to_string())
            .env(JOB_ID_ENV, &launch.job_id)
            .env(JOB_CONFIG_ENV, config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log);
        let (reply, spawned) = mpsc::channel();
        lock(&self.launcher).send((command, reply)).map_err(|_| "the worker launcher is gone".to_string())?;
        let process = spawned
            .recv()
            .map_err(|_| "the worker launcher is gone".to_string())?
            .map_err(|e| format!("cannot start the job's artifact '{}': {e}", artifact.display()))?;
        Ok((process, log_path))
    }

    /// Downloads the artifact of `job_id` into `path` over a connection of its own (this one's
    /// reader thread is busy with the request).
    fn fetch(&self, job_id: &str, path: &Path) -> Result<(), String> {
        let no_requests = |_: &RpcConnection, r: Request| Response::Error(format!("unexpected {r:?}"));
        let connection = RpcConnection::connect(&self.jobmanager, Role::TaskManager, no_requests, CALL_TIMEOUT)
            .map_err(|e| format!("cannot fetch the artifact: {e}"))?;
        let partial = path.with_extension("partial");
        let mut file = File::create(&partial).map_err(|e| format!("cannot create '{}': {e}", partial.display()))?;
        let mut offset = 0u64;
        loop {
            let request = Request::FetchArtifact { job_id: job_id.to_string(), offset };
            match connection.call(request, CALL_TIMEOUT) {
                Ok(Response::ArtifactChunk { data, total }) => {
                    file.write_all(&data).map_err(|e| format!("cannot write '{}': {e}", partial.display()))?;
                    offset += data.len() as u64;
                    if offset >= total || data.is_empty() {
                        break;
                    }
                }
                Ok(other) => return Err(format!("unexpected answer to an artifact request: {other:?}")),
                Err(e) => return Err(format!("cannot fetch the artifact: {e}")),
            }
        }
        connection.close();
        drop(file);
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(|e| format!("cannot store the artifact in '{}': {e}", path.display()))
    }

    /// Stops the workers of `job_id` (`only` those when given) that did not end by themselves
    /// within a grace period, and those still starting; then removes the job's artifact unless
    /// the job has workers here (it restarted here, or only some were stopped); logs stay.
    fn stop(self: &Arc<Self>, job_id: String, only: Option<Vec<usize>>) {
        let chosen = |index: &usize| only.as_ref().is_none_or(|only| only.contains(index));
        let mut stopping = Vec::new();
        {
            let mut running = self.running();
            for ((job, index), stopped) in running.starting.iter_mut() {
                *stopped |= *job == job_id && chosen(index);
            }
            if let Some(workers) = running.jobs.get_mut(&job_id) {
                let (stopped, kept) = std::mem::take(workers).into_iter().partition(|w| chosen(&w.index));
                (stopping, *workers) = (stopped, kept);
                if workers.is_empty() {
                    running.jobs.remove(&job_id);
                }
            }
        }
        let workers = self.clone();
        let _ = std::thread::Builder::new().name(format!("stop {job_id}")).spawn(move || {
            let deadline = Instant::now() + STOP_GRACE;
            loop {
                stopping.retain_mut(|w| matches!(w.process.try_wait(), Ok(None)));
                if stopping.is_empty() {
                    break;
                }
                if Instant::now() >= deadline {
                    for w in stopping.iter_mut() {
                        warn!(job_id = %job_id, worker = w.index, pid = w.process.id(), "a worker did not end when stopped; killing it");
                        let _ = w.process.kill();
                        let _ = w.process.wait();
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // Under the artifact lock: a worker being started now keeps its artifact.
            let _starting = lock(&workers.artifacts);
            if workers.running().jobs.contains_key(&job_id) {
                return;
            }
            let artifact = workers.dir.join(&job_id).join("artifact");
            if let Err(e) = std::fs::remove_file(&artifact)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                warn!(job_id = %job_id, "cannot remove '{}': {e}", artifact.display());
            }
        });
    }
}

impl TaskManager {
    /// A TaskManager for the JobManager at `jobmanager` (`host:port`) offering the configured
    /// slots.
    pub fn new(config: ClusterConfig, jobmanager: String) -> Result<TaskManager, ClusterError> {
        let resource_id = config.resource_id.clone().unwrap_or_else(|| {
            format!("{}-{}-{}", config.taskmanager_host, process_id(), crate::jobmanager::unique_suffix())
        });
        let registration = TaskManagerRegistration {
            resource_id,
            host: config.taskmanager_host.clone(),
            pid: process_id(),
            slots: config.slots,
        };
        let dir = config
            .tmp_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join(format!("brisk-taskmanager-{}", registration.resource_id));
        let workers = Arc::new(Workers::new(dir, jobmanager.clone()).map_err(ClusterError::Spawn)?);
        Ok(TaskManager { config, jobmanager, registration, stop: Arc::new(AtomicBool::new(false)), workers })
    }

    /// Its resource id.
    pub fn resource_id(&self) -> &str {
        &self.registration.resource_id
    }

    /// A flag that ends [`run`](Self::run) when set.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Registers, stays registered, and registers again whenever the JobManager is lost; ends
    /// with an error when it cannot reach the JobManager within
    /// `taskmanager.registration.timeout`, or when the stop flag is set (`Ok`).
    pub fn run(&self) -> Result<(), ClusterError> {
        while !self.stop.load(Ordering::Acquire) {
            let Some((connection, ack, last_heartbeat)) = self.register()? else { return Ok(()) };
            let timeout = Duration::from_millis(ack.heartbeat_timeout_ms);
            info!(
                jobmanager = %self.jobmanager, id = %ack.jobmanager_id, taskmanager = %self.registration.resource_id,
                slots = self.registration.slots, "registered with the JobManager"
            );
            let reason = loop {
                if self.stop.load(Ordering::Acquire) {
                    connection.close();
                    return Ok(());
                }
                if connection.is_closed() {
                    break "the connection closed".to_string();
                }
                let silent = Duration::from_millis(now_ms().saturating_sub(last_heartbeat.load(Ordering::Acquire)));
                if silent >= timeout {
                    break format!("no heartbeat for {} ms (heartbeat.timeout)", silent.as_millis());
                }
                std::thread::sleep(CHECK_EVERY);
            };
            connection.close();
            warn!(jobmanager = %self.jobmanager, "JobManager lost: {reason}; registering again");
        }
        Ok(())
    }

    /// Connects and registers, retrying with backoff; `None` when stopped meanwhile.
    #[allow(clippy::type_complexity)]
    fn register(&self) -> Result<Option<(RpcConnection, RegistrationAck, Arc<AtomicU64>)>, ClusterError> {
        let started = Instant::now();
        let mut pause = BACKOFF.0;
        loop {
            if self.stop.load(Ordering::Acquire) {
                return Ok(None);
            }
            let last_heartbeat = Arc::new(AtomicU64::new(now_ms()));
            let error = match self.try_register(last_heartbeat.clone()) {
                Ok((connection, ack)) => return Ok(Some((connection, ack, last_heartbeat))),
                Err(RpcError::Refused { reason, .. }) | Err(RpcError::Remote { message: reason, .. }) => {
                    return Err(ClusterError::Refused { addr: self.jobmanager.clone(), reason });
                }
                Err(e) => e,
            };
            let waited = started.elapsed();
            if waited >= self.config.registration_timeout {
                return Err(ClusterError::Unreachable {
                    addr: self.jobmanager.clone(),
                    waited_ms: waited.as_millis() as u64,
                    last_error: error.to_string(),
                });
            }
            info!(jobmanager = %self.jobmanager, retry_in_ms = pause.as_millis() as u64, "cannot reach the JobManager yet: {error}");
            std::thread::sleep(pause.min(self.config.registration_timeout.saturating_sub(waited)));
            pause = (pause * 2).min(BACKOFF.1);
        }
    }

    fn try_register(&self, last_heartbeat: Arc<AtomicU64>) -> Result<(RpcConnection, RegistrationAck), RpcError> {
        let registration = self.registration.clone();
        let workers = self.workers.clone();
        let handler = move |_: &RpcConnection, request: Request| match request {
            Request::Heartbeat { .. } => {
                last_heartbeat.store(now_ms(), Ordering::Release);
                Response::Heartbeat(TaskManagerHeartbeat {
                    resource_id: registration.resource_id.clone(),
                    slots: registration.slots,
                    free_slots: registration.slots.saturating_sub(workers.used_slots()),
                    memory_used: workers.pids().into_iter().chain([process_id()]).map(resident_memory).sum(),
                    physical_memory: physical_memory(),
                })
            }
            Request::StartWorker(launch) => match workers.start(launch) {
                Ok(()) => Response::Ack,
                Err(e) => Response::Error(e),
            },
            Request::StopWorkers { job_id, workers: only } => {
                workers.stop(job_id, only);
                Response::Ack
            }
            other => Response::Error(format!("a TaskManager does not serve {other:?}")),
        };
        let connection = RpcConnection::connect(&self.jobmanager, Role::TaskManager, handler, CALL_TIMEOUT)?;
        match connection.call(Request::RegisterTaskManager(self.registration.clone()), CALL_TIMEOUT) {
            Ok(Response::Registered(ack)) => Ok((connection, ack)),
            Ok(other) => {
                connection.close();
                Err(RpcError::Protocol { peer: connection.peer(), reason: format!("unexpected answer {other:?}") })
            }
            Err(e) => {
                connection.close();
                Err(e)
            }
        }
    }
}

/// The resident memory of process `pid` in bytes (0 when it cannot be read: it ended).
fn resident_memory(pid: u32) -> u64 {
    // `statm`: sizes in pages; the second is the resident set.
    let pages = std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .unwrap_or(0);
    // SAFETY: sysconf only reads a system constant.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page_size).unwrap_or(4096)
}

/// The host's physical memory in bytes (0 when unknown).
fn physical_memory() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    kib.unwrap_or(0) * 1024
}

/// Milliseconds on a monotonic clock private to this process.
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A JobManager stand-in serving one artifact (a script that sleeps) after `delay`.
    fn serve_artifact(delay: Duration) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let mut connections = Vec::new();
            for stream in listener.incoming() {
                let handler = move |_: &RpcConnection, request: Request| match request {
                    Request::FetchArtifact { .. } => {
                        std::thread::sleep(delay);
                        let data = b"#!/bin/sh\nexec sleep 30\n".to_vec();
                        Response::ArtifactChunk { total: data.len() as u64, data }
                    }
                    other => Response::Error(format!("unexpected {other:?}")),
                };
                let accepted =
                    RpcConnection::accept(stream.unwrap(), Role::JobManager, |_| Ok(()), handler, CALL_TIMEOUT);
                connections.push(accepted.unwrap());
            }
        });
        addr
    }

    fn launch(worker: usize) -> WorkerLaunch {
        WorkerLaunch {
            job_id: "job".into(),
            worker,
            slots: 1,
            args: Vec::new(),
            config: Vec::new(),
            coordinator: "127.0.0.1:1".into(),
        }
    }

    fn workers(delay: Duration, name: &str) -> Arc<Workers> {
        let dir = std::env::temp_dir().join(format!("brisk-tm-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Arc::new(Workers::new(dir, serve_artifact(delay)).unwrap())
    }

    fn indices(workers: &Workers) -> Vec<usize> {
        workers.running().jobs.get("job").map(|w| w.iter().map(|w| w.index).collect()).unwrap_or_default()
    }

    #[test]
    fn a_worker_stopped_while_its_artifact_is_fetched_does_not_run() {
        let workers = workers(Duration::from_millis(300), "fetching");
        let starting = workers.clone();
        let start = std::thread::spawn(move || starting.start(launch(0)));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !workers.running().starting.contains_key(&("job".to_string(), 0)) {
            assert!(Instant::now() < deadline, "the start never began");
            std::thread::sleep(Duration::from_millis(5));
        }
        workers.stop("job".into(), None);
        let error = start.join().unwrap().expect_err("the worker was stopped");
        assert!(error.contains("stopped while it started"), "{error}");
        assert_eq!(workers.used_slots(), 0);
        assert!(workers.running().starting.is_empty());
    }

    #[test]
    fn stopping_some_workers_of_a_job_keeps_the_others() {
        let workers = workers(Duration::ZERO, "some");
        for worker in 0..3 {
            workers.start(launch(worker)).unwrap();
        }
        assert_eq!(workers.used_slots(), 3);
        workers.stop("job".into(), Some(vec![1]));
        assert_eq!(indices(&workers), vec![0, 2]);
        assert_eq!(workers.used_slots(), 2);
        workers.stop("job".into(), None);
        assert!(indices(&workers).is_empty());
        assert_eq!(workers.used_slots(), 0);
    }
}
