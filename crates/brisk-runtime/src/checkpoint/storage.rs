//! Where checkpoints live: a directory per checkpoint (`chk-<id>`) holding one state file per
//! task and, written last and atomically, the `_metadata` file that makes it complete; on the
//! local file system or in an object store.
//! Savepoints have the same layout in a directory of their own. Every file carries a checksum
//! (the shared files of incremental checkpoints theirs in the metadata); a checkpoint whose
//! files are missing or corrupt is skipped for the one before it.

use super::location::SnapshotLocation;
use super::remote::ObjectStoreDir;
use super::{CheckpointId, SnapshotKind, TaskStateFile};
use brisk_state::StateError;
use brisk_state::snapshot::{decode_file, encode_file, verify_file, verify_reader};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use thiserror::Error;
use tracing::{info, warn};

/// Metadata written before shared files had checksums: [`CheckpointMetadata`] alone (still
/// read; its shared files are only checked to be there).
const METADATA_MAGIC_V1: &[u8; 8] = b"BRSKMETA";
/// Metadata followed by the size and CRC-32 of every shared file it refers to
/// ([`MetadataFile`]).
const METADATA_MAGIC: &[u8; 8] = b"BRSKMET2";
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
    /// There are completed checkpoints, but none can be restored (starting over instead would
    /// repeat output that was already committed).
    #[error("checkpoint storage: none of the completed checkpoints in '{location}' can be restored: {}", list_failures(.failures))]
    NoValidCheckpoint {
        /// Where the checkpoints are.
        location: String,
        /// Each checkpoint, newest first, and why it cannot be restored.
        failures: Vec<(CheckpointId, String)>,
    },
}

fn list_failures(failures: &[(CheckpointId, String)]) -> String {
    failures.iter().map(|(id, reason)| format!("checkpoint {id}: {reason}")).collect::<Vec<_>>().join("; ")
}

impl StorageError {
    /// The file (path or object URL) the error is about, if it is about one.
    pub fn file(&self) -> Option<String> {
        match self {
            StorageError::Io { path, .. } | StorageError::Corrupt { path, .. } => Some(path.display().to_string()),
            StorageError::ObjectStore { url, .. } => Some(url.clone()),
            StorageError::Unsupported(_) | StorageError::NoValidCheckpoint { .. } => None,
        }
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io { action, path: path.to_path_buf(), source }
}

/// Maps a decoding error of the file at `path` (bad magic, version, length or checksum) to
/// [`StorageError::Corrupt`].
fn corrupt<'a>(path: &'a Path) -> impl FnOnce(StateError) -> StorageError + 'a {
    move |e| StorageError::Corrupt {
        path: path.to_path_buf(),
        reason: match e {
            StateError::Snapshot { reason, .. } => reason,
            other => other.to_string(),
        },
    }
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

/// A file under `shared/` that a checkpoint refers to, as its metadata records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedFile {
    /// Its name under `shared/`.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// CRC-32 (IEEE) of its contents.
    pub crc32: u32,
}

/// The contents of a `_metadata` file ([`METADATA_MAGIC`]).
#[derive(Serialize, Deserialize)]
struct MetadataFile {
    metadata: CheckpointMetadata,
    /// Every shared file the tasks refer to, once.
    shared: Vec<SharedFile>,
}

/// [`MetadataFile`] by reference, for writing.
#[derive(Serialize)]
struct MetadataFileRef<'a> {
    metadata: &'a CheckpointMetadata,
    shared: &'a [SharedFile],
}

/// Decodes the `_metadata` file at `path`: the metadata and the shared files' sizes and
/// checksums (`None` in metadata written before they were recorded).
fn decode_metadata(bytes: &[u8], path: &Path) -> Result<(CheckpointMetadata, Option<Vec<SharedFile>>), StorageError> {
    let what = path.display().to_string();
    if bytes.starts_with(METADATA_MAGIC_V1) {
        let metadata: CheckpointMetadata = decode_file(METADATA_MAGIC_V1, bytes, &what).map_err(corrupt(path))?;
        return Ok((metadata, None));
    }
    let file: MetadataFile = decode_file(METADATA_MAGIC, bytes, &what).map_err(corrupt(path))?;
    Ok((file.metadata, Some(file.shared)))
}

/// The directory of the shared files of the checkpoint in `dir` (next to the checkpoint
/// directories).
pub fn shared_dir_of(dir: &Path) -> PathBuf {
    dir.parent().map(|p| p.join(SHARED_DIR)).unwrap_or_else(|| PathBuf::from(SHARED_DIR))
}

/// Size and CRC-32 of the file at `path`, read in chunks.
fn file_checksum(path: &Path) -> std::io::Result<(u64, u32)> {
    checksum_of(std::fs::File::open(path)?)
}

