//! Errors of state access, snapshots and backends.

use thiserror::Error;

/// What went wrong with state.
#[derive(Debug, Error)]
pub enum StateError {
    /// Stored bytes do not decode as the state's declared type (its type changed since the
    /// state was written, or the data is corrupt).
    #[error("state '{state}' of operator '{operator}' cannot be read: {reason} (was the state's type changed?)")]
    Deserialize {
        /// The state's name.
        state: String,
        /// The operator owning it.
        operator: String,
        /// The decoder's message.
        reason: String,
    },
    /// A state name is registered again with another kind or type.
    #[error("state '{state}' of operator '{operator}' is {existing}, it cannot be used as {requested}")]
    Incompatible {
        /// The state's name.
        state: String,
        /// The operator owning it.
        operator: String,
        /// What it was registered as.
        existing: String,
        /// What it was requested as.
        requested: String,
    },
    /// Keyed state was used where no key is set.
    #[error(
        "keyed state '{0}' was used without a current key: keyed state is only available in functions on a KeyedStream"
    )]
    NoCurrentKey(String),
    /// A state handle was used on a thread that does not run its task.
    #[error("state '{0}' was used outside the task that owns it")]
    NotInTask(String),
    /// State was used from inside a state's own reduce or aggregate function.
    #[error("state '{0}' was used re-entrantly, from inside a state's reduce or aggregate function")]
    Reentrant(String),
    /// The storage engine failed.
    #[error("state backend of operator '{operator}' failed: {message}")]
    Storage {
        /// The operator owning the backend.
        operator: String,
        /// What the engine said.
        message: String,
    },
    /// A snapshot could not be written, read or verified.
    #[error("state snapshot {what}: {reason}")]
    Snapshot {
        /// The snapshot (path or description).
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// A configuration asks for something this build or backend cannot do.
    #[error("{0}")]
    Config(String),
}

/// Result of state operations.
pub type StateResult<T = ()> = Result<T, StateError>;
