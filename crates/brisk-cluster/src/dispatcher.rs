//! The JobManager's dispatcher (Flink's `Dispatcher`): takes submitted artifacts, starts a
//! coordinator process per job (the artifact in coordinator mode, which runs the job master),
//! and keeps every job's state until the job ends, when it frees the job's slots.

use crate::lock;
use brisk_rest::CancelError;
use brisk_rpc::{ArchivedJson, JobInfo, JobState, JobSubmission, Response, RpcConnection};
use brisk_runtime::checkpoint::SnapshotLocation;
use brisk_runtime::checkpoint::storage::{CheckpointStorage, write_atomically};
use brisk_runtime::executor::{JOB_CONFIG_ENV, JOB_ID_ENV, JOB_RESULT_FILE_ENV, JOBMANAGER_ENV, PLAN_FILE_ENV};
use brisk_runtime::graph::job_graph::default_max_parallelism;
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

/// The largest piece of an artifact sent in one frame.
pub const ARTIFACT_CHUNK: usize = 8 << 20;

/// One submitted job.
struct Job {
    info: JobInfo,
    artifact: PathBuf,
    args: Vec<String>,
    config: Vec<(String, String)>,
    started: Instant,
    coordinator: Option<RpcConnection>,
    /// Where its workers reach its coordinator.
    coordinator_address: String,
    /// Its coordinator process, until it exits.
    pid: Option<u32>,
    cancel_requested: bool,
    log: PathBuf,
    /// Slots it holds, by TaskManager resource id.
    allocations: Vec<(String, usize)>,
    /// Configuration the JobManager sets over the submitted one (a restart's checkpoint, a
    /// reactive job's parallelism); the coordinator and its workers get both.
    overrides: Vec<(String, String)>,
    /// Where its checkpoints go, and the newest checkpoint id there before it first started
    /// (older ones belong to earlier jobs).
    checkpoints: Option<(String, u64)>,
    /// The largest parallelism its program allows (its operators' smallest maximum
    /// parallelism, which the program may set itself), as its coordinator reported it.
    max_parallelism: Option<usize>,
    /// Whether its checkpoints go when it is cancelled, as its coordinator reported.
    delete_on_cancellation: bool,
    /// Set when the JobManager suspended its coordinator to start it again.
    restart_requested: bool,
}

/// A job as the job store keeps it on disk (`<web.upload.dir>/jobs/<id>.json`), so that a
/// JobManager started again knows its running jobs.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredJob {
    info: JobInfo,
    artifact: PathBuf,
    args: Vec<String>,
    config: Vec<(String, String)>,
    coordinator_address: String,
    pid: Option<u32>,
    log: PathBuf,
    /// Slots the job holds, by TaskManager resource id.
    allocations: Vec<(String, usize)>,
    #[serde(default)]
    overrides: Vec<(String, String)>,
    #[serde(default)]
    checkpoints: Option<(String, u64)>,
    #[serde(default)]
    max_parallelism: Option<usize>,
    #[serde(default)]
    delete_on_cancellation: bool,
}

/// A running job found in the job store when the JobManager started.
pub(crate) struct RecoveredJob {
    /// Its id.
    pub job_id: String,
    /// Its coordinator process, if it was known.
    pub pid: Option<u32>,
    /// Slots it holds, by TaskManager resource id.
    pub allocations: Vec<(String, usize)>,
}

