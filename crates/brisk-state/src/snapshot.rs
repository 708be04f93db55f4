//! The canonical keyed-state snapshot: one format both backends write and read, so a job can
//! move between heap and RocksDB through a savepoint, and organised by key group, so it can be
//! restored at another parallelism. Files carry a magic number, a version and a CRC-32.

use crate::descriptor::StateKind;
use crate::error::{StateError, StateResult};
use brisk_core::KeyGroupRange;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Version of the snapshot encoding; readers reject versions they do not know.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"BRSKSNAP";

/// What a state is: enough to check it is read back as the same thing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateMeta {
    /// The state's name.
    pub name: String,
    /// Its kind.
    pub kind: StateKind,
    /// Type name of its values (for the error when a type changed).
    pub value_type: String,
    /// Whether values carry a time-to-live timestamp.
    pub ttl: bool,
}

impl StateMeta {
    /// The description of state `name` of kind `kind` holding `V`s, without time-to-live.
    pub fn of<V>(name: &str, kind: StateKind) -> Self {
        StateMeta { name: name.to_string(), kind, value_type: std::any::type_name::<V>().to_string(), ttl: false }
    }
}

/// One stored entry: the encoded key followed by the encoded namespace, the encoded user key
/// of a map entry (empty otherwise), and the value (`[ttl timestamp][value]`, or
/// concatenated elements for lists).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEntry {
    /// Index of the state in [`KeyedStateSnapshot::states`].
    pub state: u32,
    /// Encoded key and namespace.
    pub key: Vec<u8>,
    /// Encoded user key (map state), else empty.
    pub user_key: Vec<u8>,
    /// Encoded value.
    pub value: Vec<u8>,
}

/// A timer stored with keyed state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerEntry {
    /// The timer service's name.
    pub service: String,
    /// True for event time, false for processing time.
    pub event_time: bool,
    /// When it fires.
    pub timestamp: i64,
    /// The encoded key.
    pub key: Vec<u8>,
    /// The encoded namespace.
    pub namespace: Vec<u8>,
}

/// The entries of one key group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroupSnapshot {
    /// The key group.
    pub key_group: u32,
    /// Its state entries.
    pub entries: Vec<StateEntry>,
    /// Its timers.
    pub timers: Vec<TimerEntry>,
}

/// All keyed state of one operator subtask.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedStateSnapshot {
    /// Encoding version.
    pub version: u32,
    /// The backend that wrote it (`hashmap` or `rocksdb`): informational only.
    pub backend: String,
    /// Number of key groups of the job.
    pub max_parallelism: u32,
    /// The key groups the writing subtask owned.
    pub key_group_range: KeyGroupRange,
    /// The states, indexed by [`StateEntry::state`].
    pub states: Vec<StateMeta>,
    /// Entries by key group (only non-empty groups).
    pub key_groups: Vec<KeyGroupSnapshot>,
}

impl KeyedStateSnapshot {
    /// An empty snapshot.
    pub fn new(backend: &str, max_parallelism: usize, key_group_range: KeyGroupRange) -> Self {
        KeyedStateSnapshot {
            version: FORMAT_VERSION,
            backend: backend.to_string(),
            max_parallelism: max_parallelism as u32,
            key_group_range,
            states: Vec::new(),
            key_groups: Vec::new(),
        }
    }

    /// Index of a state, added if new.
    pub fn state_index(&mut self, meta: &StateMeta) -> u32 {
        match self.states.iter().position(|m| m.name == meta.name) {
            Some(i) => i as u32,
            None => {
                self.states.push(meta.clone());
                (self.states.len() - 1) as u32
            }
        }
    }

    /// The snapshot of `key_group`, added if new.
    pub fn key_group_mut(&mut self, key_group: usize) -> &mut KeyGroupSnapshot {
        let index = match self.key_groups.iter().position(|g| g.key_group == key_group as u32) {
            Some(i) => i,
            None => {
                self.key_groups.push(KeyGroupSnapshot { key_group: key_group as u32, ..Default::default() });
                self.key_groups.len() - 1
            }
        };
        &mut self.key_groups[index]
    }

