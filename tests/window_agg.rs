//! The `window_agg` example end to end: exact results (against golden files computed by an
//! independent script) for tumbling and sliding windows at several parallelisms, both state
//! backends, and clear errors for bad input and flags.

mod common;

use common::{committed_lines, data, example, read_sorted_lines, restored_checkpoints, run, temp_dir, wait_until};
use std::path::Path;

fn expected(name: &str) -> Vec<String> {
    std::fs::read_to_string(data(&format!("window_agg/{name}"))).unwrap().lines().map(String::from).collect()
}

fn backends() -> Vec<&'static str> {
    let rocksdb = cfg!(feature = "rocksdb");
    if rocksdb { vec!["hashmap", "rocksdb"] } else { vec!["hashmap"] }
}

#[test]
fn tumbling_and_sliding_windows_match_the_reference() {
    let dir = temp_dir("window-agg");
    for backend in backends() {
        for p in ["1", "2", "3"] {
            for (slide, golden) in [(None, "expected_tumbling_10s.csv"), (Some("5s"), "expected_sliding_10s_5s.csv")] {
                let out = dir.join(format!("{backend}-{p}-{}", slide.unwrap_or("tumbling"))).join("results");
                let mut cmd = example("window_agg");
                cmd.arg("--input").arg(data("window_agg/events.csv")).arg("--output").arg(&out);
                cmd.args([
                    "--parallelism",
                    p,
                    "--window",
                    "10s",
                    "--out-of-orderness",
                    "2s",
                    "--state-backend",
                    backend,
                ]);
                cmd.arg("--state-dir").arg(dir.join("rocksdb"));
                if let Some(slide) = slide {
                    cmd.args(["--slide", slide]);
                }
                let (status, _, stderr) = run(&mut cmd);
                assert!(status.status.success(), "{backend} p{p} {slide:?}: {stderr}");
                assert_eq!(read_sorted_lines(&out), expected(golden), "{backend}, parallelism {p}, slide {slide:?}");
                let late = out.parent().unwrap().join("late.csv");
                assert_eq!(std::fs::read_to_string(&late).unwrap(), "", "no event is late within a 2 s bound");
            }
        }
    }
}

/// The late-events input of `tests/data/window_agg/reference.py` (`late_events()`, which
/// computed the goldens): 12,000 events 10 ms apart with disorder below 1.5 s, five of them
/// inserted far behind the watermark.
fn late_events(path: &Path) {
    let base: i64 = 1_700_000_000_000;
    let mut events: Vec<(String, i64, i64)> =
        (0..12_000i64).map(|i| (format!("k{}", i % 5), base + i * 10 - (i * 7919) % 1500, (i * 31) % 1000)).collect();
    let mut late = [
        (11_000, "k1", 5_000, 7),
        (11_500, "k2", 15_500, 11),
        (11_001, "k3", 65_000, 13),
        (11_800, "k4", 75_200, 17),
        (11_801, "late-only", 60_000, 19),
    ];
    // Inserted from the highest position down, as the script does.
    late.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (position, key, after_base_ms, value) in late {
        events.insert(position, (key.to_string(), base + after_base_ms, value));
    }
    let text: String = events.iter().map(|(k, t, v)| format!("{k},{t},{v}\n")).collect();
    std::fs::write(path, text).expect("write the late-events input");
}

/// Late events: too late ones go to `late.csv`; with allowed lateness, late ones within it fire
/// their window again (goldens computed by `tests/data/window_agg/reference.py`).
#[test]
fn late_events_go_to_the_side_output_or_update_their_windows() {
    let dir = temp_dir("window-agg-late");
    let input = dir.join("late_events.csv");
    late_events(&input);
    for (lateness, golden) in [("0s", "expected_late_tumbling_10s"), ("60s", "expected_late_tumbling_10s_lateness_60s")]
    {
        let out = dir.join(lateness).join("results.csv");
        // Throttled so that the watermark certainly passed the late events' windows (see
        // reference.py: it reads 3000 events ahead, 0.75 s at this rate).
        let (status, _, stderr) =
            run(example("window_agg").arg("--input").arg(&input).arg("--output").arg(&out).args([
                "--parallelism",
                "1",
                "--window",
                "10s",
                "--out-of-orderness",
                "2s",
                "--allowed-lateness",
                lateness,
                "--source-rate",
                "4000",
            ]));
        assert!(status.status.success(), "{stderr}");
        assert_eq!(read_sorted_lines(&out), expected(&format!("{golden}.csv")), "results, lateness {lateness}");
        let late = read_sorted_lines(&out.parent().unwrap().join("late.csv"));
        assert_eq!(late, expected(&format!("{golden}_late.csv")), "late events, lateness {lateness}");
    }
}