/// Jobs and their artifacts.
pub(crate) struct Dispatcher {
    dir: PathBuf,
    jobs: Mutex<Vec<Job>>,
    /// Uploads in progress by (client address, upload id).
    uploads: Mutex<HashMap<(SocketAddr, u64), PathBuf>>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A job id: 32 hex digits, as Flink's.
fn new_job_id() -> String {
    brisk_core::hash::unique_id("job")
}

impl Dispatcher {
    /// A dispatcher keeping artifacts, logs and the job store under `dir`; returns the jobs
    /// the store says are still running.
    pub fn new(dir: PathBuf) -> std::io::Result<(Self, Vec<RecoveredJob>)> {
        std::fs::create_dir_all(dir.join("uploads"))?;
        std::fs::create_dir_all(dir.join("jobs"))?;
        let mut jobs = Vec::new();
        let mut recovered = Vec::new();
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(dir.join("jobs"))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for path in entries.into_iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
            let stored: StoredJob = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
            {
                Ok(stored) => stored,
                Err(e) => {
                    warn!(file = %path.display(), "skipping an unreadable job store entry: {e}");
                    continue;
                }
            };
            let running = !stored.info.state.is_terminal();
            if running {
                info!(job_id = %stored.info.job_id, state = %stored.info.state, "recovered a running job from the job store");
                recovered.push(RecoveredJob {
                    job_id: stored.info.job_id.clone(),
                    pid: stored.pid,
                    allocations: stored.allocations.clone(),
                });
            }
            let elapsed = std::time::Duration::from_millis(now_ms().saturating_sub(stored.info.start_time_ms));
            jobs.push(Job {
                started: Instant::now().checked_sub(elapsed).unwrap_or_else(Instant::now),
                info: stored.info,
                artifact: stored.artifact,
                args: stored.args,
                config: stored.config,
                coordinator: None,
                coordinator_address: stored.coordinator_address,
                pid: stored.pid.filter(|_| running),
                cancel_requested: false,
                log: stored.log,
                allocations: stored.allocations,
                overrides: stored.overrides,
                checkpoints: stored.checkpoints,
                max_parallelism: stored.max_parallelism,
                delete_on_cancellation: stored.delete_on_cancellation,
                restart_requested: false,
            });
        }
        jobs.sort_by_key(|j| j.info.start_time_ms);
        Ok((Dispatcher { dir, jobs: Mutex::new(jobs), uploads: Mutex::new(HashMap::new()) }, recovered))
    }

    /// Writes `job` to the job store (atomically: a reader sees the old or the new entry).
    fn store(&self, job: &Job) {
        let stored = StoredJob {
            info: job.info.clone(),
            artifact: job.artifact.clone(),
            args: job.args.clone(),
            config: job.config.clone(),
            coordinator_address: job.coordinator_address.clone(),
            pid: job.pid,
            log: job.log.clone(),
            allocations: job.allocations.clone(),
            overrides: job.overrides.clone(),
            checkpoints: job.checkpoints.clone(),
            max_parallelism: job.max_parallelism,
            delete_on_cancellation: job.delete_on_cancellation,
        };
        let path = self.dir.join("jobs").join(format!("{}.json", job.info.job_id));
        let written = serde_json::to_vec_pretty(&stored)
            .map_err(|e| e.to_string())
            .and_then(|bytes| write_atomically(&path, &bytes).map_err(|e| e.to_string()));
        if let Err(e) = written {
            warn!(job_id = %job.info.job_id, file = %path.display(), "cannot update the job store: {e}");
        }
    }

    /// The coordinator of a recovered job connected again.
    pub fn reattach(&self, job_id: &str, connection: &RpcConnection) -> Result<(), String> {
        let mut jobs = lock(&self.jobs);
        let job =
            jobs.iter_mut().find(|j| j.info.job_id == job_id).ok_or_else(|| format!("no job with id {job_id}"))?;
        if job.info.state.is_terminal() {
            return Err(format!("job {job_id} has already ended ({})", job.info.state));
        }
        job.coordinator = Some(connection.clone());
        if std::mem::take(&mut job.restart_requested) {
            // The suspension asked before the JobManager went down may never have arrived: the
            // job counts as running again, so reactive mode looks at it afresh. If it did
            // arrive, the coordinator's exit restarts the job all the same (it is adopted).
            job.info.state = JobState::Running;
            self.store(job);
        }
        info!(job_id, "the job's coordinator is back");
        Ok(())
    }

    /// Records the slots `job_id` got on TaskManager `resource_id`.
    pub fn allocated(&self, job_id: &str, resource_id: &str, slots: usize) {
        let mut jobs = lock(&self.jobs);
        if let Some(job) = jobs.iter_mut().find(|j| j.info.job_id == job_id) {
            job.allocations.push((resource_id.to_string(), slots));
            self.store(job);
        }
    }

    /// Forgets the slots `job_id` held on TaskManager `resource_id` (it was lost), or on all.
    pub fn deallocated(&self, job_id: &str, resource_id: Option<&str>) {
        let mut jobs = lock(&self.jobs);
        if let Some(job) = jobs.iter_mut().find(|j| j.info.job_id == job_id) {
            job.allocations.retain(|(r, _)| resource_id.is_some_and(|id| id != r));
            self.store(job);
        }
    }

