//! Fraud detection (Flink's walkthrough): transactions from Kafka, keyed by account; a small
//! transaction followed within a minute by a large one raises an alert, written to Kafka
//! exactly once (a Kafka transaction per checkpoint).
//!
//! `cargo run --release --features kafka --example fraud_detection -- [--bootstrap-servers HOST:PORT]
//! [--input-topic transactions] [--output-topic alerts] [--bounded] [--transactions N]
//! [--parallelism N] [--checkpoint-interval 1s] ...`
//!
//! Without `--bootstrap-servers` it starts librdkafka's in-process mock cluster, writes N
//! generated transactions to it, reads them to their end and prints the alerts.

use anyhow::{Context, bail};
use brisk_connectors::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use brisk_connectors::kafka::rdkafka::mocking::MockCluster;
use brisk_connectors::kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use brisk_connectors::kafka::rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use brisk_examples::cli;
use brisk_examples::fraud::{Alert, expected_alerts, fraud_detection, generate};
use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Flags small-then-large transaction pairs per account, as in Flink's fraud-detection
/// walkthrough.
#[derive(Parser, Debug)]
#[command(name = "fraud_detection", version)]
struct Args {
    /// Kafka brokers (`host:port,...`); without them an in-process mock cluster with generated
    /// transactions is used.
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// The topic of transactions (JSON: `{"account":1,"amount":0.5,"timestamp":0}`).
    #[arg(long, default_value = "transactions")]
    input_topic: String,
    /// The topic alerts are written to (JSON).
    #[arg(long, default_value = "alerts")]
    output_topic: String,
    /// Read the transactions up to the end they have when the job starts, then stop (always so
    /// with the mock cluster).
    #[arg(long)]
    bounded: bool,
    /// Transactions generated for the mock cluster.
    #[arg(long, default_value_t = 10_000)]
    transactions: usize,
    #[command(flatten)]
    common: cli::CommonArgs,
}

/// Writes `count` generated transactions to `topic`.
fn produce(servers: &str, topic: &str, transactions: &[brisk_examples::fraud::Transaction]) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", servers).create()?;
    for t in transactions {
        let (key, value) = (t.account.to_string(), serde_json::to_vec(t)?);
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, again)) => {
                    record = again;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).context("the mock cluster did not take the transactions")?;
    Ok(())
}

/// Every alert in `topic` (one partition).
fn read_alerts(servers: &str, topic: &str) -> anyhow::Result<Vec<Alert>> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", servers).set("group.id", "fraud-example-reader").create()?;
    let (_, end) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10))?;
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&list)?;
    let mut alerts = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while (alerts.len() as i64) < end && std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            alerts.push(serde_json::from_slice(message?.payload().unwrap_or_default())?);
        }
    }
    Ok(alerts)
}

fn run(args: Args) -> anyhow::Result<()> {
    let env = args.common.environment()?;
    let checkpoints = &args.common.checkpoints;
    let failures = checkpoints.failure_injector(args.transactions as u64);
    env.set_failure_injector(failures.clone());
    let Some(servers) = &args.bootstrap_servers else {
        let cluster = MockCluster::new(1).context("cannot start the mock Kafka cluster")?;
        cluster.create_topic(&args.input_topic, 3, 1)?;
        cluster.create_topic(&args.output_topic, 1, 1)?;
        let servers = cluster.bootstrap_servers();
        let transactions = generate(args.transactions, 10, 1_700_000_000_000);
        produce(&servers, &args.input_topic, &transactions)?;
        eprintln!("mock Kafka cluster at {servers}: {} transactions generated", transactions.len());
        fraud_detection(&env, &servers, &args.input_topic, &args.output_topic, true).map_err(anyhow::Error::msg)?;
        cli::execute(&env, "FraudDetection", checkpoints, &failures)?;
        let mut alerts = read_alerts(&servers, &args.output_topic)?;
        for alert in &alerts {
            println!("alert: account {} at {}", alert.account, alert.timestamp);
        }
        // The mock cluster keeps no transaction state, so its readers see the records of
        // transactions aborted by an injected failure too: an alert may repeat then.
        let mut expected = expected_alerts(&transactions);
        alerts.sort_by_key(|a| (a.account, a.timestamp));
        alerts.dedup();
        expected.sort_by_key(|a| (a.account, a.timestamp));
        if alerts != expected {
            bail!("{} distinct alerts, but the rule raises {} on these transactions", alerts.len(), expected.len());
        }
        eprintln!("{} alerts, as the rule expects", alerts.len());
        return Ok(());
    };
    if !args.bounded && !checkpoints.enabled() {
        bail!("alerts are committed to Kafka at checkpoints: an unbounded job needs --checkpoint-interval");
    }
    fraud_detection(&env, servers, &args.input_topic, &args.output_topic, args.bounded).map_err(anyhow::Error::msg)?;
    cli::execute(&env, "FraudDetection", checkpoints, &failures)?;
    Ok(())
}

fn main() -> ExitCode {
    cli::main(run)
}
