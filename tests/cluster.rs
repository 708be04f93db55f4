//! The standalone cluster as real processes on 127.0.0.1: `brisk jobmanager` and
//! `brisk taskmanager` register and heartbeat; a TaskManager killed with `kill -9` is lost
//! within `heartbeat.timeout`; a JobManager killed and started again gets its TaskManagers
//! back; `brisk cluster start|stop` manage both in the background; `brisk run` runs the
//! examples as artifacts across two TaskManagers with the mini cluster's output (checkpointed
//! and with injected failures, exactly once); bad addresses, ports and submissions are clear
//! errors.

mod common;

use common::{brisk, data, example, example_path, read_sorted_lines, temp_dir, wait_until};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// A background `brisk` process, killed when dropped so a failing test leaves none behind.
struct Process(Child);

impl Process {
    fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `brisk jobmanager` on `port`, with a 2 s heartbeat timeout; returns once it listens.
fn jobmanager(port: u16) -> Process {
    jobmanager_with(port, &[])
}

/// [`jobmanager`] with more `-D` options.
fn jobmanager_with(port: u16, extra: &[&str]) -> Process {
    jobmanager_in(port, extra, &[])
}

/// A JobManager with `env` in its environment (and so in its jobs' coordinators').
fn jobmanager_in(port: u16, extra: &[&str], env: &[(&str, String)]) -> Process {
    let mut child = brisk()
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .args(["jobmanager", "--rpc-port", &port.to_string()])
        .args([
            "-D",
            "jobmanager.rpc.address=127.0.0.1",
            "-D",
            "heartbeat.interval=200ms",
            "-D",
            "heartbeat.timeout=2s",
            "-D",
            "rest.port=0",
        ])
        .args(extra.iter().flat_map(|d| ["-D", d]))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start brisk jobmanager");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read its first line");
    assert_eq!(line.trim(), format!("JobManager listening on 127.0.0.1:{port}"));
    Process(child)
}

fn taskmanager(port: u16, slots: usize) -> Process {
    let child = brisk()
        .args(["taskmanager", "--jobmanager", &format!("127.0.0.1:{port}"), "--slots", &slots.to_string()])
        .spawn()
        .expect("start brisk taskmanager");
    Process(child)
}

/// `brisk cluster status --json` against the JobManager on `port`.
fn status(port: u16) -> serde_json::Value {
    let output = brisk()
        .args(["cluster", "status", "--json", "--jobmanager", &format!("127.0.0.1:{port}")])
        .output()
        .expect("run brisk cluster status");
    assert!(output.status.success(), "status failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("status prints JSON")
}

/// The TaskManagers' pids and slots, sorted.
fn taskmanagers_of(status: &serde_json::Value) -> Vec<(u64, u64)> {
    let mut found: Vec<(u64, u64)> = status["taskmanagers-detail"]
        .as_array()
        .expect("taskmanagers-detail")
        .iter()
        .map(|t| (t["pid"].as_u64().expect("pid"), t["slotsNumber"].as_u64().expect("slots")))
        .collect();
    found.sort_unstable();
    found
}

#[test]
fn taskmanager_processes_register_and_a_killed_one_is_lost_within_the_heartbeat_timeout() {
    let port = free_port();
    let _jm = jobmanager(port);
    let mut a = taskmanager(port, 1);
    let b = taskmanager(port, 2);
    let (pid_a, pid_b) = (a.0.id() as u64, b.0.id() as u64);
    let mut expected = vec![(pid_a, 1), (pid_b, 2)];
    expected.sort_unstable();
    wait_until("both TaskManagers registered", || taskmanagers_of(&status(port)) == expected);
    let overview = status(port);
    assert_eq!((overview["slots-total"].as_u64(), overview["slots-available"].as_u64()), (Some(3), Some(3)));

    a.kill9();
    let killed = Instant::now();
    wait_until("the killed TaskManager to be lost", || taskmanagers_of(&status(port)) == vec![(pid_b, 2)]);
    // Detected by its broken connection or, at the latest, by the 2 s heartbeat timeout.
    assert!(killed.elapsed() < Duration::from_secs(2) + Duration::from_millis(1500), "took {:?}", killed.elapsed());
}

#[test]
fn taskmanagers_register_again_with_a_jobmanager_killed_and_started_again() {
    let port = free_port();
    let mut jm = jobmanager(port);
    let tm = taskmanager(port, 2);
    let pid = tm.0.id() as u64;
    wait_until("registration", || taskmanagers_of(&status(port)) == vec![(pid, 2)]);
    let first = status(port)["jobmanager"]["id"].clone();
    jm.kill9();
    let _jm = jobmanager(port);
    wait_until("registration with the new JobManager", || {
        let now = status(port);
        now["jobmanager"]["id"] != first && taskmanagers_of(&now) == vec![(pid, 2)]
    });
}

fn run(args: &[&str]) -> Output {
    brisk().args(args).output().expect("run brisk")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[test]
fn cluster_start_and_stop_manage_background_processes_with_pid_files_and_logs() {
    let dir = temp_dir("cluster-start");
    let (conf, log) = (dir.join("conf"), dir.join("log"));
    std::fs::create_dir_all(&conf).unwrap();
    let port = free_port();
    std::fs::write(
        conf.join("config.yaml"),
        format!(
            "jobmanager:\n  rpc:\n    address: 127.0.0.1\n    port: {port}\ntaskmanager:\n  numberOfTaskSlots: 2\nheartbeat.interval: 200ms\nrest.port: 0\n"
        ),
    )
    .unwrap();
    std::fs::write(conf.join("workers"), "localhost\n# a comment\nlocalhost\n").unwrap();
    let (conf_arg, log_arg) = (conf.to_str().unwrap(), log.to_str().unwrap());
    let started = run(&["cluster", "start", "--config-dir", conf_arg, "--log-dir", log_arg]);
    // Whatever happens below, nothing keeps running.
    struct Stop<'a>(&'a str);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = run(&["cluster", "stop", "--log-dir", self.0]);
        }
    }
    let stop = Stop(log_arg);
    assert!(started.status.success(), "cluster start failed: {}", stderr(&started));
    let message = String::from_utf8_lossy(&started.stdout);
    assert!(message.contains("2 TaskManagers with 4 slots"), "{message}");
    let overview = status(port);
    assert_eq!(overview["slots-total"].as_u64(), Some(4));
    let pids: Vec<u64> = ["jobmanager", "taskmanager-0", "taskmanager-1"]
        .iter()
        .map(|name| {
            assert!(log.join(format!("brisk-{name}.log")).exists(), "log of {name}");
            let pid = std::fs::read_to_string(log.join(format!("brisk-{name}.pid"))).expect("pid file");
            pid.trim().parse().expect("a pid")
        })
        .collect();
    let mut tm_pids = pids[1..].to_vec();
    tm_pids.sort_unstable();
    assert_eq!(taskmanagers_of(&overview).iter().map(|t| t.0).collect::<Vec<_>>(), tm_pids);

    let again = run(&["cluster", "start", "--config-dir", conf_arg, "--log-dir", log_arg]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("a cluster is already running"), "{}", stderr(&again));

    drop(stop);
    for pid in pids {
        assert!(has_ended(pid), "process {pid} still runs");
    }
    assert!(!log.join("brisk-jobmanager.pid").exists(), "pid files are removed");
    let stopped = run(&["cluster", "stop", "--log-dir", log_arg]);
    assert!(!stopped.status.success());
    assert!(stderr(&stopped).contains("no cluster to stop"), "{}", stderr(&stopped));
}