#[test]
fn results_print_as_csv_lines_without_output() {
    let (status, stdout, stderr) =
        run(example("window_agg").arg("--input").arg(data("window_agg/events.csv")).args(["--parallelism", "1"]));
    assert!(status.status.success(), "{stderr}");
    let mut lines: Vec<String> = stdout.lines().map(String::from).collect();
    lines.sort();
    assert_eq!(lines, expected("expected_tumbling_10s.csv"));
}

#[test]
fn a_long_run_logs_its_progress_with_the_last_checkpoint_when_stderr_is_not_a_terminal() {
    let dir = temp_dir("window-progress");
    let config = dir.join("config.yaml");
    std::fs::write(&config, "execution.progress-interval: 300ms\n").unwrap();
    let mut command = example("window_agg");
    command.env("RUST_LOG", "info").arg("--input").arg(data("window_agg/events.csv")).arg("--config").arg(&config);
    command.args(["--parallelism", "1", "--source-rate", "2000", "--checkpoint-interval", "100ms"]);
    command.arg("--checkpoint-dir").arg(dir.join("checkpoints")).arg("--output").arg(dir.join("out"));
    let (status, _, stderr) = run(&mut command);
    assert!(status.status.success(), "{stderr}");
    let progress: Vec<&str> = stderr.lines().filter(|l| l.contains(" progress ")).collect();
    assert!(progress.len() >= 2, "a progress line every 300 ms of a 1.5 s run: {stderr}");
    assert!(progress.iter().all(|l| l.contains("records_read=")), "{progress:?}");
    assert!(progress.iter().any(|l| l.contains("last_checkpoint=")), "{progress:?}");
    assert!(!stderr.contains('\r'), "no live line when stderr is not a terminal");
}

#[test]
fn bad_input_names_file_line_and_field() {
    let dir = temp_dir("window-agg-bad");
    let input = dir.join("events.csv");
    std::fs::write(&input, "a,1000,5\nb,1001,7\nc,later,9\n").unwrap();
    let (status, _, stderr) = run(example("window_agg").arg("--input").arg(&input).args(["--parallelism", "1"]));
    assert!(!status.status.success());
    assert!(
        stderr.contains(
            "events.csv', line 3 (byte offset 18): timestamp 'later' of key 'c' is not a whole number of milliseconds"
        ),
        "{stderr}"
    );
    std::fs::write(&input, "a,1000\n").unwrap();
    let (_, _, stderr) = run(example("window_agg").arg("--input").arg(&input));
    assert!(
        stderr.contains("line 1 (byte offset 0): expected 3 fields 'key,timestamp_ms,value', found 2: 'a,1000'"),
        "{stderr}"
    );
}

