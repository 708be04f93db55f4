//! `/openapi.json`: an OpenAPI 3 document of the REST API, served by every server. Paths
//! tagged `cluster` are the JobManager's only.

use axum::Json;
use serde_json::{Value, json};

/// One operation: method, path, tag (`job`, `cluster`, `metrics`), summary.
type Operation = (&'static str, &'static str, &'static str, &'static str);

/// Every operation the servers answer.
pub(crate) const OPERATIONS: &[Operation] = &[
    ("get", "/overview", "job", "TaskManagers, slots and jobs by state."),
    ("get", "/config", "job", "The server's version, refresh interval and features."),
    ("get", "/taskmanagers", "job", "The TaskManagers with their slots."),
    ("get", "/taskmanagers/{tmid}", "cluster", "One TaskManager."),
    ("get", "/jobs", "job", "Every job's id and state."),
    ("get", "/jobs/overview", "job", "Every job's name, state, times and task counts."),
    ("get", "/jobs/{jobid}", "job", "A job with its vertices, their parallelism, state and record and byte counts."),
    ("patch", "/jobs/{jobid}", "job", "Cancels the job (mode=cancel)."),
    ("get", "/jobs/{jobid}/plan", "job", "The job graph: vertices with their inputs and ship strategies."),
    ("get", "/jobs/{jobid}/exceptions", "job", "The failures the job handled, newest first."),
    ("get", "/jobs/{jobid}/checkpoints", "job", "Checkpoint counts, summary, latest and history."),
    ("get", "/jobs/{jobid}/checkpoints/config", "job", "The job's checkpointing settings."),
    (
        "post",
        "/jobs/{jobid}/savepoints",
        "job",
        "Triggers a savepoint (target-directory, cancel-job); returns a request-id.",
    ),
    ("get", "/jobs/{jobid}/savepoints/{triggerid}", "job", "A savepoint's status and location or failure."),
    (
        "post",
        "/jobs/{jobid}/stop",
        "job",
        "Stops the job with a savepoint (targetDirectory, drain); returns a request-id.",
    ),
    ("get", "/jobs/{jobid}/vertices/{vertexid}", "job", "A vertex's subtasks with their metrics."),
    ("get", "/jobs/{jobid}/vertices/{vertexid}/backpressure", "job", "Each subtask's back-pressure ratio and level."),
    ("get", "/jobs/{jobid}/vertices/{vertexid}/watermarks", "job", "Each subtask's current input watermark."),
    (
        "get",
        "/jobs/{jobid}/state/{name}",
        "job",
        "Queryable state: the value of keyed state name for ?key= (JSON or text).",
    ),
    ("get", "/jars", "cluster", "The uploaded artifacts."),
    ("post", "/jars/upload", "cluster", "Uploads an artifact (multipart field jarfile)."),
    ("delete", "/jars/{jarid}", "cluster", "Deletes an uploaded artifact."),
    ("post", "/jars/{jarid}/run", "cluster", "Runs an uploaded artifact as a job; returns its jobid."),
    ("get", "/metrics", "metrics", "Metrics in the Prometheus text format."),
    ("get", "/openapi.json", "metrics", "This document."),
    ("get", "/", "metrics", "The web UI."),
];

/// The document.
pub(crate) fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, tag, summary) in OPERATIONS {
        let parameters: Vec<Value> = path
            .split('/')
            .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let mutating = *method != "get";
        let mut operation = json!({
            "tags": [tag],
            "summary": summary,
            "parameters": parameters,
            "responses": {
                "200": { "description": "OK" },
                "400": { "description": "Bad request: {\"errors\": [...]}" },
                "404": { "description": "Unknown job, vertex, trigger or artifact" },
            },
        });
        if mutating {
            operation["security"] = json!([{ "bearer": [] }]);
            operation["responses"]["401"] = json!({ "description": "No or a wrong token (rest.security.token)" });
            operation["responses"]["413"] = json!({ "description": "Body over rest.server.max-content-length" });
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Brisk REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Apache Flink's REST paths and field names. Paths tagged 'cluster' are served by the JobManager only.",
        },
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } } },
        "paths": paths,
    })
}

pub(crate) async fn openapi() -> Json<Value> {
    Json(document())
}
