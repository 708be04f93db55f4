//! The REST server of the jobs this process runs in its mini cluster: started by the first
//! job whose configuration sets `rest.port`, and serving every later one too.

use crate::server::{BIND_ADDRESS_KEY, PORT_KEY, RestServer, RestSettings};
use brisk_core::Configuration;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use tracing::warn;

/// Where this process's REST server listens, once it started.
pub static LOCAL_REST_ADDRESS: OnceLock<SocketAddr> = OnceLock::new();

static LOCAL_SERVER: Mutex<Option<Arc<RestServer>>> = Mutex::new(None);

/// The REST server for a local job configured by `config`, started on first use; `None`
/// when `rest.port` is not set. `taskmanagers`: the mini cluster's.
pub fn serve_local_job(config: &Configuration, taskmanagers: usize) -> Result<Option<Arc<RestServer>>, String> {
    let Some(port_text) = config.get_raw(PORT_KEY) else { return Ok(None) };
    let port: u16 = port_text
        .trim()
        .parse()
        .map_err(|_| format!("invalid {PORT_KEY} '{port_text}': expected a port number (0: any free port)"))?;
    let mut server = LOCAL_SERVER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(running) = server.as_ref() {
        if port != 0 && port != running.address().port() {
            warn!(port, serving = %running.address(), "this process already serves its REST API elsewhere; the job is served there");
        }
        return Ok(Some(running.clone()));
    }
    let host = config.get_raw(BIND_ADDRESS_KEY).unwrap_or("127.0.0.1");
    let settings = RestSettings::from_configuration(config, taskmanagers)?;
    let started = Arc::new(RestServer::start(host, port, settings)?);
    let _ = LOCAL_REST_ADDRESS.set(started.address());
    *server = Some(started.clone());
    Ok(Some(started))
}
