//! Bulk file formats (Parquet, Avro) through the exactly-once file sink and the file source:
//! every record once in committed, whole files (one per subtask and checkpoint) with and
//! without a failure, checked with each format's own reader; the files read back by the file
//! source record for record through a failure restored mid-file; a record that does not fit
//! the schema fails the job; a file of another format is named in the error.
#![cfg(all(feature = "parquet", feature = "avro"))]

mod common;

use brisk::prelude::*;
use brisk::runtime::jobmaster::restart::RestartStrategy;
use brisk::sinks::BulkWriterFactory;
use brisk::sources::BulkFormat;
use brisk_connectors::avro::{AvroFormat, AvroWriters};
use brisk_connectors::parquet::arrow_schema::{DataType, Field, Schema};
use brisk_connectors::parquet::parquet_crate::file::reader::{FileReader, SerializedFileReader};
use brisk_connectors::parquet::parquet_crate::record::RowAccessor;
use brisk_connectors::parquet::{ParquetFormat, ParquetWriters};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Reading {
    sensor: i64,
    name: String,
    value: Option<f64>,
}

fn parquet_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("sensor", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ]))
}

/// Avro maps an `Option` to a union with null.
const AVRO_SCHEMA: &str = r#"{"type": "record", "name": "Reading", "fields": [
    {"name": "sensor", "type": "long"},
    {"name": "name", "type": "string"},
    {"name": "value", "type": ["null", "double"]}
]}"#;

fn reading(i: i64) -> Reading {
    Reading { sensor: i % 17, name: format!("r{i:05}"), value: Some(i as f64 / 4.0) }
}

fn expected(n: i64) -> Vec<Reading> {
    (0..n).map(reading).collect()
}

/// The committed files in `dir` (hidden ones are in progress or pending).
fn committed_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    files
}

fn sorted(mut readings: Vec<Reading>) -> Vec<Reading> {
    readings.sort_by(|a, b| a.name.cmp(&b.name));
    readings
}

/// Every row of the committed Parquet files, read with the parquet crate's row reader.
fn parquet_rows(dir: &Path) -> Vec<Reading> {
    let mut rows = Vec::new();
    for file in committed_files(dir) {
        let reader = SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
        for row in reader.get_row_iter(None).unwrap() {
            let row = row.unwrap();
            rows.push(Reading {
                sensor: row.get_long(0).unwrap(),
                name: row.get_string(1).unwrap().clone(),
                value: Some(row.get_double(2).unwrap()),
            });
        }
    }
    sorted(rows)
}

/// Every record of the committed Avro files, read with the Avro crate's reader.
fn avro_records(dir: &Path) -> Vec<Reading> {
    use brisk_connectors::avro::apache_avro::{Reader, from_value};
    let mut records = Vec::new();
    for file in committed_files(dir) {
        for value in Reader::new(std::fs::File::open(&file).unwrap()).unwrap() {
            records.push(from_value(&value.unwrap()).unwrap());
        }
    }
    sorted(records)
}

/// `n` readings through `map` into `dir` with the bulk writers of `factory`.
fn write(
    dir: &Path,
    n: i64,
    map: common::FailOnce,
    factory: impl BulkWriterFactory<Reading> + 'static,
) -> Result<JobExecutionResult, JobError> {
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    env.enable_checkpointing(Duration::from_millis(50));
    env.set_restart_strategy(RestartStrategy::FixedDelay { attempts: 3, delay: Duration::from_millis(10) });
    env.from_sequence(0, n - 1)
        .map(reading)
        .rich_map(map.pausing_every(100))
        .add_sink(FileSink::for_bulk_format(dir, factory));
    env.execute("write")
}

/// The sink's files, written without and with a failure, as `read` reads them.
fn check_sink<F: BulkWriterFactory<Reading> + 'static>(
    name: &str,
    factory: impl Fn() -> F,
    read: fn(&Path) -> Vec<Reading>,
) {
    let base = common::temp_dir(name);
    let (calm, failing) = (base.join("calm"), base.join("failing"));
    write(&calm, 10_000, common::FailOnce::after(3000).disarmed(), factory()).unwrap();
    assert_eq!(read(&calm), expected(10_000));
    // Bulk parts roll at every checkpoint: many files, each a whole file of its format.
    assert!(committed_files(&calm).len() > 2, "{:?}", committed_files(&calm));
    write(&failing, 10_000, common::FailOnce::after(3000), factory()).unwrap();
    assert_eq!(read(&failing), expected(10_000));
}