/// Size and CRC-32 of what `reader` reads, in chunks.
fn checksum_of(mut reader: impl Read) -> std::io::Result<(u64, u32)> {
    let mut buffer = vec![0u8; 1 << 20];
    let (mut size, mut crc) = (0u64, crc32fast::Hasher::new());
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => return Ok((size, crc.finalize())),
            Ok(n) => {
                crc.update(&buffer[..n]);
                size += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Sizes and checksums of the shared files `names` under `shared_dir`, which a task reports
/// with its acknowledgement for the checkpoint's metadata. Shared files never change: each is
/// read once per process.
pub fn shared_file_checksums(shared_dir: &Path, names: &[String]) -> Result<Vec<SharedFile>, StorageError> {
    static KNOWN: OnceLock<Mutex<HashMap<PathBuf, SharedFile>>> = OnceLock::new();
    let known = || KNOWN.get_or_init(Mutex::default).lock().unwrap_or_else(PoisonError::into_inner);
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        let path = shared_dir.join(name);
        let cached = known().get(&path).cloned();
        let file = match cached {
            Some(file) => file,
            None => {
                let (size, crc32) = file_checksum(&path).map_err(io("read", &path))?;
                let file = SharedFile { name: name.clone(), size, crc32 };
                let mut known = known();
                // Files of deleted checkpoints are never asked for again: bounded, not exact.
                if known.len() >= 1 << 16 {
                    known.clear();
                }
                known.insert(path, file.clone());
                file
            }
        };
        files.push(file);
    }
    Ok(files)
}

/// Reads an object in pieces, so that a large one is checked without being held.
struct ObjectReader<'a> {
    store: &'a ObjectStoreDir,
    name: &'a str,
    size: u64,
    offset: u64,
    piece: Vec<u8>,
    taken: usize,
    /// Why a read failed: the store, not the object, so no reason to call it corrupt.
    failed: Option<StorageError>,
}

impl<'a> ObjectReader<'a> {
    const PIECE: u64 = 4 << 20;

    fn new(store: &'a ObjectStoreDir, name: &'a str, size: u64) -> Self {
        ObjectReader { store, name, size, offset: 0, piece: Vec::new(), taken: 0, failed: None }
    }

    /// Runs `check` over the object; a failed read is returned as the store's error, whatever
    /// `check` made of it (`on_error` maps the other errors).
    fn check<T, E>(
        mut self,
        check: impl FnOnce(&mut Self) -> Result<T, E>,
        on_error: impl FnOnce(E) -> StorageError,
    ) -> Result<T, StorageError> {
        let result = check(&mut self);
        match self.failed {
            Some(e) => Err(e),
            None => result.map_err(on_error),
        }
    }
}

impl Read for ObjectReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.taken == self.piece.len() {
            if self.offset >= self.size {
                return Ok(0);
            }
            let end = (self.offset + Self::PIECE).min(self.size);
            self.piece = match self.store.read_range(self.name, self.offset..end) {
                Ok(piece) => piece,
                Err(e) => {
                    let message = e.to_string();
                    self.failed = Some(e);
                    return Err(std::io::Error::other(message));
                }
            };
            if self.piece.is_empty() {
                return Ok(0);
            }
            self.offset += self.piece.len() as u64;
            self.taken = 0;
        }
        let n = buf.len().min(self.piece.len() - self.taken);
        buf[..n].copy_from_slice(&self.piece[self.taken..self.taken + n]);
        self.taken += n;
        Ok(n)
    }
}

/// A checkpoint in an object store, as a reader of it sees it: its task and shared files are
/// downloaded into the local staging directory by whoever reads them.
#[derive(Clone)]
struct RemoteCopy {
    store: Arc<ObjectStoreDir>,
    /// The storage location the store is opened at.
    root: SnapshotLocation,
    /// The checkpoint's directory name there.
    name: String,
    /// Where shared files are staged here.
    local_shared: PathBuf,
    /// Sizes and checksums of the shared files, as the metadata records them.
    recorded: Arc<HashMap<String, SharedFile>>,
}

impl std::fmt::Debug for RemoteCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteCopy({})", self.root.join(&self.name))
    }
}

impl RemoteCopy {
    /// The URL of `file` of the checkpoint (`object`: of any object of the store), for errors.
    fn url(&self, file: &str) -> PathBuf {
        self.object_url(&format!("{}/{file}", self.name))
    }

    fn object_url(&self, object: &str) -> PathBuf {
        PathBuf::from(self.root.join(object).to_string())
    }

    /// Downloads task file `file` to `local` (always: a staging copy may be stale).
    fn download_task_file(&self, file: &str, local: &Path) -> Result<(), StorageError> {
        let bytes = self
            .store
            .read(&format!("{}/{file}", self.name))?
            .ok_or_else(|| StorageError::Corrupt { path: self.url(file), reason: "the file is missing".into() })?;
        write_atomically(local, &bytes)
    }

    /// Makes the staging copies of shared files `names` match the checkpoint, downloading
    /// those that are missing or differ.
    fn fetch_shared(&self, names: &[String]) -> Result<(), StorageError> {
        for name in names {
            let local = self.local_shared.join(name);
            let expected = self.recorded.get(name);
            if verify_shared_file(&local, expected).is_ok() {
                continue;
            }
            let object = format!("{SHARED_DIR}/{name}");
            let url = self.object_url(&object);
            let bytes = self.store.read(&object)?.ok_or_else(|| StorageError::Corrupt {
                path: url.clone(),
                reason: "the shared file the checkpoint refers to is missing".into(),
            })?;
            if let Some(expected) = expected {
                check_shared_bytes(&url, bytes.len() as u64, crc32fast::hash(&bytes), expected)?;
            }
            write_atomically(&local, &bytes)?;
        }
        Ok(())
    }
}

/// Checks that `bytes` are the shared file `expected` (`path` names it in the error).
fn check_shared_bytes(path: &Path, size: u64, crc32: u32, expected: &SharedFile) -> Result<(), StorageError> {
    let reason = if size != expected.size {
        format!("the shared file has {size} bytes, the checkpoint recorded {}", expected.size)
    } else if crc32 != expected.crc32 {
        "checksum mismatch: the shared file is corrupt".to_string()
    } else {
        return Ok(());
    };
    Err(StorageError::Corrupt { path: path.to_path_buf(), reason })
}

