//! The JobManager's REST server: cluster endpoints answered from the JobManager's state,
//! artifacts uploaded and run (Flink's `/jars`), and `/jobs/:id/...` forwarded to the job's
//! coordinator process, which holds the running job.

use crate::api::{
    SavepointRequest, StopRequest, body, check_cancel_mode, check_under_roots, config_json, execution_state, job_entry,
    method_not_allowed, overview_json, savepoint_target, unknown,
};
use crate::forward::{error_answer, json_answer};
use crate::prometheus::{CONTENT_TYPE, Exposition};
use crate::server::{ApiError, RestSettings, RestShutdown, secured, serve};
use crate::triggers::Triggers;
use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use brisk_rpc::{ClusterOverview, JobInfo, JobState, RestAnswer, RestCall};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The configuration key of the snapshot a job starts from.
const SAVEPOINT_PATH: &str = "execution.savepoint.path";

/// What the JobManager offers its REST server.
pub trait ClusterView: Send + Sync + 'static {
    /// The TaskManagers and their slots.
    fn overview(&self) -> ClusterOverview;
    /// Every job, newest first.
    fn jobs(&self) -> Vec<JobInfo>;
    /// Passes `call` to the coordinator of job `job_id`, waiting up to `timeout` for the
    /// answer; an error when none runs it now.
    fn forward(&self, job_id: &str, call: RestCall, timeout: Duration) -> Result<RestAnswer, String>;
    /// The answer to GET `path` that ended job `job_id` left (its coordinator sent its REST
    /// answers when the job ended).
    fn archived(&self, job_id: &str, path: &str) -> Option<String>;
    /// Cancels job `job_id`.
    fn cancel(&self, job_id: &str) -> Result<(), CancelError>;
    /// Takes a savepoint of job `job_id` into a new directory inside `directory` (and with
    /// `stop`, stops the job after it, draining event time when `Some(true)`); waits for it
    /// and returns its location.
    fn savepoint(&self, job_id: &str, directory: String, stop: Option<bool>) -> Result<String, String>;
    /// Submits the artifact at `artifact` (copied, the file stays) as a job with `args` and
    /// `config` (key, value); returns its id.
    fn submit(
        &self,
        artifact: &FsPath,
        name: &str,
        args: Vec<String>,
        config: Vec<(String, String)>,
    ) -> Result<String, String>;
}

/// Why a job could not be cancelled.
#[derive(Debug)]
pub enum CancelError {
    /// No such job.
    Unknown(String),
    /// It has already ended.
    Ended(String),
    /// Its coordinator could not be reached.
    Unreachable(String),
}

impl std::fmt::Display for CancelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CancelError::Unknown(m) | CancelError::Ended(m) | CancelError::Unreachable(m) => f.write_str(m),
        }
    }
}

/// How long a forwarded request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long each job's metrics may take in a scrape (Prometheus scrapes time out at 10 s).
const METRICS_TIMEOUT: Duration = Duration::from_secs(3);

struct ClusterState {
    cluster: Arc<dyn ClusterView>,
    settings: RestSettings,
    /// Where uploaded artifacts are kept (`<id>_<name>`).
    jars: PathBuf,
    /// Savepoints requested here: the JobManager keeps their results, also after the job's
    /// coordinator is gone (a stop ends it).
    triggers: Triggers,
}

type Shared = State<Arc<ClusterState>>;

