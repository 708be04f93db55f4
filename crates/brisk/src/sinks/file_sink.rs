//! The exactly-once file sink (Flink's `FileSink` with a row format): each subtask writes
//! lines into an in-progress part file (`.part-<subtask>-<n>.inprogress`); at a checkpoint the
//! file is closed and becomes pending (`.part-<subtask>-<n>.pending`); when the checkpoint
//! completes it is renamed to its final name `part-<subtask>-<n>`. Readers that skip hidden
//! files (names starting with `.`) see committed data only. A part file also rolls when it
//! reaches the size limit. After a restore, files of failed attempts are removed. Bulk formats
//! (Flink's `forBulkFormat`: Parquet) write each part file through a [`BulkWriter`] that
//! completes the file when the part closes, so their parts roll at every checkpoint only.

use super::two_phase::{TwoPhaseCommitSink, TwoPhaseCommitSinkFunction};
use crate::format::TextFormat;
use crate::functions::{RuntimeContext, SinkContext};
use brisk_core::{BoxError, NonRecoverableError};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Default size at which a part file rolls over.
pub const DEFAULT_MAX_PART_SIZE: u64 = 128 << 20;

/// A part file, as a transaction: where it is while written, pending and finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartFiles {
    /// The directory written to, absolute: a restored transaction is committed where it was
    /// written, whatever output the resumed job has (as Flink's committables).
    pub dir: PathBuf,
    /// Every part file of the transaction (several when it rolled over on size), by number.
    pub parts: Vec<u64>,
    /// The subtask writing it.
    pub subtask: usize,
}

/// Appends a record as one line, or says why it cannot be written.
type RowFormat<T> = fn(&T, &mut String) -> Result<(), String>;

/// Writes the records of one part file in a bulk format (Flink's `BulkWriter`).
pub trait BulkWriter<T>: Send {
    /// Adds a record (errors that the same record would cause again should be
    /// `NonRecoverableError`s).
    fn add_element(&mut self, value: &T) -> Result<(), BoxError>;
    /// Writes what is buffered and completes the file.
    fn finish(self: Box<Self>) -> Result<(), BoxError>;
}

/// Opens a [`BulkWriter`] on a new part file (Flink's `BulkWriter.Factory`).
pub trait BulkWriterFactory<T>: Send + Sync {
    /// A writer that writes `file`.
    fn create(&self, file: File) -> Result<Box<dyn BulkWriter<T>>, BoxError>;
}

/// How records become bytes of a part file.
enum Encoding<T> {
    Row(RowFormat<T>),
    Bulk(std::sync::Arc<dyn BulkWriterFactory<T>>),
}

impl<T> Clone for Encoding<T> {
    fn clone(&self) -> Self {
        match self {
            Encoding::Row(format) => Encoding::Row(*format),
            Encoding::Bulk(factory) => Encoding::Bulk(factory.clone()),
        }
    }
}

/// The open part file.
enum PartWriter<T> {
    /// Lines, and the bytes written so far.
    Row(BufWriter<File>, u64),
    Bulk(Box<dyn BulkWriter<T>>),
}

/// The exactly-once file sink's writer.
pub struct FileSink<T> {
    dir: PathBuf,
    format: Encoding<T>,
    max_part_size: u64,
    subtask: usize,
    next_part: u64,
    writer: Option<PartWriter<T>>,
    line: String,
}

impl<T> Clone for FileSink<T> {
    fn clone(&self) -> Self {
        FileSink {
            dir: self.dir.clone(),
            format: self.format.clone(),
            max_part_size: self.max_part_size,
            subtask: 0,
            next_part: 0,
            writer: None,
            line: String::new(),
        }
    }
}

impl<T: TextFormat + 'static> FileSink<T> {
    /// CSV rows into part files in directory `dir`.
    pub fn csv(dir: impl Into<PathBuf>) -> TwoPhaseCommitSinkFunction<T, FileSink<T>> {
        Self::with_format(dir, |v, s| {
            v.write_csv(s);
            Ok(())
        })
    }

    /// Text lines (`(a,b)` for tuples) into part files in directory `dir`.
    pub fn text(dir: impl Into<PathBuf>) -> TwoPhaseCommitSinkFunction<T, FileSink<T>> {
        Self::with_format(dir, |v, s| {
            v.write_text(s);
            Ok(())
        })
    }
}

