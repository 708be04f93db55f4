//! Brisk's connectors to external systems, each behind a cargo feature so that a build pays
//! only for the clients it uses:
//!
//! - `kafka`: the Kafka source (partitions as splits, offsets in checkpoints, committed back
//!   to the consumer group) and sink, at least once or exactly once ([`kafka`]).
//! - `redis`: the Redis sink and Redis Streams source ([`redis`]).
//! - `postgres`: the PostgreSQL sink and lookup ([`postgres`]).
//! - `rabbitmq`: the RabbitMQ source (acknowledged at checkpoints, exactly once by correlation
//!   ids) and sink ([`rabbitmq`]).
//! - `parquet`: Parquet as a bulk format of the exactly-once file sink and the file source
//!   ([`parquet`]).
//! - `avro`: Avro container files, likewise ([`avro`]).

#[cfg(feature = "avro")]
pub mod avro;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "parquet")]
pub mod parquet;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "redis", feature = "postgres", feature = "rabbitmq"))]
mod retry;
#[cfg(any(feature = "redis", feature = "rabbitmq"))]
mod unbounded;