    /// Forgets `slots` slots that `job_id` got on TaskManager `resource_id` and gave back.
    pub fn returned(&self, job_id: &str, resource_id: &str, slots: usize) {
        let mut jobs = lock(&self.jobs);
        if let Some(job) = jobs.iter_mut().find(|j| j.info.job_id == job_id)
            && let Some(at) = job.allocations.iter().position(|(r, s)| r == resource_id && *s == slots)
        {
            job.allocations.remove(at);
            self.store(job);
        }
    }

    /// The file of upload `upload` of `client`, which a submission takes.
    pub fn take_upload(&self, client: SocketAddr, upload: u64) -> Result<PathBuf, String> {
        lock(&self.uploads)
            .remove(&(client, upload))
            .ok_or_else(|| format!("no artifact was uploaded under upload {upload}"))
    }

    /// A new file for an artifact to submit that arrived another way (over REST).
    pub fn upload_file(&self) -> PathBuf {
        self.dir.join("uploads").join(format!("rest-{}", new_job_id()))
    }

    /// Where the REST API keeps uploaded artifacts (Flink's jars).
    pub fn jars_dir(&self) -> PathBuf {
        self.dir.join("jars")
    }

    /// Appends `data` to upload `upload` of `client`.
    pub fn upload(&self, client: SocketAddr, upload: u64, data: &[u8]) -> Response {
        let path = lock(&self.uploads)
            .entry((client, upload))
            .or_insert_with(|| self.dir.join("uploads").join(format!("{}-{upload}", client.port())))
            .clone();
        let written = OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| f.write_all(data));
        match written {
            Ok(()) => Response::Ack,
            Err(e) => Response::Error(format!("cannot store the artifact in '{}': {e}", path.display())),
        }
    }

    /// Makes `submission`, whose artifact is the file `upload` (moved into the job's
    /// directory), a job (at `parallelism` when given, over the submitted one) and starts its
    /// coordinator process, which reports to `jobmanager`; returns the job's id and the
    /// process to wait for.
    pub fn submit(
        &self,
        upload: PathBuf,
        submission: JobSubmission,
        jobmanager: &str,
        parallelism: Option<usize>,
    ) -> Result<(String, std::process::Child), String> {
        let job_id = new_job_id();
        let job_dir = self.dir.join(&job_id);
        let stored = (|| {
            std::fs::create_dir_all(&job_dir)?;
            let artifact = job_dir.join(brisk_rpc::artifact_file_name(&submission.artifact_name));
            std::fs::rename(&upload, &artifact)?;
            std::fs::set_permissions(&artifact, std::fs::Permissions::from_mode(0o755))?;
            Ok::<_, std::io::Error>(artifact)
        })();
        let artifact = stored.map_err(|e| format!("cannot store the artifact in '{}': {e}", job_dir.display()))?;
        let mut job = Job {
            info: JobInfo {
                job_id: job_id.clone(),
                name: submission.artifact_name.clone(),
                state: JobState::Initializing,
                start_time_ms: now_ms(),
                duration_ms: 0,
                failure: None,
                slots: 0,
            },
            artifact,
            args: submission.args,
            config: submission.config,
            started: Instant::now(),
            coordinator: None,
            coordinator_address: String::new(),
            pid: None,
            cancel_requested: false,
            log: job_dir.join("coordinator.log"),
            allocations: Vec::new(),
            overrides: Vec::new(),
            checkpoints: None,
            max_parallelism: None,
            delete_on_cancellation: false,
            restart_requested: false,
        };
        if let Some(slots) = parallelism {
            job.scale_to(slots);
        }
        let child = spawn_coordinator(&job, jobmanager)?;
        job.pid = Some(child.id());
        info!(job_id = %job_id, artifact = %job.artifact.display(), pid = child.id(), log = %job.log.display(), "job submitted; coordinator started");
        self.store(&job);
        lock(&self.jobs).push(job);
        Ok((job_id, child))
    }

    /// The coordinator of a job registered.
    pub fn coordinator_registered(
        &self,
        registration: &brisk_rpc::CoordinatorRegistration,
        connection: &RpcConnection,
    ) -> Result<WorkerTemplate, String> {
        let job_id = &registration.job_id;
        let mut jobs = lock(&self.jobs);
        let job =
            jobs.iter_mut().find(|j| j.info.job_id == *job_id).ok_or_else(|| format!("no job with id {job_id}"))?;
        if job.info.state.is_terminal() || job.cancel_requested {
            return Err(format!(
                "job {job_id} is {}",
                if job.cancel_requested { "being cancelled".into() } else { job.info.state.to_string() }
            ));
        }
        job.info.name = registration.job_name.clone();
        job.coordinator = Some(connection.clone());
        job.coordinator_address = registration.address.clone();
        if job.checkpoints.is_none() {
            job.checkpoints = registration.checkpoint_dir.clone().map(|dir| (dir, registration.earlier_checkpoints));
        }
        job.max_parallelism = Some(registration.max_parallelism);
        job.delete_on_cancellation = registration.delete_on_cancellation;
        self.store(job);
        Ok(job.worker_template())
    }

    /// Whether job `job_id` is being cancelled or suspended (or is gone): its slot requests
    /// are abandoned.
    pub fn is_stopping(&self, job_id: &str) -> bool {
        lock(&self.jobs)
            .iter()
            .find(|j| j.info.job_id == job_id)
            .is_none_or(|j| j.cancel_requested || j.restart_requested || j.info.state.is_terminal())
    }

    /// How to start more workers of a running job.
    pub fn worker_template(&self, job_id: &str) -> Result<WorkerTemplate, String> {
        let jobs = lock(&self.jobs);
        let job = jobs.iter().find(|j| j.info.job_id == job_id).ok_or_else(|| format!("no job with id {job_id}"))?;
        match job.info.state {
            JobState::Running => Ok(job.worker_template()),
            state => Err(format!("job {job_id} is not running ({state})")),
        }
    }

    /// The job got its slots and its workers are starting.
    pub fn running(&self, job_id: &str, slots: usize) {
        if let Some(job) = lock(&self.jobs).iter_mut().find(|j| j.info.job_id == job_id && !j.info.state.is_terminal())
        {
            job.info.state = JobState::Running;
            job.info.slots = slots;
            if let Some(parallelism) = job.overrides.iter().find(|(k, _)| k == PARALLELISM).map(|(_, p)| p)
                && *parallelism != slots.to_string()
            {
                warn!(job_id, slots, parallelism = %parallelism, "the job's program sets its own parallelism: reactive mode cannot rescale it");
            }
            self.store(job);
        }
    }

    /// The job ended (`failure`: why it failed); false if it had ended before.
    pub fn finish(&self, job_id: &str, failure: Option<String>) -> bool {
        self.finish_with_archive(job_id, failure, &[])
    }

    /// The job ended, as [`finish`](Self::finish), and `archive` holds its REST answers as
    /// they were at its end: they are kept beside its log and served from now on.
    pub fn finish_with_archive(&self, job_id: &str, failure: Option<String>, archive: &[ArchivedJson]) -> bool {
        let mut jobs = lock(&self.jobs);
        let Some(job) = jobs.iter_mut().find(|j| j.info.job_id == job_id) else { return false };
        if job.info.state.is_terminal() {
            return false;
        }
        if !archive.is_empty() {
            let written = serde_json::to_vec(archive)
                .map_err(|e| e.to_string())
                .and_then(|bytes| std::fs::write(job.archive_file(), bytes).map_err(|e| e.to_string()));
            if let Err(e) = written {
                warn!(job_id, file = %job.archive_file().display(), "cannot keep the ended job's REST answers: {e}");
            }
        }
        job.info.state = match (&failure, job.cancel_requested) {
            (None, _) => JobState::Finished,
            (Some(_), true) => JobState::Canceled,
            (Some(_), false) => JobState::Failed,
        };
        job.info.duration_ms = job.started.elapsed().as_millis() as u64;
        job.info.slots = 0;
        job.info.failure = failure.filter(|_| job.info.state == JobState::Failed);
        job.coordinator = None;
        job.allocations.clear();
        info!(job_id, state = %job.info.state, failure = job.info.failure.as_deref().unwrap_or(""), "job ended");
        self.store(job);
        true
    }

    /// The answer to GET `path` that ended job `job_id` left in its archive.
    pub fn archived(&self, job_id: &str, path: &str) -> Option<String> {
        let file = lock(&self.jobs).iter().find(|j| j.info.job_id == job_id)?.archive_file();
        let bytes = std::fs::read(&file).ok()?;
        let archive: Vec<ArchivedJson> = match serde_json::from_slice(&bytes) {
            Ok(archive) => archive,
            Err(e) => {
                warn!(job_id, file = %file.display(), "the ended job's REST archive does not read: {e}");
                return None;
            }
        };
        archive.into_iter().find(|a| a.path == path).map(|a| a.json)
    }

    /// The coordinator process of `job_id` exited with `status` (`adopted`: it was started by
    /// an earlier JobManager). The job ends as the job result file says, or failed, unless it
    /// is to start again: true when the JobManager suspended it, or when its coordinator went
    /// away while the JobManager was down.
    pub fn coordinator_exited(&self, job_id: &str, status: &str, adopted: bool) -> bool {
        let mut jobs = lock(&self.jobs);
        let Some(job) = jobs.iter_mut().find(|j| j.info.job_id == job_id) else { return false };
        job.pid = None;
        job.coordinator = None;
        if job.info.state.is_terminal() {
            return false;
        }
        let result = std::fs::read(job.result_file()).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let restart = result.is_none() && !job.cancel_requested && (job.restart_requested || adopted);
        if restart {
            job.info.state = JobState::Restarting;
            self.store(job);
            info!(job_id, status, "the job's coordinator is gone; the job starts again from its latest checkpoint");
            return true;
        }
        let log = job.log.clone();
        drop(jobs);
        let failure = match result {
            Some(recorded) => recorded,
            None => Some(format!(
                "the job's coordinator process exited ({status}) before the job ended; see {}",
                log.display()
            )),
        };
        if self.finish(job_id, failure) {
            warn!(job_id, status, log = %log.display(), "a job's coordinator process exited before telling the JobManager");
        }
        false
    }

    /// Deletes the checkpoints of job `job_id` if it ended cancelled and is to lose them on
    /// cancellation: a job cancelled while suspended for a restart has no coordinator to do it.
    pub fn discard_cancelled_checkpoints(&self, job_id: &str) {
        let dir = lock(&self.jobs)
            .iter()
            .find(|j| j.info.job_id == job_id && j.info.state == JobState::Canceled && j.delete_on_cancellation)
            .and_then(|j| j.checkpoints.as_ref().map(|(dir, _)| dir.clone()));
        let Some(dir) = dir else { return };
        let storage = SnapshotLocation::parse(&dir)
            .map_err(|e| e.to_string())
            .and_then(|location| CheckpointStorage::open(location).map_err(|e| e.to_string()));
        match storage {
            Ok(storage) => {
                storage.delete_all();
                info!(job_id, dir = %dir, "deleted the cancelled job's checkpoints");
            }
            Err(e) => warn!(job_id, dir = %dir, "cannot delete the cancelled job's checkpoints: {e}"),
        }
    }

    /// Asks the coordinator of running job `job_id` to suspend the job, to start it again
    /// from its latest checkpoint when the coordinator exited.
    pub fn request_restart(&self, job_id: &str) -> Result<(), String> {
        let mut jobs = lock(&self.jobs);
        let job =
            jobs.iter_mut().find(|j| j.info.job_id == job_id).ok_or_else(|| format!("no job with id {job_id}"))?;
        let coordinator = match (&job.coordinator, job.info.state) {
            (Some(coordinator), JobState::Running) if !job.cancel_requested => coordinator.clone(),
            (_, state) => return Err(format!("job {job_id} is not running ({state})")),
        };
        coordinator
            .post(brisk_rpc::Request::SuspendJob { job_id: job_id.to_string() })
            .map_err(|e| format!("cannot reach the job's coordinator: {e}"))?;
        job.restart_requested = true;
        job.info.state = JobState::Restarting;
        self.store(job);
        Ok(())
    }

    /// Starts a new coordinator for job `job_id` (whose last one exited), restoring the job's
    /// latest checkpoint, at `parallelism` when given.
    pub fn restart(
        &self,
        job_id: &str,
        jobmanager: &str,
        parallelism: Option<usize>,
    ) -> Result<std::process::Child, String> {
        let checkpoints = lock(&self.jobs).iter().find(|j| j.info.job_id == job_id).and_then(|j| j.checkpoints.clone());
        let latest = match checkpoints {
            Some((dir, earlier)) => latest_checkpoint(&dir, earlier)?,
            None => None,
        };
        let mut jobs = lock(&self.jobs);
        let job =
            jobs.iter_mut().find(|j| j.info.job_id == job_id).ok_or_else(|| format!("no job with id {job_id}"))?;
        if job.info.state.is_terminal() || job.cancel_requested {
            return Err(format!("job {job_id} was cancelled while it restarted"));
        }
        // Without a checkpoint of this job, it starts from what it was submitted with.
        if let Some(checkpoint) = &latest {
            job.set_override(SAVEPOINT_PATH, checkpoint.clone());
        }
        if let Some(slots) = parallelism {
            job.scale_to(slots);
        }
        job.restart_requested = false;
        job.coordinator_address.clear();
        let child = spawn_coordinator(job, jobmanager)?;
        job.pid = Some(child.id());
        info!(
            job_id,
            pid = child.id(),
            checkpoint = latest.as_deref().unwrap_or("none"),
            parallelism = parallelism.map_or_else(|| "unchanged".into(), |p| p.to_string()),
            "started the job's coordinator again"
        );
        self.store(job);
        Ok(child)
    }

    /// Running, checkpointed jobs (not restarting) that run at the parallelism the JobManager set: id,
    /// that parallelism, slots held, and the largest parallelism they allow
    /// (their maximum parallelism). A program that sets its own parallelism is left out:
    /// rescaling would not change it.
    pub fn rescalable_jobs(&self) -> Vec<(String, usize, usize, usize)> {
        lock(&self.jobs)
            .iter()
            // Without checkpoints a restart would start the job over.
            .filter(|j| j.info.state == JobState::Running && !j.cancel_requested && !j.restart_requested)
            .filter(|j| j.checkpoints.is_some())
            .filter_map(|j| {
                let parallelism = j.setting(PARALLELISM).filter(|p| *p == j.info.slots)?;
                let held = j.allocations.iter().map(|(_, slots)| slots).sum();
                let max = j.parallelism_limit(j.setting(MAX_PARALLELISM).unwrap_or(usize::MAX));
                Some((j.info.job_id.clone(), parallelism, held, max))
            })
            .collect()
    }

    /// One job.
    pub fn info(&self, job_id: &str) -> Option<JobInfo> {
        lock(&self.jobs).iter().find(|j| j.info.job_id == job_id).map(Job::current)
    }

    /// Every job, newest first.
    pub fn list(&self) -> Vec<JobInfo> {
        lock(&self.jobs).iter().rev().map(Job::current).collect()
    }

    /// Cancels a job: its coordinator cancels the tasks (or, before it registered, its process
    /// is stopped).
    pub fn cancel(&self, job_id: &str) -> Result<(), CancelError> {
        let mut jobs = lock(&self.jobs);
        let job = jobs
            .iter_mut()
            .find(|j| j.info.job_id == job_id)
            .ok_or_else(|| CancelError::Unknown(format!("no job with id {job_id}")))?;
        if job.info.state.is_terminal() {
            return Err(CancelError::Ended(format!("job {job_id} has already ended ({})", job.info.state)));
        }
        job.cancel_requested = true;
        match (&job.coordinator, job.pid) {
            (Some(coordinator), _) => coordinator
                .post(brisk_rpc::Request::CancelJob { job_id: job_id.to_string() })
                .map_err(|e| CancelError::Unreachable(format!("cannot reach the job's coordinator: {e}"))),
            (None, Some(pid)) => {
                let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
                Ok(())
            }
            (None, None) => Ok(()),
        }
    }

    /// The coordinator of a running job.
    pub fn coordinator(&self, job_id: &str) -> Result<RpcConnection, String> {
        let jobs = lock(&self.jobs);
        let job = jobs.iter().find(|j| j.info.job_id == job_id).ok_or_else(|| format!("no job with id {job_id}"))?;
        match (&job.coordinator, job.info.state) {
            (Some(coordinator), JobState::Running) => Ok(coordinator.clone()),
            (_, state) => Err(format!("job {job_id} is not running ({state})")),
        }
    }

    /// A piece of the artifact of `job_id` from `offset`.
    pub fn artifact_chunk(&self, job_id: &str, offset: u64) -> Response {
        let Some(path) = lock(&self.jobs).iter().find(|j| j.info.job_id == job_id).map(|j| j.artifact.clone()) else {
            return Response::Error(format!("no job with id {job_id}"));
        };
        let read = (|| {
            let mut file = std::fs::File::open(&path)?;
            let total = file.metadata()?.len();
            file.seek(SeekFrom::Start(offset.min(total)))?;
            let mut data = Vec::with_capacity(ARTIFACT_CHUNK.min((total - offset.min(total)) as usize));
            file.take(ARTIFACT_CHUNK as u64).read_to_end(&mut data)?;
            Ok::<_, std::io::Error>(Response::ArtifactChunk { data, total })
        })();
        read.unwrap_or_else(|e| Response::Error(format!("cannot read the artifact '{}': {e}", path.display())))
    }
}

