//! The RabbitMQ source and sink against a real `rabbitmq-server` (Debian's, started here on
//! 127.0.0.1): messages published with correlation ids and read exactly once through a
//! failure, every delivery acknowledged after the checkpoints; a message without a correlation
//! id under the fail policy; an unreachable server named in the error.
#![cfg(feature = "rabbitmq")]

mod common;

use brisk::prelude::*;
use brisk::runtime::jobmaster::restart::RestartStrategy;
use brisk_connectors::rabbitmq::lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use brisk_connectors::rabbitmq::lapin::types::FieldTable;
use brisk_connectors::rabbitmq::lapin::{Connection, ConnectionProperties};
use brisk_connectors::rabbitmq::{RabbitMQSink, RabbitMQSource};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A `rabbitmq-server` node of its own (port, node name, data) on 127.0.0.1, stopped when
/// dropped.
struct RabbitMQServer {
    child: Child,
    node: String,
    home: PathBuf,
    uri: String,
}

impl RabbitMQServer {
    fn start(name: &str) -> RabbitMQServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let home = common::temp_dir(&format!("rabbitmq-{name}"));
        std::fs::write(home.join("enabled_plugins"), "[].").unwrap();
        let node = format!("brisk-{port}@localhost");
        let child = Self::command(&home, &node, "/usr/lib/rabbitmq/bin/rabbitmq-server")
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", (port as u32 + 10_000).min(65_000).to_string())
            .env("RABBITMQ_MNESIA_BASE", home.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", home.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", home.join("enabled_plugins"))
            // The VM replaces the script, so killing the child stops the node.
            .env("RUNNING_UNDER_SYSTEMD", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rabbitmq-server (scripts/test.sh installs it)");
        let uri = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
        let server = RabbitMQServer { child, node, home, uri };
        common::wait_until("rabbitmq-server to accept connections", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        server
    }

    fn command(home: &std::path::Path, node: &str, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("HOME", home).env("RABBITMQ_NODENAME", node);
        command
    }

    /// Ready and unacknowledged messages of `queue`, as `rabbitmqctl` reports them.
    fn counts(&self, queue: &str) -> (u64, u64) {
        let output = Self::command(&self.home, &self.node, "/usr/lib/rabbitmq/bin/rabbitmqctl")
            .args(["-n", &self.node, "-q", "list_queues", "name", "messages_ready", "messages_unacknowledged"])
            .output()
            .expect("rabbitmqctl");
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&queue))
            .map(|f| (f[1].parse().unwrap(), f[2].parse().unwrap()))
            .unwrap_or_else(|| panic!("no queue '{queue}' in: {text}"))
    }

    /// Ready messages of `queue`, asked over AMQP.
    fn ready(&self, queue: &str) -> u32 {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        runtime.block_on(async {
            let connection = Connection::connect(&self.uri, ConnectionProperties::default()).await.unwrap();
            let channel = connection.create_channel().await.unwrap();
            let options = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
            let queue = channel.queue_declare(queue.into(), options, FieldTable::default()).await.unwrap();
            let _ = connection.close(200, "done".into()).await;
            queue.message_count()
        })
    }
}

impl Drop for RabbitMQServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn publish(server: &RabbitMQServer, queue: &str, values: Vec<String>, with_ids: bool) {
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    let mut sink =
        RabbitMQSink::builder().uri(&server.uri).queue(queue).serializer(|v: &String| v.clone().into_bytes());
    if with_ids {
        sink = sink.correlation_id(|v: &String| v.clone());
    }
    env.from_collection(values).sink_to(sink.build().unwrap());
    env.execute("publish").unwrap();
}

