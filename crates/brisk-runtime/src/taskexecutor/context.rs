//! What a task and its operators know about where they run.

use crate::checkpoint::restore::{OperatorRestore, TaskRestore};
use crate::checkpoint::{CheckpointConfig, TaskEvent};
use crate::failure::FailureInjector;
use crate::metrics::task_io::TaskIoMetrics;
use crate::metrics::{AccumulatorRegistry, MetricGroup};
use crate::network::channel::{CancelToken, TaskWaker};
use crate::taskexecutor::mailbox::Mailbox;
use crate::taskexecutor::time::ProcessingTimeService;
use brisk_core::Clock;
use brisk_core::{Configuration, KeyGroupRange};
use brisk_state::{BackendContext, StateBackendConfig};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::Sender;

/// Streaming gives a result per record as it arrives; batch gives Flink's batch results (one
/// final value per key for keyed reductions, all event-time timers at the end of input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutionMode {
    /// Continuous, incremental results.
    Streaming,
    /// Final results of bounded inputs.
    Batch,
}

/// Identity of one subtask of a job vertex.
#[derive(Clone, Debug)]
pub struct TaskInfo {
    /// The job's name.
    pub job_name: String,
    /// The chain's name, e.g. `Source: words -> Flat Map`.
    pub task_name: String,
    /// 0-based index of this subtask.
    pub subtask_index: usize,
    /// Number of parallel subtasks of the vertex.
    pub parallelism: usize,
    /// Number of key groups.
    pub max_parallelism: usize,
    /// 0 for the first execution, counting up with every restart.
    pub attempt_number: usize,
}

impl TaskInfo {
    /// `name (i/n)` with a 1-based index, as Flink prints subtasks.
    pub fn name_with_subtask(&self) -> String {
        format!("{} ({}/{})", self.task_name, self.subtask_index + 1, self.parallelism)
    }

    /// The key groups this subtask owns.
    pub fn key_group_range(&self) -> KeyGroupRange {
        KeyGroupRange::for_operator(self.max_parallelism, self.parallelism, self.subtask_index)
    }
}

/// Everything a task provides to the operators of its chain.
pub struct TaskContext {
    /// Which subtask this is.
    pub info: TaskInfo,
    /// Streaming or batch.
    pub execution_mode: ExecutionMode,
    /// The job's configuration.
    pub config: Arc<Configuration>,
    /// Processing time and processing-time wakeups of this task.
    pub processing_time: ProcessingTimeService,
    /// Accumulators registered by user functions of this task.
    pub accumulators: AccumulatorRegistry,
    /// Wakes this task (for source readers with background threads).
    pub waker: Arc<TaskWaker>,
    /// The job's cancellation flag.
    pub cancel: CancelToken,
    /// Records read by the job's sources so far, for progress reports.
    pub records_read: Arc<AtomicU64>,
    /// The task's live metrics.
    pub metrics: Arc<TaskIoMetrics>,
    /// The keyed state backend keyed operators create.
    pub state_backend: StateBackendConfig,
    /// The processing-time clock (also read by state time-to-live).
    pub clock: Arc<dyn Clock>,
    /// Control messages for this task (queries of its state, and later checkpoints).
    pub mailbox: Mailbox,
    /// Interval of periodic watermark generation.
    pub auto_watermark_interval: std::time::Duration,
    /// Checkpointing, if the job takes checkpoints.
    pub checkpoint_config: Option<CheckpointConfig>,
    /// Where the task reports checkpoint acknowledgements and the end of its input.
    pub events: TaskEvents,
    /// The state the subtask starts from, when the job was restored.
    pub restore: Option<Arc<TaskRestore>>,
    /// Planned failures (tests, `--inject-failures`).
    pub failures: FailureInjector,
}

/// The task's line to the job master.
#[derive(Clone, Debug)]
pub struct TaskEvents {
    /// Index of the subtask in the job's deployment order.
    pub task_index: usize,
    sender: Option<Sender<TaskEvent>>,
}

impl TaskEvents {
    /// Events of task `task_index` go to `sender`.
    pub fn new(task_index: usize, sender: Sender<TaskEvent>) -> Self {
        TaskEvents { task_index, sender: Some(sender) }
    }

    /// A task without a job master (operator test harnesses).
    pub fn detached() -> Self {
        TaskEvents { task_index: 0, sender: None }
    }

    /// Sends an event; a job master that is gone (the job ended) needs none.
    pub fn send(&self, event: TaskEvent) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(event);
        }
    }
}

impl TaskContext {
    /// The context of a keyed state backend for `operator` in this task.
    pub fn backend_context(&self, operator: &OperatorInfo) -> BackendContext {
        BackendContext {
            operator: operator.name.clone(),
            operator_id: operator.operator_id.clone(),
            subtask_index: self.info.subtask_index,
            key_group_range: self.info.key_group_range(),
            max_parallelism: self.info.max_parallelism,
            clock: self.clock.clone(),
        }
    }
}

/// Identity of one operator in a chain.
#[derive(Clone, Debug)]
pub struct OperatorInfo {
    /// Index of the operator's node in the stream graph.
    pub node_id: usize,
    /// Stable operator id (32 hex digits), from the `uid` or the graph position.
    pub operator_id: String,
    /// The operator's name.
    pub name: String,
    /// The user-given `uid`, if any.
    pub uid: Option<String>,
}

/// What an operator gets when it is opened.
pub struct OperatorContext<'a> {
    /// The task it runs in.
    pub task: &'a TaskContext,
    /// The operator itself.
    pub operator: &'a OperatorInfo,
    /// The operator's user metrics.
    pub metrics: &'a MetricGroup,
}

impl OperatorContext<'_> {
    /// The operator's restored state, when the job started from a checkpoint.
    pub fn restored(&self) -> Option<&OperatorRestore> {
        self.task.restore.as_ref().and_then(|r| r.operators.get(&self.operator.operator_id))
    }
}
