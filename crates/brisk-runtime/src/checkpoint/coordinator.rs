//! The checkpoint coordinator's bookkeeping (Flink's `CheckpointCoordinator`): when to
//! trigger, which tasks still owe an acknowledgement, writing the metadata that completes a
//! checkpoint, timeouts, tolerated failures, retention, and the statistics printed at the end.

use super::stats::CheckpointStatsSnapshot;
use super::storage::{CheckpointMetadata, CheckpointStorage, SharedFile, TaskStateHandle};
use super::{CheckpointConfig, CheckpointId, SnapshotKind, SnapshotLocation, TaskAcknowledgement};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How a checkpoint ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointStatus {
    /// Every task acknowledged and the metadata was written.
    Completed,
    /// Abandoned, with the reason.
    Failed(String),
}

/// One line of the checkpoint history.
#[derive(Clone, Debug)]
pub struct CheckpointStats {
    /// The checkpoint.
    pub id: CheckpointId,
    /// Checkpoint or savepoint.
    pub kind: SnapshotKind,
    /// How it ended.
    pub status: CheckpointStatus,
    /// When it was triggered, in epoch milliseconds.
    pub trigger_timestamp_ms: i64,
    /// Subtasks that acknowledged it, of `subtasks`.
    pub acknowledged: usize,
    /// Subtasks taking part.
    pub subtasks: usize,
    /// Bytes written.
    pub size: u64,
    /// From trigger to completion.
    pub duration: Duration,
    /// Longest barrier alignment of any task.
    pub alignment: Duration,
    /// Longest synchronous part of any task.
    pub sync: Duration,
    /// Longest asynchronous part of any task.
    pub async_part: Duration,
    /// Where it is stored.
    pub path: SnapshotLocation,
}

/// A task of the running attempt, as the metadata records it.
#[derive(Clone, Debug)]
pub struct TaskDescriptor {
    /// Subtask index.
    pub subtask: usize,
    /// Its vertex's parallelism.
    pub parallelism: usize,
    /// Its chain's operator ids.
    pub operator_ids: Vec<String>,
}

struct Pending {
    kind: SnapshotKind,
    /// The job's checkpoint storage, or a savepoint directory.
    storage: Arc<CheckpointStorage>,
    /// The snapshot's directory name in `storage`.
    name: String,
    /// Where tasks write it.
    dir: PathBuf,
    triggered: Instant,
    timestamp: i64,
    acks: Vec<Option<TaskAcknowledgement>>,
    remaining: usize,
    enumerators: Vec<(String, Vec<u8>)>,
}

/// A checkpoint that just completed.
#[derive(Clone, Debug)]
pub struct Completed {
    /// The checkpoint.
    pub id: CheckpointId,
    /// Checkpoint or savepoint.
    pub kind: SnapshotKind,
    /// Where it is stored.
    pub path: SnapshotLocation,
}

/// Tracks the checkpoints of a job across its attempts.
pub struct CheckpointCoordinator {
    config: CheckpointConfig,
    storage: Arc<CheckpointStorage>,
    job_name: String,
    max_parallelism: Vec<(String, usize)>,
    tasks: Vec<TaskDescriptor>,
    next_id: CheckpointId,
    pending: BTreeMap<CheckpointId, Pending>,
    last_trigger: Option<Instant>,
    last_completion: Option<Instant>,
    failures_in_a_row: u32,
    stats: CheckpointStatsSnapshot,
}

impl CheckpointCoordinator {
    /// A coordinator writing to `storage`; ids continue after `last_id` (the restored one).
    pub fn new(
        config: CheckpointConfig,
        storage: CheckpointStorage,
        job_name: String,
        max_parallelism: Vec<(String, usize)>,
        last_id: CheckpointId,
    ) -> Self {
        CheckpointCoordinator {
            stats: CheckpointStatsSnapshot::new(config.history_size),
            config,
            storage: Arc::new(storage),
            job_name,
            max_parallelism,
            tasks: Vec::new(),
            next_id: last_id + 1,
            pending: BTreeMap::new(),
            last_trigger: None,
            last_completion: None,
            failures_in_a_row: 0,
        }
    }

    /// The storage.
    pub fn storage(&self) -> &CheckpointStorage {
        &self.storage
    }

    /// A new attempt runs these tasks; checkpoints of the previous attempt are abandoned.
    pub fn start_attempt(&mut self, tasks: Vec<TaskDescriptor>) -> Vec<CheckpointId> {
        self.tasks = tasks;
        self.last_trigger = Some(Instant::now());
        self.abandon_pending("the job restarted")
    }

