//! Snapshot files in an S3-compatible object store (through the `object_store` crate, behind
//! the `s3` feature). Credentials, region and endpoint come from the standard `AWS_*`
//! environment variables (`AWS_ENDPOINT` and `AWS_ALLOW_HTTP=true` for a local server).

use super::storage::StorageError;

/// One directory of an object store; names are relative to it and `/`-separated.
pub struct ObjectStoreDir {
    #[cfg(feature = "s3")]
    inner: enabled::Dir,
    #[cfg(not(feature = "s3"))]
    never: std::convert::Infallible,
}

/// Files and subdirectories directly inside a directory.
#[derive(Debug, Default)]
pub struct Listing {
    /// Subdirectory names.
    pub dirs: Vec<String>,
    /// File names.
    pub files: Vec<String>,
}

#[cfg(not(feature = "s3"))]
impl ObjectStoreDir {
    /// Without the `s3` feature there is no object store to open.
    pub fn open(url: &str) -> Result<Self, StorageError> {
        Err(StorageError::Unsupported(format!(
            "'{url}' is in an object store, and this build of Brisk has no object-store support; \
             rebuild with `--features s3`"
        )))
    }
    /// Unreachable: no directory can be opened.
    pub fn list(&self, _dir: &str) -> Result<Listing, StorageError> {
        match self.never {}
    }
    /// Unreachable: no directory can be opened.
    pub fn read(&self, _name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match self.never {}
    }
    /// Unreachable: no directory can be opened.
    pub fn write(&self, _name: &str, _bytes: Vec<u8>) -> Result<(), StorageError> {
        match self.never {}
    }
    /// Unreachable: no directory can be opened.
    pub fn exists(&self, _name: &str) -> Result<bool, StorageError> {
        match self.never {}
    }
    /// Unreachable: no directory can be opened.
    pub fn delete(&self, _name: &str) -> Result<(), StorageError> {
        match self.never {}
    }
    /// Unreachable: no directory can be opened.
    pub fn size(&self, _name: &str) -> Result<Option<u64>, StorageError> {
        match self.never {}
    }
    /// Unreachable: no directory can be opened.
    pub fn read_range(&self, _name: &str, _range: std::ops::Range<u64>) -> Result<Vec<u8>, StorageError> {
        match self.never {}
    }
}

#[cfg(feature = "s3")]
impl ObjectStoreDir {
    /// Connects to the bucket of `url` (`s3://bucket/path`).
    pub fn open(url: &str) -> Result<Self, StorageError> {
        Self::open_with(url, &[])
    }
    /// Like `open`, with `object_store` S3 options (`aws_endpoint`, `aws_allow_http`, ...)
    /// over the environment's.
    pub fn open_with(url: &str, options: &[(&str, &str)]) -> Result<Self, StorageError> {
        enabled::Dir::open(url, options).map(|inner| ObjectStoreDir { inner })
    }
    /// What is directly inside `dir` (`""`: this directory).
    pub fn list(&self, dir: &str) -> Result<Listing, StorageError> {
        self.inner.list(dir)
    }
    /// The file's bytes, `None` if there is no such file.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.read(name)
    }
    /// Writes a whole file (object stores make a put visible all at once).
    pub fn write(&self, name: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.inner.write(name, bytes)
    }
    /// Whether the file exists.
    pub fn exists(&self, name: &str) -> Result<bool, StorageError> {
        self.inner.exists(name)
    }
    /// Deletes a file; a missing one is not an error.
    pub fn delete(&self, name: &str) -> Result<(), StorageError> {
        self.inner.delete(name)
    }
    /// The file's size, `None` if there is no such file.
    pub fn size(&self, name: &str) -> Result<Option<u64>, StorageError> {
        self.inner.size(name)
    }
    /// Bytes `range` of the file (for reading a large one in pieces).
    pub fn read_range(&self, name: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>, StorageError> {
        self.inner.read_range(name, range)
    }
}

impl ObjectStoreDir {
    /// Deletes every file directly inside `dir`.
    pub fn delete_dir(&self, dir: &str) -> Result<(), StorageError> {
        for file in self.list(dir)?.files {
            self.delete(&format!("{dir}/{file}"))?;
        }
        Ok(())
    }
}

#[cfg(feature = "s3")]
mod enabled {
    use super::{Listing, StorageError};
    use object_store::aws::AmazonS3Builder;
    use object_store::path::Path as ObjectPath;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
    use std::future::Future;
    use std::sync::Arc;
    use std::sync::mpsc::{Sender, channel};

    pub(super) struct Dir {
        store: Arc<dyn ObjectStore>,
        prefix: ObjectPath,
        url: String,
        worker: Worker,
    }