/// Checks that the file at `path` is the shared file `expected` (there, same size and
/// checksum); without a recorded checksum (older metadata), only that it is there.
fn verify_shared_file(path: &Path, expected: Option<&SharedFile>) -> Result<(), StorageError> {
    let missing = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => StorageError::Corrupt {
            path: path.to_path_buf(),
            reason: "the shared file the checkpoint refers to is missing".into(),
        },
        _ => StorageError::Io { action: "read", path: path.to_path_buf(), source: e },
    };
    let found = std::fs::metadata(path).map_err(missing)?;
    if !found.is_file() {
        return Err(StorageError::Corrupt { path: path.to_path_buf(), reason: "not a file".into() });
    }
    let Some(expected) = expected else { return Ok(()) };
    if found.len() != expected.size {
        return check_shared_bytes(path, found.len(), 0, expected);
    }
    let (size, crc32) = file_checksum(path).map_err(missing)?;
    check_shared_bytes(path, size, crc32, expected)
}

/// Checks every shared file the checkpoint `metadata` refers to in `shared` (against the
/// sizes and checksums `recorded`, when the metadata has them).
fn verify_shared_files(
    shared: &Path,
    metadata: &CheckpointMetadata,
    recorded: Option<&[SharedFile]>,
) -> Result<(), StorageError> {
    let recorded: HashMap<&str, &SharedFile> =
        recorded.unwrap_or_default().iter().map(|f| (f.name.as_str(), f)).collect();
    let names: BTreeSet<&str> = metadata.tasks.iter().flat_map(|t| t.shared.iter().map(String::as_str)).collect();
    for name in names {
        verify_shared_file(&shared.join(name), recorded.get(name).copied())?;
    }
    Ok(())
}

/// Encodes a task's state file.
pub fn encode_task_state(state: &TaskStateFile) -> Result<Vec<u8>, StorageError> {
    encode_file(TASK_MAGIC, state)
        .map_err(|e| StorageError::Corrupt { path: PathBuf::from("<task state>"), reason: e.to_string() })
}

/// A task's state as read from its file (`None`: it had none).
type ReadState = Option<Arc<TaskStateFile>>;

/// A completed checkpoint, verified: its metadata, and the task files it names, which are read
/// only when a restore asks for them (each task reads the files of its own operators; the job
/// master reads none but its sources').
#[derive(Clone, Debug)]
pub struct CompletedCheckpoint {
    /// Its directory.
    pub path: PathBuf,
    /// The metadata.
    pub metadata: CheckpointMetadata,
    /// Task states read so far, in the order of `metadata.tasks`; the lock makes tasks of one
    /// process that restore together read (and download) each file once.
    states: Arc<Vec<Mutex<Option<ReadState>>>>,
    /// Where its files are downloaded from, when it is in an object store.
    remote: Option<RemoteCopy>,
}

impl CompletedCheckpoint {
    /// Reads the metadata of the checkpoint or savepoint in `dir` and verifies every task file
    /// (read in pieces, checksum against its header) and the shared files (under `shared/`
    /// next to `dir`) its tasks refer to.
    pub fn load(dir: &Path) -> Result<Self, StorageError> {
        let (checkpoint, shared) = Self::read_metadata(dir)?;
        for file in checkpoint.metadata.tasks.iter().filter_map(|t| t.file.as_ref()) {
            let path = dir.join(file);
            std::fs::metadata(&path).map_err(io("read", &path))?;
            verify_file(TASK_MAGIC, &path).map_err(corrupt(&path))?;
        }
        verify_shared_files(&shared_dir_of(dir), &checkpoint.metadata, shared.as_deref())?;
        Ok(checkpoint)
    }

    /// Reads the metadata of a checkpoint the job master verified already (a worker restoring
    /// its tasks from it); a task file is still checked against its checksum when read.
    pub fn open_verified(dir: &Path) -> Result<Self, StorageError> {
        Self::read_metadata(dir).map(|(checkpoint, _)| checkpoint)
    }

    /// [`open_verified`](Self::open_verified) for a checkpoint at `location`: a local
    /// directory, or one in an object store, whose metadata is downloaded here and whose task
    /// and shared files are downloaded as they are read.
    pub fn open_verified_at(location: &SnapshotLocation) -> Result<Self, StorageError> {
        match CheckpointStorage::of_snapshot(location)? {
            Some((storage, name)) => storage.open_remote(&name, false),
            None => Self::open_verified(&location.local_dir()),
        }
    }

    /// Where the checkpoint is: its object-store directory, or its local one.
    pub fn location(&self) -> SnapshotLocation {
        match &self.remote {
            Some(remote) => remote.root.join(&remote.name),
            None => SnapshotLocation::Local(self.path.clone()),
        }
    }

    fn read_metadata(dir: &Path) -> Result<(Self, Option<Vec<SharedFile>>), StorageError> {
        let meta_path = dir.join(METADATA_FILE);
        let bytes = std::fs::read(&meta_path).map_err(io("read", &meta_path))?;
        let (metadata, shared) = decode_metadata(&bytes, &meta_path)?;
        Ok((Self::new(dir.to_path_buf(), metadata, None), shared))
    }