/// The sink's files read back by the file source with `format`, through a failure.
fn check_source<F: BulkWriterFactory<Reading> + 'static, B: BulkFormat<Reading> + 'static>(
    name: &str,
    factory: F,
    format: B,
) {
    let base = common::temp_dir(name);
    let files = base.join("files");
    write(&files, 10_000, common::FailOnce::after(u64::MAX).disarmed(), factory).unwrap();
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    env.enable_checkpointing(Duration::from_millis(20));
    env.set_restart_strategy(RestartStrategy::FixedDelay { attempts: 3, delay: Duration::from_millis(10) });
    env.from_source(FileSource::for_bulk_format([&files], format), WatermarkStrategy::no_watermarks(), "readings")
        .rich_map(common::FailOnce::after(3000).pausing_every(10))
        .add_sink(FileSink::json_lines(base.join("out")));
    let result = env.execute("read").unwrap();
    // Restored mid-file: the readers resumed at the records their checkpoint held.
    assert!(result.restored_checkpoints.first().is_some_and(Option::is_some), "{:?}", result.restored_checkpoints);
    let read: Vec<Reading> =
        common::read_sorted_lines(&base.join("out")).iter().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(sorted(read), expected(10_000));
}

/// A record the schema does not describe fails the job, naming the format's reason.
fn check_misfit<F: BulkWriterFactory<Reading> + 'static>(name: &str, factory: F, reason: &str) {
    let dir = common::temp_dir(name);
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.from_collection(vec![reading(1), Reading { sensor: 2, name: "no value".into(), value: None }])
        .add_sink(FileSink::for_bulk_format(&dir, factory));
    let error = env.execute("misfit").unwrap_err().to_string();
    assert!(error.contains(reason), "{error}");
}

/// A file of another format fails the source, naming the file.
fn check_foreign_file<B: BulkFormat<Reading> + 'static>(name: &str, format: B, reason: &str) {
    let dir = common::temp_dir(name);
    std::fs::write(dir.join("notes.bin"), "just text").unwrap();
    let env = StreamExecutionEnvironment::get_execution_environment();
    let error = env
        .from_source(FileSource::for_bulk_format([&dir], format), WatermarkStrategy::no_watermarks(), "notes")
        .execute_and_collect("foreign")
        .unwrap_err()
        .to_string();
    assert!(error.contains("notes.bin") && error.contains(reason), "{error}");
}

#[test]
fn parquet_files_hold_every_record_once_with_and_without_a_failure() {
    check_sink("parquet-sink", || ParquetWriters::for_serde(parquet_schema()), parquet_rows);
}

#[test]
fn avro_files_hold_every_record_once_with_and_without_a_failure() {
    check_sink("avro-sink", || AvroWriters::for_serde(AVRO_SCHEMA).unwrap(), avro_records);
}

#[test]
fn the_file_source_reads_parquet_files_record_for_record_through_a_failure() {
    check_source("parquet-source", ParquetWriters::for_serde(parquet_schema()), ParquetFormat::for_serde());
}

#[test]
fn the_file_source_reads_avro_files_record_for_record_through_a_failure() {
    check_source("avro-source", AvroWriters::for_serde(AVRO_SCHEMA).unwrap(), AvroFormat::for_serde());
}

#[test]
fn a_record_that_does_not_fit_the_parquet_schema_fails_the_job_with_the_reason() {
    check_misfit("parquet-misfit", ParquetWriters::for_serde(parquet_schema()), "fit the Parquet schema");
}

#[test]
fn a_record_that_does_not_fit_the_avro_schema_fails_the_job_with_the_reason() {
    let sensor_as_text = AVRO_SCHEMA.replace(r#""type": "long""#, r#""type": "string""#);
    check_misfit("avro-misfit", AvroWriters::for_serde(&sensor_as_text).unwrap(), "does not fit the Avro schema");
}

#[test]
fn files_of_another_format_are_named_in_the_error() {
    check_foreign_file("parquet-foreign", ParquetFormat::<Reading>::for_serde(), "not a readable Parquet file");
    check_foreign_file("avro-foreign", AvroFormat::<Reading>::for_serde(), "not a readable Avro container file");
}

#[test]
fn an_invalid_avro_schema_is_refused_when_the_sink_is_built() {
    let error = AvroWriters::for_serde::<Reading>(r#"{"type": "record"}"#).err().unwrap_or_default();
    assert!(error.starts_with("invalid Avro schema"), "{error}");
}
