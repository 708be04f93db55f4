//! The endpoints, with Flink's paths and JSON field names (`flink-runtime-web`'s REST API).

use crate::prometheus;
use crate::server::{ApiError, RestSettings, ServerState};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use brisk_rpc::JobState;
use brisk_runtime::checkpoint::coordinator::{CheckpointStats, CheckpointStatus};
use brisk_runtime::checkpoint::stats::StatsSummary;
use brisk_runtime::checkpoint::{CheckpointingMode, ExternalizedCheckpointRetention, SnapshotKind, SnapshotLocation};
use brisk_runtime::jobmaster::result::epoch_ms;
use brisk_runtime::metrics::task_io::SubtaskMetrics;
use brisk_runtime::minicluster::JobController;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

type Shared = State<Arc<ServerState>>;
type Answer = Result<Json<Value>, ApiError>;

/// Every route.
pub(crate) fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/overview", get(overview))
        .route("/config", get(config))
        .route("/taskmanagers", get(taskmanagers))
        .route("/jobs", get(jobs))
        .route("/jobs/overview", get(jobs_overview))
        .route("/jobs/{jobid}", get(job).patch(cancel))
        .route("/jobs/{jobid}/plan", get(plan))
        .route("/jobs/{jobid}/exceptions", get(exceptions))
        .route("/jobs/{jobid}/checkpoints", get(checkpoints))
        .route("/jobs/{jobid}/checkpoints/config", get(checkpoint_config))
        .route("/jobs/{jobid}/savepoints", post(trigger_savepoint))
        .route("/jobs/{jobid}/savepoints/{triggerid}", get(savepoint_status))
        .route("/jobs/{jobid}/stop", post(stop))
        .route("/jobs/{jobid}/vertices/{vertexid}", get(vertex))
        .route("/jobs/{jobid}/vertices/{vertexid}/backpressure", get(backpressure))
        .route("/jobs/{jobid}/vertices/{vertexid}/watermarks", get(watermarks))
        .route("/jobs/{jobid}/state/{name}", get(query_state))
        .route("/metrics", get(prometheus::metrics))
        .route("/openapi.json", get(crate::openapi::openapi))
        .fallback(unknown)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .merge(crate::web::router())
}

pub(crate) async fn unknown(uri: Uri) -> ApiError {
    ApiError::not_found(format!("Not found: {}", uri.path()))
}

pub(crate) async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{} does not take this method", uri.path()))
}

/// The version string in `/overview` and `/config`.
pub(crate) fn version() -> String {
    format!("Brisk {}", env!("CARGO_PKG_VERSION"))
}

async fn overview(State(state): Shared) -> Json<Value> {
    let jobs = state.all_jobs();
    let slots: usize = jobs.iter().filter(|j| !j.state().is_terminal()).map(slots_of).sum();
    let states: Vec<JobState> = jobs.iter().map(JobController::state).collect();
    Json(overview_json(state.settings.taskmanagers, slots, 0, &states))
}

/// Flink's `/overview`: TaskManagers, slots, and jobs by state.
pub(crate) fn overview_json(taskmanagers: usize, slots: usize, free: usize, jobs: &[JobState]) -> Value {
    let count = |wanted: JobState| jobs.iter().filter(|s| **s == wanted).count();
    json!({
        "taskmanagers": taskmanagers,
        "slots-total": slots,
        "slots-available": free,
        "jobs-running": jobs.iter().filter(|s| !s.is_terminal()).count(),
        "jobs-finished": count(JobState::Finished),
        "jobs-cancelled": count(JobState::Canceled),
        "jobs-failed": count(JobState::Failed),
        "flink-version": version(),
        "flink-commit": "",
    })
}

/// Slots a job of the mini cluster uses: its largest parallelism per slot sharing group.
fn slots_of(job: &JobController) -> usize {
    let mut groups: HashMap<&str, usize> = HashMap::new();
    for v in &job.job_graph().vertices {
        let slots = groups.entry(v.slot_sharing_group.as_str()).or_default();
        *slots = (*slots).max(v.parallelism);
    }
    groups.values().sum()
}