    fn new(path: PathBuf, metadata: CheckpointMetadata, remote: Option<RemoteCopy>) -> Self {
        let states = Arc::new(metadata.tasks.iter().map(|_| Mutex::new(None)).collect());
        CompletedCheckpoint { path, metadata, states, remote }
    }

    /// The state of task `index` of `metadata.tasks` (`None`: it had none), read from its file
    /// on first use.
    pub fn task_state(&self, index: usize) -> Result<Option<Arc<TaskStateFile>>, StorageError> {
        let (Some(handle), Some(slot)) = (self.metadata.tasks.get(index), self.states.get(index)) else {
            return Ok(None);
        };
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = slot.as_ref() {
            return Ok(state.clone());
        }
        let Some(file) = &handle.file else { return Ok(None) };
        let path = self.path.join(file);
        // Errors name the object a staging copy came from.
        let source = match &self.remote {
            Some(remote) => {
                remote.download_task_file(file, &path)?;
                remote.url(file)
            }
            None => path.clone(),
        };
        let bytes = std::fs::read(&path).map_err(io("read", &path))?;
        if self.remote.is_some() {
            // Read once and kept: the staging copy need not stay where tasks run.
            let _ = std::fs::remove_file(&path);
        }
        let state: TaskStateFile =
            decode_file(TASK_MAGIC, &bytes, &source.display().to_string()).map_err(corrupt(&source))?;
        let state = Some(Arc::new(state));
        *slot = Some(state.clone());
        Ok(state)
    }

    /// Makes the shared files `names` of this checkpoint available in its local shared
    /// directory: downloaded (and checked) from the object store where the staging copy is
    /// missing or differs; a local checkpoint has them already.
    pub fn fetch_shared(&self, names: &[String]) -> Result<(), StorageError> {
        match &self.remote {
            Some(remote) => remote.fetch_shared(names),
            None => Ok(()),
        }
    }
}

/// The checkpoints of one job under one location (or one savepoint directory). Tasks write
/// into local directories; with an object store those are staging copies: each task uploads
/// its own files before it acknowledges, the job master the metadata last, and to restore, the
/// job master verifies the objects and each task downloads the files it reads.
pub struct CheckpointStorage {
    location: SnapshotLocation,
    local: PathBuf,
    remote: Option<Arc<ObjectStoreDir>>,
}

impl CheckpointStorage {
    /// Snapshots under `location`; connects to its object store, if it is in one.
    pub fn open(location: SnapshotLocation) -> Result<Self, StorageError> {
        Self::connect(location, ObjectStoreDir::open)
    }

    /// Like [`open`](Self::open), with `object_store` S3 options (`aws_endpoint`,
    /// `aws_allow_http`, ...) over the environment's when `location` is in an object store.
    #[cfg(feature = "s3")]
    pub fn open_with(location: SnapshotLocation, options: &[(&str, &str)]) -> Result<Self, StorageError> {
        Self::connect(location, |url| ObjectStoreDir::open_with(url, options))
    }

    /// Snapshots under `location`, its object store (if it is in one) opened with `open`.
    fn connect(
        location: SnapshotLocation,
        open: impl FnOnce(&str) -> Result<ObjectStoreDir, StorageError>,
    ) -> Result<Self, StorageError> {
        let remote = match &location {
            SnapshotLocation::Local(_) => None,
            SnapshotLocation::ObjectStore(url) => Some(Arc::new(open(url)?)),
        };
        Ok(CheckpointStorage { local: location.local_dir(), location, remote })
    }

    /// For a snapshot directory in an object store: the storage it is in, as this process
    /// shares it, and its name there; `None` for a local directory.
    pub fn of_snapshot(location: &SnapshotLocation) -> Result<Option<(Arc<Self>, String)>, StorageError> {
        match (location, location.parent()) {
            (SnapshotLocation::ObjectStore(url), Some(root)) => {
                let name = url.rsplit('/').next().unwrap_or_default().to_string();
                Ok(Some((Self::shared(&root)?, name)))
            }
            _ => Ok(None),
        }
    }

    /// The storage at `location` as this process shares it: tasks uploading and downloading
    /// their own files reuse one object-store client per location.
    pub fn shared(location: &SnapshotLocation) -> Result<Arc<Self>, StorageError> {
        static OPENED: OnceLock<Mutex<HashMap<String, Arc<CheckpointStorage>>>> = OnceLock::new();
        let mut opened = OPENED.get_or_init(Mutex::default).lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(storage) = opened.get(&location.to_string()) {
            return Ok(storage.clone());
        }
        let storage = Arc::new(Self::open(location.clone())?);
        opened.insert(location.to_string(), storage.clone());
        Ok(storage)
    }

    /// Whether the snapshots are in an object store.
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
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

