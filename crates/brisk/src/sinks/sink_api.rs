//! Flink's unified sink API (`Sink`, `SinkWriter`, committables), for `DataStream::sink_to`: a
//! writer per subtask writes the records; at each checkpoint it flushes and prepares what must
//! be committed, and the sink commits that when the checkpoint completes. It runs on the
//! two-phase-commit machinery, so prepared committables are kept in the checkpoint and
//! committed again after a restore: a sink with idempotent commits is exactly-once, one that
//! only flushes is at-least-once.

use super::two_phase::{END_OF_INPUT, TwoPhaseCommitSink};
use crate::functions::{RuntimeContext, SinkContext};
use brisk_core::{BoxError, Data};

/// A sink: how to write (one [`SinkWriter`] per subtask) and how to commit.
pub trait Sink<T>: Clone + Send + 'static {
    /// What a writer prepares at a checkpoint for the sink to commit when the checkpoint
    /// completes (a staged file, a transaction); `()` for a sink that only flushes.
    type Committable: Data;
    /// The writer of one subtask.
    type Writer: SinkWriter<T, Self::Committable>;

    /// Checks the sink's configuration when the job is built.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
    /// The writer of the subtask `ctx` describes.
    fn create_writer(&mut self, ctx: &WriterInitContext<'_, '_, Self::Committable>) -> Result<Self::Writer, BoxError>;
    /// Commits what writers prepared for a completed checkpoint. Must be idempotent: after a
    /// restore the committables of the restored checkpoint are committed again.
    fn commit(&mut self, _committables: Vec<Self::Committable>) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Writes the records of one subtask.
pub trait SinkWriter<T, C>: Send {
    /// Writes (or buffers) one record.
    fn write(&mut self, value: T, ctx: &SinkContext<'_>) -> Result<(), BoxError>;
    /// Sends everything buffered (at every checkpoint and at the end of the input).
    fn flush(&mut self) -> Result<(), BoxError>;
    /// After a flush at the barrier of `checkpoint_id` (or at [`END_OF_INPUT`]): what must be
    /// committed for the records written since the last checkpoint (none for a writer whose
    /// flushed records are final).
    fn prepare_commit(&mut self, _checkpoint_id: u64) -> Result<Vec<C>, BoxError> {
        Ok(Vec::new())
    }
}

/// What a sink learns when it creates a writer (Flink's `WriterInitContext`).
pub struct WriterInitContext<'c, 'a, C> {
    /// The subtask's runtime context.
    pub runtime: &'c RuntimeContext<'a>,
    /// The checkpoint (or savepoint) the job was restored from, if any.
    pub restored_checkpoint_id: Option<u64>,
    /// The committables of every subtask in that checkpoint (committed already).
    pub restored_committables: &'c [C],
}

/// Runs a [`Sink`] as a [`TwoPhaseCommitSink`]: a transaction is what the writer prepared.
pub struct SinkTransactions<T, S: Sink<T>> {
    sink: S,
    writer: Option<S::Writer>,
    _type: std::marker::PhantomData<fn(T)>,
}

impl<T, S: Sink<T>> SinkTransactions<T, S> {
    /// Wraps `sink`.
    pub fn new(sink: S) -> Self {
        SinkTransactions { sink, writer: None, _type: std::marker::PhantomData }
    }

    fn writer(&mut self) -> Result<&mut S::Writer, BoxError> {
        self.writer.as_mut().ok_or_else(|| "the sink writer is used before the sink was opened".into())
    }
}

impl<T, S: Sink<T>> Clone for SinkTransactions<T, S> {
    fn clone(&self) -> Self {
        Self::new(self.sink.clone())
    }
}

impl<T: 'static, S: Sink<T>> TwoPhaseCommitSink<T> for SinkTransactions<T, S> {
    type Transaction = Vec<S::Committable>;

    fn validate(&self) -> Result<(), String> {
        self.sink.validate()
    }

    fn initialize(&mut self, ctx: &RuntimeContext<'_>, restored: &[(u64, Self::Transaction)]) -> Result<(), BoxError> {
        // Every checkpoint pre-commits a transaction per subtask, so the newest restored one
        // is the checkpoint the job was restored from.
        let restored_checkpoint_id = restored.iter().map(|(id, _)| *id).filter(|id| *id != END_OF_INPUT).max();
        let restored_committables: Vec<S::Committable> = restored.iter().flat_map(|(_, t)| t.iter().cloned()).collect();
        let init =
            WriterInitContext { runtime: ctx, restored_checkpoint_id, restored_committables: &restored_committables };
        self.writer = Some(self.sink.create_writer(&init)?);
        Ok(())
    }

    fn begin_transaction(&mut self) -> Result<Self::Transaction, BoxError> {
        Ok(Vec::new())
    }

    fn invoke(&mut self, _: &mut Self::Transaction, value: T, ctx: &SinkContext<'_>) -> Result<(), BoxError> {
        self.writer()?.write(value, ctx)
    }

    fn pre_commit(&mut self, transaction: &mut Self::Transaction, checkpoint_id: u64) -> Result<(), BoxError> {
        let writer = self.writer()?;
        writer.flush()?;
        transaction.extend(writer.prepare_commit(checkpoint_id)?);
        Ok(())
    }

    fn commit(&mut self, transaction: Self::Transaction) -> Result<(), BoxError> {
        if transaction.is_empty() { Ok(()) } else { self.sink.commit(transaction) }
    }
}
