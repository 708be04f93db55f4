//! The REST API and Prometheus endpoint of a local job (`rest.port`), over real HTTP: every
//! endpoint against a running job, figures cross-checked with the job's own result, and bad
//! requests answered with 4xx JSON errors.

mod common;

use brisk::prelude::*;
use brisk::runtime::JobError;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const RECORDS: i64 = 20_000;

/// Set to let the first test's job run at full speed.
static RELEASE: AtomicBool = AtomicBool::new(false);
/// Never set: the cancelled job stays slow.
static NEVER: AtomicBool = AtomicBool::new(false);

/// The directory the jobs checkpoint into and take savepoints under (the server's roots: the
/// tests of this file share one server, configured by whichever job starts first).
fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| common::temp_dir("rest"))
}

/// A job of `RECORDS` numbers summed per key, held at about 1,000 records per second per
/// subtask until `release` is set, with checkpoints every 100 ms.
fn start_job(name: &str, release: &'static AtomicBool) -> JobClient {
    let mut config = Configuration::new();
    config.set("parallelism.default", 2);
    config.set("rest.port", 0);
    config.set("execution.checkpointing.interval", "100 ms");
    config.set("execution.checkpointing.dir", root().join(name).display());
    config.set("execution.checkpointing.savepoint-dir", root().join("savepoints").display());
    config.set("rest.security.token", TOKEN);
    config.set("rest.server.max-content-length", 1 << 20);
    config.set("web.checkpoints.history", HISTORY);
    let env = StreamExecutionEnvironment::from_configuration(&config).unwrap();
    env.from_sequence(1, RECORDS)
        .map(|x: i64| {
            if !release.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
            }
            x
        })
        .key_by(|x: &i64| x % 10)
        .reduce(|a: i64, b: i64| a.min(b))
        .add_sink(DiscardingSink);
    env.execute_async(name).unwrap()
}

/// Checkpoints whose details the jobs keep.
const HISTORY: usize = 3;

/// The token mutating requests carry.
const TOKEN: &str = "s3cret";

/// One HTTP/1.1 request to the local REST server, with the token; the status and the body.
fn http(method: &str, path: &str, body: &str) -> (u16, String) {
    http_as(method, path, body, Some(TOKEN))
}

/// [`http`] with `token` (or none).
fn http_as(method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let address = brisk::rest::LOCAL_REST_ADDRESS.get().expect("the REST server started").to_string();
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer));
    }
    common::http(&address, method, path, &headers, body.as_bytes())
}

/// A request whose answer must be `status` with a JSON body.
fn json(method: &str, path: &str, body: &str, status: u16) -> Value {
    let (got, text) = http(method, path, body);
    assert_eq!(got, status, "{method} {path}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path} answered no JSON ({e}): {text}"))
}

fn get(path: &str) -> Value {
    json("GET", path, "", 200)
}

/// The value of Prometheus sample `name` of job `job_id` (and `label`), summed over the rest.
fn prometheus_sum(name: &str, job_id: &str, label: Option<(&str, &str)>) -> f64 {
    let (status, text) = http("GET", "/metrics", "");
    assert_eq!(status, 200);
    let mut labels = vec![("job_id", job_id)];
    labels.extend(label);
    common::prometheus_sum(&text, name, &labels)
}

