//! Brisk's standalone cluster (Flink's standalone session cluster): a [`JobManager`] process
//! that TaskManager processes register their slots with, heartbeats both ways, and the
//! configuration they share. The `brisk` command line starts them.

pub mod config;
mod dispatcher;
pub mod jobmanager;
pub mod taskmanager;

pub use config::ClusterConfig;
pub use jobmanager::JobManager;
pub use taskmanager::TaskManager;

use thiserror::Error;

/// Why a cluster process could not start or keep running.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The RPC port could not be opened (in use, not permitted).
    #[error("cannot listen on {addr} (jobmanager.rpc.port): {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The JobManager could not be reached in time.
    #[error(
        "cannot reach the JobManager at {addr} within {waited_ms} ms (taskmanager.registration.timeout): {last_error}"
    )]
    Unreachable {
        /// Its address.
        addr: String,
        /// How long we tried.
        waited_ms: u64,
        /// The last attempt's error.
        last_error: String,
    },
    /// The JobManager refused this process.
    #[error("the JobManager at {addr} refused the registration: {reason}")]
    Refused {
        /// Its address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Spawn(std::io::Error),
}

impl From<brisk_core::ConfigError> for ClusterError {
    fn from(e: brisk_core::ConfigError) -> Self {
        ClusterError::Config(e.to_string())
    }
}

#[cfg(test)]
mod tests;

/// Locks a mutex, ignoring poisoning: the cluster's shared tables are never left half-updated
/// (their critical sections call no user code).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