    /// The highest id of any checkpoint directory here, complete or not: a job resumed here
    /// numbers its checkpoints after it, so it never writes into a directory that an earlier
    /// run left (its task files would mix with that run's metadata).
    pub fn newest_checkpoint_id(&self) -> Result<Option<CheckpointId>, StorageError> {
        Ok(self.checkpoint_ids()?.into_iter().max())
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

    /// Reads and verifies snapshot `name`. In an object store, its objects are verified where
    /// they are (read in pieces, never held) and only its metadata is downloaded: task and
    /// shared files are downloaded by the tasks that read them.
    pub fn load(&self, name: &str) -> Result<CompletedCheckpoint, StorageError> {
        match &self.remote {
            Some(_) => self.open_remote(name, true),
            None => CompletedCheckpoint::load(&self.local_dir(name)),
        }
    }

    /// Snapshot `name` in the object store, its metadata downloaded into the staging directory;
    /// with `verify`, every task and shared file it names is checked against its checksum.
    fn open_remote(&self, name: &str, verify: bool) -> Result<CompletedCheckpoint, StorageError> {
        let Some(store) = &self.remote else { return CompletedCheckpoint::open_verified(&self.local_dir(name)) };
        let remote = RemoteCopy {
            store: store.clone(),
            root: self.location.clone(),
            name: name.to_string(),
            local_shared: self.local.join(SHARED_DIR),
            recorded: Arc::default(),
        };
        let missing =
            |file: &str| StorageError::Corrupt { path: remote.url(file), reason: "the file is missing".into() };
        let meta_bytes = store.read(&format!("{name}/{METADATA_FILE}"))?.ok_or_else(|| missing(METADATA_FILE))?;
        let (metadata, recorded) = decode_metadata(&meta_bytes, &remote.url(METADATA_FILE))?;
        let recorded: HashMap<String, SharedFile> =
            recorded.into_iter().flatten().map(|f| (f.name.clone(), f)).collect();
        if verify {
            for file in metadata.tasks.iter().filter_map(|t| t.file.as_ref()) {
                let object = format!("{name}/{file}");
                let size = store.size(&object)?.ok_or_else(|| missing(file))?;
                let url = remote.url(file);
                let what = url.display().to_string();
                ObjectReader::new(store, &object, size)
                    .check(|reader| verify_reader(TASK_MAGIC, reader, size, &what), corrupt(&url))?;
            }
            let names: BTreeSet<&String> = metadata.tasks.iter().flat_map(|t| &t.shared).collect();
            for shared in names {
                let object = format!("{SHARED_DIR}/{shared}");
                let url = remote.object_url(&object);
                let size = store.size(&object)?.ok_or_else(|| StorageError::Corrupt {
                    path: url.clone(),
                    reason: "the shared file the checkpoint refers to is missing".into(),
                })?;
                if let Some(expected) = recorded.get(shared) {
                    let (size, crc32) = ObjectReader::new(store, &object, size).check(
                        |reader| checksum_of(reader),
                        |e| StorageError::ObjectStore {
                            action: "read",
                            url: url.display().to_string(),
                            reason: e.to_string(),
                        },
                    )?;
                    check_shared_bytes(&url, size, crc32, expected)?;
                }
            }
        }
        let dir = self.local_dir(name);
        write_atomically(&dir.join(METADATA_FILE), &meta_bytes)?;
        Ok(CompletedCheckpoint::new(dir, metadata, Some(RemoteCopy { recorded: Arc::new(recorded), ..remote })))
    }

    /// Uploads what a task wrote into snapshot `name` (its `task_file` and the shared files it
    /// refers to that the store lacks) to the object store, if the storage is in one. Tasks
    /// call it before they acknowledge, so a completed snapshot's files are all there.
    pub fn upload_task_files(
        &self,
        name: &str,
        task_file: Option<&str>,
        shared: &[SharedFile],
    ) -> Result<(), StorageError> {
        let Some(remote) = &self.remote else { return Ok(()) };
        let upload = |local: &Path, remote_name: &str| -> Result<(), StorageError> {
            let bytes = std::fs::read(local).map_err(io("read", local))?;
            remote.write(remote_name, bytes)
        };
        if let Some(file) = task_file {
            let local = self.local_dir(name).join(file);
            upload(&local, &format!("{name}/{file}"))?;
            // A restore downloads it again: staging copies need not pile up where tasks run.
            let _ = std::fs::remove_file(&local);
        }
        for file in shared {
            let object = format!("{SHARED_DIR}/{}", file.name);
            if !remote.exists(&object)? {
                upload(&self.local.join(SHARED_DIR).join(&file.name), &object)?;
            }
        }
        Ok(())
    }

    /// Completes snapshot `name`: writes its metadata, with the sizes and checksums of the
    /// `shared` files the tasks reported (the master reads no state), and for an object store
    /// uploads it, last: the tasks uploaded their files.
    pub fn publish(
        &self,
        name: &str,
        metadata: &CheckpointMetadata,
        shared: &[SharedFile],
    ) -> Result<(), StorageError> {
        let dir = self.local_dir(name);
        write_metadata(&dir, metadata, shared)?;
        let Some(remote) = &self.remote else { return Ok(()) };
        let path = dir.join(METADATA_FILE);
        let bytes = std::fs::read(&path).map_err(io("read", &path))?;
        remote.write(&format!("{name}/{METADATA_FILE}"), bytes)
    }

    /// The newest checkpoint that reads back completely; corrupt or missing files (its
    /// metadata, task files or shared files) make it fall back to the one before, with a
    /// warning naming the file. An object store that cannot be reached is an error: falling
    /// back then would restore older state than there is. So is a storage with completed
    /// checkpoints none of which can be restored (starting over would repeat committed output);
    /// `None` when there is no completed checkpoint at all.
    pub fn latest_valid(&self) -> Result<Option<CompletedCheckpoint>, StorageError> {
        let mut failures = Vec::new();
        for id in self.completed_ids()? {
            match self.load(&Self::checkpoint_name(id)) {
                Ok(checkpoint) => {
                    if !failures.is_empty() {
                        info!(checkpoint = id, "restoring the newest checkpoint that can be restored");
                    }
                    return Ok(Some(checkpoint));
                }
                Err(e @ StorageError::ObjectStore { .. }) => return Err(e),
                Err(e) => {
                    let file = e.file().unwrap_or_else(|| Self::checkpoint_name(id));
                    warn!(checkpoint = id, file = %file, error = %e, "checkpoint cannot be restored; falling back to the previous one");
                    failures.push((id, e.to_string()));
                }
            }
        }
        if failures.is_empty() {
            Ok(None)
        } else {
            Err(StorageError::NoValidCheckpoint { location: self.location.to_string(), failures })
        }
    }

    /// The shared files checkpoint `id` refers to (none if its metadata is gone or corrupt:
    /// it cannot be restored, so it keeps nothing alive).
    fn shared_files(&self, id: CheckpointId) -> Result<std::collections::HashSet<String>, StorageError> {
        let name = format!("{}/{METADATA_FILE}", Self::checkpoint_name(id));
        Ok(self
            .read(&name)?
            .and_then(|bytes| decode_metadata(&bytes, Path::new(&name)).ok())
            .map(|(m, _)| m.tasks.into_iter().flat_map(|t| t.shared).collect())
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
        self.discard(&Self::checkpoint_name(id));
    }

    /// Deletes snapshot `name`'s files, local and in the object store (a failed snapshot: its
    /// tasks may have uploaded theirs).
    pub fn discard(&self, name: &str) {
        let local = self.local_dir(name);
        if let Err(e) = std::fs::remove_dir_all(&local)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(path = %local.display(), error = %e, "cannot delete a snapshot's files");
        }
        if let Some(remote) = &self.remote
            && let Err(e) = remote.delete_dir(name)
        {
            warn!(error = %e, "cannot delete a snapshot's files");
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
            // Tasks upload shared files before their checkpoint completes: those of checkpoints
            // that never did are referred to by no metadata.
            match &self.remote {
                Some(remote) => remote.delete_dir(SHARED_DIR),
                None => Ok(()),
            }
        });
        if let Err(e) = result {
            warn!(error = %e, "cannot delete the job's checkpoints");
        }
        let _ = std::fs::remove_dir_all(self.local.join(SHARED_DIR));
    }
}