async fn config() -> Json<Value> {
    Json(config_json(false))
}

/// Flink's `/config` (`web_submit`: whether artifacts can be uploaded and run).
pub(crate) fn config_json(web_submit: bool) -> Value {
    json!({
        "refresh-interval": 3000,
        "timezone-name": "Coordinated Universal Time",
        "timezone-offset": 0,
        "flink-version": version(),
        "flink-revision": "",
        "features": { "web-submit": web_submit, "web-cancel": true, "web-rescale": false, "web-history": false },
    })
}

async fn taskmanagers(State(state): Shared) -> Json<Value> {
    let slots: usize = state.all_jobs().iter().filter(|j| !j.state().is_terminal()).map(slots_of).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let taskmanagers: Vec<Value> = (0..state.settings.taskmanagers)
        .map(|i| {
            json!({
                "id": format!("minicluster-taskmanager-{i}"),
                "path": "in-process",
                "dataPort": -1,
                "timeSinceLastHeartbeat": 0,
                "slotsNumber": if i == 0 { slots } else { 0 },
                "freeSlots": 0,
                "hardware": { "cpuCores": cores },
            })
        })
        .collect();
    Json(json!({ "taskmanagers": taskmanagers }))
}

async fn jobs(State(state): Shared) -> Json<Value> {
    let jobs: Vec<Value> =
        state.all_jobs().iter().map(|j| json!({ "id": j.job_id(), "status": j.state().to_string() })).collect();
    Json(json!({ "jobs": jobs }))
}

/// Start, end (-1 while running) and duration of a job, in milliseconds.
fn timing(job: &JobController) -> (i64, i64, i64) {
    let (start, end) = job.times();
    let duration = end.unwrap_or_else(epoch_ms) - start;
    (start, end.unwrap_or(-1), duration)
}

/// Flink's `ExecutionState` names.
const EXECUTION_STATES: [&str; 10] = [
    "CREATED",
    "SCHEDULED",
    "DEPLOYING",
    "RUNNING",
    "FINISHED",
    "CANCELING",
    "CANCELED",
    "FAILED",
    "RECONCILING",
    "INITIALIZING",
];

/// Subtask counts by `ExecutionState` (Flink's `status-counts` and vertex `tasks` maps): every
/// state named, in `case`.
fn state_counts(states: &[&str], case: fn(&str) -> String) -> Value {
    let mut counts = json!({});
    for name in EXECUTION_STATES {
        counts[case(name)] = json!(states.iter().filter(|s| **s == name).count());
    }
    counts
}

/// A job overview's `tasks`: subtask counts by state in lower case, and their total.
fn task_counts(states: &[&str]) -> Value {
    let mut counts = state_counts(states, str::to_ascii_lowercase);
    counts["total"] = json!(states.len());
    counts
}

/// The `ExecutionState` of the subtasks of a job in `state`, for subtasks not deployed (or
/// not known: the JobManager's view of a job).
pub(crate) fn execution_state(state: JobState) -> &'static str {
    match state {
        JobState::Initializing => "CREATED",
        JobState::Running => "RUNNING",
        JobState::Restarting => "DEPLOYING",
        JobState::Finished => "FINISHED",
        JobState::Failed => "FAILED",
        JobState::Canceled => "CANCELED",
    }
}

/// The states of the subtasks of vertex `vertex` (all of them when `None`).
fn subtask_states(job: &JobController, metrics: &[SubtaskMetrics], vertex: Option<usize>) -> Vec<&'static str> {
    let vertices = &job.job_graph().vertices;
    let deployed: usize = vertices.iter().map(|v| v.parallelism).sum();
    if metrics.len() < deployed {
        // Not (or no longer) deployed: the job's state stands for its subtasks'.
        let subtasks = vertex.map_or(deployed, |v| vertices[v].parallelism);
        return vec![execution_state(job.state()); subtasks];
    }
    metrics.iter().filter(|m| vertex.is_none_or(|v| m.vertex == v)).map(|m| m.state.name()).collect()
}

