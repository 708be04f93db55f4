//! The Kafka source and sink against librdkafka's in-process mock cluster: partitions read
//! once each, offsets committed to the consumer group, exactly-once through a failure (offsets
//! restored from the checkpoint), partition discovery, bad records, the sink, and unreachable
//! brokers.
#![cfg(feature = "kafka")]

mod common;

use brisk::prelude::*;
use brisk::runtime::jobmaster::restart::RestartStrategy;
use brisk_connectors::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use brisk_connectors::kafka::rdkafka::mocking::MockCluster;
use brisk_connectors::kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use brisk_connectors::kafka::rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use brisk_connectors::kafka::{KafkaSink, KafkaSource, OffsetsInitializer, formats};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A mock cluster of one broker with `topic` of `partitions` partitions.
fn cluster(
    topic: &str,
    partitions: i32,
) -> MockCluster<'static, brisk_connectors::kafka::rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("a mock Kafka cluster");
    cluster.create_topic(topic, partitions, 1).expect("a topic");
    cluster
}

/// Sends `values` to `topic`, keyed round robin over 7 keys, and waits for them.
fn produce(servers: &str, topic: &str, values: impl IntoIterator<Item = String>) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", servers).create().unwrap();
    for (i, value) in values.into_iter().enumerate() {
        let key = format!("k{}", i % 7);
        producer.send(BaseRecord::to(topic).payload(&value).key(&key)).unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Every value in `topic` (its `partitions` partitions), read from the start.
fn read_all(servers: &str, topic: &str, partitions: i32) -> Vec<String> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", servers).set("group.id", "checker").create().unwrap();
    let mut list = TopicPartitionList::new();
    let mut remaining = 0;
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        remaining += consumer.fetch_watermarks(topic, p, Duration::from_secs(5)).unwrap().1;
    }
    consumer.assign(&list).unwrap();
    let mut values = Vec::new();
    common::wait_until("every record of the topic", || {
        while let Some(Ok(m)) = consumer.poll(Duration::from_millis(10)) {
            values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
        values.len() as i64 >= remaining
    });
    values.sort();
    values
}

/// The offsets group `group` committed in each partition of `topic`.
fn committed(servers: &str, group: &str, topic: &str, partitions: i32) -> Vec<Offset> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", servers).set("group.id", group).create().unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let found = consumer.committed_offsets(list, Duration::from_secs(5)).unwrap();
    (0..partitions).map(|p| found.find_partition(topic, p).unwrap().offset()).collect()
}

fn high_watermarks(servers: &str, topic: &str, partitions: i32) -> Vec<Offset> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", servers).set("group.id", "checker").create().unwrap();
    (0..partitions)
        .map(|p| Offset::Offset(consumer.fetch_watermarks(topic, p, Duration::from_secs(5)).unwrap().1))
        .collect()
}

fn values(n: usize) -> Vec<String> {
    let mut values: Vec<String> = (0..n).map(|i| format!("v{i:05}")).collect();
    values.sort();
    values
}

fn text_source(servers: &str, topic: &str, group: &str) -> KafkaSource<String> {
    KafkaSource::builder()
        .bootstrap_servers(servers)
        .topics([topic])
        .group_id(group)
        .starting_offsets(OffsetsInitializer::earliest())
        .bounded(OffsetsInitializer::latest())
        .value_deserializer(formats::utf8)
        .build()
        .unwrap()
}

#[test]
fn a_bounded_source_reads_every_partition_once_and_commits_the_offsets_to_its_group() {
    let cluster = cluster("words", 3);
    let servers = cluster.bootstrap_servers();
    produce(&servers, "words", values(3000));
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    let source = text_source(&servers, "words", "readers");
    let mut read =
        env.from_source(source, WatermarkStrategy::no_watermarks(), "words").execute_and_collect("read").unwrap();
    read.sort();
    assert_eq!(read, values(3000));
    assert_eq!(committed(&servers, "readers", "words", 3), high_watermarks(&servers, "words", 3));
}

#[test]
fn offsets_restored_from_a_checkpoint_read_every_record_exactly_once_after_a_failure() {
    let cluster = cluster("orders", 3);
    let servers = cluster.bootstrap_servers();
    produce(&servers, "orders", values(20_000));
    let dir = common::temp_dir("kafka-exactly-once");
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    env.enable_checkpointing(Duration::from_millis(30));
    env.set_restart_strategy(RestartStrategy::FixedDelay { attempts: 3, delay: Duration::from_millis(10) });
    env.from_source(text_source(&servers, "orders", "orders-job"), WatermarkStrategy::no_watermarks(), "orders")
        .rich_map(common::FailOnce::after(8000).pausing_every(50))
        .add_sink(FileSink::text(dir.join("out")));
    let result = env.execute("orders").unwrap();
    assert_eq!(result.restarts, 1);
    assert!(result.restored_checkpoints.first().is_some_and(Option::is_some), "restored from a checkpoint");
    assert_eq!(common::read_sorted_lines(&dir.join("out")), values(20_000));
}

