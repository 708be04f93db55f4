//! The Redis sink: one command per record (SET, HSET, LPUSH, XADD, INCRBY, with an optional
//! time to live), sent in pipelined batches and flushed at every checkpoint (at least once;
//! SET and HSET are idempotent, so a replay after a failure leaves the same data).

use super::connect;

use brisk::prelude::{Sink, SinkContext, SinkWriter, WriterInitContext};
use brisk_core::BoxError;
use std::sync::Arc;
use std::time::Duration;

/// What one record becomes in Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisCommand {
    /// `SET key value`.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
    },
    /// `HSET key field value`.
    HSet {
        /// The hash.
        key: String,
        /// The field.
        field: String,
        /// The value.
        value: Vec<u8>,
    },
    /// `LPUSH key value`.
    LPush {
        /// The list.
        key: String,
        /// The value.
        value: Vec<u8>,
    },
    /// `XADD key * field value ...`.
    XAdd {
        /// The stream.
        key: String,
        /// The entry's fields.
        fields: Vec<(String, Vec<u8>)>,
    },
    /// `INCRBY key by`.
    IncrBy {
        /// The counter.
        key: String,
        /// The increment.
        by: i64,
    },
}

impl RedisCommand {
    fn key(&self) -> &str {
        match self {
            RedisCommand::Set { key, .. }
            | RedisCommand::HSet { key, .. }
            | RedisCommand::LPush { key, .. }
            | RedisCommand::XAdd { key, .. }
            | RedisCommand::IncrBy { key, .. } => key,
        }
    }

    /// Adds the command (and the expiry of its key) to `pipe`.
    fn add_to(&self, pipe: &mut redis::Pipeline, ttl: Option<Duration>) {
        match self {
            RedisCommand::Set { key, value } => {
                let set = pipe.cmd("SET").arg(key).arg(value.as_slice());
                if let Some(ttl) = ttl {
                    set.arg("PX").arg(ttl.as_millis() as u64);
                }
                set.ignore();
                return;
            }
            RedisCommand::HSet { key, field, value } => pipe.cmd("HSET").arg(key).arg(field).arg(value.as_slice()),
            RedisCommand::LPush { key, value } => pipe.cmd("LPUSH").arg(key).arg(value.as_slice()),
            RedisCommand::XAdd { key, fields } => {
                let add = pipe.cmd("XADD").arg(key).arg("*");
                for (field, value) in fields {
                    add.arg(field).arg(value.as_slice());
                }
                add
            }
            RedisCommand::IncrBy { key, by } => pipe.cmd("INCRBY").arg(key).arg(*by),
        }
        .ignore();
        if let Some(ttl) = ttl {
            pipe.cmd("PEXPIRE").arg(self.key()).arg(ttl.as_millis() as u64).ignore();
        }
    }
}

/// Turns a record into its command.
pub type RedisMapper<T> = Arc<dyn Fn(&T) -> RedisCommand + Send + Sync>;

/// Writes records to Redis; build one with [`RedisSink::builder`].
pub struct RedisSink<T> {
    url: String,
    mapper: RedisMapper<T>,
    ttl: Option<Duration>,
    batch: usize,
}

impl<T> Clone for RedisSink<T> {
    fn clone(&self) -> Self {
        RedisSink { url: self.url.clone(), mapper: self.mapper.clone(), ttl: self.ttl, batch: self.batch }
    }
}

/// Configures a [`RedisSink`].
pub struct RedisSinkBuilder<T> {
    url: Option<String>,
    mapper: Option<RedisMapper<T>>,
    ttl: Option<Duration>,
    batch: usize,
}

impl<T> RedisSink<T> {
    /// A builder; commands go in pipelines of up to 1000.
    pub fn builder() -> RedisSinkBuilder<T> {
        RedisSinkBuilder { url: None, mapper: None, ttl: None, batch: 1000 }
    }
}

impl<T> RedisSinkBuilder<T> {
    /// The server, as `redis://host:port/db`.
    pub fn url(mut self, url: &str) -> Self {
        self.url = Some(url.to_string());
        self
    }

    /// What each record becomes.
    pub fn command(mut self, f: impl Fn(&T) -> RedisCommand + Send + Sync + 'static) -> Self {
        self.mapper = Some(Arc::new(f));
        self
    }

    /// Keys written expire after `ttl`.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Commands sent in one round trip at most.
    pub fn batch_size(mut self, commands: usize) -> Self {
        self.batch = commands.max(1);
        self
    }

    /// The sink, or what is missing or wrong in its configuration.
    pub fn build(self) -> Result<RedisSink<T>, String> {
        let url = self.url.ok_or("the Redis sink needs a url (redis://host:port/db)")?;
        redis::Client::open(url.as_str()).map_err(|e| format!("invalid Redis url '{url}': {e}"))?;
        let mapper = self.mapper.ok_or("the Redis sink needs a command for its records")?;
        Ok(RedisSink { url, mapper, ttl: self.ttl, batch: self.batch })
    }
}

/// One subtask's connection and the commands not sent yet.
pub struct RedisWriter<T> {
    sink: RedisSink<T>,
    connection: Option<redis::Connection>,
    pending: Vec<RedisCommand>,
}

impl<T> RedisWriter<T> {
    /// Sends the pending commands in one pipeline; reconnects once if the connection broke.
    fn send(&mut self) -> Result<(), BoxError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for command in &self.pending {
            command.add_to(&mut pipe, self.sink.ttl);
        }
        let mut last = None;
        for _ in 0..2 {
            let connection = match &mut self.connection {
                Some(connection) => connection,
                None => self.connection.insert(connect(&self.sink.url)?),
            };
            match pipe.query::<()>(connection) {
                Ok(()) => {
                    self.pending.clear();
                    return Ok(());
                }
                Err(e) if e.is_io_error() || e.is_connection_dropped() => {
                    self.connection = None;
                    last = Some(e);
                }
                Err(e) => return Err(format!("Redis at {} refused a command: {e}", self.sink.url).into()),
            }
        }
        let reason = last.map(|e| e.to_string()).unwrap_or_default();
        Err(format!("cannot write to Redis at {}: {reason}", self.sink.url).into())
    }
}

impl<T: Send + 'static> SinkWriter<T, ()> for RedisWriter<T> {
    fn write(&mut self, value: T, _: &SinkContext<'_>) -> Result<(), BoxError> {
        self.pending.push((self.sink.mapper)(&value));
        if self.pending.len() >= self.sink.batch {
            self.send()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        self.send()
    }
}

impl<T: Send + 'static> Sink<T> for RedisSink<T> {
    type Committable = ();
    type Writer = RedisWriter<T>;

    fn create_writer(&mut self, _: &WriterInitContext<'_, '_, ()>) -> Result<RedisWriter<T>, BoxError> {
        Ok(RedisWriter { connection: Some(connect(&self.url)?), sink: self.clone(), pending: Vec::new() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_names_what_is_missing_or_wrong() {
        let command = |v: &i64| RedisCommand::IncrBy { key: "k".into(), by: *v };
        assert!(RedisSink::<i64>::builder().command(command).build().err().unwrap().contains("needs a url"));
        let bad = RedisSink::<i64>::builder().url("http://nope").command(command).build().err().unwrap();
        assert!(bad.contains("invalid Redis url 'http://nope'"), "{bad}");
        assert!(RedisSink::<i64>::builder().url("redis://127.0.0.1:1/").build().err().unwrap().contains("command"));
    }
}