#[test]
fn bad_flags_are_explained() {
    let input = data("window_agg/events.csv");
    let (status, _, stderr) = run(example("window_agg").arg("--input").arg(&input).args(["--window", "0s"]));
    assert!(!status.status.success());
    assert!(stderr.contains("the tumbling window size must be positive, not 0 ms"), "{stderr}");
    let (_, _, stderr) = run(example("window_agg").arg("--input").arg(&input).args(["--window", "ten"]));
    assert!(stderr.contains("invalid value 'ten' for '--window"), "{stderr}");
    let (_, _, stderr) = run(example("window_agg").arg("--input").arg(&input).args(["--slide", "0s"]));
    assert!(stderr.contains("the sliding window slide must be positive"), "{stderr}");
    let (_, _, stderr) = run(example("window_agg").arg("--input").arg("/no/such/events.csv"));
    assert!(stderr.contains("input path '/no/such/events.csv' does not exist"), "{stderr}");
    let checkpoints = |dir: &str| {
        let (status, _, stderr) = run(example("window_agg").arg("--input").arg(&input).args([
            "--checkpoint-interval",
            "1s",
            "--checkpoint-dir",
            dir,
        ]));
        assert!(!status.status.success());
        stderr
    };
    let stderr = checkpoints("hdfs://namenode/chk");
    assert!(stderr.contains("the 'hdfs://' scheme is not supported; use a local path, file:// or s3://"), "{stderr}");
    if !cfg!(feature = "s3") {
        let stderr = checkpoints("s3://bucket/chk");
        assert!(stderr.contains("rebuild with `--features s3`"), "{stderr}");
        let (status, _, stderr) = run(example("window_agg").arg("--input").arg(&input).args([
            "--checkpoint-interval",
            "1s",
            "--savepoint-dir",
            "s3://bucket/savepoints",
        ]));
        assert!(!status.status.success());
        assert!(stderr.contains("invalid --savepoint-dir 's3://bucket/savepoints'"), "{stderr}");
    }
    let (status, stdout, _) = run(example("window_agg").arg("--help"));
    assert!(status.status.success());
    for flag in [
        "--input",
        "--output",
        "--parallelism",
        "--window",
        "--slide",
        "--out-of-orderness",
        "--allowed-lateness",
        "--state-backend",
    ] {
        assert!(stdout.contains(flag), "--help lists {flag}: {stdout}");
    }
}

/// Runs the job with 3 injected failures and checkpoints in `checkpoints` (a path or URL),
/// with `extra` flags and environment, and checks the exactly-once output.
fn injected_failures_run(dir: &Path, checkpoints: &str, extra: &[&str], envs: &[(&str, String)]) {
    let out = dir.join("results");
    let (status, _, stderr) = run(example("window_agg")
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .arg("--input")
        .arg(data("window_agg/events.csv"))
        .arg("--output")
        .arg(&out)
        .args([
            "--parallelism",
            "2",
            "--checkpoint-interval",
            "30ms",
            "--inject-failures",
            "3",
            "--source-rate",
            "4000",
            // Failures at about 40%, 61% and 84% of the run.
            "--failure-seed",
            "51",
            "--checkpoint-dir",
            checkpoints,
        ])
        .args(extra));
    assert!(status.status.success(), "{stderr}");
    // About 0.75 s at 4000 events/s with a checkpoint every 30 ms: every failure comes after
    // completed checkpoints holding window state, and each restart restores one.
    assert!(stderr.contains("injected failures: 3 of 3 fired; restarts: 3"), "{stderr}");
    let restored = restored_checkpoints(&stderr);
    assert_eq!(restored.len(), 3, "{stderr}");
    assert!(restored.iter().all(|id| id.is_some()), "each restart restored a checkpoint: {stderr}");
    assert_eq!(read_sorted_lines(&out), expected("expected_tumbling_10s.csv"));
}

#[test]
fn injected_failures_do_not_change_the_exactly_once_output() {
    let dir = temp_dir("window-agg-failures");
    injected_failures_run(&dir, &dir.join("checkpoints").display().to_string(), &[], &[]);
}

#[test]
fn unaligned_checkpoints_keep_the_exactly_once_output_through_failures() {
    let dir = temp_dir("window-agg-unaligned");
    injected_failures_run(&dir, &dir.join("checkpoints").display().to_string(), &["--unaligned"], &[]);
}

/// The job on two task managers of the mini cluster, so the hash exchange between its two
/// subtasks goes over TCP: with either backend, three injected failures and checkpoints, the
/// output equals the golden file, as in one process.
#[test]
fn task_managers_exchanging_over_tcp_keep_the_exactly_once_output() {
    for backend in backends() {
        let dir = temp_dir(&format!("window-agg-tcp-{backend}"));
        let config = dir.join("config.yaml");
        std::fs::write(&config, "minicluster.number-of-taskmanagers: 2\n").expect("write the configuration");
        let config = config.display().to_string();
        let checkpoints = dir.join("checkpoints").display().to_string();
        injected_failures_run(&dir, &checkpoints, &["--config", &config, "--state-backend", backend], &[]);
    }
}

/// What shows that a run made progress, so that it can be stopped.
enum Progress<'a> {
    /// It committed windows beyond those already in the output.
    Output,
    /// Checkpoints completed in this checkpoint directory (windows that fire only at the end of
    /// the input commit nothing before; a slow backend commits its first windows late).
    Checkpoint(&'a Path),
}

