//! A local S3-compatible server for the object-store tests.

use brisk::SnapshotLocation;
use brisk::runtime::checkpoint::remote::ObjectStoreDir;
use brisk::runtime::checkpoint::storage::{CheckpointStorage, StorageError};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Moto's server (PyPI `moto[server]`, which scripts/test.sh installs) on a free port of
/// 127.0.0.1, with one bucket; stopped when dropped.
pub struct S3TestServer {
    child: Child,
    endpoint: String,
}

impl S3TestServer {
    /// Starts the server and creates `bucket`.
    pub fn start(bucket: &str) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start `python3 -m moto.server`: {e}"))?;
        let mut server = S3TestServer { child, endpoint: format!("http://127.0.0.1:{port}") };
        let started = Instant::now();
        loop {
            // Anonymous bucket creation: moto accepts unsigned requests.
            let created = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut stream| {
                write!(
                    stream,
                    "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )?;
                let mut response = String::new();
                stream.read_to_string(&mut response)?;
                Ok(response)
            });
            match created {
                Ok(response) if response.starts_with("HTTP/1.1 200") => return Ok(server),
                Ok(response) => return Err(format!("the moto server did not create bucket {bucket}: {response}")),
                Err(_) if started.elapsed() < Duration::from_secs(30) => {
                    if let Ok(Some(status)) = server.child.try_wait() {
                        return Err(format!(
                            "the moto server exited ({status}); install it with `pip install 'moto[server]'`"
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => return Err(format!("the moto server did not start on port {port}: {e}")),
            }
        }
    }

    /// The server's URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The environment a process needs to reach the server (`AWS_*` variables).
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Calls `f` with the `object_store` options that reach the server (the environment's
    /// variables as option keys), for use in this process without changing its environment.
    fn with_options<R>(&self, f: impl FnOnce(&[(&str, &str)]) -> R) -> R {
        let options: Vec<(String, String)> =
            self.environment().into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
        let options: Vec<(&str, &str)> = options.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        f(&options)
    }

    /// A directory of the server's store (`s3://bucket/path`), reached with its settings.
    pub fn open(&self, url: &str) -> Result<ObjectStoreDir, StorageError> {
        self.with_options(|options| ObjectStoreDir::open_with(url, options))
    }

    /// The checkpoint storage of `location` (in the server's store), reached with its settings.
    pub fn open_storage(&self, location: SnapshotLocation) -> Result<CheckpointStorage, StorageError> {
        self.with_options(|options| CheckpointStorage::open_with(location, options))
    }
}

impl Drop for S3TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