/// Starts the JobManager's REST server on `host:port`, keeping uploads in `jars`; returns
/// where it listens and how to stop it.
pub fn start_cluster_server(
    host: &str,
    port: u16,
    settings: RestSettings,
    jars: PathBuf,
    cluster: Arc<dyn ClusterView>,
) -> Result<(SocketAddr, RestShutdown), String> {
    std::fs::create_dir_all(&jars)
        .map_err(|e| format!("cannot create the upload directory '{}': {e}", jars.display()))?;
    let state = Arc::new(ClusterState { cluster, settings: settings.clone(), jars, triggers: Triggers::default() });
    // Only artifacts may be large; forwarded requests must fit a control message.
    let upload_limit = DefaultBodyLimit::max(settings.max_content_length);
    let router = Router::new()
        .route("/overview", get(overview))
        .route("/config", get(|| async { Json(config_json(true)) }))
        .route("/taskmanagers", get(taskmanagers))
        .route("/taskmanagers/{tmid}", get(taskmanager))
        .route("/jobs", get(jobs))
        .route("/jobs/overview", get(jobs_overview))
        .route("/jobs/{jobid}", any(job))
        .route("/jobs/{jobid}/savepoints", post(trigger_savepoint))
        .route("/jobs/{jobid}/savepoints/{triggerid}", get(savepoint_status))
        .route("/jobs/{jobid}/stop", post(stop))
        .route("/jobs/{jobid}/{*rest}", any(job))
        .route("/jars", get(list_jars))
        .route("/jars/upload", post(upload).layer(upload_limit))
        .route("/jars/{jarid}", delete(delete_jar))
        .route("/jars/{jarid}/run", post(run))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(crate::openapi::openapi))
        .fallback(unknown)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .merge(crate::web::router());
    serve(host, port, &settings, secured(router, &settings))
}

/// Runs a blocking call (an RPC) off the server's thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the request failed: {e}")))
}

async fn overview(State(state): Shared) -> Result<Json<Value>, ApiError> {
    let cluster = state.cluster.clone();
    let (overview, jobs) = blocking(move || (cluster.overview(), cluster.jobs())).await?;
    let states: Vec<JobState> = jobs.iter().map(|j| j.state).collect();
    let json = overview_json(overview.taskmanagers.len(), overview.slots_total(), overview.slots_available(), &states);
    Ok(Json(json))
}

fn taskmanager_json(t: &brisk_rpc::TaskManagerInfo) -> Value {
    json!({
        "id": t.resource_id,
        "path": t.address,
        "host": t.host,
        "pid": t.pid,
        "dataPort": -1,
        "timeSinceLastHeartbeat": t.last_heartbeat_ms_ago,
        "slotsNumber": t.slots,
        "freeSlots": t.free_slots,
        "memoryUsed": t.memory_used,
        "hardware": { "physicalMemory": t.physical_memory },
    })
}

async fn taskmanagers(State(state): Shared) -> Result<Json<Value>, ApiError> {
    let cluster = state.cluster.clone();
    let overview = blocking(move || cluster.overview()).await?;
    Ok(Json(json!({ "taskmanagers": overview.taskmanagers.iter().map(taskmanager_json).collect::<Vec<_>>() })))
}

async fn taskmanager(State(state): Shared, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let cluster = state.cluster.clone();
    let overview = blocking(move || cluster.overview()).await?;
    let found = overview.taskmanagers.iter().find(|t| t.resource_id == id);
    found.map(|t| Json(taskmanager_json(t))).ok_or_else(|| ApiError::not_found(format!("TaskManager {id} not found")))
}

async fn jobs(State(state): Shared) -> Result<Json<Value>, ApiError> {
    let cluster = state.cluster.clone();
    let jobs = blocking(move || cluster.jobs()).await?;
    let jobs: Vec<Value> = jobs.iter().map(|j| json!({ "id": j.job_id, "status": j.state.to_string() })).collect();
    Ok(Json(json!({ "jobs": jobs })))
}

/// Start, end (-1 while running) and duration of a job the JobManager knows.
fn times(job: &JobInfo) -> (i64, i64, i64) {
    let start = job.start_time_ms as i64;
    let duration = job.duration_ms as i64;
    (start, if job.state.is_terminal() { start + duration } else { -1 }, duration)
}

async fn jobs_overview(State(state): Shared) -> Result<Json<Value>, ApiError> {
    let cluster = state.cluster.clone();
    let jobs = blocking(move || cluster.jobs()).await?;
    // The JobManager knows the jobs' states, not their subtasks': each slot stands for one.
    let jobs: Vec<Value> = jobs
        .iter()
        .map(|j| job_entry(&j.job_id, &j.name, j.state, times(j), &vec![execution_state(j.state); j.slots]))
        .collect();
    Ok(Json(json!({ "jobs": jobs })))
}

