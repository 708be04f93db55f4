//! Where a directory of snapshots lives: a local directory, or a prefix in an S3-compatible
//! object store that snapshots are staged for locally and uploaded to when they complete.

use super::CheckpointId;
use super::storage::{CheckpointStorage, METADATA_FILE};
use std::fmt;
use std::path::{Path, PathBuf};

/// A checkpoint root, a savepoint directory or one snapshot's directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SnapshotLocation {
    /// A directory on the local file system.
    Local(PathBuf),
    /// An object-store URL (`s3://bucket/path`, no trailing slash).
    ObjectStore(String),
}

impl SnapshotLocation {
    /// Reads a plain path, a `file://` URL or an `s3://bucket/path` URL.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.split_once("://") {
            None => Ok(SnapshotLocation::Local(PathBuf::from(text))),
            Some(("file", path)) => Ok(SnapshotLocation::Local(PathBuf::from(path))),
            Some(("s3", rest)) => {
                let rest = rest.trim_end_matches('/');
                let bucket = rest.split('/').next().unwrap_or_default();
                if bucket.is_empty() {
                    return Err("an s3:// URL needs a bucket: s3://bucket/path".into());
                }
                Ok(SnapshotLocation::ObjectStore(format!("s3://{rest}")))
            }
            Some((scheme, _)) => {
                Err(format!("the '{scheme}://' scheme is not supported; use a local path, file:// or s3://"))
            }
        }
    }

    /// The location of `name` inside this one.
    pub fn join(&self, name: &str) -> Self {
        match self {
            SnapshotLocation::Local(dir) => SnapshotLocation::Local(dir.join(name)),
            SnapshotLocation::ObjectStore(url) => SnapshotLocation::ObjectStore(format!("{url}/{name}")),
        }
    }

    /// The enclosing location (where a checkpoint's `shared/` directory is).
    pub fn parent(&self) -> Option<Self> {
        match self {
            SnapshotLocation::Local(dir) => dir.parent().map(|p| SnapshotLocation::Local(p.to_path_buf())),
            SnapshotLocation::ObjectStore(url) => {
                let (parent, _) = url.strip_prefix("s3://")?.rsplit_once('/')?;
                Some(SnapshotLocation::ObjectStore(format!("s3://{parent}")))
            }
        }
    }

    /// The local directory files are written to and read from: the directory itself, or
    /// for an object store the staging directory that mirrors it.
    pub fn local_dir(&self) -> PathBuf {
        match self {
            SnapshotLocation::Local(dir) => dir.clone(),
            SnapshotLocation::ObjectStore(url) => {
                let mut dir = std::env::temp_dir().join("brisk-staging");
                for part in url.trim_start_matches("s3://").split('/').filter(|p| !p.is_empty() && *p != "..") {
                    dir.push(part);
                }
                dir
            }
        }
    }
}

impl SnapshotLocation {
    /// What a job told to restore from this location resumes: the location itself when it is
    /// a savepoint or one checkpoint, else (a checkpoint directory, as given to
    /// `execution.checkpointing.dir`) its newest complete checkpoint, checksums verified and
    /// older ones tried when the newest is unreadable — after a crash the newest `chk-N` is
    /// often incomplete. Also returns the checkpoint chosen, if one was.
    pub fn resolve_restore_point(&self) -> Result<(SnapshotLocation, Option<CheckpointId>), String> {
        let name = match self {
            SnapshotLocation::Local(dir) => dir.file_name().map(|n| n.to_string_lossy().to_string()),
            SnapshotLocation::ObjectStore(url) => url.rsplit('/').next().map(str::to_string),
        };
        let is_snapshot = match self {
            SnapshotLocation::Local(dir) => dir.join(METADATA_FILE).is_file(),
            // Listing an object store for the metadata costs a request; the names tell.
            SnapshotLocation::ObjectStore(_) => {
                name.as_deref().is_some_and(|n| n.starts_with("chk-") || n.starts_with("savepoint-"))
            }
        };
        if is_snapshot {
            return Ok((self.clone(), None));
        }
        let storage = CheckpointStorage::open(self.clone()).map_err(|e| e.to_string())?;
        match storage.latest_valid().map_err(|e| e.to_string())? {
            Some(checkpoint) => {
                let id = checkpoint.metadata.id;
                Ok((self.join(&CheckpointStorage::checkpoint_name(id)), Some(id)))
            }
            None => Err(format!(
                "'{self}' is not a savepoint or checkpoint directory (it has no {METADATA_FILE} file), nor a \
                 checkpoint directory holding a complete checkpoint"
            )),
        }
    }
}

impl fmt::Display for SnapshotLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotLocation::Local(dir) => write!(f, "{}", dir.display()),
            SnapshotLocation::ObjectStore(url) => f.write_str(url),
        }
    }
}

impl std::str::FromStr for SnapshotLocation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        SnapshotLocation::parse(text)
    }
}

/// A path or URL; text of an unsupported scheme is taken as a local path (and fails as one).
impl From<&str> for SnapshotLocation {
    fn from(text: &str) -> Self {
        SnapshotLocation::parse(text).unwrap_or_else(|_| SnapshotLocation::Local(PathBuf::from(text)))
    }
}

impl From<String> for SnapshotLocation {
    fn from(text: String) -> Self {
        SnapshotLocation::from(text.as_str())
    }
}

impl From<PathBuf> for SnapshotLocation {
    fn from(dir: PathBuf) -> Self {
        SnapshotLocation::Local(dir)
    }
}

impl From<&Path> for SnapshotLocation {
    fn from(dir: &Path) -> Self {
        SnapshotLocation::Local(dir.to_path_buf())
    }
}

impl From<&PathBuf> for SnapshotLocation {
    fn from(dir: &PathBuf) -> Self {
        SnapshotLocation::Local(dir.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_urls() {
        assert_eq!(SnapshotLocation::parse("/tmp/x").unwrap(), SnapshotLocation::Local("/tmp/x".into()));
        assert_eq!(SnapshotLocation::parse("file:///tmp/x").unwrap(), SnapshotLocation::Local("/tmp/x".into()));
        let s3 = SnapshotLocation::parse("s3://bucket/jobs/a/").unwrap();
        assert_eq!(s3, SnapshotLocation::ObjectStore("s3://bucket/jobs/a".into()));
        assert_eq!(s3.join("chk-3").to_string(), "s3://bucket/jobs/a/chk-3");
        assert_eq!(s3.join("chk-3").parent(), Some(s3.clone()));
        assert!(s3.local_dir().ends_with("brisk-staging/bucket/jobs/a"));
        assert!(SnapshotLocation::parse("s3://").unwrap_err().contains("bucket"));
        assert!(SnapshotLocation::parse("hdfs://nn/x").unwrap_err().contains("'hdfs://'"));
        assert_eq!(SnapshotLocation::from("s3://b/p"), SnapshotLocation::ObjectStore("s3://b/p".into()));
        assert_eq!(SnapshotLocation::from(String::from("/tmp/sp")), SnapshotLocation::Local("/tmp/sp".into()));
    }
}
