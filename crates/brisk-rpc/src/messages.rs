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
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::JobManager => "JobManager",
            Role::TaskManager => "TaskManager",
            Role::Client => "client",
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
    /// The request could not be served, and why.
    Error(String),
}

/// What travels in one frame after the handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Envelope {
    /// A request, numbered by its sender.
    Request {
        /// Unique per connection and direction.
        id: u64,
        /// What is asked.
        body: Request,
    },
    /// The answer to the sender's request `id`.
    Response {
        /// The request's id.
        id: u64,
        /// The answer.
        body: Response,
    },
}
