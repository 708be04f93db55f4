//! Helpers shared by the behaviour tests.
#![allow(dead_code)]

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

/// All lines of a file, or of every file in a directory, sorted.
pub fn read_sorted_lines(path: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let mut files = vec![path.to_path_buf()];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).expect("list output dir").map(|e| e.expect("dir entry").path()));
        } else {
            lines.extend(std::fs::read_to_string(&p).expect("read output").lines().map(String::from));
        }
    }
    lines.sort();
    lines
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
