//! Where checkpoints live: a directory per checkpoint (`chk-<id>`) holding one state file per
//! task and, written last and atomically, the `_metadata` file that makes it complete.
//! Savepoints have the same layout in a directory of their own. Every file carries a checksum;
//! a checkpoint whose files are missing or corrupt is skipped for the one before it.

use super::{CheckpointId, SnapshotKind, TaskStateFile};
use brisk_state::snapshot::{decode_file, encode_file};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;
use tracing::warn;

const METADATA_MAGIC: &[u8; 8] = b"BRSKMETA";
const TASK_MAGIC: &[u8; 8] = b"BRSKTASK";
/// The file that completes a checkpoint.
pub const METADATA_FILE: &str = "_metadata";
/// The directory, next to the checkpoints, of files several checkpoints share.
pub const SHARED_DIR: &str = "shared";

/// A checkpoint that could not be written or read.
#[derive(Debug, Error)]
pub enum StorageError {
    /// A file operation failed.
    #[error("checkpoint storage: cannot {action} '{path}': {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not what it should be.
    #[error("checkpoint storage: '{path}' is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io { action, path: path.to_path_buf(), source }
}

/// Writes `bytes` to `path` so that readers see the whole file or none (temporary file, then
/// rename).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    }
    // Unique per writer: a task may be asked twice for the same checkpoint.
    static WRITERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let writer = WRITERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.{}-{writer}.inprogress", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("rename", &tmp))
}

/// One task's entry in the metadata.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskStateHandle {
    /// The task's subtask index.
    pub subtask: usize,
    /// Its vertex's parallelism.
    pub parallelism: usize,
    /// The operators of its chain, head first.
    pub operator_ids: Vec<String>,
    /// Its state file inside the checkpoint directory, if it had state.
    pub file: Option<String>,
    /// Size of the file.
    pub size: u64,
    /// Files under `shared/` its state refers to (incremental RocksDB checkpoints).
    pub shared: Vec<String>,
}

/// What makes a checkpoint complete and restorable.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// The checkpoint.
    pub id: CheckpointId,
    /// Checkpoint or savepoint.
    pub kind: SnapshotKind,
    /// When it was triggered (epoch ms).
    pub timestamp: i64,
    /// The job's name.
    pub job_name: String,
    /// Number of key groups of each operator id.
    pub max_parallelism: Vec<(String, usize)>,
    /// Every task's state.
    pub tasks: Vec<TaskStateHandle>,
    /// Splits not yet handed to any reader, per source operator id.
    pub enumerators: Vec<(String, Vec<u8>)>,
}

impl CheckpointMetadata {
    /// Total bytes of the task files.
    pub fn size(&self) -> u64 {
        self.tasks.iter().map(|t| t.size).sum()
    }
}

/// Encodes a task's state file.
pub fn encode_task_state(state: &TaskStateFile) -> Result<Vec<u8>, StorageError> {
    encode_file(TASK_MAGIC, state)
        .map_err(|e| StorageError::Corrupt { path: PathBuf::from("<task state>"), reason: e.to_string() })
}

/// A completed checkpoint read back and verified: metadata and every task file.
#[derive(Clone, Debug)]
pub struct CompletedCheckpoint {
    /// Its directory.
    pub path: PathBuf,
    /// The metadata.
    pub metadata: CheckpointMetadata,
    /// Task states, in the order of `metadata.tasks` (`None` for tasks without state).
    pub task_states: Vec<Option<TaskStateFile>>,
}

impl CompletedCheckpoint {
    /// Reads and verifies the checkpoint or savepoint in `dir`.
    pub fn load(dir: &Path) -> Result<Self, StorageError> {
        let meta_path = dir.join(METADATA_FILE);
        let bytes = std::fs::read(&meta_path).map_err(io("read", &meta_path))?;
        let metadata: CheckpointMetadata = decode_file(METADATA_MAGIC, &bytes, &meta_path.display().to_string())
            .map_err(|e| StorageError::Corrupt { path: meta_path.clone(), reason: e.to_string() })?;
        let mut task_states = Vec::with_capacity(metadata.tasks.len());
        for task in &metadata.tasks {
            let Some(file) = &task.file else {
                task_states.push(None);
                continue;
            };
            let path = dir.join(file);
            let bytes = std::fs::read(&path).map_err(io("read", &path))?;
            let state: TaskStateFile = decode_file(TASK_MAGIC, &bytes, &path.display().to_string())
                .map_err(|e| StorageError::Corrupt { path: path.clone(), reason: e.to_string() })?;
            task_states.push(Some(state));
        }
        Ok(CompletedCheckpoint { path: dir.to_path_buf(), metadata, task_states })
    }
}

/// The checkpoints of one job in one directory.
#[derive(Clone, Debug)]
pub struct CheckpointStorage {
    root: PathBuf,
}