/// A vertex's state from its subtasks' (as Flink aggregates them): failed or cancelled if one
/// is, running while any runs, finished when all have.
fn vertex_state(states: &[&'static str]) -> &'static str {
    let any = |state: &str| states.contains(&state);
    if let Some(first) = states.first()
        && states.iter().all(|s| s == first)
    {
        first
    } else if any("FAILED") {
        "FAILED"
    } else if any("CANCELED") {
        "CANCELED"
    } else if any("RUNNING") || any("FINISHED") {
        "RUNNING"
    } else {
        "CREATED"
    }
}

async fn jobs_overview(State(state): Shared) -> Json<Value> {
    let jobs: Vec<Value> = state
        .all_jobs()
        .iter()
        .rev()
        .map(|j| job_entry(j.job_id(), j.job_name(), j.state(), timing(j), &subtask_states(j, &j.metrics(), None)))
        .collect();
    Json(json!({ "jobs": jobs }))
}

/// One job of Flink's `/jobs/overview`; `(start, end, duration)` in milliseconds (end -1
/// while it runs); the state of each subtask.
pub(crate) fn job_entry(id: &str, name: &str, state: JobState, times: (i64, i64, i64), subtasks: &[&str]) -> Value {
    let (start, end, duration) = times;
    json!({
        "jid": id,
        "name": name,
        "state": state.to_string(),
        "start-time": start,
        "end-time": end,
        "duration": duration,
        "last-modification": end.max(start),
        "tasks": task_counts(subtasks),
    })
}

/// Flink's I/O metrics object of a vertex or subtask.
fn io_metrics(records_in: u64, records_out: u64, bytes_in: u64, bytes_out: u64, complete: bool) -> Value {
    json!({
        "read-bytes": bytes_in, "read-bytes-complete": complete,
        "write-bytes": bytes_out, "write-bytes-complete": complete,
        "read-records": records_in, "read-records-complete": complete,
        "write-records": records_out, "write-records-complete": complete,
    })
}

async fn job(State(state): Shared, Path(job_id): Path<String>) -> Answer {
    let job = state.job(&job_id)?;
    let (start, end, duration) = timing(&job);
    let metrics = job.metrics();
    let complete = job.state().is_terminal();
    // When the job entered each state it went through (Flink's `timestamps`; 0: not yet).
    let mut timestamps = json!({});
    for name in [
        "INITIALIZING",
        "CREATED",
        "RUNNING",
        "FAILING",
        "CANCELLING",
        "CANCELED",
        "FINISHED",
        "RESTARTING",
        "FAILED",
        "SUSPENDED",
        "RECONCILING",
    ] {
        timestamps[name] = json!(0);
    }
    for name in ["INITIALIZING", "CREATED", "RUNNING"] {
        timestamps[name] = json!(start);
    }
    if complete {
        timestamps[job.state().to_string()] = json!(end);
    }
    let mut vertex_states = Vec::new();
    let vertices: Vec<Value> = job
        .job_graph()
        .vertices
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let states = subtask_states(&job, &metrics, Some(index));
            vertex_states.push(vertex_state(&states));
            let mine = metrics.iter().filter(|m| m.vertex == index);
            let (mut rin, mut rout, mut bin, mut bout) = (0, 0, 0, 0);
            for m in mine {
                rin += m.values.records_in;
                rout += m.values.records_out;
                bin += m.values.bytes_in;
                bout += m.values.bytes_out;
            }
            json!({
                "id": v.id,
                "name": v.name,
                "maxParallelism": v.max_parallelism,
                "parallelism": v.parallelism,
                "status": vertex_states[index],
                "start-time": start,
                "end-time": end,
                "duration": duration,
                "tasks": state_counts(&states, str::to_string),
                "metrics": io_metrics(rin, rout, bin, bout, complete),
            })
        })
        .collect();
    Ok(Json(json!({
        "jid": job.job_id(),
        "name": job.job_name(),
        "isStoppable": false,
        "state": job.state().to_string(),
        "job-type": "STREAMING",
        "start-time": start,
        "end-time": end,
        "duration": duration,
        "maxParallelism": -1,
        "now": epoch_ms(),
        "numRestarts": job.restarts(),
        "timestamps": timestamps,
        "status-counts": state_counts(&vertex_states, str::to_string),
        "vertices": vertices,
        "plan": plan_of(&job),
    })))
}