    /// Encodes with magic, version and checksum.
    pub fn to_bytes(&self) -> StateResult<Vec<u8>> {
        encode_file(MAGIC, self)
    }

    /// Decodes and verifies bytes written by [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8], what: &str) -> StateResult<Self> {
        decode_file(MAGIC, bytes, what)
    }

    /// Writes the snapshot to a file (atomically: a temporary file renamed into place).
    pub fn write_to(&self, path: &Path) -> StateResult {
        let bytes = self.to_bytes()?;
        let io = |e: std::io::Error| snapshot_error(&path.display().to_string(), e.to_string());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("inprogress");
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads and verifies a snapshot file.
    pub fn read_from(path: &Path) -> StateResult<Self> {
        let what = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| snapshot_error(&what, e.to_string()))?;
        Self::from_bytes(&bytes, &what)
    }

    /// The key groups of `range` gathered from snapshots of any parallelism, with state indices
    /// mapped onto one combined state list (restoring into a new parallelism).
    pub fn merge_for_range(
        snapshots: &[KeyedStateSnapshot],
        range: KeyGroupRange,
        backend: &str,
        max_parallelism: usize,
    ) -> StateResult<Self> {
        let mut merged = KeyedStateSnapshot::new(backend, max_parallelism, range);
        for snapshot in snapshots {
            if snapshot.max_parallelism as usize != max_parallelism {
                return Err(snapshot_error(
                    "restore",
                    format!(
                        "the snapshot has {} key groups but the job has {max_parallelism}: the max parallelism cannot change",
                        snapshot.max_parallelism
                    ),
                ));
            }
            let mapping: Vec<u32> = snapshot.states.iter().map(|m| merged.state_index(m)).collect();
            for group in snapshot.key_groups.iter().filter(|g| range.contains(g.key_group as usize)) {
                let entries = group
                    .entries
                    .iter()
                    .map(|e| match mapping.get(e.state as usize) {
                        Some(state) => Ok(StateEntry { state: *state, ..e.clone() }),
                        None => Err(snapshot_error(
                            "restore",
                            format!(
                                "an entry of key group {} refers to state {} of {}",
                                group.key_group,
                                e.state,
                                mapping.len()
                            ),
                        )),
                    })
                    .collect::<StateResult<Vec<_>>>()?;
                let target = merged.key_group_mut(group.key_group as usize);
                target.entries.extend(entries);
                target.timers.extend(group.timers.iter().cloned());
            }
        }
        Ok(merged)
    }
}

/// The files of an incremental RocksDB snapshot: SST files, immutable and shared between
/// checkpoints (stored once, under the checkpoint storage's `shared/` directory), and the small
/// files private to this snapshot (manifest, options), kept inline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RocksDbFiles {
    /// `(name in the database directory, name under shared/)`.
    pub shared: Vec<(String, String)>,
    /// Small files with their contents.
    pub private: Vec<(String, Vec<u8>)>,
    /// The states (column families) in it.
    pub states: Vec<StateMeta>,
    /// Number of key groups of the job.
    pub max_parallelism: usize,
    /// The key groups the writing subtask owned.
    pub key_group_range: KeyGroupRange,
    /// Timers, by key group (they live outside RocksDB).
    pub timers: Vec<(u32, TimerEntry)>,
}

/// A keyed backend's snapshot as stored: canonical, or RocksDB files (incremental).
#[derive(Clone, Debug)]
pub enum KeyedStateHandle {
    /// The canonical format, which every backend reads.
    Canonical(KeyedStateSnapshot),
    /// RocksDB's own files.
    Files(RocksDbFiles),
}

