//! Errors of tasks and jobs.

use brisk_core::BoxError;
use thiserror::Error;

/// Why a task stopped before finishing its input.
#[derive(Debug, Error)]
pub enum TaskError {
    /// An error raised by user code or a connector, not yet attributed to an operator.
    #[error("{0}")]
    User(BoxError),
    /// An error attributed to the operator that raised it.
    #[error("operator '{operator}' failed: {source}")]
    Operator {
        /// The operator's name.
        operator: String,
        /// What went wrong (part of the message, so not chained as a `source`).
        source: BoxError,
    },
    /// A user function panicked; the panic was caught and failed only this task.
    #[error("operator '{operator}' panicked: {message}")]
    Panic {
        /// The operator whose code panicked.
        operator: String,
        /// The panic message.
        message: String,
    },
    /// A peer task went away (it failed or was cancelled): a consequence, not a cause.
    #[error("{0}")]
    Disconnected(String),
    /// The task was cancelled because the job is failing or was cancelled.
    #[error("task was cancelled")]
    Cancelled,
}

impl TaskError {
    /// An error with a message, raised by the runtime or a connector.
    pub fn msg(message: impl Into<String>) -> Self {
        TaskError::User(message.into().into())
    }

    /// Names the operator in an error that does not name one yet.
    pub fn in_operator(self, operator: &str) -> Self {
        match self {
            TaskError::User(source) => TaskError::Operator { operator: operator.to_string(), source },
            other => other,
        }
    }

    /// True when no restart can fix the error (a [`brisk_core::NonRecoverableError`] from
    /// user code or a connector): the job fails at once.
    pub fn is_non_recoverable(&self) -> bool {
        match self {
            TaskError::User(e) | TaskError::Operator { source: e, .. } => {
                brisk_core::error::is_non_recoverable(e.as_ref())
            }
            _ => false,
        }
    }

    /// True for errors that only follow from another task's failure or a cancellation.
    pub fn is_consequence(&self) -> bool {
        matches!(self, TaskError::Disconnected(_) | TaskError::Cancelled)
    }
}

impl From<BoxError> for TaskError {
    fn from(e: BoxError) -> Self {
        TaskError::User(e)
    }
}

impl From<std::io::Error> for TaskError {
    fn from(e: std::io::Error) -> Self {
        TaskError::User(Box::new(e))
    }
}

/// Result of operator and task code.
pub type TaskResult<T = ()> = Result<T, TaskError>;

/// Why a job could not be built, started or finished.
#[derive(Debug, Error)]
pub enum JobError {
    /// The job graph is invalid (bad parallelism, forward partitioning across different
    /// parallelism, ...): found before anything runs.
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// A task failed; the job was cancelled.
    #[error("job '{job}' failed: task '{task}' failed: {cause}")]
    TaskFailed {
        /// The job's name.
        job: String,
        /// The failing task, e.g. `Map -> Sink: Print (2/4)`.
        task: String,
        /// The task's error (part of the message, so not chained as a `source`).
        cause: TaskError,
    },
    /// The job was cancelled by its client.
    #[error("job '{0}' was cancelled")]
    Cancelled(String),
    /// The job was stopped without ending, its checkpoints kept, for its cluster to start it
    /// again from the latest one (rescaling in reactive mode; Flink's `SUSPENDED`).
    #[error("job '{0}' was suspended")]
    Suspended(String),
    /// The channels between task managers could not be set up.
    #[error("cannot set up the data exchange: {0}")]
    Exchange(String),
    /// A task thread could not be started.
    #[error("cannot start task thread: {0}")]
    Spawn(#[from] std::io::Error),
    /// A process of the job in a cluster (its coordinator or a worker) failed.
    #[error("{0}")]
    Worker(String),
    /// The cluster has no slots for the job's lost workers now; a later restart may find some.
    #[error("{0}")]
    SlotsUnavailable(String),
}

impl JobError {
    /// The task error behind a failed job, if a task failed.
    pub fn task_error(&self) -> Option<&TaskError> {
        match self {
            JobError::TaskFailed { cause, .. } => Some(cause),
            _ => None,
        }
    }
}

/// Locks a mutex, ignoring poisoning: a panicking task thread never leaves shared runtime
/// structures half-updated (their critical sections do not call user code).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
