//! PostgreSQL (Flink's JDBC connector, for PostgreSQL): a sink executing a statement per
//! record in batched transactions, flushed at every checkpoint (an upsert by primary key makes
//! it exactly once: a replay after a failure writes the same rows), and a lookup function
//! with a cache for enrichment joins.

use crate::retry::connect_with_backoff;
use brisk::prelude::{RichFunction, RichMapFunction, RuntimeContext, Sink, SinkContext, SinkWriter, WriterInitContext};
use brisk_core::BoxError;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Row, Statement};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The PostgreSQL client the connector is built on, for what it does not wrap (tests, DDL).
pub use ::postgres as client;

/// A statement parameter; integers and floats adapt to the column's width.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// `NULL`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer (`smallint`, `integer` or `bigint`).
    Int(i64),
    /// A floating-point number (`real` or `double precision`).
    Float(f64),
    /// Text (`text`, `varchar`, ...).
    Text(String),
    /// Bytes (`bytea`).
    Bytes(Vec<u8>),
}

impl ToSql for SqlValue {
    fn to_sql(&self, ty: &Type, out: &mut postgres::types::private::BytesMut) -> Result<IsNull, BoxError> {
        let too_large = |v: &dyn std::fmt::Display| -> BoxError { format!("{v} does not fit a {ty} column").into() };
        match self {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Bool(v) => v.to_sql(ty, out),
            SqlValue::Int(v) if *ty == Type::INT2 => i16::try_from(*v).map_err(|_| too_large(v))?.to_sql(ty, out),
            SqlValue::Int(v) if *ty == Type::INT4 => i32::try_from(*v).map_err(|_| too_large(v))?.to_sql(ty, out),
            SqlValue::Int(v) => v.to_sql(ty, out),
            SqlValue::Float(v) if *ty == Type::FLOAT4 => (*v as f32).to_sql(ty, out),
            SqlValue::Float(v) => v.to_sql(ty, out),
            SqlValue::Text(v) => v.as_str().to_sql(ty, out),
            SqlValue::Bytes(v) => v.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A connection with `config` (`host=... port=... user=... dbname=...`), retried with backoff
/// unless the server refused it (a wrong password, a missing database).
fn connect(config: &str) -> Result<Client, BoxError> {
    connect_with_backoff(
        &format!("PostgreSQL ({config})"),
        || Client::connect(config, NoTls),
        |e| e.as_db_error().is_none(),
    )
}

/// A prepared `statement`, or an error naming it.
fn prepare(client: &mut Client, statement: &str) -> Result<Statement, BoxError> {
    client.prepare(statement).map_err(|e| format!("PostgreSQL refused the statement '{statement}': {e}").into())
}

/// The parameters of a record's statement.
pub type SqlParams<T> = Arc<dyn Fn(&T) -> Vec<SqlValue> + Send + Sync>;

/// Writes records with a statement (Flink's `JdbcSink`); build one with [`PostgresSink::builder`].
pub struct PostgresSink<T> {
    config: String,
    statement: String,
    params: SqlParams<T>,
    batch: usize,
}

impl<T> Clone for PostgresSink<T> {
    fn clone(&self) -> Self {
        PostgresSink {
            config: self.config.clone(),
            statement: self.statement.clone(),
            params: self.params.clone(),
            batch: self.batch,
        }
    }
}

/// Configures a [`PostgresSink`].
pub struct PostgresSinkBuilder<T> {
    config: Option<String>,
    statement: Option<String>,
    params: Option<SqlParams<T>>,
    batch: usize,
}

impl<T> PostgresSink<T> {
    /// A builder; rows go in transactions of up to 500.
    pub fn builder() -> PostgresSinkBuilder<T> {
        PostgresSinkBuilder { config: None, statement: None, params: None, batch: 500 }
    }
}

impl<T> PostgresSinkBuilder<T> {
    /// The connection (`host=... port=... user=... password=... dbname=...`).
    pub fn connection(mut self, config: &str) -> Self {
        self.config = Some(config.to_string());
        self
    }

    /// The statement run per record, with `$1, $2, ...` for its parameters; an upsert
    /// (`INSERT ... ON CONFLICT (key) DO UPDATE ...`) makes the sink exactly once.
    pub fn statement(mut self, sql: &str) -> Self {
        self.statement = Some(sql.to_string());
        self
    }

    /// Each record's parameters.
    pub fn params(mut self, f: impl Fn(&T) -> Vec<SqlValue> + Send + Sync + 'static) -> Self {
        self.params = Some(Arc::new(f));
        self
    }

    /// Records written in one transaction at most.
    pub fn batch_size(mut self, records: usize) -> Self {
        self.batch = records.max(1);
        self
    }

    /// The sink, or what is missing or wrong in its configuration.
    pub fn build(self) -> Result<PostgresSink<T>, String> {
        let config = self.config.ok_or("the PostgreSQL sink needs a connection (host=... user=...)")?;
        config.parse::<postgres::Config>().map_err(|e| format!("invalid PostgreSQL connection '{config}': {e}"))?;
        let statement = self.statement.ok_or("the PostgreSQL sink needs a statement")?;
        let params = self.params.ok_or("the PostgreSQL sink needs the parameters of its statement")?;
        Ok(PostgresSink { config, statement, params, batch: self.batch })
    }
}

/// One subtask's connection and the rows not written yet.
pub struct PostgresWriter<T> {
    sink: PostgresSink<T>,
    client: Option<(Client, Statement)>,
    pending: Vec<Vec<SqlValue>>,
}

impl<T> PostgresWriter<T> {
    /// Writes the pending rows in one transaction; reconnects once if the connection broke.
    fn send(&mut self) -> Result<(), BoxError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut last = String::new();
        for _ in 0..2 {
            let (client, statement) = match &mut self.client {
                Some(open) => open,
                None => {
                    let mut client = connect(&self.sink.config)?;
                    let statement = prepare(&mut client, &self.sink.statement)?;
                    self.client.insert((client, statement))
                }
            };
            let written = client.transaction().and_then(|mut transaction| {
                for row in &self.pending {
                    let params: Vec<&(dyn ToSql + Sync)> = row.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                    transaction.execute(&*statement, &params)?;
                }
                transaction.commit()
            });
            match written {
                Ok(()) => {
                    self.pending.clear();
                    return Ok(());
                }
                Err(e) if client.is_closed() => {
                    self.client = None;
                    last = e.to_string();
                }
                Err(e) => {
                    return Err(format!("PostgreSQL refused a row of '{}': {e}", self.sink.statement).into());
                }
            }
        }
        Err(format!("cannot write to PostgreSQL ({}): {last}", self.sink.config).into())
    }
}

impl<T: Send + 'static> SinkWriter<T, ()> for PostgresWriter<T> {
    fn write(&mut self, value: T, _: &SinkContext<'_>) -> Result<(), BoxError> {
        self.pending.push((self.sink.params)(&value));
        if self.pending.len() >= self.sink.batch {
            self.send()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        self.send()
    }
}

impl<T: Send + 'static> Sink<T> for PostgresSink<T> {
    type Committable = ();
    type Writer = PostgresWriter<T>;

    fn create_writer(&mut self, _: &WriterInitContext<'_, '_, ()>) -> Result<PostgresWriter<T>, BoxError> {
        let mut client = connect(&self.config)?;
        // A statement the server refuses fails the job at its start.
        let statement = prepare(&mut client, &self.statement)?;
        Ok(PostgresWriter { sink: self.clone(), client: Some((client, statement)), pending: Vec::new() })
    }
}

/// Enriches each record with the rows a query finds for it (a lookup join), caching the
/// answers per key for a while; build one with [`PostgresLookup::new`].
pub struct PostgresLookup<I, V, O> {
    config: String,
    query: String,
    key: Arc<dyn Fn(&I) -> SqlValue + Send + Sync>,
    extract: Arc<dyn Fn(&Row) -> V + Send + Sync>,
    combine: Arc<dyn Fn(I, Option<V>) -> O + Send + Sync>,
    ttl: Duration,
    max_entries: usize,
    client: Option<(Client, Statement)>,
    cache: HashMap<String, (Instant, Option<V>)>,
}

impl<I, V, O> Clone for PostgresLookup<I, V, O> {
    fn clone(&self) -> Self {
        PostgresLookup {
            config: self.config.clone(),
            query: self.query.clone(),
            key: self.key.clone(),
            extract: self.extract.clone(),
            combine: self.combine.clone(),
            ttl: self.ttl,
            max_entries: self.max_entries,
            client: None,
            cache: HashMap::new(),
        }
    }
}

impl<I, V, O> PostgresLookup<I, V, O> {
    /// Runs `query` (one parameter, `$1`: the record's `key`), makes a value of the first row
    /// with `extract`, and the output of the record and that value (`None`: no row) with
    /// `combine`. Answers are cached for a minute, 10,000 keys at most.
    pub fn new(
        connection: &str,
        query: &str,
        key: impl Fn(&I) -> SqlValue + Send + Sync + 'static,
        extract: impl Fn(&Row) -> V + Send + Sync + 'static,
        combine: impl Fn(I, Option<V>) -> O + Send + Sync + 'static,
    ) -> Self {
        PostgresLookup {
            config: connection.to_string(),
            query: query.to_string(),
            key: Arc::new(key),
            extract: Arc::new(extract),
            combine: Arc::new(combine),
            ttl: Duration::from_secs(60),
            max_entries: 10_000,
            client: None,
            cache: HashMap::new(),
        }
    }

