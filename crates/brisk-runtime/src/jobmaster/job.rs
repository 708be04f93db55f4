//! A submitted job as the job master holds it: the graphs, the execution plan and the options
//! it runs with.

use crate::checkpoint::{CheckpointConfig, SnapshotLocation};
use crate::error::JobError;
use crate::failure::FailureInjector;
use crate::graph::execution_plan::ExecutionPlan;
use crate::graph::job_graph::{GraphDefaults, JobGraph};
use crate::graph::stream_graph::StreamGraph;
use crate::jobmaster::restart::RestartStrategy;
use crate::taskexecutor::context::ExecutionMode;
use crate::taskexecutor::time::{Clock, SystemClock};
use brisk_core::Configuration;
use brisk_state::StateBackendConfig;
use std::sync::Arc;
use std::time::Duration;

/// How a job runs.
#[derive(Clone)]
pub struct JobOptions {
    /// Defaults for graph resolution.
    pub defaults: GraphDefaults,
    /// Streaming or batch.
    pub execution_mode: ExecutionMode,
    /// Longest time a record waits in a partly filled buffer; `None` sends only full buffers
    /// (and flushes whenever a task goes idle).
    pub buffer_timeout: Option<Duration>,
    /// Bytes per network buffer.
    pub buffer_bytes: usize,
    /// Buffers each channel holds before its producer is backpressured.
    pub buffers_per_channel: usize,
    /// The job's configuration, visible to operators.
    pub config: Arc<Configuration>,
    /// The processing-time clock.
    pub clock: Arc<dyn Clock>,
    /// How often a running job logs its progress; `None` never.
    pub progress_interval: Option<Duration>,
    /// Task slots of the mini cluster; `None` sizes it to what the job needs.
    pub task_slots: Option<usize>,
    /// Task managers the mini cluster spreads the slots over; channels between two of them
    /// go over TCP on 127.0.0.1, as between processes.
    pub task_managers: usize,
    /// The keyed state backend.
    pub state_backend: StateBackendConfig,
    /// Interval of periodic watermark generation.
    pub auto_watermark_interval: Duration,
    /// Checkpointing.
    pub checkpoint: CheckpointConfig,
    /// What happens after a failure.
    pub restart_strategy: RestartStrategy,
    /// Start from this savepoint or retained checkpoint.
    pub restore_from: Option<SnapshotLocation>,
    /// Start even if the savepoint has state for operators the job does not have.
    pub allow_non_restored_state: bool,
    /// Planned failures (recovery tests).
    pub failures: FailureInjector,
}

impl JobOptions {
    /// Options with Flink-like defaults for a job called `job_name`.
    pub fn new(job_name: impl Into<String>) -> Self {
        JobOptions {
            defaults: GraphDefaults {
                job_name: job_name.into(),
                parallelism: 1,
                max_parallelism: None,
                chaining_enabled: true,
            },
            execution_mode: ExecutionMode::Streaming,
            buffer_timeout: Some(Duration::from_millis(1)),
            buffer_bytes: 32 * 1024,
            buffers_per_channel: 4,
            config: Arc::new(Configuration::new()),
            clock: Arc::new(SystemClock),
            progress_interval: Some(Duration::from_secs(10)),
            task_slots: None,
            task_managers: 1,
            state_backend: StateBackendConfig::default(),
            auto_watermark_interval: crate::source::watermark::DEFAULT_AUTO_WATERMARK_INTERVAL,
            checkpoint: CheckpointConfig::default(),
            restart_strategy: RestartStrategy::None,
            restore_from: None,
            allow_non_restored_state: false,
            failures: FailureInjector::default(),
        }
    }
}

impl JobOptions {
    /// Refuses combinations no job can run with.
    pub fn validate(&self) -> Result<(), JobError> {
        if self.checkpoint.is_enabled() && self.execution_mode == ExecutionMode::Batch {
            return Err(JobError::InvalidJob(
                "checkpointing is not supported in BATCH execution mode (bounded jobs recompute on failure); use STREAMING"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// A new job id: 32 hex digits, unique per submission (Flink's `JobID`).
pub fn new_job_id(job_name: &str) -> String {
    brisk_core::hash::unique_id(job_name)
}

/// The resolved job the master redeploys after failures.
pub(crate) struct Deployable {
    pub graph: StreamGraph,
    pub job: JobGraph,
    pub plan: ExecutionPlan,
    pub options: JobOptions,
}
