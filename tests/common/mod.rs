//! Helpers shared by the behaviour tests.
#![allow(dead_code)]

#[cfg(feature = "s3")]
pub mod s3;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh, empty directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("brisk-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A built example binary (cargo builds examples before running integration tests).
pub fn example(name: &str) -> Command {
    let mut path = std::env::current_exe().expect("test binary path");
    path.pop();
    if path.ends_with("deps") {
        path.pop();
    }
    let mut cmd = Command::new(path.join("examples").join(name));
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// Runs a command and returns (exit success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("run example");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// The committed lines of a finished job's output, sorted: a file, or every committed file
/// in a directory tree. The exactly-once file sink's hidden `.inprogress`/`.pending` files are
/// not output, and none may be left once the job has finished.
pub fn read_sorted_lines(path: &Path) -> Vec<String> {
    let uncommitted = uncommitted_files(path);
    assert!(uncommitted.is_empty(), "the finished job left uncommitted files: {uncommitted:?}");
    committed_lines(path)
}

/// The committed lines of a file or directory tree, sorted, while a job may still be writing
/// to it (hidden in-progress and pending files excluded).
pub fn committed_lines(path: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for file in files(path).into_iter().filter(|f| !is_hidden(f)) {
        lines.extend(std::fs::read_to_string(&file).expect("read output").lines().map(String::from));
    }
    lines.sort();
    lines
}

/// The exactly-once file sink's hidden in-progress and pending files under `path`.
pub fn uncommitted_files(path: &Path) -> Vec<PathBuf> {
    files(path).into_iter().filter(|f| is_hidden(f)).collect()
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// Every file of a directory tree (or the file itself); none when the path does not exist.
fn files(path: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![path.to_path_buf()];
    while let Some(p) = todo.pop() {
        // One look at each path: a running job may create it between two.
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => {
                todo.extend(std::fs::read_dir(&p).expect("list output dir").map(|e| e.expect("dir entry").path()))
            }
            Ok(_) => found.push(p),
            Err(_) => {}
        }
    }
    found
}

/// The checkpoint each restart restored, from an example's printed report (`restart N:
/// restored checkpoint ID`; None when a restart started over).
pub fn restored_checkpoints(stderr: &str) -> Vec<Option<u64>> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("restart ").and_then(|l| l.split_once(": ")))
        .map(|(_, what)| what.strip_prefix("restored checkpoint ").and_then(|id| id.parse().ok()))
        .collect()
}

/// Polls until `done` holds (panics after 60 s: the job made no progress).
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// WordCount's golden `input.txt` repeated `times` times in `dir`, and every `word,count`
/// line a streaming run over it emits, sorted (derived from the independent golden counts:
/// each word counts up to `times` times its count in `input.txt`).
pub fn repeated_word_count_input(dir: &Path, times: usize) -> (PathBuf, Vec<String>) {
    let text = std::fs::read_to_string(data("word_count/input.txt")).expect("golden input");
    let text = if text.ends_with('\n') { text } else { format!("{text}\n") };
    let path = dir.join("input.txt");
    std::fs::write(&path, text.repeat(times)).expect("write input");
    let mut lines = Vec::new();
    let golden = std::fs::read_to_string(data("word_count/expected_batch.txt")).expect("golden counts");
    for line in golden.lines() {
        let (word, count) = line.rsplit_once(',').expect("word,count");
        let total = count.parse::<usize>().expect("count") * times;
        lines.extend((1..=total).map(|n| format!("{word},{n}")));
    }
    lines.sort();
    (path, lines)
}

/// The repository's test data directory.
pub fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(path)
}

