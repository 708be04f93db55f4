//! The Redis sink against a real `redis-server` (Debian's, started here on 127.0.0.1): every
//! command kind with time to live, idempotent SETs that converge after a failure, an
//! unreachable server named in the error, and streams read exactly once through a failure.
#![cfg(feature = "redis")]

mod common;

use brisk::prelude::*;
use brisk::runtime::jobmaster::restart::RestartStrategy;
use brisk_connectors::redis::client::{Commands, Connection};
use brisk_connectors::redis::{RedisCommand, RedisSink, RedisStreamSource};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `redis-server` on a free port of 127.0.0.1, without persistence, stopped when dropped.
struct RedisServer {
    child: Child,
    url: String,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test.sh installs it)");
        let url = format!("redis://127.0.0.1:{port}/");
        let server = RedisServer { child, url };
        common::wait_until("redis-server to accept connections", || server.try_connect().is_some());
        server
    }

    fn try_connect(&self) -> Option<Connection> {
        brisk_connectors::redis::client::Client::open(self.url.as_str()).ok()?.get_connection().ok()
    }

    fn connect(&self) -> Connection {
        self.try_connect().expect("a connection")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn every_command_kind_is_written_with_its_time_to_live() {
    let server = RedisServer::start();
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    let numbers = env.from_sequence(1, 100);
    let sink = |command: fn(&i64) -> RedisCommand| RedisSink::builder().url(&server.url).command(command).batch_size(7);
    numbers.sink_to(
        sink(|n| RedisCommand::Set { key: format!("n:{n}"), value: n.to_string().into_bytes() }).build().unwrap(),
    );
    numbers.sink_to(
        sink(|n| RedisCommand::HSet {
            key: "squares".into(),
            field: n.to_string(),
            value: (n * n).to_string().into_bytes(),
        })
        .build()
        .unwrap(),
    );
    numbers.sink_to(
        sink(|n| RedisCommand::LPush { key: "list".into(), value: n.to_string().into_bytes() }).build().unwrap(),
    );
    numbers.sink_to(
        sink(|n| RedisCommand::XAdd { key: "stream".into(), fields: vec![("n".into(), n.to_string().into_bytes())] })
            .build()
            .unwrap(),
    );
    numbers.sink_to(
        sink(|n| RedisCommand::IncrBy { key: "sum".into(), by: *n }).ttl(Duration::from_secs(600)).build().unwrap(),
    );
    env.execute("redis commands").unwrap();

    let mut redis = server.connect();
    let values: Vec<i64> = (1..=100).map(|n| redis.get(format!("n:{n}")).unwrap()).collect();
    assert_eq!(values, (1..=100).collect::<Vec<i64>>());
    assert_eq!(redis.hget::<_, _, i64>("squares", "12").unwrap(), 144);
    assert_eq!(redis.hlen::<_, usize>("squares").unwrap(), 100);
    assert_eq!(redis.llen::<_, usize>("list").unwrap(), 100);
    let entries: usize = brisk_connectors::redis::client::cmd("XLEN").arg("stream").query(&mut redis).unwrap();
    assert_eq!(entries, 100);
    assert_eq!(redis.get::<_, i64>("sum").unwrap(), 5050);
    let ttl: i64 = redis.pttl("sum").unwrap();
    assert!(ttl > 0 && ttl <= 600_000, "the counter expires ({ttl} ms)");
    assert_eq!(redis.pttl::<_, i64>("n:1").unwrap(), -1, "keys without a ttl do not expire");
}

#[test]
fn running_counts_set_in_redis_end_right_after_a_failure() {
    let server = RedisServer::start();
    let sink = RedisSink::builder()
        .url(&server.url)
        .command(|(word, count): &(String, i64)| RedisCommand::Set {
            key: format!("count:{word}"),
            value: count.to_string().into_bytes(),
        })
        .build()
        .unwrap();
    let result = common::running_word_counts_into(sink);
    assert_eq!(result.restarts, 1);
    let mut redis = server.connect();
    for i in 0..37 {
        let expected = common::final_word_count(i) as i64;
        assert_eq!(redis.get::<_, i64>(format!("count:w{i}")).unwrap(), expected, "w{i}");
    }
}

#[test]
fn an_unreachable_server_fails_the_job_naming_it() {
    let env = StreamExecutionEnvironment::get_execution_environment();
    let sink = RedisSink::builder()
        .url("redis://127.0.0.1:1/")
        .command(|n: &i64| RedisCommand::IncrBy { key: "k".into(), by: *n })
        .build()
        .unwrap();
    env.from_sequence(1, 3).sink_to(sink);
    let error = env.execute("nowhere").unwrap_err().to_string();
    assert!(error.contains("cannot connect to Redis at redis://127.0.0.1:1/"), "{error}");
}

/// Entries of `stream` delivered to group `group` and not acknowledged.
fn pending(redis: &mut Connection, stream: &str, group: &str) -> i64 {
    let summary: Vec<brisk_connectors::redis::client::Value> =
        brisk_connectors::redis::client::cmd("XPENDING").arg(stream).arg(group).query(redis).unwrap();
    match summary.first() {
        Some(brisk_connectors::redis::client::Value::Int(n)) => *n,
        other => panic!("unexpected XPENDING answer: {other:?}"),
    }
}

#[test]
fn streams_are_read_exactly_once_through_a_failure_and_acknowledged_after_checkpoints() {
    let server = RedisServer::start();
    let mut redis = server.connect();
    for i in 0..3000i64 {
        let stream = if i % 2 == 0 { "events-a" } else { "events-b" };
        let _: String = redis.xadd(stream, "*", &[("n", i.to_string())]).unwrap();
    }
    let dir = common::temp_dir("redis-streams");
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    env.enable_checkpointing(Duration::from_millis(30));
    env.set_restart_strategy(RestartStrategy::FixedDelay { attempts: 3, delay: Duration::from_millis(10) });
    let source = RedisStreamSource::builder()
        .url(&server.url)
        .streams(["events-a", "events-b"])
        .group("brisk")
        .deserializer(|entry| {
            let (_, n) = entry.fields.iter().find(|(k, _)| *k == "n").ok_or("no field n")?;
            std::str::from_utf8(n).map_err(|e| e.to_string())?.parse::<i64>().map_err(|e| e.to_string())
        })
        .build()
        .unwrap();
    env.from_source(source, WatermarkStrategy::no_watermarks(), "events")
        .rich_map(common::FailOnce::after(1200).pausing_every(10))
        .add_sink(FileSink::text(dir.join("out")));
    let client = env.execute_async("streams").unwrap();
    common::wait_until("every entry committed", || common::committed_lines(&dir.join("out")).len() >= 3000);
    common::wait_until("every entry acknowledged", || {
        pending(&mut redis, "events-a", "brisk") + pending(&mut redis, "events-b", "brisk") == 0
    });
    let controller = client.controller();
    client.cancel();
    assert!(client.wait().is_err(), "cancelled");
    // The restart restored a checkpoint: pending entries it covered were acknowledged, the
    // newer ones read again.
    assert!(controller.restored_checkpoints().first().is_some_and(Option::is_some), "restored from a checkpoint");
    let mut expected: Vec<String> = (0..3000).map(|i: i64| i.to_string()).collect();
    expected.sort();
    assert_eq!(common::committed_lines(&dir.join("out")), expected);
}
