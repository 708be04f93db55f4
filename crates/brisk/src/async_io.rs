//! Asynchronous I/O (Flink's `AsyncDataStream`): a lookup against an external service does
//! not block the task for each record; up to `capacity` calls are in flight, their results
//! emitted in input order (`ordered_wait`) or as they complete (`unordered_wait`, never across
//! a watermark), each call bounded by a timeout. Calls in flight are kept in checkpoints and
//! made again after a restore.

use crate::datastream::DataStream;
use crate::functions::RichFunction;
use crate::operators::async_wait::AsyncWaitOperator;
use brisk_core::{BoxError, Data};
use brisk_runtime::graph::stream_graph::one_input_factory;
use brisk_runtime::network::channel::TaskWaker;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Starts an asynchronous call per record and completes its [`ResultFuture`] from any thread
/// (Flink's `AsyncFunction`): the function hands the work to its own threads or client.
pub trait AsyncFunction<I, O>: RichFunction + Clone + Send + 'static {
    /// Starts the call for `input`; `result` is completed when it is done.
    fn async_invoke(&mut self, input: I, result: ResultFuture<O>) -> Result<(), BoxError>;

    /// The call for `input` did not complete within the timeout: complete `result` here (with
    /// a fallback), or fail; the default fails the job.
    fn timeout(&mut self, _input: I, result: ResultFuture<O>) -> Result<(), BoxError> {
        result.complete_exceptionally("the asynchronous call did not complete within its timeout");
        Ok(())
    }
}

/// Where an asynchronous call puts its result; the first completion counts.
pub struct ResultFuture<O> {
    slot: Arc<Completion<O>>,
}

/// The result of one call, once it is there.
pub(crate) struct Completion<O> {
    result: Mutex<Option<Result<Vec<O>, String>>>,
    waker: Arc<TaskWaker>,
}

impl<O> Completion<O> {
    /// An empty slot that wakes the task behind `waker` when filled.
    pub(crate) fn new(waker: Arc<TaskWaker>) -> Arc<Self> {
        Arc::new(Completion { result: Mutex::new(None), waker })
    }

    /// Whether the call completed.
    pub(crate) fn is_done(&self) -> bool {
        self.result.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// The result, taken.
    pub(crate) fn take(&self) -> Option<Result<Vec<O>, String>> {
        self.result.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl<O> ResultFuture<O> {
    pub(crate) fn new(slot: Arc<Completion<O>>) -> Self {
        ResultFuture { slot }
    }

    /// The call produced `results` (none, one or several records).
    pub fn complete(self, results: Vec<O>) {
        self.set(Ok(results));
    }

    /// The call failed: the job fails (and restarts per its strategy) with `error`.
    pub fn complete_exceptionally(self, error: impl Into<String>) {
        self.set(Err(error.into()));
    }

    fn set(&self, result: Result<Vec<O>, String>) {
        let mut slot = self.slot.result.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(result);
        }
        drop(slot);
        self.slot.waker.wake();
    }
}

/// Flink's `AsyncDataStream`: asynchronous calls per record of a stream.
pub struct AsyncDataStream;

impl AsyncDataStream {
    /// Results in the order of the input records.
    pub fn ordered_wait<I: Data, O: Data, F: AsyncFunction<I, O>>(
        stream: &DataStream<I>,
        f: F,
        timeout: Duration,
        capacity: usize,
    ) -> DataStream<O> {
        Self::wait(stream, f, timeout, capacity, true)
    }

    /// Results as the calls complete (records never pass a watermark either way).
    pub fn unordered_wait<I: Data, O: Data, F: AsyncFunction<I, O>>(
        stream: &DataStream<I>,
        f: F,
        timeout: Duration,
        capacity: usize,
    ) -> DataStream<O> {
        Self::wait(stream, f, timeout, capacity, false)
    }

    fn wait<I: Data, O: Data, F: AsyncFunction<I, O>>(
        stream: &DataStream<I>,
        f: F,
        timeout: Duration,
        capacity: usize,
        ordered: bool,
    ) -> DataStream<O> {
        if capacity == 0 || timeout.is_zero() {
            stream.env.record_error("async I/O needs a capacity of at least 1 and a timeout above zero".into());
        }
        let capacity = capacity.max(1);
        let name = if ordered { "Async Wait (ordered)" } else { "Async Wait (unordered)" };
        stream.transform(
            name,
            one_input_factory::<I, O, _, _>(move || AsyncWaitOperator::new(f.clone(), timeout, capacity, ordered)),
        )
    }
}