/// What every worker of a job is started with.
pub(crate) struct WorkerTemplate {
    /// The program's arguments.
    pub args: Vec<String>,
    /// The job's configuration.
    pub config: Vec<(String, String)>,
    /// Where the workers reach the coordinator.
    pub coordinator: String,
}

impl Job {
    fn worker_template(&self) -> WorkerTemplate {
        WorkerTemplate {
            args: self.args.clone(),
            config: self.effective_config(),
            coordinator: self.coordinator_address.clone(),
        }
    }

    /// Sets `key` for the job's next start, above what it was submitted with.
    fn set_override(&mut self, key: &str, value: String) {
        self.overrides.retain(|(k, _)| k != key);
        self.overrides.push((key.to_string(), value));
    }

    /// Runs the job on `slots` slots (reactive mode), within its maximum parallelism. That is
    /// fixed when the job first starts, as the key groups of its checkpoints are: a default
    /// derived from each new parallelism could differ, and no rescaling could restore them.
    fn scale_to(&mut self, slots: usize) {
        let max = self.setting(MAX_PARALLELISM).unwrap_or_else(|| {
            let max = default_max_parallelism(slots.max(1));
            self.set_override(MAX_PARALLELISM, max.to_string());
            max
        });
        self.set_override(PARALLELISM, slots.clamp(1, self.parallelism_limit(max)).to_string());
    }

