//! The PostgreSQL sink and lookup against a real PostgreSQL server (Debian's, started here on
//! 127.0.0.1 in a fresh data directory): upserts exactly once through a failure, a lookup join
//! with its cache, and a statement the server refuses.
#![cfg(feature = "postgres")]

mod common;

use brisk::prelude::*;
use brisk::runtime::jobmaster::restart::RestartStrategy;
use brisk_connectors::postgres::client::{Client, NoTls};
use brisk_connectors::postgres::{PostgresLookup, PostgresSink, SqlValue};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A PostgreSQL server on a free port of 127.0.0.1 with its own data directory (trust
/// authentication), stopped and removed when dropped. As root it runs as the `postgres` user,
/// which the server requires.
struct PostgresServer {
    child: Child,
    dir: PathBuf,
    connection: String,
}

/// The server's programs (Debian installs them by major version).
fn postgres_bin(program: &str) -> PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql").expect("PostgreSQL (scripts/test.sh installs it)");
    let mut dirs: Vec<PathBuf> = versions.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect();
    dirs.sort();
    dirs.last().expect("a PostgreSQL version").join(program)
}

/// `program args` as the `postgres` user when this process is root.
fn as_server_user(program: &str) -> Command {
    let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.is_ok_and(|uid| uid == "0") {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(postgres_bin(program));
        command
    } else {
        Command::new(postgres_bin(program))
    }
}

impl PostgresServer {
    fn start(name: &str) -> PostgresServer {
        let dir = common::temp_dir(&format!("postgres-{name}"));
        let _ = Command::new("chown").args(["postgres"]).arg(&dir).status();
        let data = dir.join("data");
        let initdb = as_server_user("initdb")
            .args(["--auth=trust", "-U", "postgres", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .status()
            .expect("initdb");
        assert!(initdb.success(), "initdb failed");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = as_server_user("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-k"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres");
        let connection = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
        let server = PostgresServer { child, dir, connection };
        common::wait_until("PostgreSQL to accept connections", || Client::connect(&server.connection, NoTls).is_ok());
        server
    }

    fn client(&self) -> Client {
        Client::connect(&self.connection, NoTls).unwrap()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Fails once, after 3000 records, pausing now and then so checkpoints complete meanwhile.
#[derive(Clone)]
struct FailOnce(Arc<AtomicBool>, u64);

impl RichFunction for FailOnce {}

impl RichMapFunction<(String, i64), (String, i64)> for FailOnce {
    fn map(&mut self, value: (String, i64)) -> Result<(String, i64), BoxError> {
        self.1 += 1;
        if self.1 == 3000 && !self.0.swap(true, Ordering::SeqCst) {
            return Err("planned failure".into());
        }
        if self.1.is_multiple_of(100) {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(value)
    }
}

#[test]
fn upserts_keep_every_count_exactly_once_through_a_failure() {
    let server = PostgresServer::start("upsert");
    server.client().batch_execute("CREATE TABLE counts (word TEXT PRIMARY KEY, n INTEGER NOT NULL)").unwrap();
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    env.enable_checkpointing(Duration::from_millis(30));
    env.set_restart_strategy(RestartStrategy::FixedDelay { attempts: 3, delay: Duration::from_millis(10) });
    let words: Vec<String> = (0..20_000).map(|i| format!("w{}", i % 37)).collect();
    let sink = PostgresSink::builder()
        .connection(&server.connection)
        .statement("INSERT INTO counts (word, n) VALUES ($1, $2) ON CONFLICT (word) DO UPDATE SET n = EXCLUDED.n")
        .params(|(word, n): &(String, i64)| vec![SqlValue::Text(word.clone()), SqlValue::Int(*n)])
        .batch_size(100)
        .build()
        .unwrap();
    env.from_collection(words)
        .map(|w: String| (w, 1i64))
        .key_by(|(w, _): &(String, i64)| w.clone())
        .sum(|(_, n): &mut (String, i64)| n)
        .rich_map(FailOnce(Arc::new(AtomicBool::new(false)), 0))
        .sink_to(sink);
    let result = env.execute("counts").unwrap();
    assert_eq!(result.restarts, 1);
    let rows = server.client().query("SELECT word, n FROM counts ORDER BY word", &[]).unwrap();
    assert_eq!(rows.len(), 37);
    for row in rows {
        let (word, n): (String, i32) = (row.get(0), row.get(1));
        let i: usize = word[1..].parse().unwrap();
        assert_eq!(n as usize, (0..20_000).filter(|k| k % 37 == i).count(), "{word}");
    }
}

#[test]
fn a_lookup_join_enriches_records_from_a_table() {
    let server = PostgresServer::start("lookup");
    server
        .client()
        .batch_execute(
            "CREATE TABLE customers (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
             INSERT INTO customers VALUES (1, 'Ada'), (2, 'Grace'), (3, 'Edsger');",
        )
        .unwrap();
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    let lookup = PostgresLookup::new(
        &server.connection,
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
    let server = PostgresServer::start("refused");
    let env = StreamExecutionEnvironment::get_execution_environment();
    let sink = PostgresSink::builder()
        .connection(&server.connection)
        .statement("INSERT INTO missing_table VALUES ($1)")
        .params(|n: &i64| vec![SqlValue::Int(*n)])
        .build()
        .unwrap();
    env.from_sequence(1, 3).sink_to(sink);
    let error = env.execute("refused").unwrap_err().to_string();
    assert!(error.contains("INSERT INTO missing_table") && error.contains("missing_table"), "{error}");
}
