//! Avro object container files (the `apache-avro` crate) as a bulk format of the exactly-once
//! `FileSink` (Flink's `AvroWriters`) and of the `FileSource` (Flink's `AvroInputFormat`):
//! each part file is one container file, completed when the part closes at a checkpoint.
//! Records are written and read through serde against the file's schema.

use apache_avro::{Codec, DeflateSettings, Reader, Schema, Writer, from_value};
use brisk::sinks::{BulkWriter, BulkWriterFactory};
use brisk::sources::{BulkFileReader, BulkFormat, BulkRecord};
use brisk_core::{BoxError, NonRecoverableError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fs::File;
use std::io::BufReader;
use std::marker::PhantomData;
use std::path::Path;

/// The Avro crate, for schemas and readers of what the sink wrote.
pub use apache_avro;

/// Records a reader decodes per batch.
const READ_BATCH_RECORDS: usize = 1024;

/// Creates Avro bulk writers (Flink's `AvroWriters`).
pub struct AvroWriters;

impl AvroWriters {
    /// Records written through serde with `schema` (Avro's JSON schema), deflate-compressed
    /// (Flink's `forReflectRecord`); the schema's mistakes are named here.
    pub fn for_serde<T: Serialize>(schema: &str) -> Result<AvroWriterFactory<T>, String> {
        let schema = Schema::parse_str(schema).map_err(|e| format!("invalid Avro schema: {e}"))?;
        // The container writer borrows its schema for its whole life, and part files are
        // written for the job's whole life: one schema per sink, kept for good.
        let schema: &'static Schema = Box::leak(Box::new(schema));
        Ok(AvroWriterFactory { schema, _type: PhantomData })
    }
}

/// Opens an Avro container writer per part file; give it to `FileSink::for_bulk_format`.
pub struct AvroWriterFactory<T> {
    schema: &'static Schema,
    _type: PhantomData<fn(&T)>,
}

impl<T: Serialize + 'static> BulkWriterFactory<T> for AvroWriterFactory<T> {
    fn create(&self, file: File) -> Result<Box<dyn BulkWriter<T>>, BoxError> {
        let writer = Writer::with_codec(self.schema, file, Codec::Deflate(DeflateSettings::default()))
            .map_err(|e| format!("cannot start an Avro file: {e}"))?;
        Ok(Box::new(AvroBulkWriter { writer, _type: PhantomData }))
    }
}

/// Appends records to one Avro container file.
struct AvroBulkWriter<T> {
    writer: Writer<'static, File>,
    _type: PhantomData<fn(&T)>,
}

impl<T: Serialize> BulkWriter<T> for AvroBulkWriter<T> {
    fn add_element(&mut self, value: &T) -> Result<(), BoxError> {
        // The same record fails after any restart: fail the job, not the attempt.
        self.writer
            .append_ser(value)
            .map_err(|e| NonRecoverableError::new(format!("the record does not fit the Avro schema: {e}")))?;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), BoxError> {
        let file = self.writer.into_inner().map_err(|e| format!("cannot complete the Avro file: {e}"))?;
        file.sync_all().map_err(|e| format!("cannot complete the Avro file: {e}"))?;
        Ok(())
    }
}

/// Reads Avro container files as records of type `T`: give it to
/// `FileSource::for_bulk_format`.
pub struct AvroFormat<T>(PhantomData<fn() -> T>);

impl<T> AvroFormat<T> {
    /// Records of any Avro schema (the writer's, from the file), through serde.
    pub fn for_serde() -> Self {
        AvroFormat(PhantomData)
    }
}

impl<T: DeserializeOwned + 'static> BulkFormat<T> for AvroFormat<T> {
    fn open(&self, path: &Path, skip: u64) -> Result<Box<dyn BulkFileReader<T>>, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let mut records =
            Reader::new(BufReader::new(file)).map_err(|e| format!("not a readable Avro container file: {e}"))?;
        for _ in 0..skip {
            match records.next() {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("cannot read Avro records: {e}")),
                None => break,
            }
        }
        Ok(Box::new(AvroFileReader { records, _type: PhantomData }))
    }
}

/// The records of one Avro file, a batch at a time.
struct AvroFileReader<T> {
    records: Reader<'static, BufReader<File>>,
    _type: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> BulkFileReader<T> for AvroFileReader<T> {
    fn read_batch(&mut self, out: &mut Vec<BulkRecord<T>>) -> Result<bool, String> {
        for _ in 0..READ_BATCH_RECORDS {
            let Some(value) = self.records.next() else { return Ok(false) };
            let value = value.map_err(|e| format!("cannot read Avro records: {e}"))?;
            out.push(from_value(&value).map_err(|e| {
                (format!("the record does not fit the record type: {e}"), format!("{value:?}").into_bytes())
            }));
        }
        Ok(true)
    }
}