/// Whether process `pid` is gone (or dead, waiting for its parent to collect it).
fn has_ended(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            stat.rsplit_once(')').is_some_and(|(_, rest)| matches!(rest.trim_start().chars().next(), Some('Z' | 'X')))
        }
    }
}

#[test]
fn bad_addresses_ports_and_configuration_are_clear_errors() {
    let closed = free_port();
    let unreachable = run(&[
        "taskmanager",
        "--jobmanager",
        &format!("127.0.0.1:{closed}"),
        "-D",
        "taskmanager.registration.timeout=1s",
    ]);
    assert!(!unreachable.status.success());
    let error = stderr(&unreachable);
    assert!(error.contains(&format!("cannot reach the JobManager at 127.0.0.1:{closed}")), "{error}");

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let in_use = run(&["jobmanager", "--rpc-port", &port.to_string(), "-D", "jobmanager.rpc.address=127.0.0.1"]);
    assert!(!in_use.status.success());
    assert!(stderr(&in_use).contains(&format!("cannot listen on 127.0.0.1:{port}")), "{}", stderr(&in_use));

    let no_status = run(&["cluster", "status", "--jobmanager", &format!("127.0.0.1:{closed}")]);
    assert!(!no_status.status.success());
    assert!(stderr(&no_status).contains(&format!("cannot reach the JobManager at 127.0.0.1:{closed}")));

    for (args, expected) in [
        (vec!["jobmanager", "-D", "heartbeat.timeout"], "invalid -D 'heartbeat.timeout': expected key=value"),
        (vec!["jobmanager", "-D", "heartbeat.timeout=100ms"], "heartbeat.timeout (100 ms) must be longer"),
        (
            vec!["taskmanager", "--config-dir", "/nonexistent/conf"],
            "no configuration file '/nonexistent/conf/config.yaml'",
        ),
    ] {
        let output = run(&args);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr(&output).contains(expected), "{args:?}: {}", stderr(&output));
    }
}

