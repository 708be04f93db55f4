//! Crashes of the whole process: an example job runs as a child process with checkpoints, is
//! killed with SIGKILL at seeded random moments (checkpoints every 20 ms, so many kills land
//! during a checkpoint or the sink's commit), and is resumed from its checkpoint directory —
//! at the same and at another parallelism, with either state backend. The committed output
//! must equal the golden (failure-free) output exactly: leftover in-progress and pending
//! files, half-written checkpoint directories and commits done before the crash all occur.
//! `BRISK_CRASH_SEED` replays another sequence of kill moments.

mod common;

use common::{data, example, read_sorted_lines, repeated_word_count_input, run, temp_dir, wait_until};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// Seeded kill moments (a small LCG: reproducible, no dependency).
struct Moments(u64);

impl Moments {
    fn new(name: &str) -> Self {
        let seed = std::env::var("BRISK_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
        Moments(name.bytes().fold(seed, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))))
    }

    /// Milliseconds in `range`.
    fn next(&mut self, range: std::ops::Range<u64>) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        range.start + (self.0 >> 33) % (range.end - range.start)
    }
}

/// The newest complete checkpoint (one with its metadata) in `checkpoints`, if any.
fn newest_complete_checkpoint(checkpoints: &Path) -> Option<u64> {
    std::fs::read_dir(checkpoints)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("_metadata").is_file())
        .filter_map(|e| e.file_name().to_string_lossy().strip_prefix("chk-")?.parse().ok())
        .max()
}

/// Runs `job` with `args` and checkpoints in `dir/checkpoints`, once per parallelism in
/// `runs`: every run but the last is killed with SIGKILL at a seeded moment after a checkpoint
/// completed; each later run resumes from the checkpoint directory. Returns the last run's
/// stderr (it ends by itself).
fn crash_and_resume(name: &str, job: &str, args: &[&str], dir: &Path, runs: &[&str]) -> String {
    let checkpoints = dir.join("checkpoints");
    let mut moments = Moments::new(name);
    for (i, parallelism) in runs.iter().enumerate() {
        let mut cmd = example(job);
        cmd.args(args).args(["--parallelism", parallelism, "--checkpoint-interval", "20ms", "--checkpoint-dir"]);
        cmd.arg(&checkpoints);
        if i > 0 {
            cmd.arg("--from-savepoint").arg(&checkpoints);
        }
        if i + 1 == runs.len() {
            // The newest checkpoint directory of a crash is often incomplete: never chosen.
            let incomplete = checkpoints.join("chk-999999");
            std::fs::create_dir_all(&incomplete).expect("incomplete checkpoint");
            std::fs::write(incomplete.join("task-0"), b"half written").expect("task file");
            let (status, _, stderr) = run(&mut cmd);
            assert!(!stderr.contains("chk-999999 (the newest"), "{name}: {stderr}");
            assert!(status.status.success(), "{name}: the last run failed: {stderr}");
            assert!(stderr.contains("resuming from checkpoint chk-"), "{name}: {stderr}");
            return stderr;
        }
        // Killed only after this run completed a checkpoint of its own (so after its restore).
        let before = newest_complete_checkpoint(&checkpoints);
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start the job");
        wait_until("a checkpoint of this run", || newest_complete_checkpoint(&checkpoints) > before);
        std::thread::sleep(Duration::from_millis(moments.next(0..200)));
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("the killed job");
        assert!(!status.success(), "{name}: run {i} ended before it was killed; make the input longer");
    }
    String::new()
}

fn window_agg_crashes(name: &str, backend: &str, runs: &[&str]) {
    let dir = temp_dir(name);
    let out = dir.join("results");
    let input = data("window_agg/events.csv");
    let input = input.to_string_lossy();
    let out_arg = out.to_string_lossy();
    let args =
        ["--input", &input, "--output", &out_arg, "--state-backend", backend, "--source-rate", "1500", "--config"];
    let config = dir.join("config.yaml");
    // Incremental RocksDB checkpoints: shared files outlive the killed processes too.
    std::fs::write(&config, "execution.checkpointing.incremental: true\n").expect("config");
    let mut args: Vec<&str> = args.to_vec();
    let config = config.to_string_lossy();
    args.push(&config);
    crash_and_resume(name, "window_agg", &args, &dir, runs);
    let expected = std::fs::read_to_string(data("window_agg/expected_tumbling_10s.csv")).expect("golden");
    assert_eq!(read_sorted_lines(&out), expected.lines().collect::<Vec<_>>(), "{name}");
}

#[test]
fn window_agg_survives_kill_9_heap() {
    window_agg_crashes("crash-window-heap", "hashmap", &["2", "2", "3", "2"]);
}

#[cfg(feature = "rocksdb")]
#[test]
fn window_agg_survives_kill_9_rocksdb() {
    window_agg_crashes("crash-window-rocksdb", "rocksdb", &["2", "3", "1", "2"]);
}

#[test]
fn word_count_survives_kill_9() {
    let dir = temp_dir("crash-word-count");
    let (input, expected) = repeated_word_count_input(&dir, 30);
    let out = dir.join("out");
    let (input_arg, out_arg) = (input.to_string_lossy(), out.to_string_lossy());
    let args = ["--input", &input_arg, "--output", &out_arg, "--source-rate", "300"];
    crash_and_resume("crash-word-count", "word_count", &args, &dir, &["2", "3", "2", "1"]);
    assert_eq!(read_sorted_lines(&out), expected);
}
