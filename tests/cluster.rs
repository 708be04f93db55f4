//! The standalone cluster as real processes on 127.0.0.1: `brisk jobmanager` and
//! `brisk taskmanager` register and heartbeat; a TaskManager killed with `kill -9` is lost
//! within `heartbeat.timeout`; a JobManager killed and started again gets its TaskManagers
//! back; `brisk cluster start|stop` manage both in the background; bad addresses and ports
//! are clear errors.

mod common;

use common::{brisk, temp_dir, wait_until};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
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
    let mut child = brisk()
        .args(["jobmanager", "--rpc-port", &port.to_string()])
        .args([
            "-D",
            "jobmanager.rpc.address=127.0.0.1",
            "-D",
            "heartbeat.interval=200ms",
            "-D",
            "heartbeat.timeout=2s",
        ])
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
fn taskmanagers(status: &serde_json::Value) -> Vec<(u64, u64)> {
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
    wait_until("both TaskManagers registered", || taskmanagers(&status(port)) == expected);
    let overview = status(port);
    assert_eq!((overview["slots-total"].as_u64(), overview["slots-available"].as_u64()), (Some(3), Some(3)));

    a.kill9();
    let killed = Instant::now();
    wait_until("the killed TaskManager to be lost", || taskmanagers(&status(port)) == vec![(pid_b, 2)]);
    // Detected by its broken connection or, at the latest, by the 2 s heartbeat timeout.
    assert!(killed.elapsed() < Duration::from_secs(2) + Duration::from_millis(1500), "took {:?}", killed.elapsed());
}

#[test]
fn taskmanagers_register_again_with_a_jobmanager_killed_and_started_again() {
    let port = free_port();
    let mut jm = jobmanager(port);
    let tm = taskmanager(port, 2);
    let pid = tm.0.id() as u64;
    wait_until("registration", || taskmanagers(&status(port)) == vec![(pid, 2)]);
    let first = status(port)["jobmanager"]["id"].clone();
    jm.kill9();
    let _jm = jobmanager(port);
    wait_until("registration with the new JobManager", || {
        let now = status(port);
        now["jobmanager"]["id"] != first && taskmanagers(&now) == vec![(pid, 2)]
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
            "jobmanager:\n  rpc:\n    address: 127.0.0.1\n    port: {port}\ntaskmanager:\n  numberOfTaskSlots: 2\nheartbeat.interval: 200ms\n"
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
    assert_eq!(taskmanagers(&overview).iter().map(|t| t.0).collect::<Vec<_>>(), tm_pids);

    let again = run(&["cluster", "start", "--config-dir", conf_arg, "--log-dir", log_arg]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("a cluster is already running"), "{}", stderr(&again));

    drop(stop);
    for pid in pids {
        assert!(!Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid), "process {pid} still runs");
    }
    assert!(!log.join("brisk-jobmanager.pid").exists(), "pid files are removed");
    let stopped = run(&["cluster", "stop", "--log-dir", log_arg]);
    assert!(!stopped.status.success());
    assert!(stderr(&stopped).contains("no cluster to stop"), "{}", stderr(&stopped));
}

fn is_zombie(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
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