/// Reads an incremental RocksDB snapshot back in the canonical format (`shared`: where its
/// shared files are; `scratch`: a directory for a temporary copy).
pub fn read_rocksdb_files(files: &RocksDbFiles, shared: &Path, scratch: &Path) -> StateResult<KeyedStateSnapshot> {
    #[cfg(feature = "rocksdb")]
    {
        crate::rocksdb::read_files(files, shared, scratch)
    }
    #[cfg(not(feature = "rocksdb"))]
    {
        let _ = (files, shared, scratch);
        Err(StateError::Config(
            "this checkpoint holds incremental RocksDB files; build with `--features rocksdb` to restore it".into(),
        ))
    }
}

/// Frames an encoded value: magic, format version, CRC-32 and length, then the payload.
pub fn encode_file<T: Serialize>(magic: &[u8; 8], value: &T) -> StateResult<Vec<u8>> {
    let payload = crate::codec::encode(value).map_err(|reason| snapshot_error("encoding", reason))?;
    let mut out = Vec::with_capacity(payload.len() + 24);
    out.extend_from_slice(magic);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The header of a file framed by [`encode_file`]: the payload's CRC-32 and length.
const HEADER_LEN: usize = 24;

/// Checks the header of a framed file (`header`: its first bytes, `total`: its size); returns
/// the payload's checksum and length.
fn check_header(magic: &[u8; 8], header: &[u8], total: u64, what: &str) -> StateResult<(u32, u64)> {
    let err = |reason: String| snapshot_error(what, reason);
    let prefix = header.get(..8).unwrap_or(header);
    if !magic.starts_with(prefix) {
        return Err(err("not a Brisk state snapshot of this kind (bad magic number)".into()));
    }
    if header.len() < HEADER_LEN {
        return Err(err(format!("the file is truncated ({total} bytes, shorter than its 24-byte header)")));
    }
    let word = |range: std::ops::Range<usize>| -> u64 {
        header[range].iter().rev().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    };
    let version = word(8..12) as u32;
    if version != FORMAT_VERSION {
        return Err(err(format!("format version {version} is not supported (this build reads {FORMAT_VERSION})")));
    }
    let len = word(16..24);
    // A corrupt length may be anything: compared, not added to (no overflow).
    let payload = total.saturating_sub(HEADER_LEN as u64);
    if payload < len {
        return Err(err(format!("the file is truncated ({payload} bytes of payload, the header says {len})")));
    }
    Ok((word(12..16) as u32, len))
}

/// Verifies and decodes bytes framed by [`encode_file`]; `what` names the source in errors.
pub fn decode_file<T: serde::de::DeserializeOwned>(magic: &[u8; 8], bytes: &[u8], what: &str) -> StateResult<T> {
    let err = |reason: String| snapshot_error(what, reason);
    let (checksum, len) = check_header(magic, bytes, bytes.len() as u64, what)?;
    let payload = usize::try_from(len)
        .ok()
        .and_then(|len| bytes.get(HEADER_LEN..HEADER_LEN + len))
        .ok_or_else(|| err(format!("the payload of {len} bytes cannot be addressed")))?;
    if crc32fast::hash(payload) != checksum {
        return Err(err("checksum mismatch: the file is corrupt".into()));
    }
    crate::codec::decode(payload).map_err(|reason| err(format!("cannot decode: {reason}")))
}

/// Verifies the file at `path` framed by [`encode_file`] (header and checksum) without
/// holding its contents: it is read in pieces. Returns its size.
pub fn verify_file(magic: &[u8; 8], path: &Path) -> StateResult<u64> {
    let what = path.display().to_string();
    let io = |e: std::io::Error| snapshot_error(&what, format!("cannot read it: {e}"));
    let file = std::fs::File::open(path).map_err(io)?;
    let total = file.metadata().map_err(io)?.len();
    verify_reader(magic, file, total, &what)
}

/// Like [`verify_file`], for the `total` bytes of a file that `reader` reads (`what` names it
/// in errors): an object in an object store, read in ranges.
pub fn verify_reader(magic: &[u8; 8], mut reader: impl std::io::Read, total: u64, what: &str) -> StateResult<u64> {
    use std::io::Read;
    let io = |e: std::io::Error| snapshot_error(what, format!("cannot read it: {e}"));
    let mut header = Vec::with_capacity(HEADER_LEN);
    (&mut reader).take(HEADER_LEN as u64).read_to_end(&mut header).map_err(io)?;
    let (checksum, len) = check_header(magic, &header, total, what)?;
    let mut crc = crc32fast::Hasher::new();
    let (mut buffer, mut left) = (vec![0u8; 1 << 20], len);
    while left > 0 {
        let n = reader.read(&mut buffer[..left.min(1 << 20) as usize]).map_err(io)?;
        if n == 0 {
            return Err(snapshot_error(what, "the file is truncated".into()));
        }
        crc.update(&buffer[..n]);
        left -= n as u64;
    }
    if crc.finalize() != checksum {
        return Err(snapshot_error(what, "checksum mismatch: the file is corrupt".into()));
    }
    Ok(total)
}

fn snapshot_error(what: &str, reason: String) -> StateError {
    StateError::Snapshot { what: what.to_string(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> KeyedStateSnapshot {
        let mut s = KeyedStateSnapshot::new("hashmap", 8, KeyGroupRange::new(0, 3));
        let idx = s.state_index(&StateMeta {
            name: "count".into(),
            kind: StateKind::Value,
            value_type: "i64".into(),
            ttl: false,
        });
        for kg in [1, 3] {
            s.key_group_mut(kg).entries.push(StateEntry {
                state: idx,
                key: vec![kg as u8],
                user_key: vec![],
                value: vec![9],
            });
        }
        s
    }

    #[test]
    fn round_trips_and_detects_corruption() {
        let s = sample();
        let bytes = s.to_bytes().unwrap();
        assert_eq!(KeyedStateSnapshot::from_bytes(&bytes, "mem").unwrap(), s);
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(KeyedStateSnapshot::from_bytes(&bad, "mem").unwrap_err().to_string().contains("checksum"));
        assert!(
            KeyedStateSnapshot::from_bytes(&bytes[..bytes.len() - 2], "mem")
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
        assert!(
            KeyedStateSnapshot::from_bytes(&bytes[..10], "mem").unwrap_err().to_string().contains("24-byte header")
        );
        assert!(
            KeyedStateSnapshot::from_bytes(b"not a snapshot at all, no", "mem")
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
    }

    /// A corrupt length field of any value is an error, never an overflow.
    #[test]
    fn any_length_in_the_header_is_checked() {
        let bytes = sample().to_bytes().unwrap();
        for len in [u64::MAX, u64::MAX - 23, 1 << 63, (bytes.len() - 23) as u64] {
            let mut bad = bytes.clone();
            bad[16..24].copy_from_slice(&len.to_le_bytes());
            let err = KeyedStateSnapshot::from_bytes(&bad, "mem").unwrap_err().to_string();
            assert!(err.contains("truncated"), "{len}: {err}");
        }
    }

    /// A state index beyond the snapshot's states is an error when merging.
    #[test]
    fn entries_of_unknown_states_are_an_error() {
        let mut bad = sample();
        bad.key_groups[0].entries[0].state = 7;
        let err = KeyedStateSnapshot::merge_for_range(&[bad], KeyGroupRange::new(0, 7), "x", 8).unwrap_err();
        assert!(err.to_string().contains("refers to state 7 of 1"), "{err}");
    }

    #[test]
    fn merging_keeps_only_the_requested_key_groups() {
        let merged = KeyedStateSnapshot::merge_for_range(&[sample()], KeyGroupRange::new(2, 7), "rocksdb", 8).unwrap();
        assert_eq!(merged.key_groups.len(), 1);
        assert_eq!(merged.key_groups[0].key_group, 3);
        assert!(KeyedStateSnapshot::merge_for_range(&[sample()], KeyGroupRange::new(0, 3), "x", 16).is_err());
    }
}
