//! Brisk's connectors to external systems, each behind a cargo feature so that a build pays
//! only for the clients it uses:
//!
//! - `kafka`: the Kafka source (partitions as splits, offsets in checkpoints, committed back
//!   to the consumer group) and sink ([`kafka`]).
//! - `redis`: the Redis sink and Redis Streams source ([`redis`]).
//! - `postgres`: the PostgreSQL sink and lookup ([`postgres`]).

#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod retry;