impl CheckpointStorage {
    /// Checkpoints under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CheckpointStorage { root: root.into() }
    }

    /// The directory holding all checkpoints.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of checkpoint `id`.
    pub fn checkpoint_dir(&self, id: CheckpointId) -> PathBuf {
        self.root.join(format!("chk-{id}"))
    }

    /// Completed checkpoint ids (with a metadata file), newest first.
    pub fn completed_ids(&self) -> Vec<CheckpointId> {
        let mut ids: Vec<CheckpointId> = std::fs::read_dir(&self.root)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        e.file_name().to_str().and_then(|n| n.strip_prefix("chk-")).and_then(|n| n.parse().ok())
                    })
                    .filter(|id| self.checkpoint_dir(*id).join(METADATA_FILE).is_file())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids
    }

    /// The newest checkpoint that reads back completely; corrupt or incomplete ones are
    /// logged and skipped.
    pub fn latest_valid(&self) -> Option<CompletedCheckpoint> {
        for id in self.completed_ids() {
            match CompletedCheckpoint::load(&self.checkpoint_dir(id)) {
                Ok(checkpoint) => return Some(checkpoint),
                Err(e) => {
                    warn!(checkpoint = id, error = %e, "checkpoint cannot be restored; falling back to the previous one")
                }
            }
        }
        None
    }

    /// The shared files checkpoint `id` refers to (none if its metadata does not read).
    fn shared_files(&self, id: CheckpointId) -> std::collections::HashSet<String> {
        let path = self.checkpoint_dir(id).join(METADATA_FILE);
        std::fs::read(&path)
            .ok()
            .and_then(|bytes| {
                decode_file::<CheckpointMetadata>(METADATA_MAGIC, &bytes, &path.display().to_string()).ok()
            })
            .map(|m| m.tasks.into_iter().flat_map(|t| t.shared).collect())
            .unwrap_or_default()
    }

    /// Deletes everything but the `keep` newest completed checkpoints (and unfinished ones
    /// older than the newest completed), and the shared files only deleted ones referred to.
    pub fn prune(&self, keep: usize) {
        let completed = self.completed_ids();
        let newest = completed.first().copied().unwrap_or(0);
        let kept: Vec<CheckpointId> = completed.iter().take(keep).copied().collect();
        let still_used: std::collections::HashSet<String> = kept.iter().flat_map(|id| self.shared_files(*id)).collect();
        for id in completed.iter().skip(keep) {
            for file in self.shared_files(*id).difference(&still_used) {
                let _ = std::fs::remove_file(self.root.join(SHARED_DIR).join(file));
            }
        }
        let Ok(entries) = std::fs::read_dir(&self.root) else { return };
        for entry in entries.filter_map(|e| e.ok()) {
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("chk-"))
                .and_then(|n| n.parse::<CheckpointId>().ok())
            else {
                continue;
            };
            if !kept.contains(&id)
                && id <= newest
                && let Err(e) = std::fs::remove_dir_all(entry.path())
            {
                warn!(path = %entry.path().display(), error = %e, "cannot delete an old checkpoint");
            }
        }
    }

    /// Deletes all checkpoints and their shared files (a finished job, or cancellation
    /// without retention).
    pub fn delete_all(&self) {
        for id in self.completed_ids() {
            let _ = std::fs::remove_dir_all(self.checkpoint_dir(id));
        }
        let _ = std::fs::remove_dir_all(self.root.join(SHARED_DIR));
    }
}

/// Writes the metadata that completes a checkpoint in `dir`.
pub fn write_metadata(dir: &Path, metadata: &CheckpointMetadata) -> Result<(), StorageError> {
    let path = dir.join(METADATA_FILE);
    let bytes = encode_file(METADATA_MAGIC, metadata)
        .map_err(|e| StorageError::Corrupt { path: path.clone(), reason: e.to_string() })?;
    write_atomically(&path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("brisk-storage-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn write_checkpoint(storage: &CheckpointStorage, id: CheckpointId) {
        let state = TaskStateFile::default();
        let dir = storage.checkpoint_dir(id);
        write_atomically(&dir.join("task-0"), &encode_task_state(&state).unwrap()).unwrap();
        let metadata = CheckpointMetadata {
            id,
            kind: SnapshotKind::Checkpoint,
            timestamp: 0,
            job_name: "t".into(),
            max_parallelism: vec![],
            tasks: vec![TaskStateHandle {
                subtask: 0,
                parallelism: 1,
                operator_ids: vec![],
                file: Some("task-0".into()),
                size: 1,
                shared: vec![],
            }],
            enumerators: vec![],
        };
        write_metadata(&dir, &metadata).unwrap();
    }

    #[test]
    fn corrupt_or_incomplete_checkpoints_fall_back_and_old_ones_are_pruned() {
        let storage = CheckpointStorage::new(dir("fallback"));
        for id in 1..=3 {
            write_checkpoint(&storage, id);
        }
        std::fs::create_dir_all(storage.checkpoint_dir(4)).unwrap(); // in progress: no metadata
        assert_eq!(storage.completed_ids(), vec![3, 2, 1]);
        let task_file = storage.checkpoint_dir(3).join("task-0");
        let mut bytes = std::fs::read(&task_file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&task_file, bytes).unwrap();
        assert_eq!(storage.latest_valid().map(|c| c.metadata.id), Some(2), "a corrupt file makes 3 unusable");
        std::fs::remove_file(storage.checkpoint_dir(2).join("task-0")).unwrap();
        assert_eq!(storage.latest_valid().map(|c| c.metadata.id), Some(1), "a missing file makes 2 unusable");
        storage.prune(1);
        assert_eq!(storage.completed_ids(), vec![3]);
        assert!(
            storage.checkpoint_dir(4).exists(),
            "a checkpoint newer than the last completed one may still complete"
        );
    }
}
