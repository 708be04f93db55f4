//! The JobManager and TaskManagers in one process, over real sockets on 127.0.0.1.

use crate::{ClusterConfig, ClusterError, JobManager, TaskManager};
use brisk_core::Configuration;
use brisk_rpc::{ClusterOverview, Request, Response, Role, RpcConnection, TaskManagerRegistration};
use std::net::TcpListener;
use std::time::{Duration, Instant};

fn config(port: u16, extra: &[(&str, &str)]) -> ClusterConfig {
    let mut config = Configuration::new();
    config.set("jobmanager.rpc.address", "127.0.0.1");
    config.set("jobmanager.rpc.port", port);
    config.set("heartbeat.interval", "50 ms");
    config.set("heartbeat.timeout", "500 ms");
    config.set("rest.port", 0);
    for (k, v) in extra {
        config.set(*k, v);
    }
    ClusterConfig::from_configuration(&config).unwrap()
}

fn overview(addr: &str) -> ClusterOverview {
    let client = RpcConnection::connect(addr, Role::Client, no_requests, Duration::from_secs(5)).unwrap();
    match client.call(Request::ClusterOverview, Duration::from_secs(5)).unwrap() {
        Response::Overview(o) => o,
        other => panic!("unexpected {other:?}"),
    }
}

fn no_requests(_: &RpcConnection, request: Request) -> Response {
    Response::Error(format!("unexpected {request:?}"))
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn start_taskmanager(
    config: ClusterConfig,
    jobmanager: String,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicBool>, std::thread::JoinHandle<Result<(), ClusterError>>) {
    let tm = TaskManager::new(config, jobmanager).unwrap();
    let (id, stop) = (tm.resource_id().to_string(), tm.stop_flag());
    (id, stop, std::thread::spawn(move || tm.run()))
}

#[test]
fn taskmanagers_register_their_slots_and_leave_when_stopped() {
    let jm = JobManager::start(config(0, &[])).unwrap();
    let addr = jm.local_addr().to_string();
    let (a, stop_a, run_a) = start_taskmanager(config(0, &[("taskmanager.numberOfTaskSlots", "2")]), addr.clone());
    let (b, _stop_b, _run_b) = start_taskmanager(config(0, &[("taskmanager.numberOfTaskSlots", "3")]), addr.clone());
    wait_for("two TaskManagers", Duration::from_secs(10), || jm.overview().taskmanagers.len() == 2);
    let seen = overview(&addr);
    assert_eq!((seen.slots_total(), seen.slots_available()), (5, 5));
    let mut ids: Vec<String> = seen.taskmanagers.iter().map(|t| t.resource_id.clone()).collect();
    ids.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    // Heartbeats keep coming.
    std::thread::sleep(Duration::from_millis(300));
    assert!(jm.overview().taskmanagers.iter().all(|t| t.last_heartbeat_ms_ago < 300), "{:?}", jm.overview());
    stop_a.store(true, std::sync::atomic::Ordering::Release);
    run_a.join().unwrap().unwrap();
    wait_for("the stopped TaskManager to be lost", Duration::from_secs(5), || {
        jm.overview().taskmanagers.iter().map(|t| t.resource_id.clone()).collect::<Vec<_>>() == vec![b.clone()]
    });
}

#[test]
fn a_taskmanager_that_stops_answering_is_lost_after_the_heartbeat_timeout() {
    let jm = JobManager::start(config(0, &[])).unwrap();
    let addr = jm.local_addr().to_string();
    // Registers, then answers heartbeats far too late (a hung process).
    let silent = RpcConnection::connect(
        &addr,
        Role::TaskManager,
        |_: &RpcConnection, _| {
            std::thread::sleep(Duration::from_secs(3));
            Response::Error("late".into())
        },
        Duration::from_secs(5),
    )
    .unwrap();
    let registration =
        TaskManagerRegistration { resource_id: "hung".into(), host: "localhost".into(), pid: 1, slots: 1 };
    let answer = silent.call(Request::RegisterTaskManager(registration), Duration::from_secs(5)).unwrap();
    assert!(matches!(answer, Response::Registered(ref ack) if ack.heartbeat_timeout_ms == 500), "{answer:?}");
    let registered = Instant::now();
    assert_eq!(jm.overview().taskmanagers.len(), 1);
    wait_for("the hung TaskManager to be lost", Duration::from_secs(5), || jm.overview().taskmanagers.is_empty());
    let took = registered.elapsed();
    assert!(took >= Duration::from_millis(500), "lost only after the timeout, not after {took:?}");
}

#[test]
fn a_taskmanager_registers_again_with_a_restarted_jobmanager() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut jm = JobManager::start(config(port, &[])).unwrap();
    let addr = jm.local_addr().to_string();
    let (id, _stop, _run) = start_taskmanager(config(0, &[]), addr.clone());
    wait_for("registration", Duration::from_secs(10), || jm.overview().taskmanagers.len() == 1);
    let first = jm.overview().jobmanager_id;
    jm.shutdown();
    drop(jm);
    let jm = JobManager::start(config(port, &[])).unwrap();
    assert_ne!(jm.overview().jobmanager_id, first);
    wait_for("registration with the new JobManager", Duration::from_secs(10), || {
        jm.overview().taskmanagers.iter().any(|t| t.resource_id == id)
    });
}

