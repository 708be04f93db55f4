//! The protocol between a job's own processes: its coordinator (job master and split
//! enumerators) and its workers (the subtasks in TaskManager slots). Both ends run the same
//! artifact, checked by the job graph's fingerprint, so the messages carry the runtime's own
//! types; the cluster's protocol (JobManager, TaskManagers, clients) is `brisk-rpc`'s.

use crate::checkpoint::{CheckpointBarrier, CheckpointId, SnapshotKind, TaskAcknowledgement};
use crate::error::TaskError;
use crate::metrics::TaskReport;
use crate::metrics::task_io::TaskIoValues;
use crate::source::EncodedNextSplit;
use crate::taskexecutor::deployment::TaskOutcome;
use crate::taskexecutor::mailbox::Mail;
use crate::taskexecutor::output::StateQuery;
use brisk_core::NonRecoverableError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// The job-internal protocol.
pub(crate) struct JobProtocol;

impl brisk_rpc::Protocol for JobProtocol {
    type Request = JobRequest;
    type Response = JobResponse;

    fn error_message(response: &JobResponse) -> Option<&str> {
        match response {
            JobResponse::Error(message) => Some(message),
            _ => None,
        }
    }

    /// A state query waits for its task, which may itself wait for an answer this
    /// connection has yet to read (a reader asking for its next split).
    fn runs_long(request: &JobRequest) -> bool {
        matches!(request, JobRequest::QueryState { .. })
    }
}

/// What a coordinator and its workers ask each other.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum JobRequest {
    /// Worker → coordinator, first: which worker it is, the fingerprint of the job graph it
    /// built, and where its data exchange listens.
    RegisterWorker { worker: usize, fingerprint: String, data_address: String },
    /// Coordinator → worker: wire and start the worker's tasks of an attempt.
    Deploy(DeployTasks),
    /// Coordinator → worker: a control message for one task.
    Mail { task: usize, mail: RemoteMail },
    /// Coordinator → worker: look up keyed state in a task (queryable state); answered with
    /// [`JobResponse::State`].
    QueryState { task: usize, query: StateQuery },
    /// Coordinator → worker: cancel these tasks (and their regions).
    Cancel { tasks: Vec<usize> },
    /// Coordinator → worker: the job ended; end the process.
    Shutdown,
    /// Worker → coordinator: something a task reported.
    Event(RemoteTaskEvent),
    /// Worker → coordinator: a reader asks its source's enumerator for work.
    NextSplit { operator_id: String, subtask: usize },
    /// Worker → coordinator: a reader took its snapshot (or the checkpoint was abandoned).
    ResumeReader { operator_id: String, subtask: usize },
    /// Worker → coordinator, every [`METRICS_INTERVAL`]: the live metrics of its tasks, and
    /// the records its sources read so far.
    Metrics { worker: usize, records_read: u64, tasks: Vec<TaskMetricsReport> },
}

/// How often a worker reports its tasks' metrics.
pub(crate) const METRICS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// One task's metrics as a worker reports them.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TaskMetricsReport {
    /// The task in the plan.
    pub task: usize,
    /// The wiring generation it belongs to (older ones' reports are stale).
    pub generation: u64,
    /// The counters.
    pub values: TaskIoValues,
}

/// The answers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum JobResponse {
    /// Done.
    Ack,
    /// The enumerator's answer.
    Split(EncodedNextSplit),
    /// A task's answer to a state query.
    State(Result<Option<Vec<u8>>, String>),
    /// The request failed, and why.
    Error(String),
}

/// Which tasks a worker starts, and how they reach the others.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DeployTasks {
    /// The attempt number the tasks report.
    pub attempt: usize,
    /// Numbers the wiring: network channel ids are unique per generation.
    pub generation: u64,
    /// The worker of every task of the plan.
    pub worker_of_task: Vec<usize>,
    /// The data-exchange address of every worker.
    pub data_addresses: Vec<String>,
    /// The checkpoint or savepoint the tasks restore from (a local directory or an object
    /// store URL: each worker reads the metadata and its tasks' files itself).
    pub restore: Option<String>,
    /// Only the tasks of this region (region failover), or all.
    pub only: Option<usize>,
}

