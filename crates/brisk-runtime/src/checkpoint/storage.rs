//! Where checkpoints live: a directory per checkpoint (`chk-<id>`) holding one state file per
//! task and, written last and atomically, the `_metadata` file that makes it complete; on the
//! local file system or in an object store.
//! Savepoints have the same layout in a directory of their own. Every file carries a checksum;
//! a checkpoint whose files are missing or corrupt is skipped for the one before it.

use super::location::SnapshotLocation;
use super::remote::ObjectStoreDir;
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
    /// An object-store request failed.
    #[error("checkpoint storage: cannot {action} '{url}': {reason}")]
    ObjectStore {
        /// What was attempted.
        action: &'static str,
        /// The object's URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The location needs something this build does not have.
    #[error("checkpoint storage: {0}")]
    Unsupported(String),
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

/// The checkpoints of one job under one location (or one savepoint directory). Tasks write
/// into local directories; with an object store those are staging copies, uploaded when a
/// snapshot completes (metadata last) and downloaded again to restore.
pub struct CheckpointStorage {
    location: SnapshotLocation,
    local: PathBuf,
    remote: Option<ObjectStoreDir>,
}

impl CheckpointStorage {
    /// Snapshots under `location`; connects to its object store, if it is in one.
    pub fn open(location: SnapshotLocation) -> Result<Self, StorageError> {
        let remote = match &location {
            SnapshotLocation::Local(_) => None,
            SnapshotLocation::ObjectStore(url) => Some(ObjectStoreDir::open(url)?),
        };
        Ok(CheckpointStorage { local: location.local_dir(), location, remote })
    }

    /// Where the snapshots are.
    pub fn location(&self) -> &SnapshotLocation {
        &self.location
    }

    /// The local directory tasks write snapshot `name` into.
    pub fn local_dir(&self, name: &str) -> PathBuf {
        self.local.join(name)
    }

    /// The directory name of checkpoint `id`.
    pub fn checkpoint_name(id: CheckpointId) -> String {
        format!("chk-{id}")
    }

    /// The local directory of checkpoint `id`.
    pub fn checkpoint_dir(&self, id: CheckpointId) -> PathBuf {
        self.local_dir(&Self::checkpoint_name(id))
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match &self.remote {
            Some(remote) => remote.read(name),
            None => {
                let path = self.local.join(name);
                match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io("read", &path)(e)),
                }
            }
        }
    }

    /// Checkpoint ids with a directory, complete or not.
    fn checkpoint_ids(&self) -> Result<Vec<CheckpointId>, StorageError> {
        let names: Vec<String> = match &self.remote {
            Some(remote) => remote.list("")?.dirs,
            None => match std::fs::read_dir(&self.local) {
                Ok(entries) => entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(io("list", &self.local)(e)),
            },
        };
        Ok(names.iter().filter_map(|n| n.strip_prefix("chk-")?.parse().ok()).collect())
    }

    /// Completed checkpoint ids (with a metadata file), newest first; an error when the
    /// storage cannot be listed.
    pub fn completed_ids(&self) -> Result<Vec<CheckpointId>, StorageError> {
        let mut ids = Vec::new();
        for id in self.checkpoint_ids()? {
            let metadata = format!("{}/{METADATA_FILE}", Self::checkpoint_name(id));
            let complete = match &self.remote {
                Some(remote) => remote.exists(&metadata)?,
                None => self.local.join(metadata).is_file(),
            };
            if complete {
                ids.push(id);
            }
        }
        ids.sort_unstable_by(|a, b| b.cmp(a));
        Ok(ids)
    }

    /// Reads and verifies snapshot `name` (downloading it first from an object store).
    pub fn load(&self, name: &str) -> Result<CompletedCheckpoint, StorageError> {
        let dir = self.local_dir(name);
        if let Some(remote) = &self.remote {
            let missing = |file: &str| StorageError::Corrupt {
                path: PathBuf::from(self.location.join(name).join(file).to_string()),
                reason: "the file is missing".into(),
            };
            let meta_name = format!("{name}/{METADATA_FILE}");
            let meta_bytes = remote.read(&meta_name)?.ok_or_else(|| missing(METADATA_FILE))?;
            let metadata: CheckpointMetadata = decode_file(METADATA_MAGIC, &meta_bytes, &meta_name)
                .map_err(|e| StorageError::Corrupt { path: meta_name.clone().into(), reason: e.to_string() })?;
            for task in &metadata.tasks {
                if let Some(file) = &task.file {
                    let bytes = remote.read(&format!("{name}/{file}"))?.ok_or_else(|| missing(file))?;
                    write_atomically(&dir.join(file), &bytes)?;
                }
                for file in &task.shared {
                    let local = self.local.join(SHARED_DIR).join(file);
                    if !local.is_file() {
                        let shared = format!("{SHARED_DIR}/{file}");
                        let bytes = remote.read(&shared)?.ok_or_else(|| StorageError::Corrupt {
                            path: PathBuf::from(self.location.join(&shared).to_string()),
                            reason: "the shared file is missing".into(),
                        })?;
                        write_atomically(&local, &bytes)?;
                    }
                }
            }
            write_atomically(&dir.join(METADATA_FILE), &meta_bytes)?;
        }
        CompletedCheckpoint::load(&dir)
    }

    /// Completes snapshot `name`: writes its metadata and, for an object store, uploads its
    /// task files and the shared files not there yet, then the metadata, last.
    pub fn publish(&self, name: &str, metadata: &CheckpointMetadata) -> Result<(), StorageError> {
        let dir = self.local_dir(name);
        write_metadata(&dir, metadata)?;
        let Some(remote) = &self.remote else { return Ok(()) };
        let upload = |local: &Path, remote_name: &str| -> Result<(), StorageError> {
            let bytes = std::fs::read(local).map_err(io("read", local))?;
            remote.write(remote_name, bytes)
        };
        for task in &metadata.tasks {
            if let Some(file) = &task.file {
                upload(&dir.join(file), &format!("{name}/{file}"))?;
            }
            for file in &task.shared {
                let shared = format!("{SHARED_DIR}/{file}");
                if !remote.exists(&shared)? {
                    upload(&self.local.join(SHARED_DIR).join(file), &shared)?;
                }
            }
        }
        upload(&dir.join(METADATA_FILE), &format!("{name}/{METADATA_FILE}"))
    }

    /// The newest checkpoint that reads back completely; corrupt or missing files make it
    /// fall back to the one before (logged). An object store that cannot be reached is an
    /// error: falling back then would restore older state than there is.
    pub fn latest_valid(&self) -> Result<Option<CompletedCheckpoint>, StorageError> {
        for id in self.completed_ids()? {
            match self.load(&Self::checkpoint_name(id)) {
                Ok(checkpoint) => return Ok(Some(checkpoint)),
                Err(e @ StorageError::ObjectStore { .. }) => return Err(e),
                Err(e) => {
                    warn!(checkpoint = id, error = %e, "checkpoint cannot be restored; falling back to the previous one")
                }
            }
        }
        Ok(None)
    }

    /// The shared files checkpoint `id` refers to (none if its metadata is gone or corrupt:
    /// it cannot be restored, so it keeps nothing alive).
    fn shared_files(&self, id: CheckpointId) -> Result<std::collections::HashSet<String>, StorageError> {
        let name = format!("{}/{METADATA_FILE}", Self::checkpoint_name(id));
        Ok(self
            .read(&name)?
            .and_then(|bytes| decode_file::<CheckpointMetadata>(METADATA_MAGIC, &bytes, &name).ok())
            .map(|m| m.tasks.into_iter().flat_map(|t| t.shared).collect())
            .unwrap_or_default())
    }

    fn delete_shared(&self, file: &str) {
        let _ = std::fs::remove_file(self.local.join(SHARED_DIR).join(file));
        if let Some(remote) = &self.remote
            && let Err(e) = remote.delete(&format!("{SHARED_DIR}/{file}"))
        {
            warn!(error = %e, "cannot delete a shared checkpoint file");
        }
    }

    fn delete_checkpoint(&self, id: CheckpointId) {
        let name = Self::checkpoint_name(id);
        let local = self.local_dir(&name);
        if let Err(e) = std::fs::remove_dir_all(&local)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(path = %local.display(), error = %e, "cannot delete an old checkpoint");
        }
        if let Some(remote) = &self.remote
            && let Err(e) = remote.delete_dir(&name)
        {
            warn!(error = %e, "cannot delete an old checkpoint");
        }
    }

    /// Deletes everything but the `keep` newest completed checkpoints (and unfinished ones
    /// older than the newest completed), and the shared files only deleted ones referred to.
    /// When the storage cannot be read completely it deletes nothing (a later prune will).
    pub fn prune(&self, keep: usize) {
        if let Err(e) = self.try_prune(keep) {
            warn!(error = %e, "cannot delete old checkpoints now");
        }
    }

    fn try_prune(&self, keep: usize) -> Result<(), StorageError> {
        let completed = self.completed_ids()?;
        let newest = completed.first().copied().unwrap_or(0);
        let kept: Vec<CheckpointId> = completed.iter().take(keep).copied().collect();
        let mut still_used = std::collections::HashSet::new();
        for id in &kept {
            still_used.extend(self.shared_files(*id)?);
        }
        let mut unused = Vec::new();
        for id in completed.iter().skip(keep) {
            unused.extend(self.shared_files(*id)?.into_iter().filter(|f| !still_used.contains(f)));
        }
        let old: Vec<CheckpointId> =
            self.checkpoint_ids()?.into_iter().filter(|id| !kept.contains(id) && *id <= newest).collect();
        unused.iter().for_each(|file| self.delete_shared(file));
        old.into_iter().for_each(|id| self.delete_checkpoint(id));
        Ok(())
    }

    /// Deletes all checkpoints, complete or not, and their shared files (a finished job, or
    /// cancellation without retention).
    pub fn delete_all(&self) {
        let result = self.completed_ids().and_then(|ids| {
            for id in ids {
                self.shared_files(id)?.iter().for_each(|file| self.delete_shared(file));
            }
            // Checkpoints still in progress when the job ended have task files but no metadata.
            self.checkpoint_ids()?.into_iter().for_each(|id| self.delete_checkpoint(id));
            Ok(())
        });
        if let Err(e) = result {
            warn!(error = %e, "cannot delete the job's checkpoints");
        }
        let _ = std::fs::remove_dir_all(self.local.join(SHARED_DIR));
    }
}

