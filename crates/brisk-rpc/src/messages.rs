//! The messages of the control plane. Requests name what the sender wants; every request gets
//! exactly one [`Response`] (or the caller's timeout).

use serde::{Deserialize, Serialize};

/// Which kind of process is on the other end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// The JobManager (dispatcher, resource manager).
    JobManager,
    /// A TaskManager offering slots.
    TaskManager,
    /// The command line or another client.
    Client,
    /// A job's coordinator process (its job master and split enumerators).
    Coordinator,
    /// A job's worker process on a TaskManager (the subtasks in its slots).
    Worker,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::JobManager => "JobManager",
            Role::TaskManager => "TaskManager",
            Role::Client => "client",
            Role::Coordinator => "job coordinator",
            Role::Worker => "job worker",
        })
    }
}

/// The first frame on every connection, from the dialer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION) of the sender.
    pub protocol: u32,
    /// [`BRISK_VERSION`](crate::BRISK_VERSION) of the sender.
    pub version: String,
    /// What the sender is.
    pub role: Role,
}

impl Hello {
    /// This process's greeting as `role`.
    pub fn new(role: Role) -> Self {
        Hello { protocol: crate::PROTOCOL_VERSION, version: crate::BRISK_VERSION.to_string(), role }
    }
}

/// The acceptor's answer to a [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// Accepted; the acceptor's own greeting.
    Welcome(Hello),
    /// Refused, and why (another version, a role the acceptor does not serve).
    Refused(String),
}

/// What a TaskManager offers when it registers (Flink's `TaskExecutorRegistration`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskManagerRegistration {
    /// Unique per TaskManager process (`taskmanager.resource-id`, generated when unset).
    pub resource_id: String,
    /// The host it runs on, as it names itself.
    pub host: String,
    /// Its process id, for operators reading `ps`.
    pub pid: u32,
    /// `taskmanager.numberOfTaskSlots`.
    pub slots: usize,
}

/// The JobManager's answer to a registration: how often it will ask for heartbeats, and how
/// long each side waits before it considers the other lost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationAck {
    /// Changes when the JobManager process restarts.
    pub jobmanager_id: String,
    /// `heartbeat.interval`.
    pub heartbeat_interval_ms: u64,
    /// `heartbeat.timeout`.
    pub heartbeat_timeout_ms: u64,
}

/// A TaskManager's answer to a heartbeat request: what it has now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskManagerHeartbeat {
    /// The TaskManager.
    pub resource_id: String,
    /// Slots it offers.
    pub slots: usize,
    /// Slots not running any task.
    pub free_slots: usize,
    /// Memory in use: the resident memory of the TaskManager and its workers, in bytes.
    pub memory_used: u64,
    /// Physical memory of its host, in bytes.
    pub physical_memory: u64,
}

/// One registered TaskManager as the JobManager sees it (Flink's `/taskmanagers` entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskManagerInfo {
    /// Its resource id.
    pub resource_id: String,
    /// Its host.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The address its control connection comes from.
    pub address: String,
    /// Slots it offers.
    pub slots: usize,
    /// Slots not running any task.
    pub free_slots: usize,
    /// Milliseconds since its last answered heartbeat (or its registration).
    pub last_heartbeat_ms_ago: u64,
    /// Memory in use by it and its workers, in bytes, as of its last heartbeat (0 before).
    pub memory_used: u64,
    /// Physical memory of its host, in bytes (0 before its first heartbeat).
    pub physical_memory: u64,
}

/// The state of the cluster (Flink's `/overview`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterOverview {
    /// The JobManager process's id.
    pub jobmanager_id: String,
    /// Its Brisk version.
    pub version: String,
    /// The registered TaskManagers, in order of registration.
    pub taskmanagers: Vec<TaskManagerInfo>,
    /// Where its REST API listens (`host:port`), if it serves one.
    pub rest_address: Option<String>,
}

impl ClusterOverview {
    /// Slots over all TaskManagers.
    pub fn slots_total(&self) -> usize {
        self.taskmanagers.iter().map(|t| t.slots).sum()
    }

    /// Free slots over all TaskManagers.
    pub fn slots_available(&self) -> usize {
        self.taskmanagers.iter().map(|t| t.free_slots).sum()
    }
}

/// A job as the client submits it: the artifact (uploaded before), its arguments and the
/// configuration it runs with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSubmission {
    /// The upload holding the artifact ([`Request::UploadArtifact`]).
    pub upload: u64,
    /// The artifact's file name, for logs.
    pub artifact_name: String,
    /// The program's arguments.
    pub args: Vec<String>,
    /// Configuration the program's environment starts from (`-p`, `-D`), as key and value.
    pub config: Vec<(String, String)>,
}

