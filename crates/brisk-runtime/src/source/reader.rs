//! Source readers (Flink's `SourceReader`): one per source subtask, reading any number of
//! splits at once through one client (one Kafka consumer for all its partitions), with a
//! watermark generator per split; and [`SplitReaders`], which reads splits with one
//! [`SplitReader`] each for sources whose splits are simplest read one by one (files).

use super::{ReadStatus, SourceOutput, SplitReader};
use crate::checkpoint::CheckpointId;
use crate::error::TaskError;
use crate::metrics::task_io::TaskIoMetrics;
use crate::source::watermark::WatermarkTracker;
use crate::taskexecutor::mailbox::Mailbox;
use crate::taskexecutor::output::OperatorOutput;
use brisk_core::BoxError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// What a source reader's poll found (Flink's `InputStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputStatus {
    /// Records were emitted and more are available at once.
    MoreAvailable,
    /// Nothing available now; poll again after the duration, or when the reader wakes the task.
    NothingAvailable(Option<Duration>),
}

/// Reads the splits of one source subtask.
pub trait SourceReader<T, S>: Send {
    /// Starts reading `splits` beside those it reads already.
    fn add_splits(&mut self, splits: Vec<S>) -> Result<(), BoxError>;
    /// Emits the next records, each through the output of its split
    /// ([`ReaderOutput::split`]), a bounded amount (about one network buffer) so the task can
    /// react to timers and control messages in between; reports each split read to the end
    /// ([`ReaderOutput::split_finished`]).
    fn poll(&mut self, out: &mut ReaderOutput<'_, T>) -> Result<InputStatus, BoxError>;
    /// Whether it takes more splits while it reads some (partitions that never end);
    /// otherwise it gets a new split only when it has none, so that readers share bounded
    /// splits evenly.
    fn takes_splits_while_reading(&self) -> bool {
        false
    }
    /// The splits it reads, each with its current position, for checkpoint `checkpoint`:
    /// reading them from there after a restore continues exactly after the last emitted record.
    fn snapshot_state(&mut self, checkpoint: CheckpointId) -> Vec<S>;
    /// Checkpoint `checkpoint` completed (commit the offsets of its snapshot back to a broker,
    /// acknowledge deliveries): what it covers will never be read again.
    fn notify_checkpoint_complete(&mut self, _checkpoint: CheckpointId) -> Result<(), BoxError> {
        Ok(())
    }
    /// Releases resources.
    fn close(&mut self) {}
}

/// What a source does with a record it cannot read (malformed, not valid text).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BadRecordPolicy {
    /// Fail the job, naming the source, split, offset and reason (the record comes back
    /// after any restart).
    #[default]
    Fail,
    /// Skip it and count it in `numRecordsInErrors`.
    Skip,
    /// Send it as a [`BadRecord`] to the side output [`DEAD_LETTERS`].
    SideOutput,
}

/// The side output a source sends bad records to under [`BadRecordPolicy::SideOutput`].
pub const DEAD_LETTERS: &str = "dead-letters";

/// A record a source could not read, as the dead-letter side output carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRecord {
    /// The source's name.
    pub source: String,
    /// The split it was read from.
    pub split: String,
    /// Where in the split (a byte offset, a partition offset).
    pub offset: u64,
    /// What was wrong with it.
    pub reason: String,
    /// Its bytes.
    pub raw: Vec<u8>,
}

/// How a source subtask treats bad records.
#[derive(Debug, Default)]
pub struct BadRecords {
    /// The policy.
    pub policy: BadRecordPolicy,
    /// The source's name, for errors and dead letters.
    pub source: String,
    /// Where skipped records are counted.
    pub metrics: Option<Arc<TaskIoMetrics>>,
}

/// Bad records of outputs made without a source around them (tests of a reader): they fail.
pub(crate) static FAILING: BadRecords =
    BadRecords { policy: BadRecordPolicy::Fail, source: String::new(), metrics: None };

/// A source reader's output: one [`SourceOutput`] per split, which applies that split's
/// timestamps and watermarks.
pub struct ReaderOutput<'a, T> {
    out: &'a mut OperatorOutput<T>,
    watermarks: Option<&'a mut WatermarkTracker<T>>,
    mailbox: Option<&'a Mailbox>,
    bad_records: &'a BadRecords,
    error: Option<TaskError>,
    finished: Vec<String>,
}