/// `/jobs/:id` and everything under it: cancel here, the rest from the job's coordinator; an
/// ended job's answers from its archive; a job that runs no coordinator now (starting, or
/// ended without an archive) gets what the JobManager knows.
async fn job(
    State(state): Shared,
    Path(params): Path<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(job_id) = params.get("jobid").cloned() else { return unknown(uri).await.into_response() };
    let cluster = state.cluster.clone();
    let detail_path = !params.contains_key("rest");
    if method == Method::PATCH && detail_path {
        if let Err(e) = check_cancel_mode(uri.query()) {
            return e.into_response();
        }
        return match blocking(move || cluster.cancel(&job_id)).await {
            Ok(Ok(())) => (StatusCode::ACCEPTED, Json(json!({}))).into_response(),
            Ok(Err(CancelError::Unknown(e))) => ApiError::not_found(e).into_response(),
            Ok(Err(CancelError::Ended(e))) => ApiError::new(StatusCode::CONFLICT, e).into_response(),
            Ok(Err(CancelError::Unreachable(e))) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
            Err(e) => e.into_response(),
        };
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let call = RestCall {
        method: method.to_string(),
        path_and_query: uri.path_and_query().map_or_else(|| uri.path().to_string(), ToString::to_string),
        content_type,
        body: body.to_vec(),
    };
    let answer = blocking(move || {
        let known = cluster.jobs().into_iter().find(|j| j.job_id == job_id);
        let Some(info) = known else { return error_answer(404, &format!("Job {job_id} not found")) };
        if info.state.is_terminal() && method == Method::GET {
            let archived = cluster.archived(&job_id, uri.path()).map(|json| json_answer(200, json.into_bytes()));
            return archived.unwrap_or_else(|| match detail_path {
                true => not_running_details(&info),
                false => {
                    error_answer(404, &format!("job {job_id} has ended ({}): {} is not kept", info.state, uri.path()))
                }
            });
        }
        match cluster.forward(&job_id, call, FORWARD_TIMEOUT) {
            Ok(answer) => answer,
            Err(_) if detail_path && method == Method::GET => not_running_details(&info),
            Err(e) => error_answer(
                if info.state.is_terminal() { 404 } else { 503 },
                &format!("job {job_id} runs no job master now ({}): {e}", info.state),
            ),
        }
    })
    .await;
    match answer {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let content_type = HeaderValue::from_str(&answer.content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/json"));
            (status, [(header::CONTENT_TYPE, content_type)], answer.body).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn trigger_savepoint(
    State(state): Shared,
    Path(job_id): Path<String>,
    request: Result<Json<SavepointRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let request = body(request)?;
    start_savepoint(&state, job_id, request.target_directory, request.cancel_job.then_some(false)).await
}

async fn stop(
    State(state): Shared,
    Path(job_id): Path<String>,
    request: Result<Json<StopRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let request = body(request)?;
    start_savepoint(&state, job_id, request.target_directory, Some(request.drain)).await
}

/// Checks the target against the JobManager's roots and has the job's coordinator take the
/// savepoint; the result stays here under the trigger id.
async fn start_savepoint(
    state: &ClusterState,
    job_id: String,
    target: Option<String>,
    stop: Option<bool>,
) -> Result<Json<Value>, ApiError> {
    let dir = savepoint_target(&state.settings, target)?;
    let cluster = state.cluster.clone();
    let id = job_id.clone();
    let known = blocking(move || cluster.jobs().into_iter().find(|j| j.job_id == id)).await?;
    match known {
        None => return Err(ApiError::not_found(format!("Job {job_id} not found"))),
        Some(job) if job.state != JobState::Running => {
            return Err(ApiError::new(StatusCode::CONFLICT, format!("Job {job_id} is not running ({})", job.state)));
        }
        Some(_) => {}
    }
    let cluster = state.cluster.clone();
    let of = job_id.clone();
    state.triggers.start(&job_id, move || cluster.savepoint(&of, dir.to_string(), stop))
}

async fn savepoint_status(
    State(state): Shared,
    Path((job_id, trigger_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    state.triggers.status(&job_id, &trigger_id)
}

/// `/jobs/:id` of a job whose coordinator does not run: its state and times, no vertices.
fn not_running_details(job: &JobInfo) -> RestAnswer {
    let (start, end, duration) = times(job);
    let body = json!({
        "jid": job.job_id,
        "name": job.name,
        "state": job.state.to_string(),
        "start-time": start,
        "end-time": end,
        "duration": duration,
        "failure": job.failure,
        "vertices": [],
    });
    json_answer(200, body.to_string().into_bytes())
}

/// The uploaded artifacts: (id, name, upload time in epoch ms).
fn stored_jars(dir: &FsPath) -> Vec<(String, String, i64)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut jars: Vec<(String, String, i64)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let id = e.file_name().into_string().ok()?;
            let name = id.split_once('_')?.1.to_string();
            let modified = e.metadata().ok()?.modified().ok()?;
            let ms = modified.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64;
            Some((id, name, ms))
        })
        .collect();
    jars.sort_by_key(|j| std::cmp::Reverse(j.2));
    jars
}

async fn list_jars(State(state): Shared) -> Json<Value> {
    let files: Vec<Value> = stored_jars(&state.jars)
        .into_iter()
        .map(|(id, name, uploaded)| json!({ "id": id, "name": name, "uploaded": uploaded, "entry": [] }))
        .collect();
    Json(json!({ "address": "", "files": files }))
}

/// `POST /jars/upload`: a multipart form with the artifact in field `jarfile`, as Flink's.
async fn upload(State(state): Shared, form: Result<Multipart, MultipartRejection>) -> Result<Json<Value>, ApiError> {
    let mut form = form.map_err(|e| ApiError::bad_request(format!("invalid upload: {}", e.body_text())))?;
    let invalid = |e: &dyn std::fmt::Display| ApiError::bad_request(format!("invalid upload: {e}"));
    while let Some(field) = form.next_field().await.map_err(|e| upload_error(&e))? {
        if field.name() != Some("jarfile") {
            continue;
        }
        let name = brisk_rpc::artifact_file_name(field.file_name().unwrap_or("artifact"));
        let data = field.bytes().await.map_err(|e| upload_error(&e))?;
        if data.is_empty() {
            return Err(invalid(&"the artifact is empty"));
        }
        let path = state.jars.join(format!("{}_{name}", brisk_core::hash::unique_id("upload")));
        let file = path.clone();
        // Off the server's thread: an artifact may be hundreds of megabytes.
        blocking(move || std::fs::write(&file, &data)).await?.map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot store '{}': {e}", path.display()))
        })?;
        return Ok(Json(json!({ "filename": path.display().to_string(), "status": "success" })));
    }
    Err(invalid(&"no field 'jarfile' in the form"))
}

/// A failed multipart read: 413 when the body exceeded the limit, 400 otherwise.
fn upload_error(e: &axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::new(e.status(), format!("invalid upload: {}", e.body_text()))
}

/// The stored artifact `jar_id`, refusing ids that name something else.
fn jar_path(state: &ClusterState, jar_id: &str) -> Result<PathBuf, ApiError> {
    if jar_id.contains('/') || jar_id.contains('\\') || jar_id == "." || jar_id == ".." {
        return Err(ApiError::bad_request(format!("invalid jar id '{jar_id}'")));
    }
    let path = state.jars.join(jar_id);
    if path.is_file() { Ok(path) } else { Err(ApiError::not_found(format!("Jar file {jar_id} does not exist"))) }
}

async fn delete_jar(State(state): Shared, Path(jar_id): Path<String>) -> Result<Json<Value>, ApiError> {
    let path = jar_path(&state, &jar_id)?;
    std::fs::remove_file(&path)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot delete {jar_id}: {e}")))?;
    Ok(Json(json!({})))
}

/// The body of `POST /jars/:id/run`, with Flink's field names.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RunRequest {
    program_args_list: Option<Vec<String>>,
    program_args: Option<String>,
    parallelism: Option<usize>,
    savepoint_path: Option<String>,
    allow_non_restored_state: Option<bool>,
    flink_configuration: Option<HashMap<String, Value>>,
}

