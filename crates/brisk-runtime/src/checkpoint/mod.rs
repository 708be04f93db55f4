//! Checkpoints (Flink's asynchronous barrier snapshots): barriers, what a task snapshots, how
//! snapshots are stored and found again, the coordinator that drives them, and restoring a
//! job from them — at the same or another parallelism.

pub mod barrier;
pub mod config;
pub mod coordinator;
pub mod location;
pub mod remote;
pub mod restore;
pub mod stats;
pub mod storage;

pub use config::{CheckpointConfig, CheckpointingMode, ExternalizedCheckpointRetention, FailoverStrategy};
pub use location::SnapshotLocation;

use brisk_state::{OperatorStateSnapshot, SnapshotWriter};
use serde::{Deserialize, Serialize};

/// Checkpoint ids count up from 1 per job; the final commit of a finished job uses
/// [`FINAL_CHECKPOINT`].
pub type CheckpointId = u64;

/// The id under which sinks commit what they hold when the whole job has finished.
pub const FINAL_CHECKPOINT: CheckpointId = u64::MAX;

/// A checkpoint or a savepoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotKind {
    /// Periodic, owned by the job: deleted when no longer needed.
    Checkpoint,
    /// User-triggered, self-contained, never deleted by the job.
    Savepoint,
}

/// The marker that travels with the records from the sources: everything before it on every
/// channel belongs to the snapshot (Flink's `CheckpointBarrier`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointBarrier {
    /// The checkpoint.
    pub id: CheckpointId,
    /// When the coordinator triggered it (epoch ms).
    pub timestamp: i64,
    /// Checkpoint or savepoint.
    pub kind: SnapshotKind,
    /// For stop-with-savepoint: sources end after it (`Some(drain)`; with `drain`, the final
    /// watermark flushes event-time state first).
    pub stop: Option<bool>,
    /// The directory tasks write their state into.
    pub target: std::sync::Arc<std::path::Path>,
    /// The snapshot's directory in an object store (`s3://…/chk-<id>`), where each task
    /// uploads its own files; `None` for a local one.
    pub remote: Option<std::sync::Arc<str>>,
    /// Unaligned: the barrier overtakes the messages queued in each channel (Flink's priority
    /// events), and the records among them are stored with the snapshot as in-flight data.
    pub overtaking: bool,
}

/// The state one operator of a task hands to a checkpoint; the keyed part is encoded off the
/// task thread.
#[derive(Default)]
pub struct OperatorSnapshot {
    /// Keyed state and timers.
    pub keyed: Option<Box<dyn SnapshotWriter>>,
    /// Operator (list, union and broadcast) state.
    pub operator: Option<OperatorStateSnapshot>,
    /// Anything else the operator needs back (source split positions, in-memory window panes).
    pub raw: Option<Vec<u8>>,
}

impl OperatorSnapshot {
    /// Whether there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.keyed.is_none() && self.operator.as_ref().is_none_or(|o| o.is_empty()) && self.raw.is_none()
    }
}

/// The synchronous part of one task's snapshot: per operator id, what it handed over.
#[derive(Default)]
pub struct TaskSnapshot {
    /// Operator id and its snapshot, in chain order.
    pub operators: Vec<(String, OperatorSnapshot)>,
}

/// The stored state of one operator subtask.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OperatorSubtaskState {
    /// The operator.
    pub operator_id: String,
    /// Encoded [`brisk_state::KeyedStateSnapshot`].
    pub keyed: Option<Vec<u8>>,
    /// Keyed state as RocksDB files (incremental checkpoints).
    pub keyed_files: Option<brisk_state::RocksDbFiles>,
    /// Encoded [`OperatorStateSnapshot`].
    pub operator: Option<Vec<u8>>,
    /// The operator's own bytes.
    pub raw: Option<Vec<u8>>,
}

/// A task's snapshot file: the state of its chained operators, and the records that were in
/// flight on its inputs (unaligned checkpoints).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TaskStateFile {
    /// Operator states.
    pub operators: Vec<OperatorSubtaskState>,
    /// Per input (1 or 2): encoded records to process before any new input after a restore.
    pub in_flight: Vec<(usize, Vec<Vec<u8>>)>,
}

/// What a task reports for a checkpoint it took.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskAcknowledgement {
    /// The checkpoint.
    pub checkpoint: CheckpointId,
    /// Index of the subtask in the job's deployment order.
    pub task: usize,
    /// File name of its state inside the checkpoint directory (`None`: it had no state).
    pub file: Option<String>,
    /// Bytes written.
    pub size: u64,
    /// Shared files (under the storage's `shared/`) its state refers to, with their sizes and
    /// checksums for the metadata.
    pub shared: Vec<storage::SharedFile>,
    /// Time barriers took to align on its inputs.
    pub alignment: std::time::Duration,
    /// Time of the synchronous part.
    pub sync: std::time::Duration,
    /// Time of the asynchronous part (encoding and writing).
    pub async_part: std::time::Duration,
}

/// Messages from tasks to the job master.
#[derive(Debug)]
pub enum TaskEvent {
    /// A task stored its part of a checkpoint.
    Acknowledge(TaskAcknowledgement),
    /// A task could not take part in a checkpoint.
    Decline {
        /// The checkpoint.
        checkpoint: CheckpointId,
        /// Why.
        reason: String,
    },
    /// A task processed all its input and waits for the job to finish.
    InputFinished(usize),
    /// A task opened its operators (with restored state) and starts processing.
    Running(usize),
    /// A task's thread ended (its outcome is collected when the attempt ends).
    Ended(usize),
}
