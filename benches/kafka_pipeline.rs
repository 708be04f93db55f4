//! Kafka source → map → Kafka sink on librdkafka's mock cluster, 100-byte records, at least
//! once and exactly once, against librdkafka's own producer and consumer on the same machine
//! (the ceiling).
//!
//! `cargo bench --features kafka --bench kafka_pipeline -- [RECORDS] [PARALLELISM]`

use brisk::prelude::*;
use brisk_connectors::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use brisk_connectors::kafka::rdkafka::mocking::MockCluster;
use brisk_connectors::kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use brisk_connectors::kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use brisk_connectors::kafka::{DeliveryGuarantee, KafkaSink, KafkaSource, OffsetsInitializer, formats};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The mock broker keeps at most 5 MB (and 100,000 records) per partition and drops the
/// oldest beyond: spread the records so that every one is kept.
const RECORDS_PER_PARTITION: u64 = 20_000;

fn per_second(records: u64, took: Duration) -> String {
    format!("{:.0} records/s ({took:.2?})", records as f64 / took.as_secs_f64())
}

/// Writes `records` records of 100 bytes to `topic` with one producer.
fn produce(servers: &str, topic: &str, records: u64) -> anyhow::Result<Duration> {
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", servers).set("linger.ms", "5").create()?;
    let payload = [b'x'; 100];
    let started = Instant::now();
    for i in 0..records {
        let key = (i % 1024).to_le_bytes();
        let mut record = BaseRecord::to(topic).key(&key).payload(&payload[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, again)) => {
                    record = again;
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(started.elapsed())
}

/// Reads every record of `topic` with one consumer.
fn consume(servers: &str, topic: &str, records: u64, partitions: i32) -> anyhow::Result<Duration> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "ceiling")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?;
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Offset(0))?;
    }
    consumer.incremental_assign(&list)?;
    let mut held = 0;
    for p in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        held += high - low;
    }
    anyhow::ensure!(held as u64 == records, "the topic holds {held} records, not {records}");
    let started = Instant::now();
    let mut read = 0;
    while read < records {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            message?;
            read += 1;
        }
    }
    Ok(started.elapsed())
}

/// Runs the job from topic `in` to `out` with `guarantee`; how long it took.
fn pipeline(servers: &str, parallelism: usize, guarantee: DeliveryGuarantee, out: &str) -> anyhow::Result<Duration> {
    let mut configuration = Configuration::new();
    configuration.set("parallelism.default", parallelism);
    configuration.set("execution.checkpointing.interval", "1 s");
    let env = StreamExecutionEnvironment::from_configuration(&configuration)?;
    let source = KafkaSource::builder()
        .bootstrap_servers(servers)
        .topics(["in"])
        .bounded(OffsetsInitializer::latest())
        .value_deserializer(formats::bytes)
        .build()
        .map_err(anyhow::Error::msg)?;
    let sink = KafkaSink::builder()
        .bootstrap_servers(servers)
        .topic(out)
        .property("linger.ms", "5")
        .delivery_guarantee(guarantee)
        .transactional_id_prefix(out)
        .value_serializer(|v: &Vec<u8>| v.clone())
        .build()
        .map_err(anyhow::Error::msg)?;
    env.from_source(source, WatermarkStrategy::no_watermarks(), "in")
        .map(|mut v: Vec<u8>| {
            v[0] = b'y';
            v
        })
        .sink_to(sink);
    let started = Instant::now();
    let result = env.execute("kafka pipeline")?;
    let took = started.elapsed();
    let durations = &result.checkpoints.end_to_end_duration;
    if let Some(mean) = durations.sum.checked_div(durations.count) {
        println!("  {} checkpoints, end to end: mean {mean} ms, max {} ms", durations.count, durations.max);
    }
    Ok(took)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let records: u64 = args.first().map(|r| r.parse()).transpose()?.unwrap_or(1_000_000);
    let parallelism: usize = args.get(1).map(|p| p.parse()).transpose()?.unwrap_or(2);
    let partitions = records.div_ceil(RECORDS_PER_PARTITION) as i32;
    let cluster = MockCluster::new(1)?;
    cluster.create_topic("in", partitions, 1)?;
    let servers = cluster.bootstrap_servers();
    println!("librdkafka producer: {}", per_second(records, produce(&servers, "in", records)?));
    println!("librdkafka consumer: {}", per_second(records, consume(&servers, "in", records, partitions)?));

    for (guarantee, out) in [(DeliveryGuarantee::AtLeastOnce, "out"), (DeliveryGuarantee::ExactlyOnce, "out-eos")] {
        cluster.create_topic(out, partitions, 1)?;
        let took = pipeline(&servers, parallelism, guarantee, out)?;
        let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &servers).create()?;
        let mut written = 0;
        for p in 0..partitions {
            written += consumer.fetch_watermarks(out, p, Duration::from_secs(10))?.1;
        }
        anyhow::ensure!(written as u64 == records, "the job wrote {written} records, not {records}");
        println!(
            "Brisk source → map → sink, p={parallelism}, {guarantee:?}, checkpoints every 1 s: {}",
            per_second(records, took)
        );
    }
    Ok(())
}