#[test]
fn partitions_of_topics_created_later_are_discovered_and_read() {
    let cluster = cluster("disc-a", 2);
    let servers = cluster.bootstrap_servers();
    produce(&servers, "disc-a", (0..100).map(|i| format!("a{i}")));
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    let source = KafkaSource::builder()
        .bootstrap_servers(&servers)
        .topic_pattern("disc-.*")
        .partition_discovery_interval(Duration::from_millis(100))
        .value_deserializer(formats::utf8)
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let into = seen.clone();
    env.from_source(source, WatermarkStrategy::no_watermarks(), "discovered")
        .for_each(move |value: String| into.lock().unwrap().push(value));
    let client = env.execute_async("discovery").unwrap();
    common::wait_until("the first topic", || seen.lock().unwrap().len() == 100);
    cluster.create_topic("disc-b", 1, 1).unwrap();
    produce(&servers, "disc-b", (0..50).map(|i| format!("b{i}")));
    common::wait_until("the topic created later", || seen.lock().unwrap().len() == 150);
    client.cancel();
    let _ = client.wait();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.iter().filter(|v| v.starts_with('b')).count(), 50, "read once each");
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Reading {
    n: i64,
}

/// The readings topic, to its end, as JSON.
fn readings(servers: &str) -> KafkaSource<Reading> {
    KafkaSource::builder()
        .bootstrap_servers(servers)
        .topics(["readings"])
        .bounded(OffsetsInitializer::latest())
        .value_deserializer(formats::json::<Reading>)
        .build()
        .unwrap()
}