/// Reads and verifies the savepoint or retained checkpoint at `location`.
pub fn load_snapshot(location: &SnapshotLocation) -> Result<CompletedCheckpoint, StorageError> {
    match (location, location.parent()) {
        (SnapshotLocation::ObjectStore(url), Some(parent)) => {
            let name = url.rsplit('/').next().unwrap_or_default();
            CheckpointStorage::open(parent)?.load(name)
        }
        _ => CompletedCheckpoint::load(&location.local_dir()),
    }
}

/// Writes the metadata that completes a checkpoint in `dir`.
fn write_metadata(dir: &Path, metadata: &CheckpointMetadata) -> Result<(), StorageError> {
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

    /// Writes checkpoint `id` of one task (file `task`, referring to `shared`) and completes it.
    fn write_checkpoint_with(storage: &CheckpointStorage, id: CheckpointId, task: &str, shared: Vec<String>) {
        let dir = storage.checkpoint_dir(id);
        write_atomically(&dir.join(task), &encode_task_state(&TaskStateFile::default()).unwrap()).unwrap();
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
                file: Some(task.into()),
                size: 1,
                shared,
            }],
            enumerators: vec![],
        };
        storage.publish(&CheckpointStorage::checkpoint_name(id), &metadata).unwrap();
    }

    fn write_checkpoint(storage: &CheckpointStorage, id: CheckpointId) {
        write_checkpoint_with(storage, id, "task-0", Vec::new());
    }

    #[test]
    fn corrupt_or_incomplete_checkpoints_fall_back_and_old_ones_are_pruned() {
        let storage = CheckpointStorage::open(dir("fallback").into()).unwrap();
        for id in 1..=3 {
            write_checkpoint(&storage, id);
        }
        std::fs::create_dir_all(storage.checkpoint_dir(4)).unwrap(); // in progress: no metadata
        assert_eq!(storage.completed_ids().unwrap(), vec![3, 2, 1]);
        let task_file = storage.checkpoint_dir(3).join("task-0");
        let mut bytes = std::fs::read(&task_file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&task_file, bytes).unwrap();
        assert_eq!(storage.latest_valid().unwrap().map(|c| c.metadata.id), Some(2), "a corrupt file makes 3 unusable");
        std::fs::remove_file(storage.checkpoint_dir(2).join("task-0")).unwrap();
        assert_eq!(storage.latest_valid().unwrap().map(|c| c.metadata.id), Some(1), "a missing file makes 2 unusable");
        storage.prune(1);
        assert_eq!(storage.completed_ids().unwrap(), vec![3]);
        assert!(
            storage.checkpoint_dir(4).exists(),
            "a checkpoint newer than the last completed one may still complete"
        );
    }

    /// The same rules in an S3-compatible object store (a local moto server): completed
    /// checkpoints are found by their metadata, a corrupt or missing object falls back to the
    /// previous checkpoint, shared files are kept while referenced, and pruning deletes objects.
    #[cfg(feature = "s3")]
    #[test]
    fn object_store_checkpoints_fall_back_share_files_and_are_pruned() {
        use super::super::remote::S3TestServer;
        let server = S3TestServer::start("brisk").unwrap();
        let url = format!("s3://brisk/unit-{}", std::process::id());
        let storage = CheckpointStorage {
            location: SnapshotLocation::ObjectStore(url.clone()),
            local: dir("object-store"),
            remote: Some(server.open(&url).unwrap()),
        };
        let remote = server.open(&url).unwrap();
        let shared = storage.local.join(SHARED_DIR);
        std::fs::create_dir_all(&shared).unwrap();
        for id in 1..=3 {
            // Checkpoint 1 refers to `a`, 2 and 3 to `b`.
            let file = if id == 1 { "a" } else { "b" };
            std::fs::write(shared.join(file), file).unwrap();
            write_checkpoint_with(&storage, id, &format!("task-{id}"), vec![file.into()]);
        }
        remote.write("chk-4/task-4", b"no metadata yet".to_vec()).unwrap();
        assert_eq!(storage.completed_ids().unwrap(), vec![3, 2, 1]);
        assert_eq!(remote.list("shared").unwrap().files.len(), 2, "each shared file uploaded once");
        // Break checkpoint 3 in the store; the local staging copy must not hide it.
        let mut bytes = remote.read("chk-3/task-3").unwrap().unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        remote.write("chk-3/task-3", bytes).unwrap();
        assert_eq!(
            storage.latest_valid().unwrap().map(|c| c.metadata.id),
            Some(2),
            "a corrupt object makes 3 unusable"
        );
        remote.delete("chk-2/task-2").unwrap();
        assert_eq!(
            storage.latest_valid().unwrap().map(|c| c.metadata.id),
            Some(1),
            "a missing object makes 2 unusable"
        );
        // Restoring 1 downloaded its shared file into an empty staging directory.
        std::fs::remove_dir_all(&storage.local).unwrap();
        let restored = storage.latest_valid().unwrap().unwrap();
        assert_eq!(restored.metadata.id, 1);
        assert_eq!(std::fs::read(shared.join("a")).unwrap(), b"a");
        storage.prune(1);
        assert_eq!(storage.completed_ids().unwrap(), vec![3]);
        assert_eq!(remote.list("shared").unwrap().files, vec!["b".to_string()], "only `a` was unreferenced");
        assert!(remote.exists("chk-4/task-4").unwrap(), "a newer checkpoint in progress is kept");
        storage.delete_all();
        assert_eq!(remote.list("").unwrap().dirs, Vec::<String>::new(), "in-progress ones too");
    }
}