#[test]
fn a_local_job_serves_flinks_rest_api_with_figures_that_match_its_result() {
    let client = start_job("served", &RELEASE);
    let id = client.job_id().to_string();

    let overview = get("/overview");
    assert!(overview["jobs-running"].as_u64().unwrap() >= 1, "{overview}");
    assert!(overview["flink-version"].as_str().unwrap().starts_with("Brisk"));
    assert!(get("/config")["refresh-interval"].is_number());
    assert!(get("/taskmanagers")["taskmanagers"].as_array().is_some_and(|t| !t.is_empty()));
    let jobs = get("/jobs");
    assert!(
        jobs["jobs"].as_array().unwrap().iter().any(|j| j["id"] == id.as_str() && j["status"] == "RUNNING"),
        "{jobs}"
    );
    let listed = get("/jobs/overview");
    let entry = listed["jobs"].as_array().unwrap().iter().find(|j| j["jid"] == id.as_str()).expect("listed").clone();
    assert_eq!((entry["name"].as_str(), entry["state"].as_str()), (Some("served"), Some("RUNNING")));
    assert_eq!(entry["end-time"], -1);

    // Each subtask reports its own state: deploying until its operators opened.
    common::wait_until("every subtask running", || {
        get(&format!("/jobs/{id}"))["status-counts"]["RUNNING"].as_u64() == Some(2)
    });
    let details = get(&format!("/jobs/{id}"));
    let vertices = details["vertices"].as_array().unwrap().clone();
    let names: Vec<&str> = vertices.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, client.job_graph().vertices.iter().map(|v| v.name.as_str()).collect::<Vec<_>>());
    assert!(vertices.iter().all(|v| v["parallelism"] == 2 && v["status"] == "RUNNING"), "{vertices:?}");
    assert!(vertices.iter().all(|v| v["tasks"]["RUNNING"] == 2 && v["tasks"]["DEPLOYING"] == 0), "{vertices:?}");
    let keyed = vertices[1]["id"].as_str().unwrap().to_string();
    let plan = get(&format!("/jobs/{id}/plan"));
    let nodes = plan["plan"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), vertices.len());
    assert_eq!(nodes[1]["inputs"][0]["id"], vertices[0]["id"]);
    assert_eq!(nodes[1]["inputs"][0]["ship_strategy"], "HASH");

    // Records flow: the keyed vertex's subtasks count them, and its input watermark is there.
    common::wait_until("records at the keyed vertex", || {
        get(&format!("/jobs/{id}/vertices/{keyed}"))["subtasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["metrics"]["read-records"].as_u64().unwrap() > 0)
    });
    let vertex = get(&format!("/jobs/{id}/vertices/{keyed}"));
    assert_eq!(vertex["subtasks"].as_array().unwrap().len(), 2);
    let backpressure = get(&format!("/jobs/{id}/vertices/{keyed}/backpressure"));
    assert_eq!(backpressure["status"], "ok");
    assert_eq!(backpressure["subtasks"].as_array().unwrap().len(), 2);
    assert!(["ok", "low", "high"].contains(&backpressure["backpressureLevel"].as_str().unwrap()));
    let watermarks = get(&format!("/jobs/{id}/vertices/{keyed}/watermarks"));
    let ids: Vec<&str> = watermarks.as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["0.currentInputWatermark", "1.currentInputWatermark"]);
    let config = get(&format!("/jobs/{id}/checkpoints/config"));
    assert_eq!((config["mode"].as_str(), config["interval"].as_u64()), (Some("exactly_once"), Some(100)));
    assert_eq!(config["externalization"]["delete_on_cancellation"], true);
    assert_eq!(get(&format!("/jobs/{id}/exceptions"))["exceptionHistory"]["entries"], Value::Array(vec![]));

    // A savepoint over REST, polled through its trigger id.
    let trigger =
        json("POST", &format!("/jobs/{id}/savepoints"), "{}", 200)["request-id"].as_str().unwrap().to_string();
    let mut status = Value::Null;
    common::wait_until("the savepoint", || {
        status = get(&format!("/jobs/{id}/savepoints/{trigger}"));
        status["status"]["id"] == "COMPLETED"
    });
    let location = status["operation"]["location"].as_str().unwrap_or_else(|| panic!("{status}"));
    assert!(location.starts_with(&root().join("savepoints").display().to_string()), "{location}");
    assert!(PathBuf::from(location).join("_metadata").is_file(), "{location}");
    let checkpoints = get(&format!("/jobs/{id}/checkpoints"));
    assert_eq!(checkpoints["latest"]["savepoint"]["external_path"], location, "{checkpoints}");
    assert!(prometheus_sum("brisk_taskmanager_job_task_numRecordsIn", &id, Some(("subtask_index", "1"))) > 0.0);

    // Queryable state: each key's smallest number, once the key was seen.
    common::wait_until("key 3's value", || {
        let (status, body) = http("GET", &format!("/jobs/{id}/state/reduce?key=3"), "");
        status == 200 && serde_json::from_str::<Value>(&body).unwrap()["value"] == 3
    });

    // Every reading operation the OpenAPI document lists for a local job's server answers.
    let document = get("/openapi.json");
    assert_eq!(document["openapi"], "3.0.3");
    let mut checked = 0;
    for (path, operations) in document["paths"].as_object().unwrap() {
        let Some(read) = operations.get("get") else { continue };
        if read["tags"][0] == "cluster" {
            continue;
        }
        let path = path
            .replace("{jobid}", &id)
            .replace("{vertexid}", &keyed)
            .replace("{triggerid}", &trigger)
            .replace("{name}", "reduce?key=3");
        let (status, body) = http("GET", &path, "");
        assert_eq!(status, 200, "GET {path}: {body}");
        checked += 1;
    }
    assert_eq!(checked, 18, "the reading operations of a local job's server");

    common::wait_until("more checkpoints than the history keeps", || {
        client.controller().checkpoint_stats().total() > HISTORY as u64
    });
    RELEASE.store(true, Ordering::Relaxed);
    while !client.is_finished() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let controller = client.controller();
    let result = client.wait().unwrap();

    // After the end: the figures are final and agree with the job's result.
    let details = get(&format!("/jobs/{id}"));
    assert_eq!(details["state"], "FINISHED");
    assert!(details["end-time"].as_i64().unwrap() >= details["start-time"].as_i64().unwrap());
    let read: Vec<u64> = details["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["metrics"]["read-records"].as_u64().unwrap())
        .collect();
    assert_eq!(read, vec![RECORDS as u64; 2], "each vertex read every number once");
    assert_eq!(details["vertices"][1]["metrics"]["read-records-complete"], true);
    assert_eq!(details["status-counts"]["FINISHED"], 2, "{details}");
    let subtasks = get(&format!("/jobs/{id}/vertices/{keyed}"))["subtasks"].clone();
    assert!(subtasks.as_array().unwrap().iter().all(|s| s["status"] == "FINISHED"), "{subtasks}");
    // Counts cover every checkpoint; the history holds the latest, newest first.
    let stats = &result.checkpoints;
    assert!(stats.total() > HISTORY as u64);
    let checkpoints = get(&format!("/jobs/{id}/checkpoints"));
    assert_eq!(checkpoints["counts"]["completed"].as_u64(), Some(stats.completed), "{checkpoints}");
    assert_eq!(checkpoints["counts"]["failed"].as_u64(), Some(stats.failed), "{checkpoints}");
    assert_eq!(checkpoints["counts"]["total"].as_u64(), Some(stats.total()));
    let ids: Vec<u64> = checkpoints["history"].as_array().unwrap().iter().map(|c| c["id"].as_u64().unwrap()).collect();
    let newest: Vec<u64> = stats.history().rev().map(|c| c.id).collect();
    assert_eq!((ids.len(), &ids), (HISTORY, &newest));
    assert_eq!(controller.checkpoint_stats().total(), stats.total());
    let in_records = prometheus_sum("brisk_taskmanager_job_task_numRecordsIn", &id, Some(("task_id", &keyed)));
    assert_eq!(in_records, RECORDS as f64);
    let checkpoint_count = prometheus_sum("brisk_jobmanager_job_numberOfCompletedCheckpoints", &id, None);
    assert_eq!(checkpoint_count, stats.completed as f64);
    assert_eq!(prometheus_sum("brisk_jobmanager_job_numRestarts", &id, None), 0.0);
}