async fn run(State(state): Shared, Path(jar_id): Path<String>, request: Bytes) -> Result<Json<Value>, ApiError> {
    // No body at all runs with the defaults; anything else must be the JSON request.
    let request: RunRequest = if request.iter().all(u8::is_ascii_whitespace) {
        RunRequest::default()
    } else {
        serde_json::from_slice(&request).map_err(|e| ApiError::bad_request(format!("Request body is invalid: {e}")))?
    };
    let path = jar_path(&state, &jar_id)?;
    let args = match (request.program_args_list, request.program_args) {
        (Some(list), _) => list,
        (None, Some(text)) => text.split_whitespace().map(str::to_string).collect(),
        (None, None) => Vec::new(),
    };
    let mut config: Vec<(String, String)> = request
        .flink_configuration
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
        .collect();
    // A savepoint to start from, however given, must lie under the configured roots.
    for (_, path) in config.iter().filter(|(k, _)| k == SAVEPOINT_PATH) {
        check_under_roots(&state.settings, path)?;
    }
    if let Some(p) = request.parallelism {
        if p == 0 {
            return Err(ApiError::bad_request("parallelism must be at least 1"));
        }
        config.push(("parallelism.default".into(), p.to_string()));
    }
    if let Some(savepoint) = request.savepoint_path {
        check_under_roots(&state.settings, &savepoint)?;
        config.push((SAVEPOINT_PATH.into(), savepoint));
    }
    if request.allow_non_restored_state == Some(true) {
        config.push(("execution.savepoint.ignore-unclaimed-state".into(), "true".into()));
    }
    let name = jar_id.split_once('_').map_or(jar_id.as_str(), |(_, name)| name).to_string();
    let cluster = state.cluster.clone();
    let submitted = blocking(move || cluster.submit(&path, &name, args, config)).await?;
    let job_id = submitted.map_err(ApiError::bad_request)?;
    Ok(Json(json!({ "jobid": job_id })))
}