/// Reads and verifies the savepoint or retained checkpoint at `location`.
pub fn load_snapshot(location: &SnapshotLocation) -> Result<CompletedCheckpoint, StorageError> {
    match CheckpointStorage::of_snapshot(location)? {
        Some((storage, name)) => storage.load(&name),
        None => CompletedCheckpoint::load(&location.local_dir()),
    }
}

/// Writes the metadata that completes a checkpoint in `dir`, with the sizes and checksums of
/// the shared files it refers to.
fn write_metadata(dir: &Path, metadata: &CheckpointMetadata, shared: &[SharedFile]) -> Result<(), StorageError> {
    let path = dir.join(METADATA_FILE);
    let bytes = encode_file(METADATA_MAGIC, &MetadataFileRef { metadata, shared }).map_err(corrupt(&path))?;
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

    /// Writes checkpoint `id` of one task (file `task`, referring to `shared`) and completes it,
    /// as a task and the job master do.
    fn write_checkpoint_with(storage: &CheckpointStorage, id: CheckpointId, task: &str, shared: Vec<String>) {
        let (dir, name) = (storage.checkpoint_dir(id), CheckpointStorage::checkpoint_name(id));
        write_atomically(&dir.join(task), &encode_task_state(&TaskStateFile::default()).unwrap()).unwrap();
        let files = shared_file_checksums(&storage.local_dir(SHARED_DIR), &shared).unwrap();
        storage.upload_task_files(&name, Some(task), &files).unwrap();
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
        storage.publish(&name, &metadata, &files).unwrap();
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

    /// Warnings logged on this thread while `f` runs.
    fn with_warnings<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone, Default)]
        struct Logs(std::sync::Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Logs {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
        (out, text)
    }

    /// Bytes that differ from file to file and position to position.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// The state of task `task` in checkpoint `id`: every kind of part, in-flight records too.
    fn task_state(id: CheckpointId, task: usize) -> TaskStateFile {
        let seed = id * 10 + task as u64;
        TaskStateFile {
            operators: vec![super::super::OperatorSubtaskState {
                operator_id: format!("op-{task}"),
                keyed: Some(noise(seed, 300)),
                keyed_files: None,
                operator: Some(noise(seed + 1, 40)),
                raw: Some(noise(seed + 2, 20)),
            }],
            in_flight: vec![(1, vec![noise(seed + 3, 16), noise(seed + 4, 8)])],
        }
    }

    /// Checkpoints 1 and 2 of two tasks; task `t` of checkpoint `c` refers to shared file
    /// `c<c>-t<t>` and to `common`, which both checkpoints share.
    fn two_checkpoints(name: &str) -> CheckpointStorage {
        let storage = CheckpointStorage::open(dir(name).into()).unwrap();
        let shared = storage.local.join(SHARED_DIR);
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::write(shared.join("common"), noise(99, 5000)).unwrap();
        for id in 1..=2 {
            let mut tasks = Vec::new();
            for task in 0..2 {
                let file = format!("task-{task}");
                let bytes = encode_task_state(&task_state(id, task)).unwrap();
                write_atomically(&storage.checkpoint_dir(id).join(&file), &bytes).unwrap();
                let own = format!("c{id}-t{task}");
                std::fs::write(shared.join(&own), noise(id * 100 + task as u64, 3000)).unwrap();
                tasks.push(TaskStateHandle {
                    subtask: task,
                    parallelism: 2,
                    operator_ids: vec![format!("op-{task}")],
                    file: Some(file),
                    size: bytes.len() as u64,
                    shared: vec![own, "common".into()],
                });
            }
            let metadata = CheckpointMetadata {
                id,
                kind: SnapshotKind::Checkpoint,
                timestamp: 0,
                job_name: "t".into(),
                max_parallelism: vec![("op-0".into(), 128), ("op-1".into(), 128)],
                tasks,
                enumerators: vec![("op-0".into(), noise(7, 30))],
            };
            let names: Vec<String> =
                metadata.tasks.iter().flat_map(|t| t.shared.clone()).collect::<BTreeSet<_>>().into_iter().collect();
            let shared = shared_file_checksums(&storage.local_dir(SHARED_DIR), &names).unwrap();
            storage.publish(&CheckpointStorage::checkpoint_name(id), &metadata, &shared).unwrap();
        }
        storage
    }

    /// Asserts that `checkpoint` holds exactly what [`two_checkpoints`] wrote for its id.
    fn assert_intact(checkpoint: &CompletedCheckpoint) {
        let id = checkpoint.metadata.id;
        for task in 0..checkpoint.metadata.tasks.len() {
            let state = checkpoint.task_state(task).unwrap().expect("every task has state");
            assert_eq!(encode_task_state(&state).unwrap(), encode_task_state(&task_state(id, task)).unwrap());
        }
        assert_eq!(checkpoint.metadata.enumerators, vec![("op-0".to_string(), noise(7, 30))]);
    }

    #[test]
    fn shared_files_are_verified_and_a_bad_one_falls_back_naming_it() {
        let storage = two_checkpoints("shared-verified");
        let shared = storage.local.join(SHARED_DIR);
        assert_intact(&storage.latest_valid().unwrap().unwrap());
        // A flipped bit in a file of checkpoint 2 only.
        let own = shared.join("c2-t1");
        let mut bytes = std::fs::read(&own).unwrap();
        bytes[1234] ^= 0x10;
        std::fs::write(&own, &bytes).unwrap();
        let (restored, warnings) = with_warnings(|| storage.latest_valid().unwrap().unwrap());
        assert_eq!(restored.metadata.id, 1);
        assert_intact(&restored);
        assert!(warnings.contains("WARN") && warnings.contains(&own.display().to_string()), "{warnings}");
        assert!(warnings.contains("checksum mismatch"), "{warnings}");
        // The same size check without reading: truncated.
        std::fs::write(&own, &bytes[..100]).unwrap();
        let err = CompletedCheckpoint::load(&storage.checkpoint_dir(2)).unwrap_err().to_string();
        assert!(err.contains(&own.display().to_string()) && err.contains("100 bytes"), "{err}");
        // Missing.
        std::fs::remove_file(&own).unwrap();
        let err = CompletedCheckpoint::load(&storage.checkpoint_dir(2)).unwrap_err().to_string();
        assert!(err.contains(&own.display().to_string()) && err.contains("missing"), "{err}");
        // A file both refer to: neither can be restored, which is an error, not a fresh start.
        std::fs::remove_file(shared.join("common")).unwrap();
        let (result, warnings) = with_warnings(|| storage.latest_valid());
        let err = result.unwrap_err();
        assert!(matches!(err, StorageError::NoValidCheckpoint { .. }), "{err}");
        let common = shared.join("common").display().to_string();
        assert!(err.to_string().contains(&common) && err.to_string().contains("checkpoint 1"), "{err}");
        assert_eq!(warnings.matches(&common).count(), 2, "one warning per checkpoint: {warnings}");
        // Shared files are pruned only with the last checkpoint referring to them.
        let storage = two_checkpoints("shared-pruned");
        storage.prune(1);
        let mut left: Vec<String> = std::fs::read_dir(storage.local.join(SHARED_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, vec!["c2-t0", "c2-t1", "common"]);
        assert_intact(&storage.latest_valid().unwrap().unwrap());
    }

    #[test]
    fn task_files_are_verified_on_load_but_read_only_for_the_operators_restored() {
        use crate::checkpoint::restore::JobRestore;
        let storage = two_checkpoints("task-files-lazy");
        let task_file = |task: usize| storage.checkpoint_dir(2).join(format!("task-{task}"));
        // A flipped bit in a task file fails the load (verified in pieces, not decoded).
        let good = std::fs::read(task_file(0)).unwrap();
        let mut bad = good.clone();
        bad[40] ^= 0x01;
        std::fs::write(task_file(0), &bad).unwrap();
        let err = CompletedCheckpoint::load(&storage.checkpoint_dir(2)).unwrap_err().to_string();
        assert!(err.contains(&task_file(0).display().to_string()) && err.contains("checksum mismatch"), "{err}");
        std::fs::write(task_file(0), &good).unwrap();

        // Once loaded, a restore of op-1 reads task 1's file alone: task 0's may be gone.
        let checkpoint = CompletedCheckpoint::load(&storage.checkpoint_dir(2)).unwrap();
        std::fs::remove_file(task_file(0)).unwrap();
        let restore = JobRestore::new(checkpoint);
        assert_eq!(restore.raw_states("op-1").unwrap(), vec![noise(23, 20)]);
        assert_eq!(restore.raw_state_of("op-1", 1, 2).unwrap(), Some(noise(23, 20)));
        assert_eq!(restore.raw_state_of("op-1", 1, 3).unwrap(), None);
        let err = restore.raw_states("op-0").unwrap_err();
        assert!(err.contains(&task_file(0).display().to_string()), "{err}");
        // Operators the job lacks are found from the metadata; their files are read to tell
        // whether they hold state.
        std::fs::write(task_file(0), &good).unwrap();
        let job: BTreeSet<String> = ["op-1".to_string()].into();
        let err = restore.check_mapping(&job, false).unwrap_err();
        assert!(err.contains("state for operators the job does not have (op-0)"), "{err}");
        assert!(restore.check_mapping(&job, true).is_ok());
    }

    /// Metadata written before shared files had checksums still restores; its shared files
    /// are checked to be there.
    #[test]
    fn metadata_without_shared_checksums_is_still_read() {
        let storage = two_checkpoints("metadata-v1");
        for id in 1..=2 {
            let path = storage.checkpoint_dir(id).join(METADATA_FILE);
            let (metadata, shared) = decode_metadata(&std::fs::read(&path).unwrap(), &path).unwrap();
            assert_eq!(shared.map(|s| s.len()), Some(3), "checksums of c{id}-t0, c{id}-t1 and common");
            write_atomically(&path, &encode_file(METADATA_MAGIC_V1, &metadata).unwrap()).unwrap();
        }
        assert_intact(&storage.latest_valid().unwrap().unwrap());
        let own = storage.local.join(SHARED_DIR).join("c2-t0");
        std::fs::remove_file(&own).unwrap();
        let (restored, warnings) = with_warnings(|| storage.latest_valid().unwrap().unwrap());
        assert_eq!(restored.metadata.id, 1);
        assert!(warnings.contains(&own.display().to_string()), "{warnings}");
        storage.prune(1);
        let shared = storage.local.join(SHARED_DIR);
        assert!(shared.join("c2-t1").exists() && shared.join("common").exists(), "v1 metadata keeps its files alive");
        assert!(!shared.join("c1-t0").exists(), "and lets go of the pruned checkpoint's");
    }

    /// One way to damage a file.
    #[derive(Clone, Debug)]
    enum Mutation {
        FlipBit(proptest::sample::Index, u8),
        Truncate(proptest::sample::Index),
        Swap(proptest::sample::Index, proptest::sample::Index, proptest::sample::Index),
        Delete,
    }

    fn mutation() -> impl proptest::strategy::Strategy<Value = Mutation> {
        use proptest::prelude::*;
        prop_oneof![
            (any::<prop::sample::Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
            any::<prop::sample::Index>().prop_map(Mutation::Truncate),
            any::<(prop::sample::Index, prop::sample::Index, prop::sample::Index)>()
                .prop_map(|(a, b, len)| Mutation::Swap(a, b, len)),
            Just(Mutation::Delete),
        ]
    }

    /// Applies `mutation` to the file at `path`; whether its contents changed.
    fn mutate(path: &Path, mutation: &Mutation) -> bool {
        let mut bytes = std::fs::read(path).unwrap();
        let n = bytes.len();
        match mutation {
            Mutation::Delete => {
                std::fs::remove_file(path).unwrap();
                return true;
            }
            Mutation::FlipBit(at, bit) => bytes[at.index(n)] ^= 1 << bit,
            Mutation::Truncate(len) => bytes.truncate(len.index(n)),
            Mutation::Swap(a, b, len) => {
                let len = 1 + len.index(n / 2);
                let a = a.index(n - 2 * len + 1);
                let b = a + len + b.index(n - a - 2 * len + 1);
                let first = bytes[a..a + len].to_vec();
                bytes.copy_within(b..b + len, a);
                bytes[b..b + len].copy_from_slice(&first);
            }
        }
        let changed = bytes != std::fs::read(path).unwrap();
        std::fs::write(path, bytes).unwrap();
        changed
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 64, ..Default::default() })]

        /// Any damage to any file of the newest checkpoint falls back to the older one, intact,
        /// with a warning naming the file; damage to a file both share is an error naming it.
        #[test]
        fn damaged_files_fall_back_or_fail_naming_the_file(file in 0usize..6, mutation in mutation()) {
            let storage = two_checkpoints("damaged");
            let files = ["chk-2/_metadata", "chk-2/task-0", "chk-2/task-1", "shared/c2-t0", "shared/c2-t1", "shared/common"];
            let path = storage.local.join(files[file]);
            let changed = mutate(&path, &mutation);
            let (result, warnings) = with_warnings(|| storage.latest_valid());
            let name = path.display().to_string();
            match (changed, files[file]) {
                (false, _) => assert_intact(&result.unwrap().unwrap()),
                (true, "shared/common") => {
                    let err = result.unwrap_err().to_string();
                    assert!(err.contains(&name) && err.contains("checkpoint 1") && err.contains("checkpoint 2"), "{err}");
                }
                (true, _) => {
                    let restored = result.unwrap().unwrap();
                    assert_eq!(restored.metadata.id, 1);
                    assert_intact(&restored);
                    // Without its metadata checkpoint 2 is merely incomplete (as after a crash).
                    if !(file == 0 && matches!(mutation, Mutation::Delete)) {
                        assert!(warnings.contains(&name), "{warnings}");
                    }
                }
            }
            std::fs::remove_dir_all(&storage.local).unwrap();
        }
    }
}
