//! Parquet (Arrow's `parquet` crate) as a bulk format of the exactly-once `FileSink` (Flink's
//! `ParquetWriters`): each part file is one Parquet file, completed when the part closes at a
//! checkpoint, so committed files are always whole. Records become rows through serde against
//! an Arrow schema (Arrow's JSON decoder), so any `Serialize` type with fields of the schema's
//! names works without code per type.

use arrow_json::reader::{Decoder, ReaderBuilder};
use brisk::sinks::{BulkWriter, BulkWriterFactory};
use brisk_core::{BoxError, NonRecoverableError};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use std::fs::File;
use std::marker::PhantomData;

/// Arrow's schema types, to describe the rows.
pub use arrow_schema;
/// The Parquet crate, for readers of what the sink wrote.
pub use parquet as parquet_crate;

/// Rows buffered before they are encoded as one Arrow batch.
const BATCH_ROWS: usize = 8192;

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
        self.writer.close().map_err(|e| format!("cannot complete the Parquet file: {e}"))?;
        Ok(())
    }
}
