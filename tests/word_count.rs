//! WordCount end to end: exact outputs at several parallelisms in both modes, through the
//! library and through the example binary, and clear errors for bad input.

mod common;

use brisk::prelude::*;
use brisk_examples::word_count::{WordCountSink, tokenize, word_count};
use common::{data, example, read_sorted_lines, repeated_word_count_input, restored_checkpoints, run, temp_dir};

fn expected(name: &str) -> Vec<String> {
    std::fs::read_to_string(data(&format!("word_count/{name}"))).unwrap().lines().map(String::from).collect()
}

fn counts_in_process(parallelism: usize, mode: RuntimeExecutionMode) -> Vec<String> {
    let env = StreamExecutionEnvironment::create_local_environment(parallelism);
    env.set_runtime_mode(mode);
    let counts = env
        .read_text_file(data("word_count/input.txt"))
        .flat_map(|line: String, out: &mut Collector<'_, (String, i64)>| {
            tokenize(&line, |w| out.collect((w.to_string(), 1)))
        })
        .key_by(|(w, _): &(String, i64)| w.clone())
        .sum(|(_, c): &mut (String, i64)| c);
    let mut lines: Vec<String> =
        counts.execute_and_collect("wc").unwrap().into_iter().map(|(w, c)| format!("{w},{c}")).collect();
    lines.sort();
    lines
}

#[test]
fn exact_counts_in_both_modes_at_parallelism_1_2_4() {
    for p in [1, 2, 4] {
        assert_eq!(
            counts_in_process(p, RuntimeExecutionMode::Batch),
            expected("expected_batch.txt"),
            "batch, parallelism {p}"
        );
        assert_eq!(
            counts_in_process(p, RuntimeExecutionMode::Streaming),
            expected("expected_streaming.txt"),
            "streaming, parallelism {p}"
        );
    }
}

#[test]
fn example_binary_writes_exact_output_files() {
    let dir = temp_dir("wc-binary");
    for p in ["1", "2", "4"] {
        for (mode, golden) in [("batch", "expected_batch.txt"), ("streaming", "expected_streaming.txt")] {
            let out = dir.join(format!("{mode}-{p}"));
            let (status, _, stderr) = run(example("word_count")
                .args(["--input"])
                .arg(data("word_count/input.txt"))
                .args(["--output"])
                .arg(&out)
                .args(["--parallelism", p, "--execution-mode", mode]));
            assert!(status.status.success(), "{mode} p{p}: {stderr}");
            assert_eq!(out.is_dir(), p != "1", "a file at parallelism 1, else a directory of part files");
            assert_eq!(read_sorted_lines(&out), expected(golden), "{mode}, parallelism {p}");
        }
    }
}

#[test]
fn input_may_be_a_directory_and_repeated() {
    let dir = temp_dir("wc-dir");
    let input = dir.join("in");
    std::fs::create_dir_all(input.join("nested")).unwrap();
    std::fs::write(input.join("a.txt"), "b a\n").unwrap();
    std::fs::write(input.join("nested/b.txt"), "a\n").unwrap();
    std::fs::write(dir.join("c.txt"), "c a\n").unwrap();
    let out = dir.join("out.csv");
    let (status, _, stderr) = run(example("word_count")
        .arg("--input")
        .arg(&input)
        .arg("--input")
        .arg(dir.join("c.txt"))
        .arg("--output")
        .arg(&out)
        .args(["--parallelism", "1", "--execution-mode", "batch"]));
    assert!(status.status.success(), "{stderr}");
    assert_eq!(read_sorted_lines(&out), ["a,3", "b,1", "c,1"]);
}

#[test]
fn builtin_text_prints_flink_style_tuples() {
    let (status, stdout, stderr) = run(example("word_count").args(["--parallelism", "1", "--execution-mode", "batch"]));
    assert!(status.status.success(), "{stderr}");
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    let tuples: Vec<String> = expected("expected_builtin.txt")
        .iter()
        .map(|l| l.rsplit_once(',').map(|(w, c)| format!("({w},{c})")).unwrap())
        .collect();
    assert_eq!(lines, tuples);
    let (status, stdout, _) = run(example("word_count").args(["--parallelism", "2", "--execution-mode", "batch"]));
    assert!(status.status.success());
    let mut unprefixed: Vec<&str> = stdout
        .lines()
        .map(|l| l.strip_prefix("1> ").or_else(|| l.strip_prefix("2> ")).expect("parallel print prefixes the subtask"))
        .collect();
    unprefixed.sort();
    assert_eq!(unprefixed, tuples);
}