/// An HTTP request forwarded to a job's coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestCall {
    /// `GET`, `POST`, `PATCH`, ...
    pub method: String,
    /// The path with its query string, e.g. `/jobs/<id>?mode=cancel`.
    pub path_and_query: String,
    /// The request's `Content-Type` (empty when it had none).
    pub content_type: String,
    /// The request body.
    pub body: Vec<u8>,
}

/// An HTTP answer from a job's coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestAnswer {
    /// The HTTP status code.
    pub status: u16,
    /// The body's `Content-Type`.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

/// A GET answer of a job's REST API kept after the job ended, so the JobManager still
/// answers it (Flink's `ArchivedJson`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedJson {
    /// The request path, e.g. `/jobs/<id>/checkpoints`.
    pub path: String,
    /// The JSON answer.
    pub json: String,
}

/// A job's coordinator process introducing itself to the JobManager: how many slots the job
/// needs and where its workers reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorRegistration {
    /// The job.
    pub job_id: String,
    /// Its name, as the program declared it.
    pub job_name: String,
    /// Slots its execution plan needs.
    pub slots: usize,
    /// `host:port` its workers connect to.
    pub address: String,
    /// Where its checkpoints go (`None`: checkpointing is off): a restart of the job restores
    /// the latest complete one.
    pub checkpoint_dir: Option<String>,
    /// The newest checkpoint id in `checkpoint_dir` before the job started: older ones
    /// belong to other jobs.
    pub earlier_checkpoints: u64,
    /// The largest parallelism the job can run at: its operators' smallest maximum
    /// parallelism (reactive mode never rescales it beyond).
    pub max_parallelism: usize,
    /// Whether its checkpoints are deleted when it is cancelled
    /// (`execution.checkpointing.externalized-checkpoint-retention`): the JobManager deletes
    /// them itself when the job is cancelled while no coordinator runs it.
    pub delete_on_cancellation: bool,
}

/// What a TaskManager starts for a job: a worker process running the artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerLaunch {
    /// The job (its artifact is fetched from the JobManager under this id).
    pub job_id: String,
    /// The worker's index within the job.
    pub worker: usize,
    /// Slots of this TaskManager the worker uses.
    pub slots: usize,
    /// The program's arguments.
    pub args: Vec<String>,
    /// The job's configuration.
    pub config: Vec<(String, String)>,
    /// `host:port` of the job's coordinator.
    pub coordinator: String,
}

/// The life cycle of a job, with Flink's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Submitted; its coordinator starts and waits for slots.
    Initializing,
    /// Its tasks run.
    Running,
    /// Its coordinator starts again, to restore the latest checkpoint (at a new parallelism,
    /// in reactive mode).
    Restarting,
    /// It ended successfully.
    Finished,
    /// It failed.
    Failed,
    /// It was cancelled.
    Canceled,
}

impl JobState {
    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Finished | JobState::Failed | JobState::Canceled)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobState::Initializing => "INITIALIZING",
            JobState::Running => "RUNNING",
            JobState::Restarting => "RESTARTING",
            JobState::Finished => "FINISHED",
            JobState::Failed => "FAILED",
            JobState::Canceled => "CANCELED",
        })
    }
}

/// A job as the JobManager knows it (Flink's `/jobs/overview` entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInfo {
    /// Its id.
    pub job_id: String,
    /// Its name (the artifact's until the coordinator registered).
    pub name: String,
    /// Where it is in its life.
    pub state: JobState,
    /// When it was submitted (ms since the epoch).
    pub start_time_ms: u64,
    /// How long it ran (so far).
    pub duration_ms: u64,
    /// Why it failed.
    pub failure: Option<String>,
    /// Slots it holds.
    pub slots: usize,
}