    /// `max`, or less where the program allows less than its configuration says.
    fn parallelism_limit(&self, max: usize) -> usize {
        self.max_parallelism.map_or(max, |program| program.min(max)).max(1)
    }

    /// The submitted configuration with the JobManager's overrides (later pairs win).
    fn effective_config(&self) -> Vec<(String, String)> {
        let mut config = self.config.clone();
        config.retain(|(key, _)| !self.overrides.iter().any(|(k, _)| k == key));
        config.extend(self.overrides.iter().cloned());
        config
    }

    /// The number `key` is set to in its configuration.
    fn setting(&self, key: &str) -> Option<usize> {
        self.effective_config().iter().rev().find(|(k, _)| k == key).and_then(|(_, v)| v.parse().ok())
    }

    /// Where its coordinator records how the job ended.
    fn result_file(&self) -> PathBuf {
        self.log.with_file_name("result.json")
    }

    /// Where its REST answers are kept once it ended.
    fn archive_file(&self) -> PathBuf {
        self.log.with_file_name("archive.json")
    }

    fn current(&self) -> JobInfo {
        let mut info = self.info.clone();
        if !info.state.is_terminal() {
            info.duration_ms = self.started.elapsed().as_millis() as u64;
        }
        info
    }
}

/// The configuration key of the snapshot a job starts from.
const SAVEPOINT_PATH: &str = "execution.savepoint.path";
/// The configuration key of a job's default parallelism.
const PARALLELISM: &str = "parallelism.default";
/// The configuration key of a job's largest parallelism.
const MAX_PARALLELISM: &str = "pipeline.max-parallelism";

