//! Brisk's control plane (Flink's RPC between the JobManager, the TaskManagers and clients):
//! typed messages in one place, and a connection that carries them.
//!
//! Every connection starts with a handshake: the dialer sends [`Hello`] (protocol version,
//! Brisk version, role), the acceptor answers [`HelloReply`]; a peer of another version is
//! refused with both versions named. After it, each side may send requests that the other
//! answers; replies are matched to requests by id, and a caller waits at most its timeout.
//! Frames are a 4-byte big-endian length and a `postcard` body, at most [`MAX_FRAME`] bytes.
//!
//! The data plane (records between tasks) does not go through here: it is the runtime's
//! credit-based TCP exchange.

mod connection;
mod frame;
mod messages;

pub use connection::{Handler, RpcConnection};
pub use frame::MAX_FRAME;
pub use messages::*;

use std::net::SocketAddr;
use thiserror::Error;

/// A request/response protocol a [`RpcConnection`] speaks: the cluster's ([`Cluster`]), or
/// one of a job's own processes.
pub trait Protocol: 'static {
    /// What one side asks.
    type Request: serde::Serialize + serde::de::DeserializeOwned + Send + std::fmt::Debug + 'static;
    /// The answer.
    type Response: serde::Serialize + serde::de::DeserializeOwned + Send + std::fmt::Debug + 'static;
    /// The message of an answer reporting a failure.
    fn error_message(response: &Self::Response) -> Option<&str>;
    /// Whether answering `request` may take long (waiting for slots, downloading an
    /// artifact): it is then answered on a thread of its own, so the connection keeps reading
    /// (heartbeats, other answers) meanwhile.
    fn runs_long(_request: &Self::Request) -> bool {
        false
    }
}

/// The version of the message protocol; peers speaking another one are refused.
pub const PROTOCOL_VERSION: u32 = 4;

/// The version of Brisk this process runs (peers must run the same).
pub const BRISK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A safe file name for an artifact named `name` by its submitter: its last path component,
/// with anything but ASCII letters, digits, `-`, `_` and `.` replaced, never hidden or empty.
pub fn artifact_file_name(name: &str) -> String {
    let base = std::path::Path::new(name).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let safe: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    if safe.is_empty() || safe.starts_with('.') { format!("artifact{safe}") } else { safe }
}

/// Why a control-plane operation failed.
#[derive(Debug, Error)]
pub enum RpcError {
    /// No connection could be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address dialed.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// A socket operation with a peer failed.
    #[error("connection with {peer} failed: {source}")]
    Io {
        /// The peer.
        peer: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// The peer closed the connection.
    #[error("the connection with {0} is closed")]
    Closed(SocketAddr),
    /// The peer refused the handshake (another version, another role than expected).
    #[error("{peer} refused the connection: {reason}")]
    Refused {
        /// The peer.
        peer: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A frame that is not a valid message of this protocol.
    #[error("protocol error with {peer}: {reason}")]
    Protocol {
        /// The peer.
        peer: SocketAddr,
        /// What was wrong.
        reason: String,
    },
    /// No reply within the timeout.
    #[error("{peer} did not answer within {timeout_ms} ms")]
    Timeout {
        /// The peer.
        peer: SocketAddr,
        /// The timeout.
        timeout_ms: u64,
    },
    /// The peer answered with an error.
    #[error("{peer}: {message}")]
    Remote {
        /// The peer.
        peer: SocketAddr,
        /// Its message.
        message: String,
    },
}

/// The refusal reason when two processes of different versions meet.
pub fn version_mismatch(ours: &Hello, theirs: &Hello) -> Option<String> {
    (ours.protocol != theirs.protocol || ours.version != theirs.version).then(|| {
        format!(
            "version mismatch: this process runs Brisk {} (protocol {}), the peer runs Brisk {} (protocol {})",
            ours.version, ours.protocol, theirs.version, theirs.protocol
        )
    })
}
