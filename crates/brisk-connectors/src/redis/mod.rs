//! Redis: a sink of one command per record, and Redis Streams as a source with a consumer
//! group, exactly once.

mod sink;
mod source;

pub use sink::{RedisCommand, RedisMapper, RedisSink, RedisSinkBuilder, RedisWriter};
pub use source::{RedisStreamEntry, RedisStreamSource, RedisStreamSourceBuilder, RedisStreamSplit};

/// The Redis client the connector is built on, for what it does not wrap (reading, tests).
pub use ::redis as client;

use crate::retry::connect_with_backoff;
use brisk_core::BoxError;
use std::time::Duration;

/// A connection to `url`, retried with backoff.
pub(crate) fn connect(url: &str) -> Result<redis::Connection, BoxError> {
    let client = redis::Client::open(url).map_err(|e| format!("invalid Redis url '{url}': {e}"))?;
    connect_with_backoff(
        &format!("Redis at {url}"),
        || client.get_connection_with_timeout(Duration::from_secs(5)),
        |_| true,
    )
}