/// Flink's `plan` object: the vertices as nodes, each with its inputs.
fn plan_of(job: &JobController) -> Value {
    let graph = job.job_graph();
    let nodes: Vec<Value> = graph
        .vertices
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let inputs: Vec<Value> = graph
                .edges
                .iter()
                .filter(|e| e.target == index)
                .enumerate()
                .map(|(num, e)| {
                    json!({
                        "num": num,
                        "id": graph.vertices.get(e.source).map(|s| s.id.as_str()).unwrap_or(""),
                        "ship_strategy": e.partitioner,
                        "exchange": "pipelined_bounded",
                        "side_output": e.side_output,
                    })
                })
                .collect();
            json!({
                "id": v.id,
                "parallelism": v.parallelism,
                "operator": "",
                "operator_strategy": "",
                "description": v.name,
                "operators": v.operators.iter().map(|o| json!({ "id": o.id, "name": o.name, "uid": o.uid })).collect::<Vec<_>>(),
                "inputs": inputs,
                "optimizer_properties": {},
            })
        })
        .collect();
    json!({ "jid": job.job_id(), "name": job.job_name(), "type": "STREAMING", "nodes": nodes })
}

async fn plan(State(state): Shared, Path(job_id): Path<String>) -> Answer {
    let job = state.job(&job_id)?;
    Ok(Json(json!({ "plan": plan_of(&job) })))
}

async fn exceptions(State(state): Shared, Path(job_id): Path<String>) -> Answer {
    let job = state.job(&job_id)?;
    let entries: Vec<Value> = job
        .exception_history()
        .iter()
        .rev()
        .map(|e| {
            let name = e.message.split(':').next().unwrap_or_default().trim().to_string();
            json!({
                "exceptionName": name,
                "stacktrace": e.message,
                "timestamp": e.timestamp_ms,
                "taskName": e.task,
                "endpoint": null,
                "taskManagerId": null,
                "failureLabels": {},
                "concurrentExceptions": [],
            })
        })
        .collect();
    Ok(Json(json!({ "exceptionHistory": { "entries": entries, "truncated": false } })))
}

/// One checkpoint of the history, with Flink's field names.
fn checkpoint_json(c: &CheckpointStats) -> Value {
    let (status, failure) = match &c.status {
        CheckpointStatus::Completed => ("COMPLETED", None),
        CheckpointStatus::Failed(reason) => ("FAILED", Some(reason.clone())),
    };
    let savepoint = c.kind == SnapshotKind::Savepoint;
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    let mut value = json!({
        "className": if failure.is_some() { ".FailedCheckpointStatistics" } else { ".CompletedCheckpointStatistics" },
        "id": c.id,
        "status": status,
        "is_savepoint": savepoint,
        "checkpoint_type": if savepoint { "SAVEPOINT" } else { "CHECKPOINT" },
        "trigger_timestamp": c.trigger_timestamp_ms,
        "latest_ack_timestamp": c.trigger_timestamp_ms + ms(c.duration) as i64,
        "state_size": c.size,
        "checkpointed_size": c.size,
        "end_to_end_duration": ms(c.duration),
        "alignment_duration": ms(c.alignment),
        "sync_duration": ms(c.sync),
        "async_duration": ms(c.async_part),
        "alignment_buffered": 0,
        "processed_data": 0,
        "persisted_data": 0,
        "num_subtasks": c.subtasks,
        "num_acknowledged_subtasks": c.acknowledged,
        "external_path": c.path.to_string(),
        "discarded": false,
    });
    if let Some(reason) = failure {
        value["failure_message"] = json!(reason);
        value["failure_timestamp"] = value["latest_ack_timestamp"].clone();
    }
    value
}

