//! The TaskManager process: registers its slots with the JobManager, answers its heartbeats,
//! and registers again when the JobManager is lost (no heartbeat for `heartbeat.timeout`, or
//! the connection broke) — so a restarted JobManager gets its TaskManagers back.

use crate::ClusterError;
use crate::config::ClusterConfig;
use brisk_rpc::TaskManagerRegistration;
use brisk_rpc::{RegistrationAck, Request, Response, Role, RpcConnection, RpcError, TaskManagerHeartbeat};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The first and the longest pause between attempts to reach the JobManager.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// How long one connection attempt or registration call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the registered TaskManager checks that the JobManager is still there.
const CHECK_EVERY: Duration = Duration::from_millis(50);

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
}

impl TaskManager {
    /// A TaskManager for the JobManager at `jobmanager` (`host:port`) offering the configured
    /// slots.
    pub fn new(config: ClusterConfig, jobmanager: String) -> TaskManager {
        let resource_id = config.resource_id.clone().unwrap_or_else(|| {
            format!("{}-{}-{}", config.taskmanager_host, process_id(), crate::jobmanager::unique_suffix())
        });
        let registration = TaskManagerRegistration {
            resource_id,
            host: config.taskmanager_host.clone(),
            pid: process_id(),
            slots: config.slots,
        };
        TaskManager { config, jobmanager, registration, stop: Arc::new(AtomicBool::new(false)) }
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
        let handler = move |_: &RpcConnection, request: Request| match request {
            Request::Heartbeat { .. } => {
                last_heartbeat.store(now_ms(), Ordering::Release);
                Response::Heartbeat(TaskManagerHeartbeat {
                    resource_id: registration.resource_id.clone(),
                    slots: registration.slots,
                    // No task runs in a slot yet: jobs are deployed by a later part of the runtime.
                    free_slots: registration.slots,
                })
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

/// Milliseconds on a monotonic clock private to this process.
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}