#[test]
fn an_unreachable_jobmanager_is_an_error_naming_its_address_after_retries() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let tm = TaskManager::new(config(0, &[("taskmanager.registration.timeout", "600 ms")]), addr.clone()).unwrap();
    let started = Instant::now();
    let error = tm.run().unwrap_err();
    assert!(matches!(error, ClusterError::Unreachable { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains(&addr) && message.contains("taskmanager.registration.timeout"), "{message}");
    assert!(started.elapsed() >= Duration::from_millis(600));
}

#[test]
fn a_port_in_use_is_an_error_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let error = JobManager::start(config(port, &[])).err().expect("the port is taken");
    let message = error.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port}")) && message.contains("jobmanager.rpc.port"), "{message}");
}

#[test]
fn a_taskmanager_must_offer_slots_and_clients_cannot_register() {
    let jm = JobManager::start(config(0, &[])).unwrap();
    let addr = jm.local_addr().to_string();
    let client = RpcConnection::connect(&addr, Role::Client, no_requests, Duration::from_secs(5)).unwrap();
    let registration = TaskManagerRegistration { resource_id: "x".into(), host: "h".into(), pid: 1, slots: 1 };
    let refused = client.call(Request::RegisterTaskManager(registration.clone()), Duration::from_secs(5));
    assert!(refused.is_err_and(|e| e.to_string().contains("does not serve")));
    let tm = RpcConnection::connect(&addr, Role::TaskManager, no_requests, Duration::from_secs(5)).unwrap();
    let refused = tm.call(
        Request::RegisterTaskManager(TaskManagerRegistration { slots: 0, ..registration }),
        Duration::from_secs(5),
    );
    assert!(refused.is_err_and(|e| e.to_string().contains("at least one slot")));
    assert!(jm.overview().taskmanagers.is_empty());
}

#[test]
fn the_rest_api_stops_with_its_jobmanager() {
    let mut jm = JobManager::start(config(0, &[])).unwrap();
    let rest = jm.rest_address().expect("a REST address");
    assert!(std::net::TcpStream::connect(rest).is_ok());
    jm.shutdown();
    wait_for("the REST port to close", Duration::from_secs(10), || std::net::TcpStream::connect(rest).is_err());
    let off = JobManager::start(config(0, &[("rest.port", "-1")])).unwrap();
    assert_eq!(off.rest_address(), None, "rest.port: -1 serves no REST API");
    assert_eq!(off.overview().rest_address, None);
}