    /// Abandons the checkpoints in progress because tasks restart (not counted as checkpoint
    /// failures); returns their ids.
    pub fn abandon_pending(&mut self, reason: &str) -> Vec<CheckpointId> {
        let abandoned: Vec<CheckpointId> = self.pending.keys().copied().collect();
        for id in &abandoned {
            self.end_failed(*id, reason.to_string(), false);
        }
        abandoned
    }

    /// The id the next checkpoint or savepoint will get.
    pub fn next_checkpoint_id(&self) -> CheckpointId {
        self.next_id
    }

    /// Whether a periodic checkpoint is due.
    pub fn is_due(&self, now: Instant) -> bool {
        let Some(interval) = self.config.interval else { return false };
        self.pending.len() < self.config.max_concurrent
            && self.last_trigger.is_none_or(|t| now.duration_since(t) >= interval)
            && self.last_completion.is_none_or(|t| now.duration_since(t) >= self.config.min_pause)
    }

    /// When the next periodic checkpoint may be due.
    pub fn next_due(&self) -> Option<Instant> {
        let interval = self.config.interval?;
        Some(self.last_trigger.map(|t| t + interval).unwrap_or_else(Instant::now))
    }

    /// Starts a checkpoint (into the job's storage) or a savepoint (into `savepoint_dir`).
    pub fn begin(
        &mut self,
        kind: SnapshotKind,
        savepoint_dir: Option<SnapshotLocation>,
        enumerators: Vec<(String, Vec<u8>)>,
    ) -> Result<(CheckpointId, i64), String> {
        let timestamp = crate::jobmaster::result::epoch_ms();
        let id = self.next_id;
        let (storage, name) = match savepoint_dir {
            Some(parent) => (
                Arc::new(CheckpointStorage::open(parent).map_err(|e| e.to_string())?),
                format!("savepoint-{id}-{timestamp}"),
            ),
            None => (self.storage.clone(), CheckpointStorage::checkpoint_name(id)),
        };
        self.next_id += 1;
        let dir = storage.local_dir(&name);
        self.pending.insert(
            id,
            Pending {
                kind,
                storage,
                name,
                dir,
                triggered: Instant::now(),
                timestamp,
                acks: vec![None; self.tasks.len()],
                remaining: self.tasks.len(),
                enumerators,
            },
        );
        if kind == SnapshotKind::Checkpoint {
            self.last_trigger = Some(Instant::now());
        }
        Ok((id, timestamp))
    }

    /// The directory a task writes its part of checkpoint `id` into, and the snapshot's
    /// directory in an object store when it goes to one (the tasks upload their files there).
    pub fn directory(&self, id: CheckpointId) -> Option<(PathBuf, Option<String>)> {
        self.pending
            .get(&id)
            .map(|p| (p.dir.clone(), p.storage.is_remote().then(|| p.storage.location().join(&p.name).to_string())))
    }

    /// Records an acknowledgement; returns the checkpoint if it is now complete.
    pub fn acknowledge(&mut self, ack: TaskAcknowledgement) -> Option<Result<Completed, String>> {
        let id = ack.checkpoint;
        let pending = self.pending.get_mut(&id)?;
        let slot = pending.acks.get_mut(ack.task)?;
        if slot.is_none() {
            pending.remaining -= 1;
        }
        *slot = Some(ack);
        if pending.remaining > 0 {
            return None;
        }
        let pending = self.pending.remove(&id)?;
        Some(self.complete(id, pending))
    }

