//! Redis: a sink of one command per record, and Redis Streams as a source with a consumer
//! group, exactly once.

mod sink;
mod source;

pub use sink::{RedisCommand, RedisMapper, RedisSink, RedisSinkBuilder, RedisWriter};
pub use source::{RedisStreamEntry, RedisStreamSource, RedisStreamSourceBuilder, RedisStreamSplit};

/// The Redis client the connector is built on, for what it does not wrap (reading, tests).
pub use ::redis as client;

use brisk_core::BoxError;
use std::time::Duration;
use tracing::warn;

/// Tries to connect this often before the writer fails.
const CONNECT_ATTEMPTS: u32 = 4;

/// A connection to `url`, retried with backoff (100 ms, doubling).
pub(crate) fn connect(url: &str) -> Result<redis::Connection, BoxError> {
    let client = redis::Client::open(url).map_err(|e| format!("invalid Redis url '{url}': {e}"))?;
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match client.get_connection_with_timeout(Duration::from_secs(5)) {
            Ok(connection) => return Ok(connection),
            Err(e) if attempt < CONNECT_ATTEMPTS => {
                warn!(url, attempt, "cannot connect to Redis, retrying: {e}");
                std::thread::sleep(delay);
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err(format!("cannot connect to Redis at {url} ({attempt} attempts): {e}").into()),
        }
    }
}