/// A JobManager and TaskManagers of one slot each, with their files under `dir`.
struct TestCluster {
    port: u16,
    dir: PathBuf,
    /// The JobManager first, then the TaskManagers.
    processes: Vec<Process>,
    jobmanager_options: Vec<String>,
    /// Environment variables of every process (`TMPDIR` aside: each has its own).
    env: Vec<(&'static str, String)>,
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.processes.iter_mut().for_each(Process::kill9);
        // Artifacts are large; a failed test keeps its files for a look.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl TestCluster {
    fn start(name: &str, jobmanager_options: &[&str]) -> TestCluster {
        Self::with_taskmanagers(name, 2, jobmanager_options)
    }

    fn with_taskmanagers(name: &str, taskmanagers: usize, jobmanager_options: &[&str]) -> TestCluster {
        Self::with_environment(name, taskmanagers, jobmanager_options, Vec::new())
    }

    /// A cluster whose processes have `env`; with it, each process also gets a temp
    /// directory of its own, so no two share local files by accident.
    fn with_environment(
        name: &str,
        taskmanagers: usize,
        jobmanager_options: &[&str],
        env: Vec<(&'static str, String)>,
    ) -> TestCluster {
        let dir = temp_dir(name);
        let port = free_port();
        let mut options = vec![format!("web.upload.dir={}", dir.join("jobmanager").display())];
        options.extend(jobmanager_options.iter().map(|o| o.to_string()));
        let mut cluster = TestCluster { port, dir, processes: Vec::new(), jobmanager_options: options, env };
        cluster.processes.push(cluster.start_jobmanager());
        for _ in 0..taskmanagers {
            cluster.add_taskmanager();
        }
        wait_until("the TaskManagers", || taskmanagers_of(&status(port)).len() == taskmanagers);
        cluster
    }

    /// The environment of a process whose own temp directory is `tmp` (when `env` is set).
    fn environment_of(&self, tmp: &str) -> Vec<(&'static str, String)> {
        let mut env = self.env.clone();
        if !env.is_empty() {
            let tmp = self.dir.join(tmp);
            std::fs::create_dir_all(&tmp).expect("a process temp dir");
            env.push(("TMPDIR", tmp.display().to_string()));
        }
        env
    }

    fn start_jobmanager(&self) -> Process {
        let options: Vec<&str> = self.jobmanager_options.iter().map(String::as_str).collect();
        jobmanager_in(self.port, &options, &self.environment_of("jobmanager-tmp"))
    }

    /// Starts one more TaskManager of one slot.
    fn add_taskmanager(&mut self) {
        let i = self.processes.len() - 1;
        let tmp = format!("taskmanager.tmp.dirs={}", self.dir.join(format!("taskmanager-{i}")).display());
        let child = brisk()
            .envs(self.environment_of(&format!("taskmanager-{i}-tmp")))
            .args(["taskmanager", "--jobmanager", &format!("127.0.0.1:{}", self.port), "-D", &tmp])
            .spawn()
            .expect("start brisk taskmanager");
        self.processes.push(Process(child));
    }

    /// Kills the JobManager with `kill -9` and starts it again on the same port and directory.
    fn restart_jobmanager(&mut self) {
        self.processes[0].kill9();
        self.processes[0] = self.start_jobmanager();
    }

    /// `brisk run` (attached) against this cluster.
    fn run(&self, args: &[&str]) -> Output {
        brisk().args(["run", "-m", &format!("127.0.0.1:{}", self.port)]).args(args).output().expect("run brisk run")
    }

    fn brisk(&self, command: &str, args: &[&str]) -> Output {
        brisk().args([command, "-m", &format!("127.0.0.1:{}", self.port)]).args(args).output().expect("run brisk")
    }

    /// Job `job_id` as `brisk list --json` shows it.
    fn job(&self, job_id: &str) -> Option<serde_json::Value> {
        let listed = self.brisk("list", &["--json"]);
        assert!(listed.status.success(), "{}", stderr(&listed));
        let jobs: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("JSON");
        jobs["jobs"].as_array()?.iter().find(|j| j["jid"] == job_id).cloned()
    }

    /// The state of job `job_id` as `brisk list --json` shows it.
    fn state(&self, job_id: &str) -> Option<String> {
        self.job(job_id).and_then(|j| j["state"].as_str().map(String::from))
    }

    /// Whether job `job_id` runs on `slots` slots.
    fn runs_on(&self, job_id: &str, slots: u64) -> bool {
        self.job(job_id).is_some_and(|j| j["state"] == "RUNNING" && j["slots"].as_u64() == Some(slots))
    }

    /// The job store's entry of job `job_id`.
    fn stored_job(&self, job_id: &str) -> serde_json::Value {
        let path = self.dir.join("jobmanager").join("jobs").join(format!("{job_id}.json"));
        serde_json::from_slice(&std::fs::read(&path).expect("job store entry")).expect("JSON")
    }

    /// The coordinator log of job `job_id`.
    fn coordinator_log(&self, job_id: &str) -> String {
        std::fs::read_to_string(self.dir.join("jobmanager").join(job_id).join("coordinator.log"))
            .expect("coordinator log")
    }

    /// `brisk run [run_flags] window_agg` over the golden events into `out`, with `job_flags`;
    /// returns the run and the job's id.
    fn run_window_job(&self, run_flags: &[&str], out: &Path, job_flags: &[&str]) -> (Output, String) {
        let (artifact, input) = (example_path("window_agg"), data("window_agg/events.csv"));
        let mut args: Vec<&str> = run_flags.to_vec();
        args.extend([
            artifact.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]);
        args.extend_from_slice(job_flags);
        let run = self.run(&args);
        assert!(run.status.success(), "brisk run failed: {}", stderr(&run));
        let id = job_id_of(&run);
        (run, id)
    }

    /// Starts the window job detached at p=2, reading `rate` events/s and checkpointing every
    /// 100 ms, and lets it run for `running` once it runs; returns its output and checkpoint
    /// directories and its id.
    fn start_checkpointed_window_job(&self, rate: u32, running: Duration) -> (PathBuf, PathBuf, String) {
        let (out, checkpoints) = (self.dir.join("out"), self.dir.join("checkpoints"));
        let rate = rate.to_string();
        let job_flags = [
            "--checkpoint-interval",
            "100ms",
            "--checkpoint-dir",
            checkpoints.to_str().unwrap(),
            "--source-rate",
            &rate,
        ];
        let (_, job_id) = self.run_window_job(&["-d", "-p", "2"], &out, &job_flags);
        wait_until("the job to run", || self.state(&job_id).as_deref() == Some("RUNNING"));
        std::thread::sleep(running);
        (out, checkpoints, job_id)
    }

    /// The worker logs on each TaskManager.
    fn worker_logs(&self) -> Vec<usize> {
        (0..self.processes.len() - 1)
            .map(|i| {
                walk(&self.dir.join(format!("taskmanager-{i}")))
                    .iter()
                    .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("worker-")))
                    .count()
            })
            .collect()
    }
}

/// The job id `brisk run` printed.
fn job_id_of(run: &Output) -> String {
    let stdout = String::from_utf8_lossy(&run.stdout);
    stdout.split("JobID ").nth(1).and_then(|r| r.split_whitespace().next()).expect("a job id").to_string()
}