    fn complete(&mut self, id: CheckpointId, pending: Pending) -> Result<Completed, String> {
        let acks: Vec<TaskAcknowledgement> = pending.acks.into_iter().flatten().collect();
        let tasks = self
            .tasks
            .iter()
            .zip(&acks)
            .map(|(t, a)| TaskStateHandle {
                subtask: t.subtask,
                parallelism: t.parallelism,
                operator_ids: t.operator_ids.clone(),
                file: a.file.clone(),
                size: a.size,
                shared: a.shared.iter().map(|f| f.name.clone()).collect(),
            })
            .collect();
        // Tasks report the checksums of the shared files they refer to: the master reads none.
        let mut shared: Vec<SharedFile> = acks.iter().flat_map(|a| a.shared.iter().cloned()).collect();
        shared.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        shared.dedup_by(|a, b| a.name == b.name);
        let metadata = CheckpointMetadata {
            id,
            kind: pending.kind,
            timestamp: pending.timestamp,
            job_name: self.job_name.clone(),
            max_parallelism: self.max_parallelism.clone(),
            tasks,
            enumerators: pending.enumerators,
        };
        let location = pending.storage.location().join(&pending.name);
        if let Err(e) = pending.storage.publish(&pending.name, &metadata, &shared) {
            let reason = format!("cannot complete it: {e}");
            self.record(
                id,
                pending.kind,
                CheckpointStatus::Failed(reason.clone()),
                0,
                (pending.triggered, pending.timestamp),
                &acks,
                location,
            );
            return Err(reason);
        }
        let size = metadata.size();
        let timing = (pending.triggered, pending.timestamp);
        self.record(id, pending.kind, CheckpointStatus::Completed, size, timing, &acks, location.clone());
        self.failures_in_a_row = 0;
        if pending.kind == SnapshotKind::Checkpoint {
            self.last_completion = Some(Instant::now());
            self.storage.prune(self.config.retained);
        }
        info!(checkpoint = id, kind = ?pending.kind, bytes = size, duration_ms = pending.triggered.elapsed().as_millis() as u64, path = %location, "checkpoint completed");
        // Older checkpoints still in progress are subsumed.
        let older: Vec<CheckpointId> = self.pending.range(..id).map(|(k, _)| *k).collect();
        for old in older {
            self.fail(old, format!("subsumed by checkpoint {id}"));
        }
        Ok(Completed { id, kind: pending.kind, path: location })
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        id: CheckpointId,
        kind: SnapshotKind,
        status: CheckpointStatus,
        size: u64,
        (triggered, trigger_timestamp_ms): (Instant, i64),
        acks: &[TaskAcknowledgement],
        path: SnapshotLocation,
    ) {
        let max = |f: fn(&TaskAcknowledgement) -> Duration| acks.iter().map(f).max().unwrap_or_default();
        self.stats.record(CheckpointStats {
            id,
            kind,
            status,
            trigger_timestamp_ms,
            acknowledged: acks.len(),
            subtasks: self.tasks.len(),
            size,
            duration: triggered.elapsed(),
            alignment: max(|a| a.alignment),
            sync: max(|a| a.sync),
            async_part: max(|a| a.async_part),
            path,
        });
    }

    /// Abandons checkpoint `id`; returns whether the job must fail (too many in a row).
    pub fn fail(&mut self, id: CheckpointId, reason: String) -> bool {
        self.end_failed(id, reason, true)
    }

    fn end_failed(&mut self, id: CheckpointId, reason: String, counts: bool) -> bool {
        let Some(pending) = self.pending.remove(&id) else { return false };
        warn!(checkpoint = id, reason = %reason, "checkpoint failed");
        let _ = std::fs::remove_dir_all(&pending.dir);
        if pending.kind == SnapshotKind::Savepoint && pending.storage.is_remote() {
            // Its tasks may have uploaded files; no later pruning looks at a savepoint's
            // directory. Off the master thread: the store may be slow.
            let (storage, name) = (pending.storage.clone(), pending.name.clone());
            let _ = std::thread::Builder::new().name("discard savepoint".into()).spawn(move || storage.discard(&name));
        }
        let location = pending.storage.location().join(&pending.name);
        let acks: Vec<TaskAcknowledgement> = pending.acks.iter().flatten().cloned().collect();
        let timing = (pending.triggered, pending.timestamp);
        self.record(id, pending.kind, CheckpointStatus::Failed(reason), 0, timing, &acks, location);
        if pending.kind == SnapshotKind::Checkpoint && counts {
            self.failures_in_a_row += 1;
        }
        self.failures_in_a_row > self.config.tolerable_failures
    }

    /// Checkpoints past their timeout, abandoned; returns their ids and whether the job must fail.
    pub fn expire(&mut self, now: Instant) -> (Vec<CheckpointId>, bool) {
        let expired: Vec<CheckpointId> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.triggered) >= self.config.timeout)
            .map(|(id, _)| *id)
            .collect();
        let mut must_fail = false;
        for id in &expired {
            must_fail |= self.fail(*id, format!("not complete after the timeout of {:?}", self.config.timeout));
        }
        (expired, must_fail)
    }

    /// The statistics of the checkpoints so far.
    pub fn stats(&self) -> &CheckpointStatsSnapshot {
        &self.stats
    }

    /// Whether task `task` still owes checkpoint `id` its acknowledgement.
    pub fn awaits(&self, id: CheckpointId, task: usize) -> bool {
        self.pending.get(&id).is_some_and(|p| p.acks.get(task).is_some_and(|a| a.is_none()))
    }

    /// Whether checkpoint `id` is still in progress.
    pub fn is_pending(&self, id: CheckpointId) -> bool {
        self.pending.contains_key(&id)
    }

    /// Whether any checkpoint or savepoint is still in progress.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}
