//! Connecting to an external server with retries: one backoff for every connector.

use brisk_core::BoxError;
use std::time::Duration;
use tracing::warn;

/// Attempts to connect before a connector fails.
const CONNECT_ATTEMPTS: u32 = 4;

/// The result of `connect`, tried up to four times, 100 ms apart doubling, while `retryable`
/// says its error may go away (a refused login does not); the error names `server`.
pub(crate) fn connect_with_backoff<C, E: std::fmt::Display>(
    server: &str,
    mut connect: impl FnMut() -> Result<C, E>,
    retryable: impl Fn(&E) -> bool,
) -> Result<C, BoxError> {
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match connect() {
            Ok(connection) => return Ok(connection),
            Err(e) if attempt < CONNECT_ATTEMPTS && retryable(&e) => {
                warn!(server, attempt, "cannot connect, retrying: {e}");
                std::thread::sleep(delay);
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err(format!("cannot connect to {server} ({attempt} attempts): {e}").into()),
        }
    }
}