/// Minimum, maximum and average (Flink's summary objects).
fn summary(s: &StatsSummary) -> Value {
    json!({ "min": s.min, "max": s.max, "avg": s.avg() })
}

async fn checkpoints(State(state): Shared, Path(job_id): Path<String>) -> Answer {
    let job = state.job(&job_id)?;
    let stats = job.checkpoint_stats();
    Ok(Json(json!({
        "counts": {
            "restored": job.restored_checkpoints().iter().flatten().count(),
            "total": stats.total(),
            "in_progress": 0,
            "completed": stats.completed,
            "failed": stats.failed,
        },
        "summary": {
            "state_size": summary(&stats.state_size),
            "checkpointed_size": summary(&stats.state_size),
            "end_to_end_duration": summary(&stats.end_to_end_duration),
            "alignment_duration": summary(&stats.alignment_duration),
            "alignment_buffered": summary(&StatsSummary::default()),
        },
        "latest": {
            "completed": stats.latest_completed.as_ref().map(checkpoint_json),
            "savepoint": stats.latest_savepoint.as_ref().map(checkpoint_json),
            "failed": stats.latest_failed.as_ref().map(checkpoint_json),
            "restored": job.restored_checkpoints().iter().rev().flatten().next().map(|(id, at)| json!({
                "id": id,
                "restore_timestamp": at,
                "is_savepoint": false,
                "external_path": null,
            })),
        },
        "history": stats.history().rev().map(checkpoint_json).collect::<Vec<_>>(),
    })))
}

async fn checkpoint_config(State(state): Shared, Path(job_id): Path<String>) -> Answer {
    let job = state.job(&job_id)?;
    let c = job.checkpoint_config();
    let Some(interval) = c.interval else {
        return Err(ApiError::not_found(format!("Checkpointing is not enabled for job {job_id}")));
    };
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    Ok(Json(json!({
        "mode": match c.mode {
            CheckpointingMode::ExactlyOnce => "exactly_once",
            CheckpointingMode::AtLeastOnce => "at_least_once",
        },
        "interval": ms(interval),
        "timeout": ms(c.timeout),
        "min_pause": ms(c.min_pause),
        "max_concurrent": c.max_concurrent,
        "externalization": {
            "enabled": true,
            "delete_on_cancellation": c.retention == ExternalizedCheckpointRetention::DeleteOnCancellation,
        },
        "checkpoint_storage": c.directory.as_ref().map(ToString::to_string),
        "unaligned_checkpoints": c.unaligned,
        "tolerable_failed_checkpoints": c.tolerable_failures,
        "aligned_checkpoint_timeout": ms(c.aligned_checkpoint_timeout),
        "checkpoints_after_tasks_finish": true,
        "state_changelog_enabled": false,
        "incremental": c.incremental,
        "retained": c.retained,
    })))
}

/// Checks a cancel request's query (`mode=cancel` or none; Flink's termination mode).
pub(crate) fn check_cancel_mode(query: Option<&str>) -> Result<(), ApiError> {
    match query.unwrap_or_default() {
        "" | "mode=cancel" => Ok(()),
        other => Err(ApiError::bad_request(format!("unknown termination mode in '{other}': expected mode=cancel"))),
    }
}

async fn cancel(State(state): Shared, Path(job_id): Path<String>, uri: Uri) -> Result<impl IntoResponse, ApiError> {
    let job = state.job(&job_id)?;
    check_cancel_mode(uri.query())?;
    if job.state().is_terminal() {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("Job {job_id} has already ended")));
    }
    job.cancel();
    Ok((StatusCode::ACCEPTED, Json(json!({}))))
}

