//! The HTTP server: binding, routing, and Flink's JSON error bodies.

use crate::api;
use crate::rates::Rates;
use crate::triggers::Triggers;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use brisk_core::Configuration;
use brisk_runtime::checkpoint::SnapshotLocation;
use brisk_runtime::minicluster::JobController;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use tracing::{info, warn};

/// The configuration key of the REST port (`0`: any free port).
pub const PORT_KEY: &str = "rest.port";
/// The configuration key of the address the server binds to.
pub const BIND_ADDRESS_KEY: &str = "rest.bind-address";
/// The configuration key of the default savepoint directory, also a root savepoint targets
/// must lie under.
pub const SAVEPOINT_DIR_KEY: &str = "execution.checkpointing.savepoint-dir";
/// The configuration key of the checkpoint directory, another root for savepoint targets.
pub const CHECKPOINT_DIR_KEY: &str = "execution.checkpointing.dir";
/// The configuration key of the bearer token that mutating requests must carry.
pub const TOKEN_KEY: &str = "rest.security.token";
/// The configuration key of the largest request body accepted (Flink's key).
pub const MAX_CONTENT_LENGTH_KEY: &str = "rest.server.max-content-length";
/// The default largest request body: artifacts are whole executables.
const DEFAULT_MAX_CONTENT_LENGTH: usize = 512 * 1024 * 1024;

/// What the server needs to know besides the jobs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestSettings {
    /// Where savepoints go when a request names no directory.
    pub default_savepoint_dir: Option<SnapshotLocation>,
    /// Directories a requested savepoint target must lie under.
    pub savepoint_roots: Vec<SnapshotLocation>,
    /// TaskManagers of the cluster (the mini cluster's, for a local job).
    pub taskmanagers: usize,
    /// The bearer token mutating requests (POST, PATCH, DELETE) must carry, if any.
    pub token: Option<String>,
    /// The largest request body accepted, in bytes.
    pub max_content_length: usize,
}

impl RestSettings {
    /// The settings `config` gives (savepoint directories), for a cluster of `taskmanagers`.
    pub fn from_configuration(config: &Configuration, taskmanagers: usize) -> Result<RestSettings, String> {
        let dir = |key: &str| -> Result<Option<SnapshotLocation>, String> {
            config
                .get_raw(key)
                .map(|text| SnapshotLocation::parse(text).map_err(|e| format!("invalid {key} '{text}': {e}")))
                .transpose()
        };
        let default_savepoint_dir = dir(SAVEPOINT_DIR_KEY)?;
        let savepoint_roots = [default_savepoint_dir.clone(), dir(CHECKPOINT_DIR_KEY)?].into_iter().flatten().collect();
        let token = config.get_raw(TOKEN_KEY).map(str::to_string).filter(|t| !t.is_empty());
        let max_content_length = match config.get_raw(MAX_CONTENT_LENGTH_KEY) {
            Some(text) => text
                .trim()
                .parse()
                .map_err(|_| format!("invalid {MAX_CONTENT_LENGTH_KEY} '{text}': expected a number of bytes"))?,
            None => DEFAULT_MAX_CONTENT_LENGTH,
        };
        Ok(RestSettings { default_savepoint_dir, savepoint_roots, taskmanagers, token, max_content_length })
    }
}

/// What the handlers share.
pub(crate) struct ServerState {
    pub jobs: RwLock<Vec<JobController>>,
    pub settings: RestSettings,
    /// Savepoints (and stops) requested over REST, by trigger id.
    pub triggers: Triggers,
    pub rates: Mutex<Rates>,
}

impl ServerState {
    /// The state of a server of no jobs yet.
    pub fn new(settings: RestSettings) -> Arc<ServerState> {
        Arc::new(ServerState {
            jobs: RwLock::new(Vec::new()),
            settings,
            triggers: Triggers::default(),
            rates: Mutex::new(Rates::default()),
        })
    }

    /// The job with id `job_id`.
    pub fn job(&self, job_id: &str) -> Result<JobController, ApiError> {
        let jobs = self.jobs.read().unwrap_or_else(|e| e.into_inner());
        jobs.iter()
            .find(|j| j.job_id() == job_id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("Job {job_id} not found")))
    }

    /// Every job, oldest first.
    pub fn all_jobs(&self) -> Vec<JobController> {
        self.jobs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The rate readings, whatever a panicking holder left.
pub(crate) fn lock_rates(state: &ServerState) -> std::sync::MutexGuard<'_, Rates> {
    state.rates.lock().unwrap_or_else(|e| e.into_inner())
}

