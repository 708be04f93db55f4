//! The PostgreSQL upsert sink's rows per second: generated `(key, value)` rows upserted into a
//! table by primary key, against a local server (started here), beside one client running the
//! same statement in the same batches sequentially (a reference).
//!
//! `cargo bench --features postgres --bench postgres_upsert -- [ROWS] [PARALLELISM] [KEYS]`

use brisk::prelude::*;
use brisk_connectors::postgres::{LocalServer, PostgresSink, SqlValue};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const UPSERT: &str = "INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let rows: i64 = args.first().map(|r| r.parse()).transpose()?.unwrap_or(200_000);
    let parallelism: usize = args.get(1).map(|p| p.parse()).transpose()?.unwrap_or(2);
    let keys: i64 = args.get(2).map(|k| k.parse()).transpose()?.unwrap_or(10_000);
    let dir = std::env::temp_dir().join(format!("brisk-bench-postgres-{}", std::process::id()));
    let server = LocalServer::start(&dir).map_err(anyhow::Error::msg)?;
    server.client()?.batch_execute("CREATE TABLE kv (k BIGINT PRIMARY KEY, v BIGINT NOT NULL)")?;

    // The reference: one client, the same statement, transactions of 500 rows, one after another.
    let mut client = server.client()?;
    let statement = client.prepare(UPSERT)?;
    let started = Instant::now();
    for batch in (0..rows).collect::<Vec<i64>>().chunks(500) {
        let mut transaction = client.transaction()?;
        for i in batch {
            transaction.execute(&statement, &[&(i % keys), &i])?;
        }
        transaction.commit()?;
    }
    let took = started.elapsed();
    println!("one client, batches of 500: {:.0} rows/s ({took:.2?})", rows as f64 / took.as_secs_f64());

    let mut configuration = Configuration::new();
    configuration.set("parallelism.default", parallelism);
    configuration.set("execution.checkpointing.interval", "1 s");
    let env = StreamExecutionEnvironment::from_configuration(&configuration)?;
    let sink = PostgresSink::builder()
        .connection(server.connection())
        .statement(UPSERT)
        .params(move |i: &i64| vec![SqlValue::Int(i % keys), SqlValue::Int(*i)])
        .build()
        .map_err(anyhow::Error::msg)?;
    env.from_sequence(0, rows - 1).sink_to(sink);
    let started = Instant::now();
    env.execute("upserts")?;
    let took = started.elapsed();
    let stored: i64 = server.client()?.query_one("SELECT count(*) FROM kv", &[])?.get(0);
    anyhow::ensure!(stored == keys.min(rows), "{stored} rows in the table");
    println!(
        "Brisk PostgresSink, p={parallelism}, upserts over {keys} keys, checkpoints every 1 s: {:.0} rows/s ({took:.2?})",
        rows as f64 / took.as_secs_f64()
    );
    Ok(())
}