#[test]
fn malformed_json_records_follow_the_bad_record_policy() {
    let cluster = cluster("readings", 1);
    let servers = cluster.bootstrap_servers();
    produce(&servers, "readings", [r#"{"n":1}"#, "oops", r#"{"n":3}"#].map(String::from));
    let env = StreamExecutionEnvironment::get_execution_environment();
    let source = readings(&servers);
    let read =
        env.from_source(source, WatermarkStrategy::no_watermarks(), "readings").on_bad_records(BadRecordPolicy::Skip);
    let collected = read.collect_async();
    let client = env.execute_async("readings").unwrap();
    let controller = client.controller();
    client.wait().unwrap();
    assert_eq!(collected.take(), vec![Reading { n: 1 }, Reading { n: 3 }]);
    assert_eq!(controller.metrics().iter().map(|m| m.values.records_in_errors).sum::<u64>(), 1);

    // By default the malformed record fails the job, naming where it is.
    let env = StreamExecutionEnvironment::get_execution_environment();
    let source = readings(&servers);
    let error = env
        .from_source(source, WatermarkStrategy::no_watermarks(), "readings")
        .execute_and_collect("strict")
        .unwrap_err();
    for part in ["split 'readings-0'", "offset 1", "not the expected JSON"] {
        assert!(error.to_string().contains(part), "{part} missing: {error}");
    }
}

#[test]
fn the_sink_writes_every_record_and_flushes_at_checkpoints() {
    let cluster = cluster("out", 2);
    let servers = cluster.bootstrap_servers();
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    env.enable_checkpointing(Duration::from_millis(50));
    let sink = KafkaSink::builder()
        .bootstrap_servers(&servers)
        .topic("out")
        .value_serializer(|v: &String| v.clone().into_bytes())
        .build()
        .unwrap();
    env.from_sequence(0, 2999).map(|i: i64| format!("v{i:05}")).sink_to(sink);
    env.execute("to kafka").unwrap();
    assert_eq!(read_all(&servers, "out", 2), values(3000));
}

#[test]
fn a_record_over_the_size_limit_fails_the_job_saying_which_limit() {
    let cluster = cluster("big", 1);
    let env = StreamExecutionEnvironment::get_execution_environment();
    let sink = KafkaSink::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .topic("big")
        .property("message.max.bytes", "1000")
        .value_serializer(|v: &String| v.clone().into_bytes())
        .build()
        .unwrap();
    env.from_collection(vec!["small".to_string(), "x".repeat(2000)]).sink_to(sink);
    let error = env.execute("too big").unwrap_err().to_string();
    for part in ["a record of 2000 bytes", "'big'", "message.max.bytes"] {
        assert!(error.contains(part), "{part} missing: {error}");
    }
}

#[test]
fn a_topic_deleted_while_it_is_read_fails_the_job_naming_it() {
    use brisk_connectors::kafka::rdkafka::types::RDKafkaRespErr;
    let cluster = cluster("doomed", 2);
    let servers = cluster.bootstrap_servers();
    produce(&servers, "doomed", values(100));
    let env = StreamExecutionEnvironment::get_execution_environment();
    let source = KafkaSource::builder()
        .bootstrap_servers(&servers)
        .topics(["doomed"])
        .starting_offsets(OffsetsInitializer::earliest())
        .partition_discovery_interval(Duration::from_millis(50))
        .value_deserializer(formats::utf8)
        .build()
        .unwrap();
    let read = Arc::new(Mutex::new(0));
    let counted = read.clone();
    env.from_source(source, WatermarkStrategy::no_watermarks(), "doomed")
        .for_each(move |_: String| *counted.lock().unwrap() += 1);
    let client = env.execute_async("deleted topic").unwrap();
    common::wait_until("the topic read", || *read.lock().unwrap() == 100);
    // What the brokers answer for a deleted topic.
    cluster.topic_error("doomed", RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART).unwrap();
    let error = client.wait().unwrap_err().to_string();
    assert!(error.contains(&format!("topic 'doomed' was deleted from the Kafka brokers at {servers}")), "{error}");
}

#[test]
fn unreachable_brokers_fail_the_job_naming_their_address() {
    let env = StreamExecutionEnvironment::get_execution_environment();
    let source = KafkaSource::builder()
        .bootstrap_servers("127.0.0.1:1")
        .topics(["nowhere"])
        .bounded(OffsetsInitializer::latest())
        .request_timeout(Duration::from_secs(2))
        .value_deserializer(formats::utf8)
        .build()
        .unwrap();
    let error = env
        .from_source(source, WatermarkStrategy::no_watermarks(), "nowhere")
        .execute_and_collect("unreachable")
        .unwrap_err();
    assert!(error.to_string().contains("127.0.0.1:1"), "{error}");
}

/// Passes records on with a pause now and then, so a job can be stopped midway.
#[derive(Clone)]
struct Slow;

impl RichFunction for Slow {}

impl RichMapFunction<String, String> for Slow {
    fn map(&mut self, value: String) -> Result<String, BoxError> {
        if value.ends_with('0') {
            std::thread::sleep(Duration::from_micros(500));
        }
        Ok(value)
    }
}

/// The topic read at `parallelism` into `out` (restored from `savepoint` if given); stopped
/// with a savepoint after some output when `stop`.
fn read_orders(
    servers: &str,
    parallelism: usize,
    savepoint: Option<&brisk::runtime::checkpoint::SnapshotLocation>,
    out: &std::path::Path,
    stop: bool,
) -> Option<brisk::runtime::checkpoint::SnapshotLocation> {
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(parallelism);
    env.enable_checkpointing(Duration::from_millis(50));
    if let Some(path) = savepoint {
        env.set_savepoint_restore(path.clone(), false);
    }
    env.from_source(text_source(servers, "rescaled", "rescaled-job"), WatermarkStrategy::no_watermarks(), "orders")
        .uid("kafka-orders")
        .rich_map(Slow)
        .uid("slow")
        .add_sink(FileSink::text(out))
        .uid("files");
    let client = env.execute_async("rescaled").unwrap();
    let savepoint = stop.then(|| {
        common::wait_until("some output", || !common::committed_lines(out).is_empty());
        client.stop_with_savepoint(out.parent().unwrap().join("savepoints"), false).expect("a savepoint")
    });
    client.wait().unwrap();
    savepoint
}

#[test]
fn a_job_rescaled_from_a_savepoint_reads_each_record_once() {
    let cluster = cluster("rescaled", 4);
    let servers = cluster.bootstrap_servers();
    produce(&servers, "rescaled", values(20_000));
    let dir = common::temp_dir("kafka-rescaled");
    let out = dir.join("out");
    let savepoint = read_orders(&servers, 2, None, &out, true).expect("a savepoint at parallelism 2");
    let first = common::committed_lines(&out).len();
    assert!(first < 20_000, "stopped midway ({first} records)");
    // At parallelism 3 the four partitions go to other readers, from the savepoint's offsets.
    read_orders(&servers, 3, Some(&savepoint), &out, false);
    assert_eq!(common::read_sorted_lines(&out), values(20_000));
}

#[test]
fn the_fraud_detection_job_raises_the_alerts_of_flinks_walkthrough_rule() {
    use brisk_examples::fraud::{Alert, expected_alerts, fraud_detection, generate};
    let cluster = cluster("transactions", 3);
    cluster.create_topic("alerts", 1, 1).unwrap();
    let servers = cluster.bootstrap_servers();
    let transactions = generate(5000, 10, 1_700_000_000_000);
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &servers).create().unwrap();
    for t in &transactions {
        let (key, value) = (t.account.to_string(), serde_json::to_vec(t).unwrap());
        producer.send(BaseRecord::to("transactions").key(&key).payload(&value)).unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    fraud_detection(&env, &servers, "transactions", "alerts", true).unwrap();
    env.execute("fraud detection").unwrap();
    let mut alerts: Vec<Alert> =
        read_all(&servers, "alerts", 1).iter().map(|a| serde_json::from_str(a).unwrap()).collect();
    let mut expected = expected_alerts(&transactions);
    assert!(!expected.is_empty());
    alerts.sort_by_key(|a| (a.account, a.timestamp));
    expected.sort_by_key(|a| (a.account, a.timestamp));
    assert_eq!(alerts, expected);
}
