//! Parquet (Arrow's `parquet` crate) as a bulk format of the exactly-once `FileSink` (Flink's
//! `ParquetWriters`) and of the `FileSource` (Flink's `ParquetColumnarRowInputFormat`): each
//! part file is one Parquet file, completed when the part closes at a checkpoint, so committed
//! files are always whole. Records become rows through serde against an Arrow schema (Arrow's
//! JSON decoder), and rows records through serde from Arrow's JSON rows, so any serde type with
//! fields of the schema's names works without code per type.

use arrow_json::reader::{Decoder, ReaderBuilder};
use brisk::sinks::{BulkWriter, BulkWriterFactory};
use brisk::sources::{BulkFileReader, BulkFormat, BulkRecord};
use brisk_core::{BoxError, NonRecoverableError};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fs::File;
use std::marker::PhantomData;
use std::path::Path;

/// Arrow's schema types, to describe the rows.
pub use arrow_schema;
/// The Parquet crate, for readers of what the sink wrote.
pub use parquet as parquet_crate;

/// Rows buffered before they are encoded as one Arrow batch.
const BATCH_ROWS: usize = 8192;
/// Rows a reader decodes at a time.
const READ_BATCH_ROWS: usize = 1024;

/// Creates Parquet bulk writers (Flink's `ParquetWriters`).
pub struct ParquetWriters;

impl ParquetWriters {
    /// Records as rows of `schema`, field by field through serde (structs by field name):
    /// Flink's `forReflectRecord`. Snappy-compressed.
    pub fn for_serde<T: Serialize>(schema: arrow_schema::SchemaRef) -> ParquetWriterFactory<T> {
        let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        ParquetWriterFactory { schema, properties, _type: PhantomData }
    }
}

/// Opens a Parquet writer per part file; give it to `FileSink::for_bulk_format`.
pub struct ParquetWriterFactory<T> {
    schema: arrow_schema::SchemaRef,
    properties: WriterProperties,
    _type: PhantomData<fn(&T)>,
}

impl<T> ParquetWriterFactory<T> {
    /// Parquet's writer properties (compression, row group size, ...).
    pub fn with_properties(mut self, properties: WriterProperties) -> Self {
        self.properties = properties;
        self
    }
}

impl<T: Serialize + 'static> BulkWriterFactory<T> for ParquetWriterFactory<T> {
    fn create(&self, file: File) -> Result<Box<dyn BulkWriter<T>>, BoxError> {
        let writer = ArrowWriter::try_new(file, self.schema.clone(), Some(self.properties.clone()))
            .map_err(|e| format!("cannot start a Parquet file: {e}"))?;
        // The schema is fixed for the job: a mismatch is not worth a restart.
        let decoder = ReaderBuilder::new(self.schema.clone())
            .with_batch_size(BATCH_ROWS)
            .build_decoder()
            .map_err(|e| NonRecoverableError::new(format!("the Parquet schema is not usable: {e}")))?;
        Ok(Box::new(ParquetBulkWriter { writer, decoder, buffered: 0, _type: PhantomData }))
    }
}

/// Encodes records into Arrow batches and writes them into one Parquet file.
struct ParquetBulkWriter<T> {
    writer: ArrowWriter<File>,
    decoder: Decoder,
    buffered: usize,
    _type: PhantomData<fn(&T)>,
}

impl<T> ParquetBulkWriter<T> {
    fn write_batch(&mut self) -> Result<(), BoxError> {
        // Decoding fails on the rows' content (a null in a required column): every restart
        // would fail the same way.
        let batch = self.decoder.flush().map_err(|e| {
            NonRecoverableError::new(format!("a record of this part does not fit the Parquet schema: {e}"))
        })?;
        if let Some(batch) = batch {
            self.writer.write(&batch).map_err(|e| format!("cannot write Parquet rows: {e}"))?;
        }
        self.buffered = 0;
        Ok(())
    }
}

impl<T: Serialize> BulkWriter<T> for ParquetBulkWriter<T> {
    fn add_element(&mut self, value: &T) -> Result<(), BoxError> {
        // The same record fails after any restart: fail the job, not the attempt.
        self.decoder
            .serialize(std::slice::from_ref(value))
            .map_err(|e| NonRecoverableError::new(format!("the record does not fit the Parquet schema: {e}")))?;
        self.buffered += 1;
        if self.buffered >= BATCH_ROWS {
            self.write_batch()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), BoxError> {
        self.write_batch()?;
        // The footer first (`finish` writes and flushes it), then the file made durable.
        self.writer.finish().map_err(|e| format!("cannot complete the Parquet file: {e}"))?;
        self.writer.inner_mut().sync_all().map_err(|e| format!("cannot complete the Parquet file: {e}"))?;
        Ok(())
    }
}

/// Reads Parquet files as records of type `T` (struct fields by column name): give it to
/// `FileSource::for_bulk_format`.
pub struct ParquetFormat<T>(PhantomData<fn() -> T>);

impl<T> ParquetFormat<T> {
    /// Rows of any Parquet schema, as serde records.
    pub fn for_serde() -> Self {
        ParquetFormat(PhantomData)
    }
}

impl<T: DeserializeOwned + 'static> BulkFormat<T> for ParquetFormat<T> {
    fn open(&self, path: &Path, skip: u64) -> Result<Box<dyn BulkFileReader<T>>, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let skip = usize::try_from(skip).map_err(|_| format!("cannot skip {skip} rows"))?;
        let rows = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|builder| builder.with_batch_size(READ_BATCH_ROWS).with_offset(skip).build())
            .map_err(|e| format!("not a readable Parquet file: {e}"))?;
        Ok(Box::new(ParquetFileReader { rows, _type: PhantomData }))
    }
}

/// The rows of one Parquet file, a batch at a time.
struct ParquetFileReader<T> {
    rows: ParquetRecordBatchReader,
    _type: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> BulkFileReader<T> for ParquetFileReader<T> {
    fn read_batch(&mut self, out: &mut Vec<BulkRecord<T>>) -> Result<bool, String> {
        let Some(batch) = self.rows.next() else { return Ok(false) };
        let batch = batch.map_err(|e| format!("cannot read Parquet rows: {e}"))?;
        let mut json = arrow_json::LineDelimitedWriter::new(Vec::new());
        json.write(&batch).and_then(|()| json.finish()).map_err(|e| format!("cannot convert Parquet rows: {e}"))?;
        let json = json.into_inner();
        for line in json.split(|b| *b == b'\n').filter(|line| !line.is_empty()) {
            out.push(
                serde_json::from_slice(line)
                    .map_err(|e| (format!("the row does not fit the record type: {e}"), line.to_vec())),
            );
        }
        Ok(true)
    }
}
