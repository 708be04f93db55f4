//! How every Brisk process logs: through `tracing` to stderr, at `info` unless `RUST_LOG`
//! says otherwise. The examples, job artifacts and the `brisk` command share it.

use std::io::IsTerminal;

/// Logs to stderr through `tracing`; `RUST_LOG` overrides the default level (`info`). A
/// second call does nothing.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