impl<T: Serialize + 'static> FileSink<T> {
    /// One JSON document per line (JSON lines) into part files in directory `dir`.
    pub fn json_lines(dir: impl Into<PathBuf>) -> TwoPhaseCommitSinkFunction<T, FileSink<T>> {
        Self::with_format(dir, |v, s| {
            let json = serde_json::to_string(v).map_err(|e| format!("the record cannot be written as JSON: {e}"))?;
            s.push_str(&json);
            Ok(())
        })
    }
}

impl<T: 'static> FileSink<T> {
    /// Part files in directory `dir` written by the bulk writers `factory` opens; a part rolls
    /// at every checkpoint (Flink's `FileSink.forBulkFormat`).
    pub fn for_bulk_format(
        dir: impl Into<PathBuf>,
        factory: impl BulkWriterFactory<T> + 'static,
    ) -> TwoPhaseCommitSinkFunction<T, FileSink<T>> {
        Self::with_encoding(dir, Encoding::Bulk(std::sync::Arc::new(factory)))
    }

    fn with_format(dir: impl Into<PathBuf>, format: RowFormat<T>) -> TwoPhaseCommitSinkFunction<T, FileSink<T>> {
        Self::with_encoding(dir, Encoding::Row(format))
    }

    fn with_encoding(dir: impl Into<PathBuf>, format: Encoding<T>) -> TwoPhaseCommitSinkFunction<T, FileSink<T>> {
        TwoPhaseCommitSinkFunction::new(FileSink {
            dir: dir.into(),
            format,
            max_part_size: DEFAULT_MAX_PART_SIZE,
            subtask: 0,
            next_part: 0,
            writer: None,
            line: String::new(),
        })
    }
}

impl<T> FileSink<T> {
    fn in_progress(&self, part: u64) -> PathBuf {
        self.dir.join(format!(".part-{}-{part}.inprogress", self.subtask))
    }

    fn path_of(dir: &Path, subtask: usize, part: u64, state: &str) -> PathBuf {
        match state {
            "pending" => dir.join(format!(".part-{subtask}-{part}.pending")),
            _ => dir.join(format!("part-{subtask}-{part}")),
        }
    }

    fn open_part(&mut self, transaction: &mut PartFiles) -> Result<(), BoxError> {
        let part = self.next_part;
        self.next_part += 1;
        let path = self.in_progress(part);
        let file = File::create(&path).map_err(|e| format!("cannot create part file '{}': {e}", path.display()))?;
        self.writer = Some(match &self.format {
            Encoding::Row(_) => PartWriter::Row(BufWriter::with_capacity(1 << 16, file), 0),
            Encoding::Bulk(factory) => PartWriter::Bulk(factory.create(file)?),
        });
        transaction.parts.push(part);
        Ok(())
    }

    fn close_part(&mut self, transaction: &PartFiles) -> Result<(), BoxError> {
        let Some(writer) = self.writer.take() else { return Ok(()) };
        let Some(part) = transaction.parts.last().copied() else { return Ok(()) };
        let path = self.in_progress(part);
        match writer {
            PartWriter::Row(mut writer, _) => writer.flush().map_err(|e| e.to_string()),
            PartWriter::Bulk(writer) => writer.finish().map_err(|e| e.to_string()),
        }
        .map_err(|e| format!("cannot write part file '{}': {e}", path.display()))?;
        let pending = Self::path_of(&self.dir, self.subtask, part, "pending");
        std::fs::rename(&path, &pending).map_err(|e| format!("cannot move '{}' to pending: {e}", path.display()))?;
        Ok(())
    }

