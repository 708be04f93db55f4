//! Savepoints requested over REST: each runs on a thread of its own under a trigger id that
//! clients poll (`GET /jobs/:id/savepoints/:triggerid`), as in Flink.

use crate::server::ApiError;
use axum::Json;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the result of a savepoint stays available to polls (Flink's
/// `rest.async.store-duration`).
const STORE_DURATION: Duration = Duration::from_secs(300);

/// A savepoint requested over REST.
enum Trigger {
    /// Still running.
    InProgress { job_id: String },
    /// Done (at `at`): its location, or why it failed.
    Done { job_id: String, result: Result<String, String>, at: Instant },
}

/// The savepoints requested over REST, by trigger id.
#[derive(Clone, Default)]
pub(crate) struct Triggers(Arc<Mutex<HashMap<String, Trigger>>>);

impl Triggers {
    /// The triggers, without the results kept past [`STORE_DURATION`].
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Trigger>> {
        let mut triggers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        triggers.retain(|_, t| !matches!(t, Trigger::Done { at, .. } if at.elapsed() >= STORE_DURATION));
        triggers
    }

    /// Runs `savepoint` (which returns the savepoint's location) for job `job_id` on a thread
    /// of its own; answers with the trigger id to poll.
    pub fn start(
        &self,
        job_id: &str,
        savepoint: impl FnOnce() -> Result<String, String> + Send + 'static,
    ) -> Result<Json<Value>, ApiError> {
        let trigger_id = brisk_core::hash::unique_id("savepoint");
        self.lock().insert(trigger_id.clone(), Trigger::InProgress { job_id: job_id.to_string() });
        let (triggers, id, job_id) = (self.clone(), trigger_id.clone(), job_id.to_string());
        std::thread::Builder::new()
            .name(format!("savepoint {trigger_id}"))
            .spawn(move || {
                let result = savepoint();
                triggers.lock().insert(id, Trigger::Done { job_id, result, at: Instant::now() });
            })
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot start the savepoint: {e}"))
            })?;
        Ok(Json(json!({ "request-id": trigger_id })))
    }

    /// Flink's answer to a poll of trigger `trigger_id` of job `job_id`.
    pub fn status(&self, job_id: &str, trigger_id: &str) -> Result<Json<Value>, ApiError> {
        let triggers = self.lock();
        let unknown = || {
            ApiError::not_found(format!(
                "There is no savepoint operation with trigger id {trigger_id} for job {job_id}"
            ))
        };
        match triggers.get(trigger_id).ok_or_else(unknown)? {
            Trigger::InProgress { job_id: of } if of == job_id => {
                Ok(Json(json!({ "status": { "id": "IN_PROGRESS" }, "operation": null })))
            }
            Trigger::Done { job_id: of, result, .. } if of == job_id => {
                let operation = match result {
                    Ok(location) => json!({ "location": location }),
                    Err(reason) => json!({ "failure-cause": {
                        "class": "brisk.SavepointException",
                        "stack-trace": reason,
                        "serialized-throwable": null,
                    } }),
                };
                Ok(Json(json!({ "status": { "id": "COMPLETED" }, "operation": operation })))
            }
            _ => Err(unknown()),
        }
    }
}
