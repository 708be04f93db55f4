//! `sink_to` and the unified sink API: writers prepare committables at checkpoints, the sink
//! commits them when the checkpoints complete, and after a failure the output holds every
//! record once.

mod common;

use brisk::prelude::*;
use brisk::runtime::jobmaster::restart::RestartStrategy;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const RECORDS: u64 = 20_000;

/// A pretend database table: batches are committed once each, by id.
#[derive(Default)]
struct Table {
    rows: Vec<u64>,
    batches: HashSet<String>,
    /// Rows written by writers but not committed yet, across all writers.
    staged: u64,
}

/// Records staged by a writer between two checkpoints.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Batch {
    id: String,
    rows: Vec<u64>,
}

#[derive(Clone)]
struct TableSink {
    table: Arc<Mutex<Table>>,
}

/// Tells writers apart across restarts, so batch ids never repeat.
static WRITERS: AtomicU64 = AtomicU64::new(0);

struct TableWriter {
    name: String,
    staged: Vec<u64>,
    batches: u64,
    table: Arc<Mutex<Table>>,
}

impl SinkWriter<u64, Batch> for TableWriter {
    fn write(&mut self, value: u64, _: &SinkContext<'_>) -> Result<(), BoxError> {
        self.staged.push(value);
        self.table.lock().unwrap().staged += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        Ok(())
    }

    fn prepare_commit(&mut self, _checkpoint_id: u64) -> Result<Vec<Batch>, BoxError> {
        if self.staged.is_empty() {
            return Ok(Vec::new());
        }
        self.batches += 1;
        let id = format!("{}-{}", self.name, self.batches);
        Ok(vec![Batch { id, rows: std::mem::take(&mut self.staged) }])
    }
}

impl Sink<u64> for TableSink {
    type Committable = Batch;
    type Writer = TableWriter;

    fn create_writer(&mut self, ctx: &WriterInitContext<'_, '_, Batch>) -> Result<TableWriter, BoxError> {
        let name =
            format!("writer-{}-{}", ctx.runtime.index_of_this_subtask(), WRITERS.fetch_add(1, Ordering::Relaxed));
        Ok(TableWriter { name, staged: Vec::new(), batches: 0, table: self.table.clone() })
    }

    fn commit(&mut self, batches: Vec<Batch>) -> Result<(), BoxError> {
        let mut table = self.table.lock().unwrap();
        for batch in batches {
            if table.batches.insert(batch.id) {
                table.rows.extend(batch.rows);
            }
        }
        Ok(())
    }
}

/// The generated numbers through a map (failing once if `fail`) into the table, at
/// parallelism 2 with checkpoints every 50 ms; the table's rows, sorted, and the job's result.
fn run(fail: bool) -> (Vec<u64>, Table, JobExecutionResult) {
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    env.enable_checkpointing(Duration::from_millis(50));
    env.set_restart_strategy(RestartStrategy::FixedDelay { attempts: 5, delay: Duration::from_millis(10) });
    let table = Arc::new(Mutex::new(Table::default()));
    let fail_once = if fail { common::FailOnce::after(5000) } else { common::FailOnce::after(5000).disarmed() };
    env.from_source(
        DataGeneratorSource::new(|i| i, RECORDS).with_rate_limit(40_000.0),
        WatermarkStrategy::no_watermarks(),
        "numbers",
    )
    .rich_map(fail_once)
    .sink_to(TableSink { table: table.clone() });
    let result = env.execute("sink-to").unwrap();
    let table = std::mem::take(&mut *table.lock().unwrap());
    let mut rows = table.rows.clone();
    rows.sort_unstable();
    (rows, table, result)
}

#[test]
fn sink_to_commits_every_record_once_at_checkpoints_also_after_a_failure() {
    let expected: Vec<u64> = (0..RECORDS).collect();
    let (rows, table, result) = run(false);
    assert_eq!(rows, expected);
    assert!(result.checkpoints.completed >= 2, "committed in several checkpoints");
    assert!(table.batches.len() > 2, "{} batches", table.batches.len());

    let (rows, table, result) = run(true);
    assert_eq!(result.restarts, 1);
    assert_eq!(rows, expected, "the failed attempt's uncommitted records are replayed, committed ones not");
    assert!(table.staged > RECORDS, "the failed attempt had staged records it never committed");
}