#[test]
fn bad_requests_get_4xx_json_errors_and_a_cancel_ends_the_job() {
    let client = start_job("cancelled", &NEVER);
    let id = client.job_id().to_string();
    let errors = |method: &str, path: &str, body: &str, status: u16| {
        let answer = json(method, path, body, status);
        answer["errors"][0].as_str().unwrap_or_else(|| panic!("{answer}")).to_string()
    };
    assert!(errors("GET", "/jobs/0123456789abcdef", "", 404).contains("0123456789abcdef"));
    assert!(errors("GET", &format!("/jobs/{id}/vertices/nope"), "", 404).contains("nope"));
    assert!(errors("GET", "/no/such/path", "", 404).contains("/no/such/path"));
    errors("DELETE", &format!("/jobs/{id}"), "", 405);
    assert!(errors("POST", &format!("/jobs/{id}/savepoints"), "{not json", 400).contains("invalid"));
    let outside = r#"{"target-directory": "/etc"}"#;
    assert!(errors("POST", &format!("/jobs/{id}/savepoints"), outside, 400).contains("not under"));
    let sneaky = format!(r#"{{"target-directory": "{}/savepoints/../../x"}}"#, root().display());
    assert!(errors("POST", &format!("/jobs/{id}/savepoints"), &sneaky, 400).contains(".."));
    errors("GET", &format!("/jobs/{id}/savepoints/0000"), "", 404);
    assert!(errors("PATCH", &format!("/jobs/{id}?mode=explode"), "", 400).contains("explode"));
    let huge = format!(r#"{{"target-directory": "{}"}}"#, "x".repeat(2 << 20));
    errors("POST", &format!("/jobs/{id}/savepoints"), &huge, 413);
    // Changing requests need the token; reading ones do not.
    let (status, body) = http_as("PATCH", &format!("/jobs/{id}"), "", None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("rest.security.token"), "{body}");
    assert_eq!(http_as("PATCH", &format!("/jobs/{id}"), "", Some("wrong")).0, 401);
    assert_eq!(http_as("GET", &format!("/jobs/{id}"), "", None).0, 200);

    // Queryable state over HTTP agrees with the typed query.
    common::wait_until("key 7's value", || http("GET", &format!("/jobs/{id}/state/reduce?key=7"), "").0 == 200);
    let answer = get(&format!("/jobs/{id}/state/reduce?key=7"));
    assert_eq!((answer["key"].as_str(), answer["value"].as_i64()), (Some("7"), Some(7)));
    assert_eq!(client.query_state::<i64, i64>("reduce", &7).unwrap(), Some(7), "the typed query agrees");
    assert!(errors("GET", &format!("/jobs/{id}/state/reduce?key=12345"), "", 404).contains("12345"));
    assert!(errors("GET", &format!("/jobs/{id}/state/no-such-state?key=3"), "", 404).contains("no-such-state"));
    assert!(errors("GET", &format!("/jobs/{id}/state/reduce?key=abc"), "", 400).contains("abc"));
    assert!(errors("GET", &format!("/jobs/{id}/state/reduce"), "", 400).contains("key"));

    let (status, body) = http("PATCH", &format!("/jobs/{id}?mode=cancel"), "");
    assert_eq!(status, 202, "{body}");
    assert!(matches!(client.wait(), Err(JobError::Cancelled(_))));
    assert_eq!(get(&format!("/jobs/{id}"))["state"], "CANCELED");
    assert!(errors("PATCH", &format!("/jobs/{id}"), "", 409).contains("already ended"));
}