/// The JobManager's metrics and those of every running job's coordinator, merged.
async fn metrics(State(state): Shared) -> Result<Response, ApiError> {
    let cluster = state.cluster.clone();
    let text = blocking(move || {
        let overview = cluster.overview();
        let jobs = cluster.jobs();
        let mut exposition = Exposition::default();
        let gauges = [
            ("numRegisteredTaskManagers", "TaskManagers registered.", overview.taskmanagers.len()),
            ("taskSlotsTotal", "Slots of all TaskManagers.", overview.slots_total()),
            ("taskSlotsAvailable", "Slots no job holds.", overview.slots_available()),
            ("numRunningJobs", "Jobs not ended.", jobs.iter().filter(|j| !j.state.is_terminal()).count()),
        ];
        for (name, help, value) in gauges {
            exposition.add(format!("brisk_jobmanager_{name}"), help, "", value as f64);
        }
        // Every job at once: one slow coordinator must not hold up the scrape.
        let texts: Vec<String> = std::thread::scope(|scope| {
            let asks: Vec<_> = jobs
                .iter()
                .filter(|j| j.state == JobState::Running)
                .map(|job| {
                    let cluster = &cluster;
                    scope.spawn(move || {
                        let call = RestCall {
                            method: "GET".into(),
                            path_and_query: "/metrics".into(),
                            content_type: String::new(),
                            body: Vec::new(),
                        };
                        let answer = cluster.forward(&job.job_id, call, METRICS_TIMEOUT).ok()?;
                        (answer.status == 200).then(|| String::from_utf8_lossy(&answer.body).into_owned())
                    })
                })
                .collect();
            asks.into_iter().filter_map(|ask| ask.join().ok().flatten()).collect()
        });
        texts.iter().for_each(|text| exposition.merge(text));
        exposition.render()
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}