/// The newest complete checkpoint in `dir` newer than `earlier` (the checkpoints of earlier
/// jobs in the same directory); `None` when the job completed none yet.
fn latest_checkpoint(dir: &str, earlier: u64) -> Result<Option<String>, String> {
    let cannot = |e: &dyn std::fmt::Display| format!("cannot find the job's latest checkpoint in '{dir}': {e}");
    let location = SnapshotLocation::parse(dir).map_err(|e| cannot(&e))?;
    let storage = CheckpointStorage::open(location.clone()).map_err(|e| cannot(&e))?;
    let newest = storage.completed_ids().map_err(|e| cannot(&e))?.into_iter().find(|id| *id > earlier);
    Ok(newest.map(|id| location.join(&CheckpointStorage::checkpoint_name(id)).to_string()))
}

fn spawn_coordinator(job: &Job, jobmanager: &str) -> Result<std::process::Child, String> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&job.log)
        .map_err(|e| format!("cannot open the job's log '{}': {e}", job.log.display()))?;
    let config = serde_json::to_string(&job.effective_config())
        .map_err(|e| format!("cannot encode the job's configuration: {e}"))?;
    let err_log = log.try_clone().map_err(|e| format!("cannot open the job's log: {e}"))?;
    Command::new(&job.artifact)
        .args(&job.args)
        .env_remove(PLAN_FILE_ENV)
        .env(JOBMANAGER_ENV, jobmanager)
        .env(JOB_ID_ENV, &job.info.job_id)
        .env(JOB_CONFIG_ENV, config)
        .env(JOB_RESULT_FILE_ENV, job.result_file())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .spawn()
        .map_err(|e| {
            format!("cannot run the artifact '{}': {e} (is it an executable Brisk program?)", job.artifact.display())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(config: &[(&str, &str)]) -> Job {
        Job {
            info: JobInfo {
                job_id: "j".into(),
                name: "j".into(),
                state: JobState::Running,
                start_time_ms: 0,
                duration_ms: 0,
                failure: None,
                slots: 0,
            },
            artifact: PathBuf::from("/bin/true"),
            args: Vec::new(),
            config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            started: Instant::now(),
            coordinator: None,
            coordinator_address: String::new(),
            pid: None,
            cancel_requested: false,
            log: PathBuf::from("/tmp/coordinator.log"),
            allocations: Vec::new(),
            overrides: Vec::new(),
            checkpoints: None,
            max_parallelism: None,
            delete_on_cancellation: false,
            restart_requested: false,
        }
    }

    #[test]
    fn a_job_cancelled_without_a_coordinator_loses_its_checkpoints_only_if_its_retention_says_so() {
        let root = std::env::temp_dir().join(format!("brisk-dispatcher-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (dispatcher, _) = Dispatcher::new(root.join("jobmanager")).unwrap();
        for (id, delete) in [("deleting", true), ("retaining", false)] {
            let checkpoints = root.join(id);
            std::fs::create_dir_all(checkpoints.join("chk-3")).unwrap();
            std::fs::write(checkpoints.join("chk-3").join("task-0"), b"state").unwrap();
            let mut job = job(&[]);
            job.info.job_id = id.into();
            job.checkpoints = Some((checkpoints.display().to_string(), 0));
            job.delete_on_cancellation = delete;
            job.cancel_requested = true;
            lock(&dispatcher.jobs).push(job);
            // Suspended for a restart when the cancel came: no coordinator reported the end.
            assert!(dispatcher.finish(id, Some("the job's coordinator process exited".into())));
            assert_eq!(dispatcher.info(id).map(|j| j.state), Some(JobState::Canceled));
            dispatcher.discard_cancelled_checkpoints(id);
            assert_eq!(checkpoints.join("chk-3").exists(), !delete, "job {id}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_reactive_job_keeps_its_first_max_parallelism_and_never_exceeds_it() {
        let mut reactive = job(&[]);
        reactive.scale_to(3);
        assert_eq!((reactive.setting(PARALLELISM), reactive.setting(MAX_PARALLELISM)), (Some(3), Some(128)));
        // 200 slots would give a default of 512: the first start's 128 stays, and caps.
        reactive.scale_to(200);
        assert_eq!((reactive.setting(PARALLELISM), reactive.setting(MAX_PARALLELISM)), (Some(128), Some(128)));
        reactive.scale_to(0);
        assert_eq!(reactive.setting(PARALLELISM), Some(1), "at least one slot");

        let mut capped = job(&[(MAX_PARALLELISM, "4"), (PARALLELISM, "2")]);
        capped.scale_to(6);
        assert_eq!((capped.setting(PARALLELISM), capped.setting(MAX_PARALLELISM)), (Some(4), Some(4)));
        assert_eq!(capped.overrides, vec![(PARALLELISM.to_string(), "4".to_string())], "the job's own maximum is kept");

        // A program that sets a smaller maximum in its code (as its coordinator reports) caps too.
        let mut program = job(&[]);
        program.max_parallelism = Some(3);
        program.scale_to(6);
        assert_eq!((program.setting(PARALLELISM), program.setting(MAX_PARALLELISM)), (Some(3), Some(128)));
    }
}
