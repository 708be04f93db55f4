//! The PostgreSQL sink and lookup against a real PostgreSQL server (Debian's, started here on
//! 127.0.0.1 in a fresh data directory): upserts exactly once through a failure, a lookup join
//! with its cache, and a statement the server refuses.
#![cfg(feature = "postgres")]

mod common;

use brisk::prelude::*;
use brisk_connectors::postgres::{LocalServer, PostgresLookup, PostgresSink, SqlValue};

/// A server of the test's own, in a fresh directory.
fn start(name: &str) -> LocalServer {
    LocalServer::start(&common::temp_dir(&format!("postgres-{name}"))).expect("a PostgreSQL server")
}

#[test]
fn upserts_keep_every_count_exactly_once_through_a_failure() {
    let server = start("upsert");
    server.client().unwrap().batch_execute("CREATE TABLE counts (word TEXT PRIMARY KEY, n INTEGER NOT NULL)").unwrap();
    let sink = PostgresSink::builder()
        .connection(server.connection())
        .statement("INSERT INTO counts (word, n) VALUES ($1, $2) ON CONFLICT (word) DO UPDATE SET n = EXCLUDED.n")
        .params(|(word, n): &(String, i64)| vec![SqlValue::Text(word.clone()), SqlValue::Int(*n)])
        .batch_size(100)
        .build()
        .unwrap();
    let result = common::running_word_counts_into(sink);
    assert_eq!(result.restarts, 1);
    let rows = server.client().unwrap().query("SELECT word, n FROM counts ORDER BY word", &[]).unwrap();
    assert_eq!(rows.len(), 37);
    for row in rows {
        let (word, n): (String, i32) = (row.get(0), row.get(1));
        let i: usize = word[1..].parse().unwrap();
        assert_eq!(n as usize, common::final_word_count(i), "{word}");
    }
}

#[test]
fn a_lookup_join_enriches_records_from_a_table() {
    let server = start("lookup");
    server
        .client()
        .unwrap()
        .batch_execute(
            "CREATE TABLE customers (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
             INSERT INTO customers VALUES (1, 'Ada'), (2, 'Grace'), (3, 'Edsger');",
        )
        .unwrap();
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    let lookup = PostgresLookup::new(
        server.connection(),
        "SELECT name FROM customers WHERE id = $1",
        |order: &(i64, i64)| SqlValue::Int(order.0),
        |row| row.get::<_, String>(0),
        |(customer, amount): (i64, i64), name: Option<String>| {
            (name.unwrap_or_else(|| format!("unknown {customer}")), amount)
        },
    );
    let orders: Vec<(i64, i64)> = (0..300).map(|i| (i % 4 + 1, i)).collect();
    let mut enriched = env.from_collection(orders).rich_map(lookup).execute_and_collect("lookup").unwrap();
    enriched.sort_by_key(|(_, amount)| *amount);
    let names = ["Ada", "Grace", "Edsger", "unknown 4"];
    let expected: Vec<(String, i64)> = (0..300).map(|i| (names[(i % 4) as usize].to_string(), i)).collect();
    assert_eq!(enriched, expected);
}

#[test]
fn a_statement_the_server_refuses_fails_the_job_naming_it() {
    let server = start("refused");
    let env = StreamExecutionEnvironment::get_execution_environment();
    let sink = PostgresSink::builder()
        .connection(server.connection())
        .statement("INSERT INTO missing_table VALUES ($1)")
        .params(|n: &i64| vec![SqlValue::Int(*n)])
        .build()
        .unwrap();
    env.from_sequence(1, 3).sink_to(sink);
    let error = env.execute("refused").unwrap_err().to_string();
    assert!(error.contains("INSERT INTO missing_table") && error.contains("missing_table"), "{error}");
}