/// The body of `POST /jobs/:id/savepoints`, with Flink's field names.
#[derive(Deserialize)]
pub(crate) struct SavepointRequest {
    #[serde(rename = "target-directory")]
    pub target_directory: Option<String>,
    #[serde(rename = "cancel-job", default)]
    pub cancel_job: bool,
}

/// The body of `POST /jobs/:id/stop`, with Flink's field names.
#[derive(Deserialize)]
pub(crate) struct StopRequest {
    #[serde(rename = "targetDirectory")]
    pub target_directory: Option<String>,
    #[serde(default)]
    pub drain: bool,
}

/// A body's JSON: 413 for a body over the limit, 400 for anything else wrong with it.
pub(crate) fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(Json(value)) => Ok(value),
        Err(rejection) => {
            let status = match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            Err(ApiError::new(status, format!("Request body is invalid: {}", rejection.body_text())))
        }
    }
}

async fn trigger_savepoint(
    State(state): Shared,
    Path(job_id): Path<String>,
    request: Result<Json<SavepointRequest>, JsonRejection>,
) -> Answer {
    let request = body(request)?;
    start_savepoint(&state, &job_id, request.target_directory, request.cancel_job.then_some(false))
}

async fn stop(
    State(state): Shared,
    Path(job_id): Path<String>,
    request: Result<Json<StopRequest>, JsonRejection>,
) -> Answer {
    let request = body(request)?;
    start_savepoint(&state, &job_id, request.target_directory, Some(request.drain))
}

/// Checks the target directory and starts the savepoint (and stop, when `stop` is given);
/// answers with the trigger id to poll.
fn start_savepoint(state: &ServerState, job_id: &str, target: Option<String>, stop: Option<bool>) -> Answer {
    let job = state.job(job_id)?;
    let dir = savepoint_target(&state.settings, target)?;
    if job.state().is_terminal() {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("Job {job_id} has already ended")));
    }
    state.triggers.start(job_id, move || {
        let taken = match stop {
            Some(drain) => job.stop_with_savepoint(dir, drain),
            None => job.trigger_savepoint(dir),
        };
        taken.map(|path| path.to_string()).map_err(|e| e.to_string())
    })
}

/// The directory a savepoint goes to: the requested one, which must lie under a configured
/// savepoint or checkpoint directory, or the default savepoint directory.
pub(crate) fn savepoint_target(
    settings: &RestSettings,
    requested: Option<String>,
) -> Result<SnapshotLocation, ApiError> {
    let Some(text) = requested else {
        return settings.default_savepoint_dir.clone().ok_or_else(|| {
            ApiError::bad_request(
                "No savepoint directory given (target-directory) and none configured \
                 (execution.checkpointing.savepoint-dir)",
            )
        });
    };
    check_under_roots(settings, &text)
}

/// The savepoint location `text`, which must lie under a configured savepoint or checkpoint
/// directory (compared by path components, of the same kind) and must not contain `..`.
pub(crate) fn check_under_roots(settings: &RestSettings, text: &str) -> Result<SnapshotLocation, ApiError> {
    let location = SnapshotLocation::parse(text)
        .map_err(|e| ApiError::bad_request(format!("invalid savepoint directory '{text}': {e}")))?;
    let components = |l: &SnapshotLocation| -> Vec<String> {
        match l {
            SnapshotLocation::Local(path) => {
                path.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect()
            }
            SnapshotLocation::ObjectStore(url) => {
                url.split('/').filter(|p| !p.is_empty()).map(str::to_string).collect()
            }
        }
    };
    let parts = components(&location);
    if parts.iter().any(|p| p == "..") {
        return Err(ApiError::bad_request(format!("the savepoint directory '{text}' must not contain '..'")));
    }
    let under = |root: &SnapshotLocation| {
        let same_kind = matches!(
            (root, &location),
            (SnapshotLocation::Local(_), SnapshotLocation::Local(_))
                | (SnapshotLocation::ObjectStore(_), SnapshotLocation::ObjectStore(_))
        );
        let root = components(root);
        // An empty or relative root would admit everything (or depend on the working directory).
        let absolute = matches!(root.first().map(String::as_str), Some("/") | Some("s3:"));
        same_kind && absolute && root.len() > 1 && parts.starts_with(&root)
    };
    if !settings.savepoint_roots.iter().any(under) {
        let roots: Vec<String> = settings.savepoint_roots.iter().map(ToString::to_string).collect();
        return Err(ApiError::bad_request(format!(
            "the savepoint directory '{text}' is not under a configured savepoint or checkpoint directory ({})",
            if roots.is_empty() { "none is configured".to_string() } else { roots.join(", ") }
        )));
    }
    Ok(location)
}