#[test]
fn library_job_equals_binary_on_builtin_text() {
    let env = StreamExecutionEnvironment::create_local_environment(2);
    env.set_runtime_mode(RuntimeExecutionMode::Batch);
    let dir = temp_dir("wc-lib");
    word_count(&env, &[], &WordCountSink::File(dir.join("library")));
    env.execute("wc").unwrap();
    let (status, _, stderr) = run(example("word_count").arg("--output").arg(dir.join("binary")).args([
        "--parallelism",
        "2",
        "--execution-mode",
        "batch",
    ]));
    assert!(status.status.success(), "{stderr}");
    assert_eq!(read_sorted_lines(&dir.join("library")), expected("expected_builtin.txt"));
    assert_eq!(read_sorted_lines(&dir.join("binary")), expected("expected_builtin.txt"));
}

fn assert_clean_failure(args: &[&str], expected: &[&str]) {
    let (out, _, stderr) = run(example("word_count").args(args));
    assert!(!out.status.success(), "{args:?} should fail");
    for e in expected {
        assert!(stderr.contains(e), "{args:?}: stderr lacks {e:?}: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
}

#[test]
fn bad_input_fails_clearly_without_panic() {
    assert_clean_failure(&["--input", "/no/such/input.txt"], &["input path '/no/such/input.txt' does not exist"]);
    assert_clean_failure(&["--parallelism", "0"], &["--parallelism 0", "at least 1"]);
    assert_clean_failure(&["--parallelism", "two"], &["invalid --parallelism 'two'"]);
    assert_clean_failure(&["--execution-mode", "fast"], &["unknown execution mode 'fast'"]);

    let dir = temp_dir("wc-bad");
    let bad = dir.join("latin1.txt");
    std::fs::write(&bad, b"fine line\nanother\ncaf\xe9 au lait\n").unwrap();
    let bad_arg = bad.display().to_string();
    assert_clean_failure(&["--input", &bad_arg], &[&bad_arg, "line 3", "not valid UTF-8"]);

    let config = dir.join("bad.yaml");
    std::fs::write(&config, "parallelism.default: many\n").unwrap();
    assert_clean_failure(&["--config", &config.display().to_string()], &["parallelism.default", "many"]);

    let file_in_the_way = dir.join("occupied");
    std::fs::create_dir_all(file_in_the_way.join("part-0-0")).unwrap();
    assert_clean_failure(
        &["--output", &file_in_the_way.display().to_string(), "--parallelism", "2"],
        &["part-0-0", "is a directory"],
    );
}

#[test]
fn state_backends_give_identical_results() {
    let dir = temp_dir("wc-backends");
    let run_with = |backend: &str| {
        let out = dir.join(backend);
        let result = run(example("word_count")
            .arg("--input")
            .arg(data("word_count/input.txt"))
            .arg("--output")
            .arg(&out)
            .args(["--parallelism", "2", "--execution-mode", "batch", "--state-backend", backend, "--state-dir"])
            .arg(dir.join("rocksdb-files")));
        (result, out)
    };
    let ((status, _, stderr), out) = run_with("hashmap");
    assert!(status.status.success(), "{stderr}");
    assert_eq!(read_sorted_lines(&out), expected("expected_batch.txt"));
    let ((status, _, stderr), out) = run_with("rocksdb");
    if cfg!(feature = "rocksdb") {
        assert!(status.status.success(), "{stderr}");
        assert_eq!(read_sorted_lines(&out), expected("expected_batch.txt"));
    } else {
        assert!(!status.status.success() && stderr.contains("--features rocksdb"), "{stderr}");
    }
    assert_clean_failure(&["--state-backend", "memory-mapped"], &["unknown state backend 'memory-mapped'"]);
}

#[test]
fn help_describes_every_flag() {
    let (out, stdout, _) = run(example("word_count").arg("--help"));
    assert!(out.status.success());
    for flag in
        ["--input", "--output", "--parallelism", "--execution-mode", "--config", "--state-backend", "--state-dir"]
    {
        assert!(stdout.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn injected_failures_do_not_change_the_exactly_once_output() {
    let dir = temp_dir("wc-failures");
    // Long enough (about 1.5 s at 400 lines/s) that both failures come after checkpoints that
    // hold counts and committed output: a restore that ignored them would count twice.
    let (input, expected_lines) = repeated_word_count_input(&dir, 30);
    let out = dir.join("out");
    let (status, _, stderr) = run(example("word_count").arg("--input").arg(&input).arg("--output").arg(&out).args([
        "--parallelism",
        "2",
        "--checkpoint-interval",
        "20ms",
        "--inject-failures",
        "2",
        "--source-rate",
        "400",
        // Failures at about 40% and 57% of the run.
        "--failure-seed",
        "42",
    ]));
    assert!(status.status.success(), "{stderr}");
    assert!(stderr.contains("injected failures: 2 of 2 fired; restarts: 2"), "{stderr}");
    let restored = restored_checkpoints(&stderr);
    assert_eq!(restored.len(), 2, "{stderr}");
    assert!(restored.iter().all(|id| id.is_some()), "each restart restored a checkpoint: {stderr}");
    assert_eq!(read_sorted_lines(&out), expected_lines);
}
