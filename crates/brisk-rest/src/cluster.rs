//! The JobManager's REST server: cluster endpoints answered from the JobManager's state,
//! artifacts uploaded and run (Flink's `/jars`), and `/jobs/:id/...` forwarded to the job's
//! coordinator process, which holds the running job.

use crate::api::{config_json, job_entry, method_not_allowed, overview_json, unknown};
use crate::forward::error_answer;
use crate::prometheus::{CONTENT_TYPE, Exposition};
use crate::server::{ApiError, RestSettings, secured, serve};
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
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

/// What the JobManager offers its REST server.
pub trait ClusterView: Send + Sync + 'static {
    /// The TaskManagers and their slots.
    fn overview(&self) -> ClusterOverview;
    /// Every job, newest first.
    fn jobs(&self) -> Vec<JobInfo>;
    /// Passes `call` to the coordinator of job `job_id`; an error when none runs it now.
    fn forward(&self, job_id: &str, call: RestCall) -> Result<RestAnswer, String>;
    /// Cancels job `job_id`.
    fn cancel(&self, job_id: &str) -> Result<(), String>;
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

struct ClusterState {
    cluster: Arc<dyn ClusterView>,
    settings: RestSettings,
    /// Where uploaded artifacts are kept (`<id>_<name>`).
    jars: PathBuf,
}

type Shared = State<Arc<ClusterState>>;

/// Starts the JobManager's REST server on `host:port`, keeping uploads in `jars`.
pub fn start_cluster_server(
    host: &str,
    port: u16,
    settings: RestSettings,
    jars: PathBuf,
    cluster: Arc<dyn ClusterView>,
) -> Result<SocketAddr, String> {
    std::fs::create_dir_all(&jars)
        .map_err(|e| format!("cannot create the upload directory '{}': {e}", jars.display()))?;
    let state = Arc::new(ClusterState { cluster, settings: settings.clone(), jars });
    let router = Router::new()
        .route("/overview", get(overview))
        .route("/config", get(|| async { Json(config_json(true)) }))
        .route("/taskmanagers", get(taskmanagers))
        .route("/taskmanagers/{tmid}", get(taskmanager))
        .route("/jobs", get(jobs))
        .route("/jobs/overview", get(jobs_overview))
        .route("/jobs/{jobid}", any(job))
        .route("/jobs/{jobid}/{*rest}", any(job))
        .route("/jars", get(list_jars))
        .route("/jars/upload", post(upload))
        .route("/jars/{jarid}", delete(delete_jar))
        .route("/jars/{jarid}/run", post(run))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(crate::openapi::openapi))
        .fallback(unknown)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
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
    let jobs: Vec<Value> = jobs.iter().map(|j| job_entry(&j.job_id, &j.name, j.state, times(j), j.slots)).collect();
    Ok(Json(json!({ "jobs": jobs })))
}

/// `/jobs/:id` and everything under it: cancel here, the rest from the job's coordinator; a
/// job that runs no coordinator now (ended, or starting) gets what the JobManager knows.
async fn job(
    State(state): Shared,
    Path(params): Path<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let Some(job_id) = params.get("jobid").cloned() else { return unknown(uri).await.into_response() };
    let cluster = state.cluster.clone();
    let query = uri.query().unwrap_or_default().to_string();
    let detail_path = uri.path() == format!("/jobs/{job_id}");
    if method == Method::PATCH && detail_path {
        if !query.is_empty() && query != "mode=cancel" {
            return ApiError::bad_request(format!("unknown termination mode in '{query}': expected mode=cancel"))
                .into_response();
        }
        return match blocking(move || cluster.cancel(&job_id)).await {
            Ok(Ok(())) => (StatusCode::ACCEPTED, Json(json!({}))).into_response(),
            Ok(Err(e)) if e.contains("no job") => ApiError::not_found(e).into_response(),
            Ok(Err(e)) => ApiError::new(StatusCode::CONFLICT, e).into_response(),
            Err(e) => e.into_response(),
        };
    }
    let call = RestCall {
        method: method.to_string(),
        path_and_query: uri.path_and_query().map_or_else(|| uri.path().to_string(), ToString::to_string),
        body: body.to_vec(),
    };
    let answer = blocking(move || {
        let known = cluster.jobs().into_iter().find(|j| j.job_id == job_id);
        let Some(info) = known else { return error_answer(404, &format!("Job {job_id} not found")) };
        match cluster.forward(&job_id, call) {
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
    RestAnswer { status: 200, content_type: "application/json".into(), body: body.to_string().into_bytes() }
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

/// A safe file name for an uploaded artifact.
fn safe_name(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or_default();
    let safe: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() || "-.".contains(c) { c } else { '-' }).collect();
    if safe.is_empty() || safe.starts_with('.') { format!("artifact{safe}") } else { safe }
}

/// `POST /jars/upload`: a multipart form with the artifact in field `jarfile`, as Flink's.
async fn upload(State(state): Shared, mut form: Multipart) -> Result<Json<Value>, ApiError> {
    let invalid = |e: &dyn std::fmt::Display| ApiError::bad_request(format!("invalid upload: {e}"));
    while let Some(field) = form.next_field().await.map_err(|e| upload_error(&e))? {
        if field.name() != Some("jarfile") {
            continue;
        }
        let name = safe_name(field.file_name().unwrap_or("artifact"));
        let data = field.bytes().await.map_err(|e| upload_error(&e))?;
        if data.is_empty() {
            return Err(invalid(&"the artifact is empty"));
        }
        let id = format!("{}_{name}", crate::api::new_trigger_id());
        let path = state.jars.join(&id);
        std::fs::write(&path, &data).map_err(|e| {
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
    if jar_id.contains('/') || jar_id.contains("..") {
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
    #[serde(default)]
    allow_non_restored_state: bool,
    #[serde(default)]
    flink_configuration: HashMap<String, Value>,
}

async fn run(
    State(state): Shared,
    Path(jar_id): Path<String>,
    request: Result<Json<RunRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let request = match request {
        Ok(Json(request)) => request,
        // No body at all: run with the defaults.
        Err(JsonRejection::MissingJsonContentType(_)) => RunRequest::default(),
        Err(rejection) => {
            return Err(ApiError::new(
                rejection.status(),
                format!("Request body is invalid: {}", rejection.body_text()),
            ));
        }
    };
    let path = jar_path(&state, &jar_id)?;
    let args = match (request.program_args_list, request.program_args) {
        (Some(list), _) => list,
        (None, Some(text)) => text.split_whitespace().map(str::to_string).collect(),
        (None, None) => Vec::new(),
    };
    let mut config: Vec<(String, String)> = request
        .flink_configuration
        .into_iter()
        .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
        .collect();
    if let Some(p) = request.parallelism {
        if p == 0 {
            return Err(ApiError::bad_request("parallelism must be at least 1"));
        }
        config.push(("parallelism.default".into(), p.to_string()));
    }
    if let Some(savepoint) = request.savepoint_path {
        crate::api::check_under_roots(&state.settings, &savepoint)?;
        config.push(("execution.savepoint.path".into(), savepoint));
    }
    if request.allow_non_restored_state {
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
        for job in jobs.iter().filter(|j| j.state == JobState::Running) {
            let call = RestCall { method: "GET".into(), path_and_query: "/metrics".into(), body: Vec::new() };
            if let Ok(answer) = cluster.forward(&job.job_id, call)
                && answer.status == 200
            {
                exposition.merge(&String::from_utf8_lossy(&answer.body));
            }
        }
        exposition.render()
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}