#[test]
fn published_messages_are_read_exactly_once_through_a_failure_and_acknowledged() {
    let server = RabbitMQServer::start("exactly-once");
    let expected: Vec<String> = (0..3000).map(|i| format!("m{i:05}")).collect();
    publish(&server, "numbers", expected.clone(), true);
    assert_eq!(server.ready("numbers"), 3000);

    let dir = common::temp_dir("rabbitmq-out");
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(1);
    env.enable_checkpointing(Duration::from_millis(30));
    env.set_restart_strategy(RestartStrategy::FixedDelay { attempts: 3, delay: Duration::from_millis(10) });
    let source = RabbitMQSource::builder()
        .uri(&server.uri)
        .queues(["numbers"])
        .uses_correlation_id(true)
        .prefetch_count(500)
        .body_deserializer(|body: &[u8]| String::from_utf8(body.to_vec()).map_err(|e| e.to_string()))
        .build()
        .unwrap();
    env.from_source(source, WatermarkStrategy::no_watermarks(), "numbers")
        .rich_map(common::FailOnce::after(1200).pausing_every(10))
        .add_sink(FileSink::text(dir.join("out")));
    let client = env.execute_async("rabbitmq").unwrap();
    common::wait_until("every message committed", || common::committed_lines(&dir.join("out")).len() >= 3000);
    // Acknowledged when the checkpoints after them completed: nothing left in the queue.
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.counts("numbers") != (0, 0) {
        assert!(Instant::now() < deadline, "deliveries left: {:?}", server.counts("numbers"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let controller = client.controller();
    client.cancel();
    assert!(client.wait().is_err(), "cancelled");
    assert!(controller.restored_checkpoints().first().is_some_and(Option::is_some), "restored from a checkpoint");
    assert_eq!(common::committed_lines(&dir.join("out")), expected);
    assert_eq!(server.ready("numbers"), 0);
}

#[test]
fn a_message_without_a_correlation_id_fails_an_exactly_once_source_naming_it() {
    let server = RabbitMQServer::start("no-id");
    publish(&server, "plain", vec!["hello".to_string()], false);
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(1);
    let source = RabbitMQSource::builder()
        .uri(&server.uri)
        .queues(["plain"])
        .uses_correlation_id(true)
        .body_deserializer(|body: &[u8]| Ok(body.to_vec()))
        .build()
        .unwrap();
    let error = env
        .from_source(source, WatermarkStrategy::no_watermarks(), "plain")
        .execute_and_collect("no id")
        .unwrap_err()
        .to_string();
    for part in ["queue 'plain'", "no correlation id"] {
        assert!(error.contains(part), "{part} missing: {error}");
    }
}

/// Reads `queue` with a job without checkpoints until `n` messages came; the running job.
fn read_without_checkpoints(server: &RabbitMQServer, queue: &str, n: usize) -> JobClient {
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(1);
    let source = RabbitMQSource::builder()
        .uri(&server.uri)
        .queues([queue])
        .body_deserializer(|body: &[u8]| Ok(body.to_vec()))
        .build()
        .unwrap();
    let read = Arc::new(AtomicUsize::new(0));
    let counted = read.clone();
    env.from_source(source, WatermarkStrategy::no_watermarks(), queue).for_each(move |_: Vec<u8>| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let client = env.execute_async("no checkpoints").unwrap();
    common::wait_until("every message read", || read.load(Ordering::SeqCst) == n);
    client
}

#[test]
fn without_checkpoints_deliveries_count_as_acknowledged_when_sent() {
    let server = RabbitMQServer::start("auto-ack");
    publish(&server, "plain", (0..100).map(|i| i.to_string()).collect(), false);
    let client = read_without_checkpoints(&server, "plain", 100);
    // None left unacknowledged (they would wait for checkpoints that never come).
    assert_eq!(server.counts("plain"), (0, 0));
    client.cancel();
    assert!(client.wait().is_err(), "cancelled");
}

#[test]
fn a_queue_deleted_while_it_is_consumed_fails_the_job_naming_it() {
    let server = RabbitMQServer::start("deleted");
    publish(&server, "doomed", vec!["one".to_string()], false);
    let client = read_without_checkpoints(&server, "doomed", 1);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async {
        let connection = Connection::connect(&server.uri, ConnectionProperties::default()).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        channel.queue_delete("doomed".into(), QueueDeleteOptions::default()).await.unwrap();
    });
    let error = client.wait().unwrap_err().to_string();
    assert!(error.contains("consuming queue 'doomed'") && error.contains("stopped"), "{error}");
}

#[test]
fn an_unreachable_server_fails_the_job_naming_it() {
    let env = StreamExecutionEnvironment::get_execution_environment();
    let sink = RabbitMQSink::builder()
        .uri("amqp://guest:guest@127.0.0.1:1/%2f")
        .queue("nowhere")
        .serializer(|v: &String| v.clone().into_bytes())
        .build()
        .unwrap();
    env.from_collection(vec!["x".to_string()]).sink_to(sink);
    let error = env.execute("unreachable").unwrap_err().to_string();
    assert!(error.contains("127.0.0.1:1") && !error.contains("guest"), "{error}");
}
