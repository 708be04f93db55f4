//! Live metrics of each subtask (Flink's `TaskIOMetricGroup`): the task's thread updates
//! relaxed atomics, and a reporter (progress log, REST, Prometheus, a heartbeat) reads them at
//! any time without stopping or slowing the task.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// The live counters of one subtask.
#[derive(Debug)]
pub struct TaskIoMetrics {
    records_in: AtomicU64,
    records_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    input_watermark: AtomicI64,
    back_pressured_ns: AtomicU64,
    checkpointed_size: AtomicU64,
    records_in_errors: AtomicU64,
}

impl Default for TaskIoMetrics {
    fn default() -> Self {
        TaskIoMetrics {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            input_watermark: AtomicI64::new(i64::MIN),
            back_pressured_ns: AtomicU64::new(0),
            checkpointed_size: AtomicU64::new(0),
            records_in_errors: AtomicU64::new(0),
        }
    }
}

impl TaskIoMetrics {
    /// Fresh counters, shareable with reporters.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// `records` records of `bytes` bytes arrived (read by a source, or from input channels).
    #[inline]
    pub fn add_in(&self, records: u64, bytes: u64) {
        self.records_in.fetch_add(records, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `records` records of `bytes` bytes left for downstream tasks.
    #[inline]
    pub fn add_out(&self, records: u64, bytes: u64) {
        self.records_out.fetch_add(records, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The task's combined input watermark advanced.
    #[inline]
    pub fn set_input_watermark(&self, watermark: i64) {
        self.input_watermark.store(watermark, Ordering::Relaxed);
    }

    /// The task waited `waited` for room in a full output channel.
    #[inline]
    pub fn add_back_pressured(&self, waited: Duration) {
        self.back_pressured_ns.fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
    }

    /// A source skipped a record it could not read (a bad-record policy of skip).
    #[inline]
    pub fn add_in_error(&self) {
        self.records_in_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The task's part of the last checkpoint it wrote has `bytes` bytes.
    pub fn set_checkpointed_size(&self, bytes: u64) {
        self.checkpointed_size.store(bytes, Ordering::Relaxed);
    }

    /// Takes over `values`, read elsewhere (a worker process's report of a task there).
    pub fn set(&self, values: &TaskIoValues) {
        self.records_in.store(values.records_in, Ordering::Relaxed);
        self.records_out.store(values.records_out, Ordering::Relaxed);
        self.bytes_in.store(values.bytes_in, Ordering::Relaxed);
        self.bytes_out.store(values.bytes_out, Ordering::Relaxed);
        self.input_watermark.store(values.current_input_watermark.unwrap_or(i64::MIN), Ordering::Relaxed);
        self.back_pressured_ns.store(values.back_pressured_ms * 1_000_000, Ordering::Relaxed);
        self.checkpointed_size.store(values.checkpointed_size, Ordering::Relaxed);
        self.records_in_errors.store(values.records_in_errors, Ordering::Relaxed);
    }

    /// The current values.
    pub fn read(&self) -> TaskIoValues {
        let watermark = self.input_watermark.load(Ordering::Relaxed);
        TaskIoValues {
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            current_input_watermark: (watermark != i64::MIN).then_some(watermark),
            back_pressured_ms: self.back_pressured_ns.load(Ordering::Relaxed) / 1_000_000,
            checkpointed_size: self.checkpointed_size.load(Ordering::Relaxed),
            records_in_errors: self.records_in_errors.load(Ordering::Relaxed),
        }
    }
}

/// One reading of a subtask's counters; serializable, so heartbeats can carry it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskIoValues {
    /// Records received (read, for a source): Flink's `numRecordsIn`.
    pub records_in: u64,
    /// Records sent to downstream tasks: `numRecordsOut`.
    pub records_out: u64,
    /// Bytes received: the records' in-memory size over local channels (`numBytesIn`).
    pub bytes_in: u64,
    /// Bytes sent: `numBytesOut`, measured as `bytes_in`.
    pub bytes_out: u64,
    /// The combined watermark of the task's inputs (`currentInputWatermark`); `None` before
    /// the first one, and for sources.
    pub current_input_watermark: Option<i64>,
    /// Total time the task waited for room in full output channels (backpressure).
    pub back_pressured_ms: u64,
    /// Size of the task's state in the last checkpoint it wrote (`checkpointedSize`).
    pub checkpointed_size: u64,
    /// Records a source skipped as unreadable (`numRecordsInErrors`).
    pub records_in_errors: u64,
}

/// Where a subtask is in its life (Flink's `ExecutionState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutionState {
    /// Started; opening its operators and restoring their state.
    Deploying,
    /// Processing its input.
    Running,
    /// It processed all its input (it may still commit at the job's end).
    Finished,
    /// Cancelled (by a cancel of the job, or a failure elsewhere in its region).
    Canceled,
    /// Failed.
    Failed,
}

impl ExecutionState {
    /// Flink's name of the state.
    pub fn name(self) -> &'static str {
        match self {
            ExecutionState::Deploying => "DEPLOYING",
            ExecutionState::Running => "RUNNING",
            ExecutionState::Finished => "FINISHED",
            ExecutionState::Canceled => "CANCELED",
            ExecutionState::Failed => "FAILED",
        }
    }
}

/// The live metrics of one subtask of a running job, with where it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskMetrics {
    /// The vertex's index in the job graph.
    pub vertex: usize,
    /// The vertex's name.
    pub vertex_name: String,
    /// The subtask index.
    pub subtask: usize,
    /// The attempt the task belongs to (0 until the first restart).
    pub attempt: usize,
    /// Where it is in its life.
    pub state: ExecutionState,
    /// The counters.
    pub values: TaskIoValues,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_reflect_updates_from_another_thread() {
        let metrics = TaskIoMetrics::new();
        assert_eq!(metrics.read(), TaskIoValues::default());
        let writer = metrics.clone();
        std::thread::spawn(move || {
            writer.add_in(10, 160);
            writer.add_in(5, 80);
            writer.add_out(7, 112);
            writer.set_input_watermark(1_000);
            writer.add_back_pressured(Duration::from_millis(3));
            writer.add_back_pressured(Duration::from_micros(2_500));
            writer.set_checkpointed_size(4096);
            writer.add_in_error();
        })
        .join()
        .unwrap();
        assert_eq!(
            metrics.read(),
            TaskIoValues {
                records_in: 15,
                records_out: 7,
                bytes_in: 240,
                bytes_out: 112,
                current_input_watermark: Some(1_000),
                back_pressured_ms: 5,
                checkpointed_size: 4096,
                records_in_errors: 1,
            }
        );
        let copy = TaskIoMetrics::new();
        copy.set(&metrics.read());
        assert_eq!(copy.read(), metrics.read());
    }
}