async fn savepoint_status(State(state): Shared, Path((job_id, trigger_id)): Path<(String, String)>) -> Answer {
    state.job(&job_id)?;
    state.triggers.status(&job_id, &trigger_id)
}

/// The vertex `vertex_id` (its id, or its index in the graph) of `job`.
fn vertex_index(job: &JobController, vertex_id: &str) -> Result<usize, ApiError> {
    let vertices = &job.job_graph().vertices;
    vertices
        .iter()
        .position(|v| v.id == vertex_id)
        .or_else(|| vertex_id.parse().ok().filter(|i| *i < vertices.len()))
        .ok_or_else(|| ApiError::not_found(format!("Vertex {vertex_id} not found in job {}", job.job_id())))
}

/// The live metrics of the subtasks of vertex `index`, with their per-second rates
/// (records in, records out, back-pressured ms).
fn subtask_rates(state: &ServerState, job: &JobController, index: usize) -> Vec<(SubtaskMetrics, [f64; 3])> {
    let now = Instant::now();
    let mut rates = crate::server::lock_rates(state);
    job.metrics()
        .into_iter()
        .filter(|m| m.vertex == index)
        .map(|m| {
            let per_second = rates.of_subtask(job.job_id(), &m, now);
            (m, per_second)
        })
        .collect()
}

async fn vertex(State(state): Shared, Path((job_id, vertex_id)): Path<(String, String)>) -> Answer {
    let job = state.job(&job_id)?;
    let index = vertex_index(&job, &vertex_id)?;
    let v = &job.job_graph().vertices[index];
    let (start, end, duration) = timing(&job);
    let complete = job.state().is_terminal();
    let subtasks: Vec<Value> = subtask_rates(&state, &job, index)
        .into_iter()
        .map(|(m, rates)| {
            let io = &m.values;
            let mut metrics = io_metrics(io.records_in, io.records_out, io.bytes_in, io.bytes_out, complete);
            metrics["read-records-per-second"] = json!(rates[0]);
            metrics["write-records-per-second"] = json!(rates[1]);
            json!({
                "subtask": m.subtask,
                "status": m.state.name(),
                "attempt": m.attempt,
                "endpoint": "localhost",
                "host": "localhost",
                "start-time": start,
                "end-time": end,
                "duration": duration,
                "metrics": metrics,
                "currentInputWatermark": io.current_input_watermark,
                "backPressuredTimeMsPerSecond": rates[2],
                "checkpointedSize": io.checkpointed_size,
            })
        })
        .collect();
    Ok(Json(json!({
        "id": v.id,
        "name": v.name,
        "parallelism": v.parallelism,
        "maxParallelism": v.max_parallelism,
        "now": epoch_ms(),
        "subtasks": subtasks,
    })))
}

#[derive(Deserialize)]
struct StateKey {
    key: Option<String>,
}

/// Queryable state: the value of keyed state `name` for `?key=` (JSON, or a bare string for
/// string keys), asked of the subtask owning the key.
async fn query_state(
    State(state): Shared,
    Path((job_id, name)): Path<(String, String)>,
    Query(query): Query<StateKey>,
) -> Answer {
    let job = state.job(&job_id)?;
    let key = query.key.ok_or_else(|| ApiError::bad_request("the key is missing: ?key=<key as JSON or text>"))?;
    if job.state().is_terminal() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Job {job_id} has ended: its state cannot be queried"),
        ));
    }
    // The tasks answer through their mailboxes: off the server's thread.
    let asked = key.clone();
    let value = tokio::task::spawn_blocking(move || job.query_state_json(&name, &asked).map(|v| (name, v)))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the query failed: {e}")))?;
    match value {
        Ok((_, Some(value))) => Ok(Json(json!({ "key": key, "value": value }))),
        Ok((name, None)) => Err(ApiError::not_found(format!("No value of state '{name}' for key '{key}'"))),
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}