/// The golden output of the window job over `window_agg/events.csv`, sorted.
fn golden_windows() -> Vec<String> {
    let expected = std::fs::read_to_string(data("window_agg/expected_tumbling_10s.csv")).expect("golden");
    let mut expected: Vec<String> = expected.lines().map(String::from).collect();
    expected.sort();
    expected
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn word_count_runs_across_two_taskmanagers_with_the_mini_clusters_output() {
    let cluster = TestCluster::start("cluster-word-count", &[]);
    let out = cluster.dir.join("out");
    let artifact = example_path("word_count");
    let run = cluster.run(&["-p", "2", artifact.to_str().unwrap(), "--output", out.to_str().unwrap()]);
    assert!(run.status.success(), "brisk run failed: {}", stderr(&run));
    assert!(String::from_utf8_lossy(&run.stdout).contains("has finished"), "{}", String::from_utf8_lossy(&run.stdout));
    assert_eq!(cluster.worker_logs(), vec![1, 1], "one worker process on each TaskManager");

    let local = cluster.dir.join("local");
    let ran = example("word_count").args(["--parallelism", "2", "--output", local.to_str().unwrap()]).output().unwrap();
    assert!(ran.status.success(), "{}", stderr(&ran));
    let expected = read_sorted_lines(&local);
    assert!(!expected.is_empty());
    assert!(read_sorted_lines(&out) == expected, "the cluster's output differs from the mini cluster's");
}

fn window_job_with_failures_is_exactly_once_across_processes(name: &str, backend: &str) {
    let cluster = TestCluster::start(name, &[]);
    let checkpoints = cluster.dir.join("checkpoints");
    window_job_recovers_exactly_once(&cluster, checkpoints.to_str().unwrap(), &["--state-backend", backend]);
}

/// Runs the window job at p=2 on `cluster` with two injected failures, checkpointing into
/// `checkpoints` (and `flags`): it must recover and commit exactly the golden output.
fn window_job_recovers_exactly_once(cluster: &TestCluster, checkpoints: &str, flags: &[&str]) {
    let out = cluster.dir.join("out");
    let mut job_flags = vec![
        "--checkpoint-interval",
        "100ms",
        "--checkpoint-dir",
        checkpoints,
        "--inject-failures",
        "2",
        "--source-rate",
        "3000",
    ];
    job_flags.extend_from_slice(flags);
    let (_, job_id) = cluster.run_window_job(&["-p", "2"], &out, &job_flags);
    let log = cluster.coordinator_log(&job_id);
    assert!(log.contains("restarting"), "failures were injected and recovered:\n{log}");
    assert!(read_sorted_lines(&out) == golden_windows(), "committed output differs from the golden file");
}

#[test]
fn a_checkpointed_window_job_with_failures_is_exactly_once_across_processes_heap() {
    window_job_with_failures_is_exactly_once_across_processes("cluster-window-heap", "hashmap");
}

#[cfg(feature = "rocksdb")]
#[test]
fn a_checkpointed_window_job_with_failures_is_exactly_once_across_processes_rocksdb() {
    window_job_with_failures_is_exactly_once_across_processes("cluster-window-rocksdb", "rocksdb");
}

/// With checkpoints in S3 and no local directory shared by the processes (each has its own
/// temp directory, so its own staging copies), tasks upload their own files, the coordinator
/// verifies checkpoints in the store, and the workers restoring after failures download their
/// own files: the output stays exactly once.
#[cfg(all(feature = "s3", feature = "rocksdb"))]
#[test]
fn tasks_write_and_read_their_own_state_in_s3_across_processes() {
    let server = common::s3::S3TestServer::start("brisk").expect("a local S3 server");
    let cluster = TestCluster::with_environment("cluster-s3", 2, &[], server.environment());
    let config = cluster.dir.join("incremental.yaml");
    std::fs::write(&config, "execution.checkpointing.incremental: true\n").expect("config");
    let checkpoints = format!("s3://brisk/cluster-{}", std::process::id());
    let flags = ["--state-backend", "rocksdb", "--config", config.to_str().unwrap()];
    window_job_recovers_exactly_once(&cluster, &checkpoints, &flags);
    // Workers staged their RocksDB files in their own temp directories: the coordinator never
    // saw them, so every restore above read the store.
    let staged = |tmp: &str| walk(&cluster.dir.join(tmp)).iter().any(|p| p.to_string_lossy().contains("/shared/"));
    assert!(staged("taskmanager-0-tmp") || staged("taskmanager-1-tmp"), "workers staged their own files");
}

#[test]
fn jobs_are_listed_and_cancelled_and_bad_submissions_are_clear_errors() {
    let cluster = TestCluster::start("cluster-jobs", &["slot.request.timeout=1s"]);
    let (_, job_id) = cluster.run_window_job(&["-d", "-p", "2"], &cluster.dir.join("slow"), &["--source-rate", "50"]);
    wait_until("the job to run", || cluster.state(&job_id).as_deref() == Some("RUNNING"));

    // No slots left: a second job waits slot.request.timeout, then fails saying why.
    let starved = cluster.run(&["-p", "1", example_path("word_count").to_str().unwrap()]);
    assert!(!starved.status.success());
    assert!(
        stderr(&starved).contains("the job needs 1 slots, but only 0 of the cluster's 2 slots"),
        "{}",
        stderr(&starved)
    );

    let cancelled = cluster.brisk("cancel", &[&job_id]);
    assert!(cancelled.status.success(), "{}", stderr(&cancelled));
    wait_until("the job to be cancelled", || cluster.state(&job_id).as_deref() == Some("CANCELED"));
    let again = cluster.brisk("cancel", &[&job_id]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("has already ended (CANCELED)"), "{}", stderr(&again));
    let unknown = cluster.brisk("cancel", &["0123456789abcdef0123456789abcdef"]);
    assert!(stderr(&unknown).contains("no job with id 0123456789abcdef0123456789abcdef"), "{}", stderr(&unknown));

    // An executable that is not a Brisk program never registers its job.
    let not_brisk = cluster.run(&["/bin/true"]);
    assert!(!not_brisk.status.success());
    assert!(stderr(&not_brisk).contains("coordinator process exited"), "{}", stderr(&not_brisk));
    let text = cluster.dir.join("notes.txt");
    std::fs::write(&text, "not a program").unwrap();
    let not_executable = cluster.run(&[text.to_str().unwrap()]);
    assert!(stderr(&not_executable).contains("is not executable"), "{}", stderr(&not_executable));
    let artifact = example_path("window_agg");
    let no_savepoint = cluster.run(&["-s", "/nonexistent/savepoint", artifact.to_str().unwrap()]);
    assert!(stderr(&no_savepoint).contains("the savepoint '/nonexistent/savepoint' does not exist"));
}

#[test]
fn a_job_stopped_with_a_savepoint_resumes_at_another_parallelism_exactly_once() {
    let cluster = TestCluster::start("cluster-savepoint", &[]);
    let (out, savepoints) = (cluster.dir.join("out"), cluster.dir.join("savepoints"));
    let checkpoints = cluster.dir.join("checkpoints");
    let checkpointing = ["--checkpoint-interval", "200ms", "--checkpoint-dir", checkpoints.to_str().unwrap()];
    let (_, job_id) =
        cluster.run_window_job(&["-d", "-p", "2"], &out, &[&checkpointing[..], &["--source-rate", "400"]].concat());
    wait_until("the job to run", || cluster.state(&job_id).as_deref() == Some("RUNNING"));
    std::thread::sleep(Duration::from_millis(1500));

    let taken = cluster.brisk("savepoint", &[&job_id, savepoints.to_str().unwrap()]);
    assert!(taken.status.success(), "savepoint failed: {}", stderr(&taken));
    let path_of = |output: &Output| {
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        text.split("Path: ").nth(1).map(|p| PathBuf::from(p.trim())).expect("a savepoint path")
    };
    assert!(path_of(&taken).join("_metadata").exists(), "the savepoint is complete");

    let stopped = cluster.brisk("stop", &["--savepoint-path", savepoints.to_str().unwrap(), &job_id]);
    assert!(stopped.status.success(), "stop failed: {}", stderr(&stopped));
    let savepoint = path_of(&stopped);
    wait_until("the stopped job to finish", || cluster.state(&job_id).as_deref() == Some("FINISHED"));
    let partial = read_sorted_lines(&out);
    assert!(partial.len() < 60, "the job was stopped before its end ({} windows)", partial.len());

    let resume = ["-p", "1", "-s", savepoint.to_str().unwrap()];
    cluster.run_window_job(&resume, &out, &checkpointing);
    assert!(read_sorted_lines(&out) == golden_windows(), "stopped at p=2 and resumed at p=1, the output differs");
    let unknown = cluster.brisk("savepoint", &[&job_id, savepoints.to_str().unwrap()]);
    assert!(stderr(&unknown).contains("is not running (FINISHED)"), "{}", stderr(&unknown));
}

#[test]
fn a_taskmanager_killed_mid_job_is_replaced_and_the_output_stays_exactly_once() {
    let mut cluster = TestCluster::with_taskmanagers("cluster-failover", 3, &[]);
    let (out, _, job_id) = cluster.start_checkpointed_window_job(600, Duration::from_millis(1500));
    let hosting = cluster.worker_logs().iter().position(|n| *n > 0).expect("a TaskManager running a worker");
    cluster.processes[1 + hosting].kill9();
    wait_until("the job to finish", || cluster.state(&job_id).as_deref() == Some("FINISHED"));

    let log = cluster.coordinator_log(&job_id);
    assert!(log.contains("workers were lost"), "the coordinator replaced the lost worker:\n{log}");
    assert_eq!(cluster.worker_logs().iter().sum::<usize>(), 3, "a third worker took over");
    assert!(read_sorted_lines(&out) == golden_windows(), "committed output differs from the golden file");
}

/// A TaskManager lost when no other slot is free: each failed request for a replacement
/// counts as one more restart (Flink's job waits in RESTARTING for resources), and once a
/// TaskManager joins, the job goes on from its latest checkpoint, exactly once.
#[test]
fn a_job_without_slots_for_its_lost_workers_keeps_restarting_until_a_taskmanager_joins() {
    let mut cluster = TestCluster::start("cluster-no-slots", &["slot.request.timeout=500ms"]);
    let (out, _, job_id) = cluster.start_checkpointed_window_job(600, Duration::from_millis(1000));
    cluster.processes[1].kill9();
    wait_until("a request for replacement workers to fail", || {
        cluster.coordinator_log(&job_id).contains("no new slots for the lost workers")
    });
    cluster.add_taskmanager();
    wait_until("the job to finish", || cluster.state(&job_id).as_deref() == Some("FINISHED"));
    assert!(read_sorted_lines(&out) == golden_windows(), "committed output differs from the golden file");
}

#[test]
fn two_jobs_run_at_once_each_in_its_own_slot() {
    let cluster = TestCluster::start("cluster-two-jobs", &[]);
    let (a, b, checkpoints) = (cluster.dir.join("a"), cluster.dir.join("b"), cluster.dir.join("checkpoints"));
    // Both check into one directory, as a cluster's jobs share state.checkpoints.dir.
    let slow =
        ["--source-rate", "1000", "--checkpoint-interval", "100ms", "--checkpoint-dir", checkpoints.to_str().unwrap()];
    let (_, first) = cluster.run_window_job(&["-d", "-p", "1"], &a, &slow);
    let (_, second) = cluster.run_window_job(&["-d", "-p", "1"], &b, &slow);
    wait_until("both jobs to run", || {
        cluster.state(&first).as_deref() == Some("RUNNING") && cluster.state(&second).as_deref() == Some("RUNNING")
    });
    assert_eq!(status(cluster.port)["slots-available"].as_u64(), Some(0), "each job holds one slot");
    // A job's checkpoints are deleted when it finishes: looked for while both run.
    let checkpointed = |job: &str| {
        std::fs::read_dir(checkpoints.join(job))
            .is_ok_and(|d| d.filter_map(Result::ok).any(|e| e.path().join("_metadata").is_file()))
    };
    wait_until("each job to checkpoint into its own directory under the shared one", || {
        checkpointed(&first) && checkpointed(&second)
    });
    wait_until("both jobs to finish", || {
        cluster.state(&first).as_deref() == Some("FINISHED") && cluster.state(&second).as_deref() == Some("FINISHED")
    });
    assert_eq!(cluster.worker_logs(), vec![1, 1], "one job on each TaskManager");
    assert!(read_sorted_lines(&a) == golden_windows(), "the first job's output differs from the golden file");
    assert!(read_sorted_lines(&b) == golden_windows(), "the second job's output differs from the golden file");
    wait_until("the slots to be free again", || status(cluster.port)["slots-available"].as_u64() == Some(2));
}

#[test]
fn a_jobmanager_killed_and_started_again_recovers_its_running_job_from_the_job_store() {
    let mut cluster = TestCluster::start("cluster-jobmanager-restart", &[]);
    let (out, _, job_id) = cluster.start_checkpointed_window_job(300, Duration::from_millis(1000));

    cluster.restart_jobmanager();
    assert_eq!(cluster.state(&job_id).as_deref(), Some("RUNNING"), "the new JobManager knows the job from its store");
    wait_until("both TaskManagers back", || taskmanagers_of(&status(cluster.port)).len() == 2);
    assert_eq!(status(cluster.port)["slots-available"].as_u64(), Some(0), "the job's slots stay taken");
    // FINISHED here means the coordinator reattached: its report of the job's end reached the
    // new JobManager (without it, the job would fail once the coordinator process exits).
    wait_until("the job to finish", || cluster.state(&job_id).as_deref() == Some("FINISHED"));
    assert!(read_sorted_lines(&out) == golden_windows(), "committed output differs from the golden file");
    wait_until("the slots to be free again", || status(cluster.port)["slots-available"].as_u64() == Some(2));
}

#[test]
fn a_jobmanager_restarted_after_its_job_coordinator_died_restarts_the_job_from_its_latest_checkpoint() {
    let mut cluster = TestCluster::start("cluster-coordinator-lost", &[]);
    let (out, checkpoints, job_id) = cluster.start_checkpointed_window_job(300, Duration::from_millis(1500));

    // The JobManager's host goes down: the JobManager and the job's coordinator with it.
    let coordinator = cluster.stored_job(&job_id)["pid"].as_u64().expect("the coordinator's pid in the job store");
    cluster.processes[0].kill9();
    let _ = std::process::Command::new("kill").args(["-9", &coordinator.to_string()]).status();
    wait_until("the coordinator to end", || has_ended(coordinator));
    cluster.restart_jobmanager();

    wait_until("the job to run again", || cluster.runs_on(&job_id, 2));
    wait_until("the job to finish", || cluster.state(&job_id).as_deref() == Some("FINISHED"));
    let restored = cluster.stored_job(&job_id)["overrides"].to_string();
    assert!(
        restored.contains(&format!("[\"execution.savepoint.path\",\"{}/{job_id}/chk-", checkpoints.display())),
        "the new coordinator restored the job's latest checkpoint: {restored}"
    );
    assert!(read_sorted_lines(&out) == golden_windows(), "committed output differs from the golden file");
}

#[test]
fn a_reactive_job_rescales_when_a_taskmanager_joins_and_when_one_leaves_exactly_once() {
    let reactive = ["scheduler-mode=reactive", "jobmanager.adaptive-scheduler.resource-stabilization-timeout=300ms"];
    let mut cluster = TestCluster::start("cluster-reactive", &reactive);
    let (out, checkpoints) = (cluster.dir.join("out"), cluster.dir.join("checkpoints"));
    let job_flags =
        ["--checkpoint-interval", "100ms", "--checkpoint-dir", checkpoints.to_str().unwrap(), "--source-rate", "400"];
    // No -p: a reactive job takes every free slot. One split is read at the rate's share of
    // one subtask (200/s at p=2), so the job outlasts both rescalings.
    let (_, job_id) = cluster.run_window_job(&["-d"], &out, &job_flags);
    wait_until("the job to run on both slots", || cluster.runs_on(&job_id, 2));
    std::thread::sleep(Duration::from_millis(1000));

    cluster.add_taskmanager();
    wait_until("the job to rescale to three slots", || cluster.runs_on(&job_id, 3));
    std::thread::sleep(Duration::from_millis(1000));
    cluster.processes[1].kill9();
    wait_until("the job to rescale back to two slots", || cluster.runs_on(&job_id, 2));
    wait_until("the job to finish", || cluster.state(&job_id).as_deref() == Some("FINISHED"));

    let log = cluster.coordinator_log(&job_id);
    assert_eq!(log.matches("suspended by the JobManager").count(), 2, "rescaled twice:\n{log}");
    let restored = cluster.stored_job(&job_id)["overrides"].to_string();
    assert!(restored.contains("chk-"), "the job restored its latest checkpoint: {restored}");
    assert!(read_sorted_lines(&out) == golden_windows(), "committed output differs from the golden file");
}

/// A multipart form with the file at `path` in field `jarfile` (Flink's `/jars/upload`).
fn jar_form(path: &Path) -> (String, Vec<u8>) {
    let boundary = "brisk-test-boundary-7d41";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"jarfile\"; filename=\"word_count\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend(std::fs::read(path).expect("the artifact"));
    body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn the_jobmanager_serves_flinks_rest_api_and_forwards_job_requests_to_the_jobs_coordinator() {
    let savepoints = temp_dir("cluster-rest-savepoints");
    let root = format!("execution.checkpointing.savepoint-dir={}", savepoints.display());
    let cluster = TestCluster::start("cluster-rest", &[&root]);
    let rest = status(cluster.port)["jobmanager"]["rest-address"].as_str().expect("a REST address").to_string();
    let get = |path: &str| {
        let (status, body) = common::http(&rest, "GET", path, &[], b"");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    };
    let overview = get("/overview");
    assert_eq!((overview["taskmanagers"].as_u64(), overview["slots-total"].as_u64()), (Some(2), Some(2)));
    let taskmanagers = get("/taskmanagers");
    let first = taskmanagers["taskmanagers"][0]["id"].as_str().expect("a TaskManager id").to_string();
    assert_eq!(get(&format!("/taskmanagers/{first}"))["slotsNumber"], 1);
    // Heartbeats carry each TaskManager's memory: in use (its process and workers) and of its host.
    wait_until("memory figures in the heartbeats", || {
        get("/taskmanagers")["taskmanagers"].as_array().unwrap().iter().all(|t| {
            let (used, host) =
                (t["memoryUsed"].as_u64().unwrap_or(0), t["hardware"]["physicalMemory"].as_u64().unwrap_or(0));
            used > 1 << 20 && host > used
        })
    });
    assert_eq!(common::http(&rest, "GET", "/taskmanagers/nope", &[], b"").0, 404);
    // Without a token, only requests naming a loopback host are served (DNS rebinding).
    let rebound = common::http(&rest, "GET", "/overview", &[("Host", "attacker.example:8081")], b"");
    assert_eq!(rebound.0, 403, "{}", rebound.1);

    // A running job: its details come from its coordinator.
    let (_, _, job_id) = cluster.start_checkpointed_window_job(200, Duration::from_millis(500));
    assert!(
        get("/jobs")["jobs"].as_array().unwrap().iter().any(|j| j["id"] == job_id.as_str() && j["status"] == "RUNNING")
    );
    let details = get(&format!("/jobs/{job_id}"));
    assert_eq!(details["state"], "RUNNING", "{details}");
    let vertices = details["vertices"].as_array().unwrap().clone();
    assert!(vertices.iter().any(|v| v["name"].as_str().unwrap().contains("window-sum-count")), "{details}");
    let window = vertices.iter().find(|v| v["name"].as_str().unwrap().contains("window")).unwrap()["id"].clone();
    let vertex = get(&format!("/jobs/{job_id}/vertices/{}", window.as_str().unwrap()));
    assert_eq!(vertex["subtasks"].as_array().unwrap().len(), 2);
    wait_until("a completed checkpoint over REST", || {
        get(&format!("/jobs/{job_id}/checkpoints"))["counts"]["completed"].as_u64() > Some(0)
    });
    let scrape = || {
        let (status, metrics) = common::http(&rest, "GET", "/metrics", &[], b"");
        assert_eq!(status, 200);
        metrics
    };
    let metrics = scrape();
    assert_eq!(common::prometheus_sum(&metrics, "brisk_jobmanager_numRegisteredTaskManagers", &[]), 2.0);
    assert_eq!(common::prometheus_sum(&metrics, "brisk_jobmanager_taskSlotsAvailable", &[]), 0.0);
    // Workers report their tasks' counters to the coordinator every second.
    wait_until("records counted in the merged metrics", || {
        common::prometheus_sum(&scrape(), "brisk_taskmanager_job_task_numRecordsIn", &[("job_id", &job_id)]) > 0.0
    });

    // A savepoint through the JobManager (under its savepoint directory), taken by the job's
    // coordinator; a target elsewhere is refused.
    let outside = serde_json::json!({ "target-directory": cluster.dir.to_str().unwrap() }).to_string();
    let headers = [("Content-Type", "application/json")];
    let refused = common::http(&rest, "POST", &format!("/jobs/{job_id}/savepoints"), &headers, outside.as_bytes());
    assert_eq!(refused.0, 400, "{}", refused.1);
    let target = serde_json::json!({ "target-directory": savepoints.join("rest").to_str().unwrap() });
    let path = format!("/jobs/{job_id}/savepoints");
    let (status, body) = common::http(&rest, "POST", &path, &headers, target.to_string().as_bytes());
    assert_eq!(status, 200, "{body}");
    let trigger = serde_json::from_str::<serde_json::Value>(&body).unwrap()["request-id"].as_str().unwrap().to_string();
    let mut done = serde_json::Value::Null;
    wait_until("the savepoint", || {
        done = get(&format!("/jobs/{job_id}/savepoints/{trigger}"));
        done["status"]["id"] == "COMPLETED"
    });
    let location = done["operation"]["location"].as_str().unwrap_or_else(|| panic!("{done}"));
    assert!(Path::new(location).join("_metadata").is_file(), "{location}");

    // Every reading operation of the OpenAPI document answers (the JobManager serves all).
    let document = get("/openapi.json");
    for (path, operations) in document["paths"].as_object().unwrap() {
        // Queryable state needs a key of the job's: the word count below asks it.
        if operations.get("get").is_some() && !path.contains("/state/") {
            let path = path
                .replace("{jobid}", &job_id)
                .replace("{vertexid}", window.as_str().unwrap())
                .replace("{tmid}", &first)
                .replace("{triggerid}", &trigger);
            let (status, body) = common::http(&rest, "GET", &path, &[], b"");
            assert_eq!(status, 200, "GET {path}: {body}");
        }
    }

    let (status, body) = common::http(&rest, "PATCH", &format!("/jobs/{job_id}?mode=cancel"), &[], b"");
    assert_eq!(status, 202, "{body}");
    wait_until("the job to be cancelled", || cluster.state(&job_id).as_deref() == Some("CANCELED"));
    // An ended job's answers as its coordinator left them when the job ended.
    let ended = get(&format!("/jobs/{job_id}"));
    assert_eq!(ended["state"], "CANCELED", "{ended}");
    assert_eq!(ended["vertices"].as_array().map(Vec::len), Some(vertices.len()), "{ended}");
    let kept = get(&format!("/jobs/{job_id}/checkpoints"));
    assert!(kept["counts"]["completed"].as_u64() > Some(0), "{kept}");
    assert_eq!(kept["latest"]["savepoint"]["external_path"], location, "{kept}");
    let ended_vertex = get(&format!("/jobs/{job_id}/vertices/{}", window.as_str().unwrap()));
    assert_eq!(ended_vertex["subtasks"].as_array().unwrap().len(), 2);
    let not_kept = common::http(&rest, "GET", &format!("/jobs/{job_id}/state/reduce?key=x"), &[], b"");
    assert_eq!(not_kept.0, 404, "{}", not_kept.1);
    assert_eq!(common::http(&rest, "GET", "/jobs/0123456789abcdef0123456789abcdef", &[], b"").0, 404);

    // An artifact uploaded and run over REST, as Flink's clients do with jars.
    let (content_type, form) = jar_form(&example_path("word_count"));
    let (status, body) = common::http(&rest, "POST", "/jars/upload", &[("Content-Type", &content_type)], &form);
    assert_eq!(status, 200, "{body}");
    let uploaded: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(uploaded["status"], "success");
    let jar_id = uploaded["filename"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    assert!(get("/jars")["files"].as_array().unwrap().iter().any(|f| f["id"] == jar_id.as_str()));
    let out = cluster.dir.join("rest-word-count");
    // Throttled, so that its state can be queried while it runs.
    let run = serde_json::json!({
        "programArgsList": ["--output", out.to_str().unwrap(), "--source-rate", "5"],
        "parallelism": 2,
    });
    let (status, body) =
        common::http(&rest, "POST", &format!("/jars/{jar_id}/run"), &headers, run.to_string().as_bytes());
    assert_eq!(status, 200, "{body}");
    let run_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["jobid"].as_str().unwrap().to_string();
    // Queryable state of tasks in worker processes, through the JobManager and the coordinator.
    let query = format!("/jobs/{run_id}/state/reduce?key=the");
    let mut counted = serde_json::Value::Null;
    wait_until("the running count of 'the'", || {
        let (status, body) = common::http(&rest, "GET", &query, &[], b"");
        counted = serde_json::from_str(&body).unwrap_or_default();
        status == 200
    });
    assert_eq!(counted["value"][0], "the", "{counted}");
    let running_count = counted["value"][1].as_u64().unwrap_or_else(|| panic!("{counted}"));
    wait_until("the uploaded job to finish", || cluster.state(&run_id).as_deref() == Some("FINISHED"));
    let local = cluster.dir.join("local");
    let ran = example("word_count").args(["--parallelism", "2", "--output", local.to_str().unwrap()]).output().unwrap();
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert!(read_sorted_lines(&out) == read_sorted_lines(&local), "the uploaded job's output differs");
    // The output has every running count: the final one is the largest.
    let final_count: u64 = read_sorted_lines(&local)
        .iter()
        .filter_map(|line| line.strip_prefix("the,").and_then(|n| n.parse().ok()))
        .max()
        .expect("a count of 'the'");
    assert!((1..=final_count).contains(&running_count), "{running_count} of {final_count}");
    let bad = common::http(&rest, "POST", "/jars/nope_x/run", &headers, b"{}");
    assert_eq!(bad.0, 404, "{}", bad.1);
    let sneaky = common::http(&rest, "POST", "/jars/..%2Fjobs/run", &headers, b"{}");
    assert!(sneaky.0 == 400 || sneaky.0 == 404, "{}", sneaky.1);
    assert_eq!(common::http(&rest, "DELETE", &format!("/jars/{jar_id}"), &[], b"").0, 200);
}

#[test]
fn the_jobmanagers_rest_api_refuses_uploads_without_the_token_or_over_the_limit() {
    let port = free_port();
    let _jobmanager = jobmanager_with(port, &["rest.server.max-content-length=4096", "rest.security.token=t0ken"]);
    let rest = status(port)["jobmanager"]["rest-address"].as_str().expect("a REST address").to_string();
    let small = std::env::temp_dir().join(format!("brisk-small-artifact-{}", std::process::id()));
    std::fs::write(&small, b"#!/bin/sh\n").unwrap();
    let (content_type, form) = jar_form(&small);
    let bearer = [("Content-Type", content_type.as_str()), ("Authorization", "Bearer t0ken")];
    let (status, body) = common::http(&rest, "POST", "/jars/upload", &bearer, &form);
    assert_eq!(status, 200, "{body}");
    // No token, or a wrong one: refused before the body is read.
    let anonymous = [("Content-Type", content_type.as_str())];
    let (status, body) = common::http(&rest, "POST", "/jars/upload", &anonymous, &form);
    assert_eq!(status, 401, "{body}");
    let wrong = [("Content-Type", content_type.as_str()), ("Authorization", "Bearer guess")];
    assert_eq!(common::http(&rest, "POST", "/jars/upload", &wrong, &form).0, 401);
    // Over rest.server.max-content-length.
    std::fs::write(&small, vec![b'x'; 8192]).unwrap();
    let (content_type, big) = jar_form(&small);
    let bearer = [("Content-Type", content_type.as_str()), ("Authorization", "Bearer t0ken")];
    let (status, body) = common::http(&rest, "POST", "/jars/upload", &bearer, &big);
    assert_eq!(status, 413, "{body}");
    // Garbage instead of a form, and reading needs no token.
    let garbage = common::http(&rest, "POST", "/jars/upload", &[("Authorization", "Bearer t0ken")], b"\x00\x01garbage");
    assert_eq!(garbage.0, 400, "{}", garbage.1);
    assert_eq!(common::http(&rest, "GET", "/overview", &[], b"").0, 200);
    let _ = std::fs::remove_file(&small);
}