impl<'a, T: 'static> ReaderOutput<'a, T> {
    /// Wraps an operator output (with the tracker of the splits' watermarks, if any).
    pub fn new(
        out: &'a mut OperatorOutput<T>,
        watermarks: Option<&'a mut WatermarkTracker<T>>,
        bad_records: &'a BadRecords,
    ) -> Self {
        ReaderOutput { out, watermarks, mailbox: None, bad_records, error: None, finished: Vec::new() }
    }

    /// Makes [`Self::should_yield`] true while `mailbox` holds mail for the task.
    pub fn yielding_to(mut self, mailbox: &'a Mailbox) -> Self {
        self.mailbox = Some(mailbox);
        self
    }

    /// The output of split `id`: its records get its timestamps, and advance its watermark.
    pub fn split<'s>(&'s mut self, id: &'s str) -> SourceOutput<'s, T> {
        let part = self.watermarks.as_ref().and_then(|tracker| tracker.part_index(id));
        let output = match (self.watermarks.as_deref_mut(), part) {
            (Some(tracker), Some(part)) => SourceOutput::with_watermarks(self.out, tracker, part),
            _ => SourceOutput::new(self.out),
        };
        let output = output.reading(self.bad_records, id).reporting_to(&mut self.error);
        match self.mailbox {
            Some(mailbox) => output.yielding_to(mailbox),
            None => output,
        }
    }

    /// Split `id` has been read to its end.
    pub fn split_finished(&mut self, id: impl Into<String>) {
        self.finished.push(id.into());
    }

    /// True when the reader should return from its poll now: an emission failed, or the task
    /// has mail (a checkpoint trigger) that must not wait for a whole batch of records.
    pub fn should_yield(&self) -> bool {
        self.error.is_some() || self.mailbox.is_some_and(Mailbox::has_mail)
    }

    /// The first failure of an emission, and the splits finished.
    pub(crate) fn into_parts(self) -> (Option<TaskError>, Vec<String>) {
        (self.error, self.finished)
    }
}

/// Creates the [`SplitReader`] of one split.
pub type SplitReaderFactory<T, S> = Box<dyn FnMut() -> Result<Box<dyn SplitReader<T, S>>, BoxError> + Send>;

/// A [`SourceReader`] reading each split with a [`SplitReader`] of its own, polled in turn;
/// a reader whose split ended is reused for the next.
pub struct SplitReaders<T, S> {
    create: SplitReaderFactory<T, S>,
    active: Vec<(Box<dyn SplitReader<T, S>>, String)>,
    spare: Option<Box<dyn SplitReader<T, S>>>,
    next: usize,
}

impl<T: 'static, S: super::SourceSplit> SplitReaders<T, S> {
    /// A source reader of split readers made by `create`; one is made at once, so that a
    /// source that cannot read fails when its task starts.
    pub fn boxed<R: SplitReader<T, S> + 'static>(
        mut create: impl FnMut() -> Result<R, BoxError> + Send + 'static,
    ) -> Result<Box<dyn SourceReader<T, S>>, BoxError> {
        let mut create: SplitReaderFactory<T, S> =
            Box::new(move || create().map(|reader| Box::new(reader) as Box<dyn SplitReader<T, S>>));
        let spare = Some(create()?);
        Ok(Box::new(SplitReaders { create, active: Vec::new(), spare, next: 0 }))
    }
}

impl<T: 'static, S: super::SourceSplit> SourceReader<T, S> for SplitReaders<T, S> {
    fn add_splits(&mut self, splits: Vec<S>) -> Result<(), BoxError> {
        for split in splits {
            let mut reader = match self.spare.take() {
                Some(reader) => reader,
                None => (self.create)()?,
            };
            let id = split.split_id();
            reader.open_split(split)?;
            self.active.push((reader, id));
        }
        Ok(())
    }

    fn poll(&mut self, out: &mut ReaderOutput<'_, T>) -> Result<InputStatus, BoxError> {
        if self.active.is_empty() {
            return Ok(InputStatus::NothingAvailable(None));
        }
        let index = self.next % self.active.len();
        self.next = index + 1;
        let (reader, id) = &mut self.active[index];
        let status = reader.poll(&mut out.split(id))?;
        Ok(match status {
            ReadStatus::More => InputStatus::MoreAvailable,
            ReadStatus::Wait(d) if self.active.len() == 1 => InputStatus::NothingAvailable(d),
            ReadStatus::Wait(_) => InputStatus::MoreAvailable,
            ReadStatus::SplitFinished => {
                let (reader, id) = self.active.swap_remove(index);
                self.spare = Some(reader);
                out.split_finished(id);
                InputStatus::MoreAvailable
            }
        })
    }

    fn snapshot_state(&mut self, _checkpoint: CheckpointId) -> Vec<S> {
        self.active.iter().flat_map(|(reader, _)| reader.snapshot_state()).collect()
    }

    fn close(&mut self) {
        self.active.iter_mut().map(|(r, _)| r).chain(self.spare.as_mut()).for_each(|r| r.close());
    }
}