/// Logs through `tracing` when `RUST_LOG` is set (to see why a job restarted).
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// The built `brisk` command line (`cargo build --workspace` puts it beside the examples).
pub fn brisk() -> Command {
    let mut path = std::env::current_exe().expect("test binary path");
    path.pop();
    if path.ends_with("deps") {
        path.pop();
    }
    let mut cmd = Command::new(path.join("brisk"));
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// The path of a built example binary.
pub fn example_path(name: &str) -> PathBuf {
    PathBuf::from(example(name).get_program())
}

/// One HTTP/1.1 request to `address` (`host:port`) with `headers` and `body`; the status and
/// the body of the answer.
pub fn http(address: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the REST server");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60))).expect("a read timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        request.push_str("Host: localhost\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes()).expect("send the request");
    // A server refusing a large body may close before reading it all.
    let _ = stream.write_all(body);
    // Read the head, then the body by its length (a server may keep the connection open).
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break response.len(),
            Ok(n) => response.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    let length = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok()).flatten()
    });
    loop {
        if length.is_some_and(|n| response.len() >= head_end + n) {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
        }
    }
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {head}"));
    let body = String::from_utf8_lossy(&response[head_end.min(response.len())..]).into_owned();
    (status, body)
}

/// The sum of the Prometheus samples of `name` in `text` whose labels include `labels`.
pub fn prometheus_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{name} is not a plain value"),
        })
        .sum()
}

/// A map that passes records on and fails once, in the first subtask to see `after` records,
/// pausing a millisecond every `pause_every` records so that checkpoints complete meanwhile:
/// the failure of failure-injection tests.
#[derive(Clone)]
pub struct FailOnce {
    failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    after: u64,
    pause_every: Option<u64>,
    seen: u64,
}

impl FailOnce {
    /// Fails after `after` records of a subtask.
    pub fn after(after: u64) -> FailOnce {
        FailOnce { failed: Default::default(), after, pause_every: None, seen: 0 }
    }

    /// Pauses a millisecond every `records` records.
    pub fn pausing_every(mut self, records: u64) -> FailOnce {
        self.pause_every = Some(records);
        self
    }

    /// Never fails (the failure-free run to compare with).
    pub fn disarmed(self) -> FailOnce {
        self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
        self
    }
}

impl brisk::prelude::RichFunction for FailOnce {
    fn open(&mut self, _: &mut brisk::prelude::RuntimeContext<'_>) -> Result<(), brisk::prelude::BoxError> {
        self.seen = 0;
        Ok(())
    }
}

impl<T: Send + 'static> brisk::prelude::RichMapFunction<T, T> for FailOnce {
    fn map(&mut self, value: T) -> Result<T, brisk::prelude::BoxError> {
        self.seen += 1;
        if self.seen == self.after && !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err("planned failure".into());
        }
        if self.pause_every.is_some_and(|n| self.seen.is_multiple_of(n)) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(value)
    }
}

/// Words of the running-count jobs of the sink tests: 20,000 of 37 distinct ones (`w0`..`w36`).
pub const COUNTED_WORDS: usize = 20_000;

/// The final count of word `w{i}` in those jobs.
pub fn final_word_count(i: usize) -> usize {
    (0..COUNTED_WORDS).filter(|n| n % 37 == i).count()
}

/// Running counts of the words into `sink` (each count update a record), at parallelism 2 with
/// checkpoints every 30 ms, failing once after 3000 records of a subtask; the job's result.
pub fn running_word_counts_into<S: brisk::prelude::Sink<(String, i64)>>(sink: S) -> brisk::prelude::JobExecutionResult {
    use brisk::prelude::*;
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    env.enable_checkpointing(std::time::Duration::from_millis(30));
    env.set_restart_strategy(brisk::runtime::jobmaster::restart::RestartStrategy::FixedDelay {
        attempts: 3,
        delay: std::time::Duration::from_millis(10),
    });
    let words: Vec<String> = (0..COUNTED_WORDS).map(|i| format!("w{}", i % 37)).collect();
    env.from_collection(words)
        .map(|w: String| (w, 1i64))
        .key_by(|(w, _): &(String, i64)| w.clone())
        .sum(|(_, n): &mut (String, i64)| n)
        .rich_map(FailOnce::after(3000).pausing_every(100))
        .sink_to(sink);
    env.execute("counts").expect("the counting job")
}