    /// How long an answer is reused.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Keys cached at most (the cache is emptied when full).
    pub fn cache_size(mut self, entries: usize) -> Self {
        self.max_entries = entries;
        self
    }
}

impl<I, V, O> RichFunction for PostgresLookup<I, V, O> {
    fn open(&mut self, _: &mut RuntimeContext<'_>) -> Result<(), BoxError> {
        let mut client = connect(&self.config)?;
        let statement = prepare(&mut client, &self.query)?;
        self.client = Some((client, statement));
        Ok(())
    }
}

impl<I: Send + 'static, V: Clone + Send + 'static, O: Send + 'static> RichMapFunction<I, O>
    for PostgresLookup<I, V, O>
{
    fn map(&mut self, value: I) -> Result<O, BoxError> {
        let key = (self.key)(&value);
        let cache_key = format!("{key:?}");
        if let Some((at, cached)) = self.cache.get(&cache_key)
            && at.elapsed() < self.ttl
        {
            return Ok((self.combine)(value, cached.clone()));
        }
        let mut last = String::new();
        for _ in 0..2 {
            let (client, statement) = match &mut self.client {
                Some(open) => open,
                None => {
                    let mut client = connect(&self.config)?;
                    let statement = prepare(&mut client, &self.query)?;
                    self.client.insert((client, statement))
                }
            };
            match client.query(&*statement, &[&key]) {
                Ok(rows) => {
                    let found = rows.first().map(|row| (self.extract)(row));
                    if self.cache.len() >= self.max_entries {
                        self.cache.clear();
                    }
                    self.cache.insert(cache_key, (Instant::now(), found.clone()));
                    return Ok((self.combine)(value, found));
                }
                Err(e) if client.is_closed() => {
                    self.client = None;
                    last = e.to_string();
                }
                Err(e) => return Err(format!("the lookup '{}' for {key:?} failed: {e}", self.query).into()),
            }
        }
        Err(format!("cannot reach PostgreSQL ({}) for a lookup: {last}", self.config).into())
    }
}

/// A PostgreSQL server of its own for tests and benchmarks: Debian's binaries, a fresh data
/// directory with trust authentication, a free port of 127.0.0.1; stopped and removed when
/// dropped. Under root it runs as the `postgres` user, as the server requires.
pub struct LocalServer {
    child: std::process::Child,
    dir: std::path::PathBuf,
    connection: String,
}

impl LocalServer {
    /// Starts a server with its data under `dir` (created; removed when the server is dropped).
    pub fn start(dir: &std::path::Path) -> Result<LocalServer, String> {
        use std::process::{Command, Stdio};
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create '{}': {e}", dir.display()))?;
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let bin = Self::bin_dir()?;
        let run = |program: &str| {
            let mut command = if root { Command::new("runuser") } else { Command::new(bin.join(program)) };
            if root {
                command.args(["-u", "postgres", "--"]).arg(bin.join(program));
            }
            command
        };
        if root {
            let _ = Command::new("chown").arg("postgres").arg(dir).status();
        }
        let data = dir.join("data");
        let initdb = run("initdb")
            .args(["--auth=trust", "-U", "postgres", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !initdb.success() {
            return Err(format!("initdb failed for '{}'", data.display()));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let child = run("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-k"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        let connection = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
        let server = LocalServer { child, dir: dir.to_path_buf(), connection };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Client::connect(&server.connection, NoTls).is_err() {
            if Instant::now() > deadline {
                return Err("PostgreSQL did not accept connections within a minute".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// Where Debian installed the newest server's programs.
    fn bin_dir() -> Result<std::path::PathBuf, String> {
        let versions = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("no PostgreSQL server in /usr/lib/postgresql (apt-get install postgresql): {e}"))?;
        let mut dirs: Vec<std::path::PathBuf> = versions.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect();
        dirs.sort();
        dirs.pop().ok_or_else(|| "no PostgreSQL version in /usr/lib/postgresql".to_string())
    }

    /// The connection string of the server.
    pub fn connection(&self) -> &str {
        &self.connection
    }

    /// A client connected to it.
    pub fn client(&self) -> Result<Client, postgres::Error> {
        Client::connect(&self.connection, NoTls)
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