/// An error answer: Flink's `{"errors": [...]}` with a 4xx or 5xx status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "errors": [self.message] }))).into_response()
    }
}

/// A running REST server; it serves until the process ends.
pub struct RestServer {
    state: Arc<ServerState>,
    address: SocketAddr,
    _serving: RestShutdown,
}

/// Stops a REST server when stopped or dropped: it stops accepting, lets the requests under
/// way finish, and releases its port and state.
pub struct RestShutdown(std::sync::mpsc::Sender<()>);

impl RestShutdown {
    /// Stops the server.
    pub fn stop(self) {
        let _ = self.0.send(());
    }
}

/// The largest body of a request other than an artifact upload.
pub(crate) const REQUEST_LIMIT: usize = 1 << 20;

/// Answers 401 to a mutating request without the configured bearer token. Without a token
/// (a loopback server), answers 403 to a request naming another host: a web page must not
/// reach the server through a name that resolves to 127.0.0.1 (DNS rebinding).
async fn require_token(
    State(token): State<Option<Arc<str>>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if token.is_none() {
        let host = request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
        if !is_loopback(host_name(host)) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "the REST API answers only requests to a loopback host, not '{host}'; set {TOKEN_KEY} to serve others"
                ),
            ));
        }
    }
    let mutating = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if let (true, Some(token)) = (mutating, token) {
        let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if given.and_then(|v| v.strip_prefix("Bearer ")) != Some(&*token) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this request changes the cluster and needs 'Authorization: Bearer <rest.security.token>'",
            ));
        }
    }
    Ok(next.run(request).await)
}

/// The host of a `Host` header: without its port, and without the brackets of an IPv6 address.
fn host_name(host: &str) -> &str {
    match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    }
}

/// `router` with the security every server applies: the token (or host) check, and a body
/// limit of the smaller of `rest.server.max-content-length` and [`REQUEST_LIMIT`] (routes
/// taking artifacts set their own).
pub(crate) fn secured(router: Router, settings: &RestSettings) -> Router {
    let token: Option<Arc<str>> = settings.token.as_deref().map(Arc::from);
    router
        .layer(axum::middleware::from_fn_with_state(token, require_token))
        .layer(DefaultBodyLimit::max(settings.max_content_length.min(REQUEST_LIMIT)))
}

impl RestServer {
    /// Binds `host:port` and serves local jobs on a thread of its own.
    pub fn start(host: &str, port: u16, settings: RestSettings) -> Result<RestServer, String> {
        let state = ServerState::new(settings);
        let router = secured(api::router(state.clone()), &state.settings);
        let (address, serving) = serve(host, port, &state.settings, router)?;
        Ok(RestServer { state, address, _serving: serving })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves `job` from now on (until the process ends, also after the job ended).
    pub fn add_job(&self, job: JobController) {
        self.state.jobs.write().unwrap_or_else(|e| e.into_inner()).push(job);
    }
}

/// Whether `host` is a loopback address (or `localhost`).
fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Binds `host:port` and serves `router` on a thread of its own; returns the bound address.
/// A server reachable from other hosts must have a token: uploading an artifact runs code.
pub(crate) fn serve(
    host: &str,
    port: u16,
    settings: &RestSettings,
    router: Router,
) -> Result<(SocketAddr, RestShutdown), String> {
    if !is_loopback(host) && settings.token.is_none() {
        return Err(format!(
            "the REST API binds to {host} (rest.bind-address), reachable from other hosts: set {TOKEN_KEY} \
             so that only its holders can submit, cancel or stop jobs"
        ));
    }
    let listener = std::net::TcpListener::bind((host, port))
        .map_err(|e| format!("cannot serve the REST API on {host}:{port} (rest.port, rest.bind-address): {e}"))?;
    let address = listener.local_addr().map_err(|e| format!("cannot serve the REST API: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| format!("cannot serve the REST API on {address}: {e}"))?;
    let (stopping, stop) = std::sync::mpsc::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| format!("cannot start the REST server's runtime: {e}"))?;
    std::thread::Builder::new()
        .name("rest server".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(e) => return warn!("the REST server cannot listen: {e}"),
                };
                // A blocking wait for the stop signal (or its sender's drop), off the runtime.
                let stopped = async move {
                    let _ = tokio::task::spawn_blocking(move || stop.recv()).await;
                };
                if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stopped).await {
                    warn!("the REST server stopped: {e}");
                }
            })
        })
        .map_err(|e| format!("cannot start the REST server's thread: {e}"))?;
    info!(address = %address, "REST API at http://{address}/");
    Ok((address, RestShutdown(stopping)))
}
