//! Brisk's REST API, with Apache Flink's paths and field names so that Flink's clients and
//! habits work, and its Prometheus endpoint.
//!
//! The server runs on a thread of its own (a single-threaded tokio runtime): requests read the
//! jobs' atomics and histories and never pause a task; savepoints run on threads of their own
//! and are polled through trigger ids, as in Flink.
//!
//! - `server`: binding, the router, JSON errors.
//! - `api`: the job endpoints (`/jobs/...`), cluster endpoints (`/overview`, `/config`,
//!   `/taskmanagers`).
//! - `prometheus`: `/metrics` in the Prometheus text format.
//! - `rates`: per-second rates from successive readings of counters.
//! - `local`: the server of a job run in this process (`rest.port`).
//! - `cluster`: the JobManager's server (cluster endpoints, artifacts, forwarding).
//! - `forward`: answering forwarded requests in a job's coordinator process.
//! - `openapi`: `/openapi.json`.
//! - `web`: the web UI (`web/`: HTML, CSS and plain JavaScript built into the binary).

mod api;
mod cluster;
mod forward;
mod local;
mod openapi;
mod prometheus;
mod rates;
mod server;
mod triggers;
mod web;

pub use cluster::{CancelError, ClusterView, start_cluster_server};
pub use forward::job_handler;
pub use local::{LOCAL_REST_ADDRESS, serve_local_job};
pub use server::{BIND_ADDRESS_KEY, PORT_KEY, RestServer, RestSettings, RestShutdown, TOKEN_KEY};