/// Flink's back-pressure level of a ratio of time blocked on output.
fn level(ratio: f64) -> &'static str {
    if ratio <= 0.10 {
        "ok"
    } else if ratio <= 0.5 {
        "low"
    } else {
        "high"
    }
}

async fn backpressure(State(state): Shared, Path((job_id, vertex_id)): Path<(String, String)>) -> Answer {
    let job = state.job(&job_id)?;
    let index = vertex_index(&job, &vertex_id)?;
    let subtasks: Vec<(usize, usize, f64)> = subtask_rates(&state, &job, index)
        .into_iter()
        .map(|(m, rates)| (m.subtask, m.attempt, (rates[2] / 1000.0).clamp(0.0, 1.0)))
        .collect();
    let worst = subtasks.iter().map(|s| s.2).fold(0.0, f64::max);
    Ok(Json(json!({
        "status": "ok",
        "backpressureLevel": level(worst),
        "end-timestamp": epoch_ms(),
        "subtasks": subtasks.iter().map(|(subtask, attempt, ratio)| json!({
            "subtask": subtask,
            "attempt-number": attempt,
            "backpressureLevel": level(*ratio),
            "ratio": ratio,
            "busyRatio": null,
            "idleRatio": null,
        })).collect::<Vec<_>>(),
    })))
}

async fn watermarks(State(state): Shared, Path((job_id, vertex_id)): Path<(String, String)>) -> Answer {
    let job = state.job(&job_id)?;
    let index = vertex_index(&job, &vertex_id)?;
    let values: Vec<Value> = job
        .metrics()
        .iter()
        .filter(|m| m.vertex == index)
        .map(|m| {
            // Flink reports Long.MIN_VALUE before the first watermark.
            let value = m.values.current_input_watermark.unwrap_or(i64::MIN);
            json!({ "id": format!("{}.currentInputWatermark", m.subtask), "value": value.to_string() })
        })
        .collect();
    Ok(Json(Value::Array(values)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vertex_is_in_its_subtasks_state_failed_or_cancelled_if_one_is_and_running_while_any_runs() {
        assert_eq!(vertex_state(&["DEPLOYING", "DEPLOYING"]), "DEPLOYING");
        assert_eq!(vertex_state(&["RUNNING", "DEPLOYING"]), "RUNNING");
        assert_eq!(vertex_state(&["DEPLOYING", "FINISHED"]), "RUNNING");
        assert_eq!(vertex_state(&["FINISHED", "RUNNING"]), "RUNNING");
        assert_eq!(vertex_state(&["FINISHED", "FINISHED"]), "FINISHED");
        assert_eq!(vertex_state(&["FINISHED", "CANCELED", "FAILED"]), "FAILED");
        assert_eq!(vertex_state(&["RUNNING", "CANCELED"]), "CANCELED");
        assert_eq!(vertex_state(&[]), "CREATED");
    }

    #[test]
    fn state_counts_name_every_state() {
        let counts = state_counts(&["RUNNING", "FINISHED", "RUNNING"], str::to_string);
        assert_eq!((counts["RUNNING"].as_u64(), counts["FINISHED"].as_u64()), (Some(2), Some(1)));
        assert_eq!(counts.as_object().map(|c| c.len()), Some(EXECUTION_STATES.len()));
        let tasks = task_counts(&["RUNNING"]);
        assert_eq!(
            (tasks["running"].as_u64(), tasks["total"].as_u64(), tasks["failed"].as_u64()),
            (Some(1), Some(1), Some(0))
        );
    }
}