/// A [`Mail`] that can travel (state queries travel as [`JobRequest::QueryState`]).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RemoteMail {
    /// Take a checkpoint (sources, and tasks whose input ended).
    Trigger(RemoteBarrier),
    /// A checkpoint completed.
    Complete(CheckpointId),
    /// A checkpoint was abandoned.
    Aborted(CheckpointId),
}

/// A [`CheckpointBarrier`] that can travel.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RemoteBarrier {
    id: CheckpointId,
    timestamp: i64,
    kind: SnapshotKind,
    stop: Option<bool>,
    target: PathBuf,
    remote: Option<String>,
    overtaking: bool,
}

impl RemoteMail {
    /// The travelling form of `mail`; `None` for a state query, which waits for its answer.
    pub fn from_mail(mail: Mail) -> Option<RemoteMail> {
        Some(match mail {
            Mail::TriggerCheckpoint(b) => RemoteMail::Trigger(RemoteBarrier {
                id: b.id,
                timestamp: b.timestamp,
                kind: b.kind,
                stop: b.stop,
                target: b.target.to_path_buf(),
                remote: b.remote.as_deref().map(str::to_string),
                overtaking: b.overtaking,
            }),
            Mail::CheckpointComplete(id) => RemoteMail::Complete(id),
            Mail::CheckpointAborted(id) => RemoteMail::Aborted(id),
            Mail::QueryState { reply, .. } => {
                let _ = reply.send(Ok(None));
                return None;
            }
        })
    }

    /// The mail again.
    pub fn into_mail(self) -> Mail {
        match self {
            RemoteMail::Trigger(b) => Mail::TriggerCheckpoint(CheckpointBarrier {
                id: b.id,
                timestamp: b.timestamp,
                kind: b.kind,
                stop: b.stop,
                target: Arc::from(b.target.as_path()),
                remote: b.remote.map(Arc::from),
                overtaking: b.overtaking,
            }),
            RemoteMail::Complete(id) => Mail::CheckpointComplete(id),
            RemoteMail::Aborted(id) => Mail::CheckpointAborted(id),
        }
    }
}

/// A task's report to the job master, as it travels.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RemoteTaskEvent {
    /// A task stored its part of a checkpoint.
    Acknowledge(TaskAcknowledgement),
    /// A task could not take part in a checkpoint.
    Decline { checkpoint: CheckpointId, reason: String },
    /// A task processed all its input.
    InputFinished(usize),
    /// A task started processing.
    Running(usize),
    /// A task of wiring `generation` ended, and how.
    Ended { task: usize, generation: u64, task_name: String, result: Result<TaskReport, RemoteTaskError> },
}

/// A [`TaskError`] as it travels: its message, and what the job master decides by.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RemoteTaskError {
    /// The task was cancelled.
    Cancelled,
    /// A peer task went away (a consequence, not a cause).
    Disconnected(String),
    /// No restart can fix it.
    NonRecoverable(String),
    /// Any other failure.
    Failed(String),
}

impl RemoteTaskError {
    /// The travelling form of `error`.
    pub fn from_error(error: &TaskError) -> Self {
        match error {
            TaskError::Cancelled => RemoteTaskError::Cancelled,
            TaskError::Disconnected(m) => RemoteTaskError::Disconnected(m.clone()),
            e if e.is_non_recoverable() => RemoteTaskError::NonRecoverable(e.to_string()),
            e => RemoteTaskError::Failed(e.to_string()),
        }
    }

    /// The error again, deciding restarts as the original would.
    pub fn into_error(self) -> TaskError {
        match self {
            RemoteTaskError::Cancelled => TaskError::Cancelled,
            RemoteTaskError::Disconnected(m) => TaskError::Disconnected(m),
            RemoteTaskError::NonRecoverable(m) => TaskError::User(Box::new(NonRecoverableError::new(m))),
            RemoteTaskError::Failed(m) => TaskError::msg(m),
        }
    }
}

impl RemoteTaskEvent {
    /// The end of a task as it travels.
    pub fn ended(task: usize, generation: u64, outcome: TaskOutcome) -> Self {
        RemoteTaskEvent::Ended {
            task,
            generation,
            task_name: outcome.task_name,
            result: outcome.result.map_err(|e| RemoteTaskError::from_error(&e)),
        }
    }
}
