//! Parquet files from the exactly-once file sink: every record once in committed, whole
//! Parquet files (one per subtask and checkpoint) with and without a failure, read back with
//! the Parquet crate's own reader; a record that does not fit the schema fails the job. And
//! the files read back by the file source, record for record through a failure; a file that
//! is not Parquet is named in the error.
#![cfg(feature = "parquet")]

mod common;

use brisk::prelude::*;
use brisk::runtime::jobmaster::restart::RestartStrategy;
use brisk_connectors::parquet::arrow_schema::{DataType, Field, Schema};
use brisk_connectors::parquet::parquet_crate::file::reader::{FileReader, SerializedFileReader};
use brisk_connectors::parquet::parquet_crate::record::RowAccessor;
use brisk_connectors::parquet::{ParquetFormat, ParquetWriters};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Reading {
    sensor: i64,
    name: String,
    value: Option<f64>,
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("sensor", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ]))
}

fn reading(i: i64) -> Reading {
    Reading { sensor: i % 17, name: format!("r{i:05}"), value: Some(i as f64 / 4.0) }
}

/// The committed Parquet files in `dir` (hidden ones are in progress or pending).
fn committed_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    files
}

/// Every row of the committed files, as (sensor, name, value), sorted by name.
fn rows(dir: &Path) -> Vec<(i64, String, f64)> {
    let mut rows = Vec::new();
    for file in committed_files(dir) {
        let reader = SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
        for row in reader.get_row_iter(None).unwrap() {
            let row = row.unwrap();
            rows.push((row.get_long(0).unwrap(), row.get_string(1).unwrap().clone(), row.get_double(2).unwrap()));
        }
    }
    rows.sort_by(|a, b| a.1.cmp(&b.1));
    rows
}

fn run(dir: &Path, n: i64, map: common::FailOnce) -> Result<JobExecutionResult, JobError> {
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    env.enable_checkpointing(Duration::from_millis(50));
    env.set_restart_strategy(RestartStrategy::FixedDelay { attempts: 3, delay: Duration::from_millis(10) });
    env.from_sequence(0, n - 1)
        .map(reading)
        .rich_map(map.pausing_every(100))
        .add_sink(FileSink::for_bulk_format(dir, ParquetWriters::for_serde(schema())));
    env.execute("parquet")
}

#[test]
fn every_record_is_in_one_committed_parquet_file_with_and_without_a_failure() {
    let base = common::temp_dir("parquet-sink");
    let expected: Vec<(i64, String, f64)> =
        (0..10_000).map(reading).map(|r| (r.sensor, r.name, r.value.unwrap_or_default())).collect();
    let (calm, failing) = (base.join("calm"), base.join("failing"));
    run(&calm, 10_000, common::FailOnce::after(3000).disarmed()).unwrap();
    assert_eq!(rows(&calm), expected);
    // Bulk parts roll at every checkpoint: many files, each a whole Parquet file.
    assert!(committed_files(&calm).len() > 2, "{:?}", committed_files(&calm));
    run(&failing, 10_000, common::FailOnce::after(3000)).unwrap();
    assert_eq!(rows(&failing), expected);
}

#[test]
fn a_record_that_does_not_fit_the_schema_fails_the_job_with_the_reason() {
    let dir = common::temp_dir("parquet-misfit");
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.from_collection(vec![reading(1), Reading { sensor: 2, name: "no value".into(), value: None }])
        .add_sink(FileSink::for_bulk_format(&dir, ParquetWriters::for_serde(schema())));
    let error = env.execute("misfit").unwrap_err().to_string();
    assert!(error.contains("fit the Parquet schema") && error.contains("\"value\""), "{error}");
}

#[test]
fn the_file_source_reads_parquet_files_record_for_record_through_a_failure() {
    let base = common::temp_dir("parquet-source");
    let files = base.join("files");
    run(&files, 10_000, common::FailOnce::after(u64::MAX).disarmed()).unwrap();
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    env.enable_checkpointing(Duration::from_millis(20));
    env.set_restart_strategy(RestartStrategy::FixedDelay { attempts: 3, delay: Duration::from_millis(10) });
    let source = FileSource::for_bulk_format([&files], ParquetFormat::<Reading>::for_serde());
    env.from_source(source, WatermarkStrategy::no_watermarks(), "readings")
        .rich_map(common::FailOnce::after(3000).pausing_every(10))
        .map(|r: Reading| format!("{},{},{}", r.name, r.sensor, r.value.unwrap_or_default()))
        .add_sink(FileSink::text(base.join("out")));
    let result = env.execute("read parquet").unwrap();
    // Restored mid-file: the readers resumed at the records their checkpoint held.
    assert!(result.restored_checkpoints.first().is_some_and(Option::is_some), "{:?}", result.restored_checkpoints);
    let mut expected: Vec<String> =
        (0..10_000).map(reading).map(|r| format!("{},{},{}", r.name, r.sensor, r.value.unwrap_or_default())).collect();
    expected.sort();
    assert_eq!(common::read_sorted_lines(&base.join("out")), expected);
}

#[test]
fn a_file_that_is_not_parquet_is_named_in_the_error() {
    let dir = common::temp_dir("parquet-not");
    std::fs::write(dir.join("notes.parquet"), "just text").unwrap();
    let env = StreamExecutionEnvironment::get_execution_environment();
    let source = FileSource::for_bulk_format([&dir], ParquetFormat::<Reading>::for_serde());
    let error = env
        .from_source(source, WatermarkStrategy::no_watermarks(), "notes")
        .execute_and_collect("not parquet")
        .unwrap_err()
        .to_string();
    assert!(error.contains("notes.parquet") && error.contains("not a readable Parquet file"), "{error}");
}
