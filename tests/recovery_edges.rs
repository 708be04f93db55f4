//! Recovery edges: a savepoint resumed into another output, errors that no restart can fix,
//! restart strategies that give up, and resuming from a checkpoint directory.

mod common;

use brisk::prelude::*;
use brisk::runtime::checkpoint::CheckpointConfig;
use brisk::runtime::jobmaster::restart::RestartStrategy;
use common::{committed_lines, data, example, read_sorted_lines, repeated_word_count_input, run, temp_dir, wait_until};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// Starts word_count over the repeated input with a checkpoint every `interval` and
/// `--savepoint-dir`, stops it with SIGTERM once it committed output into `out`, and returns
/// the printed savepoint.
fn word_count_until_savepoint(input: &Path, out: &Path, savepoints: &Path, interval: &str) -> String {
    let child = example("word_count")
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(out)
        .args(["--parallelism", "2", "--checkpoint-interval", interval, "--source-rate", "400", "--savepoint-dir"])
        .arg(savepoints)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start word_count");
    wait_until("committed output", || !committed_lines(out).is_empty());
    let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(killed.is_ok_and(|s| s.success()));
    let output = child.wait_with_output().expect("word_count ends");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    stdout.lines().find_map(|l| l.strip_prefix("savepoint: ")).expect("the savepoint is printed").to_string()
}

/// The reproduction: a savepoint resumed into another output path (and parallelism)
/// finishes; what the first run's transactions held is committed where it was written.
#[test]
fn a_savepoint_resumes_into_another_output() {
    let dir = temp_dir("savepoint-other-output");
    let (input, expected) = repeated_word_count_input(&dir, 30);
    let (o3, o4) = (dir.join("o3"), dir.join("o4"));
    let savepoint = word_count_until_savepoint(&input, &o3, &dir.join("sp"), "20ms");
    let first = read_sorted_lines(&o3);
    assert!(!first.is_empty() && first.len() < expected.len(), "the first run stopped half way");
    let (status, _, stderr) = run(example("word_count").arg("--input").arg(&input).arg("--output").arg(&o4).args([
        "--parallelism",
        "3",
        "--checkpoint-interval",
        "20ms",
        "--from-savepoint",
        &savepoint,
    ]));
    assert!(status.status.success(), "{stderr}");
    assert!(!stderr.contains("restarting"), "no restart: {stderr}");
    let mut both = read_sorted_lines(&o3);
    assert_eq!(both, first, "the first run's output stays where it was committed");
    both.extend(read_sorted_lines(&o4));
    both.sort();
    assert_eq!(both, expected, "both runs together: every count once");
}

/// A restored transaction whose files are gone altogether fails the job at once, naming them.
#[test]
fn a_transaction_whose_files_are_gone_is_a_clear_error() {
    let dir = temp_dir("savepoint-files-gone");
    let (input, _) = repeated_word_count_input(&dir, 30);
    let o3 = dir.join("o3");
    // Stopped right after the first commit, 200 ms after the run's first records: the
    // savepoint holds the transaction of the records read since.
    let savepoint = word_count_until_savepoint(&input, &o3, &dir.join("sp"), "200ms");
    std::fs::remove_dir_all(&o3).expect("remove the first output");
    let (status, _, stderr) = run(example("word_count").arg("--input").arg(&input).arg("--output").arg(&o3).args([
        "--parallelism",
        "2",
        "--checkpoint-interval",
        "20ms",
        "--from-savepoint",
        &savepoint,
    ]));
    assert!(!status.status.success());
    assert!(stderr.contains("cannot commit part file") && stderr.contains("neither it nor the committed"), "{stderr}");
    assert!(stderr.contains(&o3.display().to_string()), "names the files: {stderr}");
    assert!(!stderr.contains("restarting the job"), "no restart can fix it: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The second reproduction: `late.csv` left as a plain file by a run without
/// checkpoints makes a checkpointed run fail when the job is built, not restart forever.
#[test]
fn an_output_path_that_cannot_be_created_fails_before_the_job_runs() {
    let dir = temp_dir("late-csv-file");
    std::fs::write(dir.join("late.csv"), "").expect("late.csv as a file");
    let (status, _, stderr) = run(example("window_agg")
        .arg("--input")
        .arg(data("window_agg/events.csv"))
        .arg("--output")
        .arg(dir.join("results"))
        .args(["--checkpoint-interval", "500ms"]));
    assert!(!status.status.success());
    let late = dir.join("late.csv").display().to_string();
    assert!(stderr.contains(&format!("the output '{late}' is a file")), "{stderr}");
    assert!(!stderr.contains("restarting"), "{stderr}");
}

/// A record that can never be read fails a checkpointed job at once (the exponential-delay
/// strategy would retry forever), with file, line and reason.
#[test]
fn a_bad_record_fails_a_checkpointed_job_without_restarts() {
    let dir = temp_dir("bad-record-checkpointed");
    let input = dir.join("events.csv");
    std::fs::write(&input, "a,1000,5\nb,1001,7\nc,later,9\n").expect("input");
    let (status, _, stderr) = run(example("window_agg")
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(dir.join("out"))
        .args(["--parallelism", "1", "--checkpoint-interval", "100ms"]));
    assert!(!status.status.success());
    assert!(stderr.contains("events.csv', line 3 (byte offset 18): timestamp 'later'"), "{stderr}");
    assert!(stderr.contains("a restart cannot fix this error"), "{stderr}");
    assert!(!stderr.contains("restarting the job"), "{stderr}");
}

/// Fixed-delay and failure-rate strategies give up when their limits say so, with the last
/// error; every restart before is counted.
#[test]
fn restart_strategies_give_up_at_their_limits() {
    for (strategy, restarts) in [
        (RestartStrategy::FixedDelay { attempts: 2, delay: Duration::from_millis(10) }, 2),
        (
            RestartStrategy::FailureRate {
                max_failures: 3,
                interval: Duration::from_secs(60),
                delay: Duration::from_millis(10),
            },
            3,
        ),
    ] {
        let env = StreamExecutionEnvironment::create_local_environment(1);
        env.set_checkpoint_config(CheckpointConfig {
            interval: Some(Duration::from_millis(50)),
            directory: Some(temp_dir("give-up").join("chk").into()),
            ..CheckpointConfig::default()
        });
        env.set_restart_strategy(strategy.clone());
        let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = attempts.clone();
        env.from_sequence(1, 100)
            .map(move |x| {
                if x == 50 {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    panic!("always fails at 50");
                }
                x
            })
            .add_sink(DiscardingSink);
        let err = env.execute("gives up").expect_err("the job fails").to_string();
        assert!(err.contains("always fails at 50"), "{strategy:?}: {err}");
        assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), restarts + 1, "{strategy:?}");
    }
}