/// Runs the job (from `restore`, if given) with `extra` flags (a `--source-rate` among them) and `envs`,
/// stops it with SIGTERM into `savepoints` (a path or URL) once it made `progress`, and
/// returns the printed savepoint. Asserts that the run left output for the next one (and,
/// waiting for output, that it contributed some).
fn run_to_savepoint(
    out: &Path,
    savepoints: &str,
    restore: Option<&str>,
    extra: &[&str],
    envs: Vec<(&'static str, String)>,
    progress: Progress<'_>,
) -> String {
    let before = committed_lines(out).len();
    let mut job = example("window_agg");
    job.envs(envs)
        .arg("--input")
        .arg(data("window_agg/events.csv"))
        .arg("--output")
        .arg(out)
        .args(["--checkpoint-interval", "50ms", "--savepoint-dir", savepoints])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(savepoint) = restore {
        job.args(["--from-savepoint", savepoint]);
    }
    if let Progress::Checkpoint(dir) = progress {
        job.arg("--checkpoint-dir").arg(dir);
    }
    let child = job.spawn().expect("start window_agg");
    match progress {
        Progress::Output => wait_until("committed output of the run", || committed_lines(out).len() > before),
        Progress::Checkpoint(dir) => {
            // Two checkpoints after the first: the run has read a part of its input.
            let newest = || {
                std::fs::read_dir(dir).ok().and_then(|d| {
                    d.filter_map(|e| e.ok())
                        .filter(|e| e.path().join("_metadata").is_file())
                        .filter_map(|e| e.file_name().to_string_lossy().strip_prefix("chk-")?.parse::<u64>().ok())
                        .max()
                })
            };
            let mut first = None;
            wait_until("a completed checkpoint", || {
                first = newest();
                first.is_some()
            });
            wait_until("two more checkpoints", || newest() >= first.map(|id| id + 2));
        }
    }
    let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let output = child.wait_with_output().expect("window_agg ends");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "exits 0 after the savepoint: {stderr}");
    let savepoint = stdout
        .lines()
        .find_map(|l| l.strip_prefix("savepoint: "))
        .unwrap_or_else(|| panic!("the savepoint path is printed: {stdout}\n{stderr}"))
        .to_string();
    assert!(savepoint.starts_with(&format!("{savepoints}/savepoint-")), "{savepoint}");
    let all = expected("expected_tumbling_10s.csv");
    let committed = read_sorted_lines(out);
    let contributed = matches!(progress, Progress::Checkpoint(_)) || committed.len() > before;
    assert!(contributed && committed.len() < all.len(), "stopped half way: {} lines", committed.len());
    assert!(committed.iter().all(|l| all.contains(l)), "only final results were committed");
    savepoint
}

