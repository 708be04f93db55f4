//! What a finished job reports (Flink's `JobExecutionResult`).

use crate::checkpoint::stats::CheckpointStatsSnapshot;
use crate::checkpoint::{CheckpointId, SnapshotLocation};
use crate::metrics::AccumulatorValue;
use brisk_core::job_graph::JobGraphDescription;
use std::collections::BTreeMap;
use std::time::Duration;

/// Per-operator totals over all subtasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorMetricsSummary {
    /// Stable operator id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Number of subtasks.
    pub parallelism: usize,
    /// Records received.
    pub records_in: u64,
    /// Records emitted.
    pub records_out: u64,
    /// User counters, summed.
    pub counters: BTreeMap<String, u64>,
}

/// A failure the job master handled (an entry of Flink's exception history).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobException {
    /// When the master handled it, in epoch milliseconds.
    pub timestamp_ms: i64,
    /// The failed task (`name (i/n)`) or the component that failed.
    pub task: String,
    /// The error, with its causes.
    pub message: String,
}

impl JobException {
    /// A failure of `task` with `cause`, now.
    pub fn now(task: &str, cause: &impl std::fmt::Display) -> Self {
        JobException { timestamp_ms: epoch_ms(), task: task.to_string(), message: cause.to_string() }
    }
}

/// Now, in epoch milliseconds (the timestamps Flink's REST API reports).
pub fn epoch_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The outcome of a finished job (Flink's `JobExecutionResult`).
#[derive(Clone, Debug)]
pub struct JobExecutionResult {
    /// The job's id (32 hex digits, as Flink's `JobID`).
    pub job_id: String,
    /// The job's name.
    pub job_name: String,
    /// Wall time from deployment to the last task's end.
    pub net_runtime: Duration,
    /// Operators in graph order.
    pub operators: Vec<OperatorMetricsSummary>,
    /// Accumulators merged over all subtasks.
    pub accumulators: BTreeMap<String, AccumulatorValue>,
    /// The executed job graph.
    pub job_graph: JobGraphDescription,
    /// The statistics of the checkpoints and savepoints the job took.
    pub checkpoints: CheckpointStatsSnapshot,
    /// How often the job restarted after failures.
    pub restarts: usize,
    /// Per restart: from the failure to every task of the new attempt running with its
    /// restored state.
    pub recoveries: Vec<Duration>,
    /// Per restart: the checkpoint (or savepoint) it restored, `None` when it started over
    /// because no checkpoint had completed yet.
    pub restored_checkpoints: Vec<Option<CheckpointId>>,
    /// Every failure the job recovered from, oldest first.
    pub exceptions: Vec<JobException>,
    /// The savepoint written by stop-with-savepoint, if the job was stopped with one.
    pub savepoint: Option<SnapshotLocation>,
}

impl JobExecutionResult {
    /// The job's runtime (Flink's `getNetRuntime`).
    pub fn net_runtime(&self) -> Duration {
        self.net_runtime
    }

    /// An accumulator's merged value.
    pub fn accumulator(&self, name: &str) -> Option<&AccumulatorValue> {
        self.accumulators.get(name)
    }

    /// The metrics of the first operator called `name`.
    pub fn operator(&self, name: &str) -> Option<&OperatorMetricsSummary> {
        self.operators.iter().find(|o| o.name == name)
    }
}
