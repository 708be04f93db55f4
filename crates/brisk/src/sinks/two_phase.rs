//! The two-phase-commit sink framework (Flink's `TwoPhaseCommitSinkFunction`): records go into
//! a transaction; at a checkpoint barrier the transaction is pre-committed and remembered in
//! the checkpoint; when the checkpoint completes it is committed. After a failure, the
//! transactions of the restored checkpoint are committed (their checkpoint did complete) and
//! everything newer is rolled back by the sink's recovery, so each record lands exactly once.

use crate::functions::{
    FunctionInitializationContext, FunctionSnapshotContext, RichFunction, RuntimeContext, SinkContext, SinkFunction,
};
use brisk_core::{BoxError, Data, NonRecoverableError};
use brisk_state::{ListState, ListStateDescriptor};

/// The checkpoint id a transaction pre-committed at the end of the input carries: it is
/// committed by the final notification, after every real checkpoint.
pub const END_OF_INPUT: u64 = u64::MAX;

/// A sink that writes through transactions.
pub trait TwoPhaseCommitSink<T>: Clone + Send + 'static {
    /// What identifies a transaction, stored in checkpoints (e.g. a file's paths).
    type Transaction: Data;

    /// Checks the sink's configuration when the job is built (e.g. that its output path can be
    /// created), so a mistake fails the job before it runs rather than restart after restart.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// Called once per subtask before any transaction, after the restored transactions (with
    /// the checkpoints that pre-committed them) were committed: remove leftovers of failed
    /// attempts here.
    fn initialize(
        &mut self,
        _ctx: &RuntimeContext<'_>,
        _restored: &[(u64, Self::Transaction)],
    ) -> Result<(), BoxError> {
        Ok(())
    }
    /// Starts a transaction.
    fn begin_transaction(&mut self) -> Result<Self::Transaction, BoxError>;
    /// Writes a record into the open transaction.
    fn invoke(&mut self, transaction: &mut Self::Transaction, value: T, ctx: &SinkContext<'_>) -> Result<(), BoxError>;
    /// Makes the transaction durable so it can be committed later: at the barrier of
    /// `checkpoint_id` (every checkpoint, even with no record written since the last), or at
    /// [`END_OF_INPUT`].
    fn pre_commit(&mut self, transaction: &mut Self::Transaction, checkpoint_id: u64) -> Result<(), BoxError>;
    /// Commits a pre-committed transaction; must be idempotent (it is repeated after a restore).
    fn commit(&mut self, transaction: Self::Transaction) -> Result<(), BoxError>;
}

/// Runs a [`TwoPhaseCommitSink`] as a sink function.
pub struct TwoPhaseCommitSinkFunction<T, S: TwoPhaseCommitSink<T>> {
    sink: S,
    current: Option<S::Transaction>,
    /// Pre-committed transactions by the checkpoint that covers them.
    pending: Vec<(u64, S::Transaction)>,
    state: Option<ListState<(u64, S::Transaction)>>,
    restored: Vec<(u64, S::Transaction)>,
    _type: std::marker::PhantomData<fn(T)>,
}

impl<T, S: TwoPhaseCommitSink<T>> Clone for TwoPhaseCommitSinkFunction<T, S> {
    fn clone(&self) -> Self {
        Self::new(self.sink.clone())
    }
}

impl<T, S: TwoPhaseCommitSink<T>> TwoPhaseCommitSinkFunction<T, S> {
    /// Wraps `sink`.
    pub fn new(sink: S) -> Self {
        TwoPhaseCommitSinkFunction {
            sink,
            current: None,
            pending: Vec::new(),
            state: None,
            restored: Vec::new(),
            _type: std::marker::PhantomData,
        }
    }

    /// Pre-commits the open transaction, empty if no record came since the last one: every
    /// checkpoint then holds one transaction per subtask, so a sink learns after a restore
    /// which checkpoint it restored (e.g. to name the transactions that may linger).
    fn pre_commit_current(&mut self, checkpoint: u64) -> Result<(), BoxError> {
        let mut transaction = match self.current.take() {
            Some(transaction) => transaction,
            None => self.sink.begin_transaction()?,
        };
        self.sink.pre_commit(&mut transaction, checkpoint)?;
        self.pending.push((checkpoint, transaction));
        Ok(())
    }
}

impl<T, S: TwoPhaseCommitSink<T>> RichFunction for TwoPhaseCommitSinkFunction<T, S> {
    fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext<'_>) -> Result<(), BoxError> {
        // Union state: every subtask commits every restored transaction (commits are
        // idempotent) before it cleans up, so no subtask removes a file another one still has
        // to commit, whatever the new parallelism.
        let state: ListState<(u64, S::Transaction)> =
            ctx.get_union_list_state(&ListStateDescriptor::new("two-phase-commit-pending"))?;
        // Transactions in the restored checkpoint were pre-committed and their checkpoint
        // completed: commit them (again, if the notification was lost).
        // Restored transactions that do not decode (written by an incompatible version) stay
        // undecodable on every restart: fail the job with the reason instead.
        let restored = state.get().map_err(|e| {
            NonRecoverableError::new(format!(
                "the restored transactions of this two-phase-commit sink cannot be read: {e}"
            ))
        })?;
        for (checkpoint, transaction) in restored {
            self.sink.commit(transaction.clone())?;
            self.restored.push((checkpoint, transaction));
        }
        state.clear()?;
        self.state = Some(state);
        Ok(())
    }

    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> Result<(), BoxError> {
        self.sink.initialize(ctx, &self.restored)?;
        self.restored.clear();
        Ok(())
    }

    fn snapshot_state(&mut self, ctx: &FunctionSnapshotContext) -> Result<(), BoxError> {
        self.pre_commit_current(ctx.checkpoint_id)?;
        if let Some(state) = &self.state {
            state.update(self.pending.clone())?;
        }
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), BoxError> {
        let (done, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.pending).into_iter().partition(|(id, _)| *id <= checkpoint_id);
        self.pending = waiting;
        for (_, transaction) in done {
            self.sink.commit(transaction)?;
        }
        Ok(())
    }
}

impl<T: 'static, S: TwoPhaseCommitSink<T>> SinkFunction<T> for TwoPhaseCommitSinkFunction<T, S> {
    fn validate(&self) -> Result<(), String> {
        self.sink.validate()
    }

    fn invoke(&mut self, value: T, ctx: &SinkContext<'_>) -> Result<(), BoxError> {
        // A transaction starts with its first record (after each pre-commit).
        let transaction = match &mut self.current {
            Some(t) => t,
            None => self.current.insert(self.sink.begin_transaction()?),
        };
        self.sink.invoke(transaction, value, ctx)
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        // Committed when the whole job has finished (the final checkpoint).
        self.pre_commit_current(END_OF_INPUT)
    }
}