/// Stops the job with SIGTERM into `savepoints` (a path or URL), resumes it from the printed
/// savepoint at another parallelism, and checks that both runs together wrote every window
/// once. `envs(run)` is the environment of the first (0) and second (1) run. Returns the
/// savepoint.
fn savepoint_and_resume(dir: &Path, savepoints: &str, envs: impl Fn(usize) -> Vec<(&'static str, String)>) -> String {
    let out = dir.join("results");
    let first = ["--parallelism", "2", "--source-rate", "3000"];
    let savepoint = run_to_savepoint(&out, savepoints, None, &first, envs(0), Progress::Output);
    let (status, _, stderr) = run(example("window_agg")
        .envs(envs(1))
        .arg("--input")
        .arg(data("window_agg/events.csv"))
        .arg("--output")
        .arg(&out)
        .args(["--parallelism", "3", "--checkpoint-interval", "50ms", "--from-savepoint", &savepoint]));
    assert!(status.status.success(), "{stderr}");
    assert_eq!(read_sorted_lines(&out), expected("expected_tumbling_10s.csv"), "both runs together: every window once");
    savepoint
}

/// Savepoints move the job's open windows between the state backends, each run stopped half
/// way, together every window exactly once: heap (in-memory panes) → RocksDB → heap, and
/// RocksDB (windows in the keyed backend) → heap.
#[cfg(feature = "rocksdb")]
#[test]
fn savepoints_move_open_windows_between_state_backends() {
    let dir = temp_dir("window-agg-backends");
    let savepoints = dir.join("savepoints").display().to_string();
    let state_dir = dir.join("rocksdb").display().to_string();
    // Slow enough that RocksDB's slower checkpoints come before the input ends.
    let rocksdb = |p: &'static str| {
        ["--parallelism", p, "--source-rate", "1000", "--state-backend", "rocksdb", "--state-dir", &state_dir]
    };
    let finish = |out: &Path, savepoint: &str| {
        let (status, _, stderr) = run(example("window_agg")
            .arg("--input")
            .arg(data("window_agg/events.csv"))
            .arg("--output")
            .arg(out)
            .args(["--parallelism", "2", "--checkpoint-interval", "50ms", "--from-savepoint", savepoint]));
        assert!(status.status.success(), "{stderr}");
        assert_eq!(read_sorted_lines(out), expected("expected_tumbling_10s.csv"), "every window once");
    };

    let out = dir.join("heap-first").join("results");
    let heap_first = ["--parallelism", "2", "--source-rate", "3000"];
    let heap = run_to_savepoint(&out, &savepoints, None, &heap_first, Vec::new(), Progress::Output);
    // The windows still open fire at the end of the input: this run commits nothing before.
    let checkpoints = dir.join("checkpoints");
    let progress = Progress::Checkpoint(&checkpoints);
    let from_rocksdb = run_to_savepoint(&out, &savepoints, Some(&heap), &rocksdb("3"), Vec::new(), progress);
    finish(&out, &from_rocksdb);

    let out = dir.join("rocksdb-first").join("results");
    let checkpoints = dir.join("rocksdb-checkpoints");
    let progress = Progress::Checkpoint(&checkpoints);
    let from_rocksdb = run_to_savepoint(&out, &savepoints, None, &rocksdb("2"), Vec::new(), progress);
    finish(&out, &from_rocksdb);
}

#[test]
fn sigterm_stops_with_a_savepoint_and_the_job_resumes_from_it() {
    let dir = temp_dir("window-agg-savepoint");
    let savepoint = savepoint_and_resume(&dir, &dir.join("savepoints").display().to_string(), |_| Vec::new());
    assert!(Path::new(&savepoint).join("_metadata").is_file(), "{savepoint}");
    let (status, _, stderr) = run(example("window_agg")
        .arg("--input")
        .arg(data("window_agg/events.csv"))
        .args(["--from-savepoint", "/no/such/savepoint"]));
    assert!(!status.status.success());
    assert!(stderr.contains("is not a savepoint or checkpoint directory"), "{stderr}");
}

/// Checkpoints (incremental with RocksDB) and savepoints in an S3-compatible object store: a
/// local moto server. Each run gets its own temp directory, so what it restores it downloaded.
#[cfg(feature = "s3")]
#[test]
fn checkpoints_and_savepoints_in_an_s3_object_store() {
    use common::s3::S3TestServer;
    let server = S3TestServer::start("brisk").expect("a local S3 server");
    let dir = temp_dir("window-agg-s3");
    let env = |tmp: &str| {
        let tmp = dir.join(tmp);
        std::fs::create_dir_all(&tmp).expect("temp dir");
        let mut env = server.environment();
        env.push(("TMPDIR", tmp.display().to_string()));
        env
    };
    let config = dir.join("incremental.yaml");
    std::fs::write(&config, "execution.checkpointing.incremental: true\n").expect("config");
    let backend = backends().pop().unwrap_or("hashmap");
    let config = config.display().to_string();
    injected_failures_run(
        &dir,
        "s3://brisk/checkpoints",
        &["--state-backend", backend, "--config", &config],
        &env("failures"),
    );
    let checkpoints = server.open("s3://brisk/checkpoints").expect("bucket");
    assert_eq!(
        checkpoints.list("").expect("list").dirs,
        Vec::<String>::new(),
        "a finished job deletes its checkpoints"
    );

    let _ = std::fs::remove_dir_all(dir.join("results"));
    let savepoint = savepoint_and_resume(&dir, "s3://brisk/savepoints", |run| env(&format!("run-{run}")));
    let name = savepoint.rsplit('/').next().unwrap_or_default();
    let savepoints = server.open("s3://brisk/savepoints").expect("bucket");
    assert!(
        savepoints.exists(&format!("{name}/_metadata")).expect("head"),
        "the savepoint is in the store: {savepoint}"
    );
}
