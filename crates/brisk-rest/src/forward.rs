//! REST requests forwarded between processes: a JobManager passes `/jobs/:id/...` to the
//! process running the job's master (its coordinator), which answers them with the same
//! routes a local job's server has.

use crate::api;
use crate::server::{RestSettings, ServerState};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use brisk_rpc::{ArchivedJson, RestAnswer, RestCall};
use brisk_runtime::jobmaster::master::{JobRestEndpoint, RestHandler};
use brisk_runtime::minicluster::JobController;
use tower::ServiceExt;

/// The handler of the REST requests a JobManager forwards to `job`'s coordinator. No token
/// is checked here: the JobManager did.
pub fn job_handler(job: JobController, settings: RestSettings) -> RestHandler {
    let state = ServerState::new(settings);
    state.jobs.write().unwrap_or_else(|e| e.into_inner()).push(job.clone());
    Box::new(CoordinatorEndpoint { router: api::router(state), job })
}

/// The REST endpoint of a job run by a cluster: its coordinator's routes.
struct CoordinatorEndpoint {
    router: Router,
    job: JobController,
}

impl JobRestEndpoint for CoordinatorEndpoint {
    fn answer(&self, call: RestCall) -> RestAnswer {
        answer(self.router.clone(), call)
    }

    fn archive(&self) -> Vec<ArchivedJson> {
        archived_paths(&self.job)
            .into_iter()
            .filter_map(|path| {
                let call = RestCall {
                    method: "GET".into(),
                    path_and_query: path.clone(),
                    content_type: String::new(),
                    body: Vec::new(),
                };
                let answer = self.answer(call);
                // Only what the job has: no checkpoint configuration when it does not checkpoint.
                (answer.status == 200)
                    .then(|| ArchivedJson { path, json: String::from_utf8_lossy(&answer.body).into_owned() })
            })
            .collect()
    }
}

/// The GET paths whose answers outlive `job` (Flink archives the same).
fn archived_paths(job: &JobController) -> Vec<String> {
    let base = format!("/jobs/{}", job.job_id());
    let mut paths: Vec<String> = ["", "/plan", "/exceptions", "/checkpoints", "/checkpoints/config"]
        .iter()
        .map(|p| format!("{base}{p}"))
        .collect();
    for vertex in &job.job_graph().vertices {
        let at = format!("{base}/vertices/{}", vertex.id);
        paths.extend(["", "/backpressure", "/watermarks"].iter().map(|p| format!("{at}{p}")));
    }
    paths
}

/// An error answer in Flink's shape.
pub(crate) fn error_answer(status: u16, message: &str) -> RestAnswer {
    json_answer(status, serde_json::json!({ "errors": [message] }).to_string().into_bytes())
}

/// A JSON answer.
pub(crate) fn json_answer(status: u16, body: Vec<u8>) -> RestAnswer {
    RestAnswer { status, content_type: "application/json".into(), body }
}

/// Runs `call` through `router` on a runtime of its own (the caller is an RPC thread).
fn answer(router: Router, call: RestCall) -> RestAnswer {
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(e) => return error_answer(500, &format!("cannot answer the request: {e}")),
    };
    let mut request = Request::builder().method(call.method.as_str()).uri(&call.path_and_query);
    // The client's own content type: a form posted across sites must not pass for JSON.
    if !call.content_type.is_empty() {
        request = request.header(header::CONTENT_TYPE, &call.content_type);
    }
    let request = request.body(Body::from(call.body));
    let request = match request {
        Ok(request) => request,
        Err(e) => return error_answer(400, &format!("invalid forwarded request: {e}")),
    };
    runtime.block_on(async move {
        let response = match router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_string();
        match axum::body::to_bytes(response.into_body(), usize::MAX).await {
            Ok(body) => RestAnswer { status, content_type, body: body.to_vec() },
            Err(e) => error_answer(500, &format!("cannot read the answer: {e}")),
        }
    })
}
