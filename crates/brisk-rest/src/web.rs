//! The web UI: an HTML page with plain JavaScript over the REST API, built into the binary
//! (no npm, no build step), served at `/` by every server.

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

const INDEX: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const APP_CSS: &str = include_str!("../web/app.css");

/// The UI's routes.
pub(crate) fn router() -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route("/web/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/web/app.css", get(|| async { asset("text/css; charset=utf-8", APP_CSS) }))
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, content_type)], body)
}