    /// Part files of this subtask (and of subtasks that no longer exist, for subtask 0) that
    /// no committed or restored transaction owns: leftovers of failed attempts.
    fn remove_leftovers(&self, parallelism: usize) -> Result<(), BoxError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(_) => return Ok(()),
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(rest) = name.strip_prefix(".part-") else { continue };
            let Some(subtask) = rest.split('-').next().and_then(|s| s.parse::<usize>().ok()) else { continue };
            let mine = subtask == self.subtask || (self.subtask == 0 && subtask >= parallelism);
            if mine && (name.ends_with(".inprogress") || name.ends_with(".pending")) {
                std::fs::remove_file(entry.path())
                    .map_err(|e| format!("cannot remove leftover part file '{name}': {e}"))?;
            }
        }
        Ok(())
    }

    /// The next free part number of this subtask.
    fn next_free_part(&self) -> u64 {
        let prefixes = [format!("part-{}-", self.subtask), format!(".part-{}-", self.subtask)];
        std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().to_string();
                        let rest = prefixes.iter().find_map(|p| name.strip_prefix(p.as_str()))?;
                        rest.split('.').next()?.parse::<u64>().ok()
                    })
                    .map(|n| n + 1)
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    }
}

impl<T: 'static> TwoPhaseCommitSink<T> for FileSink<T> {
    type Transaction = PartFiles;

    fn validate(&self) -> Result<(), String> {
        if self.dir.is_file() {
            return Err(format!(
                "the output '{}' is a file; the exactly-once file sink writes a directory",
                self.dir.display()
            ));
        }
        super::check_creatable_dir(&self.dir)
    }

    fn initialize(&mut self, ctx: &RuntimeContext<'_>, _restored: &[(u64, PartFiles)]) -> Result<(), BoxError> {
        self.subtask = ctx.index_of_this_subtask();
        self.dir = std::path::absolute(&self.dir).unwrap_or_else(|_| self.dir.clone());
        // A restart cannot fix an output that cannot be created.
        self.validate().map_err(NonRecoverableError::new)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            NonRecoverableError::new(format!("cannot create output directory '{}': {e}", self.dir.display()))
        })?;
        self.remove_leftovers(ctx.number_of_parallel_subtasks())?;
        self.next_part = self.next_free_part();
        Ok(())
    }

    fn begin_transaction(&mut self) -> Result<PartFiles, BoxError> {
        Ok(PartFiles { dir: self.dir.clone(), parts: Vec::new(), subtask: self.subtask })
    }

    fn invoke(&mut self, transaction: &mut PartFiles, value: T, _: &SinkContext<'_>) -> Result<(), BoxError> {
        let full = match &self.writer {
            None => true,
            Some(PartWriter::Row(_, size)) => *size >= self.max_part_size,
            Some(PartWriter::Bulk(_)) => false,
        };
        if full {
            self.close_part(transaction)?;
            self.open_part(transaction)?;
        }
        match (&mut self.writer, &self.format) {
            (Some(PartWriter::Row(writer, size)), Encoding::Row(format)) => {
                self.line.clear();
                // The same record fails after any restart: fail the job, not the attempt.
                format(&value, &mut self.line).map_err(NonRecoverableError::new)?;
                self.line.push('\n');
                writer
                    .write_all(self.line.as_bytes())
                    .map_err(|e| format!("cannot write to '{}': {e}", self.dir.display()))?;
                *size += self.line.len() as u64;
                Ok(())
            }
            (Some(PartWriter::Bulk(writer)), _) => writer.add_element(&value),
            _ => Err("the file sink's part file does not match its format".into()),
        }
    }

    fn pre_commit(&mut self, transaction: &mut PartFiles, _checkpoint_id: u64) -> Result<(), BoxError> {
        self.close_part(transaction)
    }

    fn commit(&mut self, transaction: PartFiles) -> Result<(), BoxError> {
        for part in transaction.parts {
            let pending = Self::path_of(&transaction.dir, transaction.subtask, part, "pending");
            let finished = Self::path_of(&transaction.dir, transaction.subtask, part, "finished");
            match std::fs::rename(&pending, &finished) {
                Ok(()) => {}
                // Committed before (the notification was repeated after a restore).
                Err(_) if finished.exists() => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(NonRecoverableError::new(format!(
                        "cannot commit part file '{}': neither it nor the committed '{}' exists (was the \
                         output directory moved or cleaned since the checkpoint?)",
                        pending.display(),
                        finished.display()
                    ))
                    .into());
                }
                Err(e) => return Err(format!("cannot commit part file '{}': {e}", pending.display()).into()),
            }
        }
        Ok(())
    }
}