    type Job = Box<dyn FnOnce(&tokio::runtime::Runtime) + Send>;

    /// Runs requests to completion on an async runtime owned by a thread of its own: the rest
    /// of Brisk is synchronous, and a caller inside some other async runtime could not block
    /// on one (tokio panics).
    struct Worker {
        jobs: Sender<Job>,
    }

    impl Worker {
        fn start() -> std::io::Result<Self> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (jobs, queue) = channel::<Job>();
            std::thread::Builder::new().name("object-store io".into()).spawn(move || {
                for job in queue {
                    job(&runtime);
                }
            })?;
            Ok(Worker { jobs })
        }

        /// The future's output; `None` if the I/O thread is gone.
        fn run<T: Send + 'static>(&self, future: impl Future<Output = T> + Send + 'static) -> Option<T> {
            let (reply, answer) = channel();
            let job: Job = Box::new(move |runtime| {
                let _ = reply.send(runtime.block_on(future));
            });
            self.jobs.send(job).ok()?;
            answer.recv().ok()
        }
    }

    impl Dir {
        pub(super) fn open(url: &str, options: &[(&str, &str)]) -> Result<Self, StorageError> {
            let error = |reason: String| StorageError::ObjectStore { action: "open", url: url.to_string(), reason };
            let rest = url.strip_prefix("s3://").ok_or_else(|| error("not an s3:// URL".into()))?;
            let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            for (key, value) in options {
                let key = key.parse().map_err(|e: object_store::Error| error(e.to_string()))?;
                builder = builder.with_config(key, *value);
            }
            let store = builder.build().map_err(|e| error(e.to_string()))?;
            let worker = Worker::start().map_err(|e| error(format!("cannot start an I/O thread: {e}")))?;
            Ok(Dir { store: Arc::new(store), prefix: ObjectPath::from(path), url: url.to_string(), worker })
        }

        fn path(&self, name: &str) -> ObjectPath {
            name.split('/').filter(|p| !p.is_empty()).fold(self.prefix.clone(), |p, part| p.join(part))
        }

        fn error(&self, action: &'static str, name: &str, reason: String) -> StorageError {
            StorageError::ObjectStore { action, url: format!("{}/{name}", self.url), reason }
        }

        /// Runs `request` against the store with `name`'s path.
        fn request<T: Send + 'static, F: Future<Output = object_store::Result<T>> + Send + 'static>(
            &self,
            action: &'static str,
            name: &str,
            request: impl FnOnce(Arc<dyn ObjectStore>, ObjectPath) -> F,
        ) -> Result<object_store::Result<T>, StorageError> {
            let future = request(self.store.clone(), self.path(name));
            self.worker
                .run(future)
                .ok_or_else(|| self.error(action, name, "the object-store I/O thread stopped".into()))
        }

        pub(super) fn list(&self, dir: &str) -> Result<Listing, StorageError> {
            let result = self
                .request("list", dir, |store, path| async move { store.list_with_delimiter(Some(&path)).await })?
                .map_err(|e| self.error("list", dir, e.to_string()))?;
            let last = |p: &ObjectPath| p.filename().map(str::to_string);
            Ok(Listing {
                dirs: result.common_prefixes.iter().filter_map(last).collect(),
                files: result.objects.iter().filter_map(|o| last(&o.location)).collect(),
            })
        }

        pub(super) fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
            let result =
                self.request("read", name, |store, path| async move { store.get(&path).await?.bytes().await })?;
            match result {
                Ok(bytes) => Ok(Some(bytes.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.error("read", name, e.to_string())),
            }
        }

        pub(super) fn write(&self, name: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
            self.request("write", name, |store, path| async move { store.put(&path, PutPayload::from(bytes)).await })?
                .map(|_| ())
                .map_err(|e| self.error("write", name, e.to_string()))
        }

        pub(super) fn exists(&self, name: &str) -> Result<bool, StorageError> {
            self.size(name).map(|size| size.is_some())
        }

        pub(super) fn size(&self, name: &str) -> Result<Option<u64>, StorageError> {
            match self.request("look up", name, |store, path| async move { store.head(&path).await })? {
                Ok(meta) => Ok(Some(meta.size)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.error("look up", name, e.to_string())),
            }
        }

        pub(super) fn read_range(&self, name: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>, StorageError> {
            self.request("read", name, |store, path| async move { store.get_range(&path, range).await })?
                .map(|bytes| bytes.to_vec())
                .map_err(|e| self.error("read", name, e.to_string()))
        }

        pub(super) fn delete(&self, name: &str) -> Result<(), StorageError> {
            match self.request("delete", name, |store, path| async move { store.delete(&path).await })? {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.error("delete", name, e.to_string())),
            }
        }
    }
}