/// What one process asks of another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// TaskManager → JobManager: offers its slots; answered with [`Response::Registered`].
    RegisterTaskManager(TaskManagerRegistration),
    /// JobManager → TaskManager: proof of life both ways; answered with
    /// [`Response::Heartbeat`]. A TaskManager that gets none for `heartbeat.timeout` considers
    /// the JobManager lost and registers again.
    Heartbeat {
        /// The asking JobManager process.
        jobmanager_id: String,
    },
    /// Client → JobManager: answered with [`Response::Overview`].
    ClusterOverview,
    /// Client → JobManager: appends bytes to upload `upload` of this connection (artifacts
    /// are sent in pieces below the frame limit).
    UploadArtifact {
        /// Chosen by the client.
        upload: u64,
        /// The next bytes.
        data: Vec<u8>,
    },
    /// Client → JobManager: runs an uploaded artifact as a job; answered with
    /// [`Response::JobSubmitted`].
    SubmitJob(JobSubmission),
    /// Client → JobManager: answered with [`Response::Job`].
    JobStatus {
        /// The job.
        job_id: String,
    },
    /// Client → JobManager: answered with [`Response::Jobs`].
    ListJobs,
    /// Client → JobManager, and JobManager → the job's coordinator: cancel the job.
    CancelJob {
        /// The job.
        job_id: String,
    },
    /// JobManager → the job's coordinator: stop the job's tasks, keep its checkpoints, and
    /// exit without ending the job; the JobManager starts it again from the latest checkpoint
    /// (reactive mode rescaling).
    SuspendJob {
        /// The job.
        job_id: String,
    },
    /// JobManager → a job's coordinator: an HTTP request to the job's REST endpoints
    /// (`/jobs/:id/...`), which the coordinator answers from the running job; answered with
    /// [`Response::Rest`].
    RestCall(RestCall),
    /// Client → JobManager → the job's coordinator: take a savepoint into a new directory
    /// inside `directory` (and with `stop`, end the job after it; `Some(true)` drains event
    /// time first); answered with [`Response::SavepointCompleted`].
    TriggerSavepoint {
        /// The job.
        job_id: String,
        /// A path every process of the job sees, or an `s3://` URL.
        directory: String,
        /// Stop the job after the savepoint.
        stop: Option<bool>,
    },
    /// Coordinator → JobManager: wants the job's slots; answered with
    /// [`Response::SlotsGranted`] once the workers are being started.
    RegisterCoordinator(CoordinatorRegistration),
    /// Coordinator → JobManager: the coordinator of a running job connects again (the
    /// JobManager restarted and found the job in its job store).
    ReattachCoordinator {
        /// The job.
        job_id: String,
    },
    /// Coordinator → JobManager: workers were lost (their TaskManager died); start new ones,
    /// numbered from `first_worker`, with `slots` slots in all. Answered like
    /// [`Request::RegisterCoordinator`].
    RequestWorkers {
        /// The job.
        job_id: String,
        /// Slots the new workers need in all.
        slots: usize,
        /// The index of the first new worker.
        first_worker: usize,
    },
    /// Coordinator → JobManager: the job ended.
    JobFinished {
        /// The job.
        job_id: String,
        /// Why it failed (`None`: it finished).
        failure: Option<String>,
        /// The job's REST answers as they were at its end (details, vertices, checkpoints,
        /// exceptions), which the JobManager serves from now on.
        archive: Vec<ArchivedJson>,
    },
    /// JobManager → TaskManager: start a worker process for a job.
    StartWorker(WorkerLaunch),
    /// JobManager → TaskManager: stop workers of a job that still run (also those still
    /// being started).
    StopWorkers {
        /// The job.
        job_id: String,
        /// The workers to stop, by index; `None`: all of the job's (it ended).
        workers: Option<Vec<usize>>,
    },
    /// TaskManager → JobManager: a piece of a job's artifact; answered with
    /// [`Response::ArtifactChunk`].
    FetchArtifact {
        /// The job.
        job_id: String,
        /// Where the piece starts.
        offset: u64,
    },
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The registration was accepted.
    Registered(RegistrationAck),
    /// A TaskManager's heartbeat.
    Heartbeat(TaskManagerHeartbeat),
    /// The cluster's state.
    Overview(ClusterOverview),
    /// Done.
    Ack,
    /// The submitted job's id.
    JobSubmitted {
        /// Its id.
        job_id: String,
    },
    /// One job.
    Job(JobInfo),
    /// Every job, newest first.
    Jobs(Vec<JobInfo>),
    /// The job's slots: how many each of its workers got (one worker per TaskManager).
    SlotsGranted {
        /// By worker index.
        worker_slots: Vec<usize>,
    },
    /// The answer to a [`Request::RestCall`].
    Rest(RestAnswer),
    /// Where the savepoint was written.
    SavepointCompleted {
        /// Its directory.
        path: String,
    },
    /// A piece of an artifact.
    ArtifactChunk {
        /// The bytes (empty at the end).
        data: Vec<u8>,
        /// The artifact's size.
        total: u64,
    },
    /// The request could not be served, and why.
    Error(String),
}

/// The cluster's protocol: JobManager, TaskManagers and clients.
pub struct Cluster;

impl crate::Protocol for Cluster {
    type Request = Request;
    type Response = Response;

    fn error_message(response: &Response) -> Option<&str> {
        match response {
            Response::Error(message) => Some(message),
            _ => None,
        }
    }

    fn runs_long(request: &Request) -> bool {
        matches!(
            request,
            Request::RegisterCoordinator(_)
                | Request::RequestWorkers { .. }
                | Request::StartWorker(_)
                | Request::TriggerSavepoint { .. }
                | Request::RestCall(_)
        )
    }
}
