//! User function contracts (Flink's `MapFunction`, `ProcessFunction`, `SinkFunction`, ...).
//!
//! Closures go straight to `map`, `flat_map`, `filter` and `reduce`; structs implementing the
//! `Rich*` traits go to `rich_map`, `rich_flat_map`, ... and get `open`/`close` and a
//! [`RuntimeContext`]. Every subtask works on its own copy (`Clone`) of a function, so a
//! function's fields are per-subtask local state, as in Flink.

mod collector;
mod keyed_process;
mod runtime_context;

pub use collector::{Collector, Emitter, ProcessContext};
pub(crate) use keyed_process::USER_TIMERS;
pub use keyed_process::{KeyedProcessContext, KeyedProcessFunction, TimerService};
pub use runtime_context::{FunctionInitializationContext, FunctionSnapshotContext, RuntimeContext};

use brisk_core::BoxError;
use brisk_runtime::taskexecutor::time::ProcessingTimeService;

/// Lifecycle hooks of a function (Flink's `RichFunction` and `CheckpointedFunction`): every
/// hook has a default, so a function implements only what it needs.
pub trait RichFunction {
    /// Called once per subtask before `open`, also after a restore: register operator state
    /// here (Flink's `CheckpointedFunction.initializeState`).
    fn initialize_state(&mut self, _ctx: &mut FunctionInitializationContext<'_>) -> Result<(), BoxError> {
        Ok(())
    }

    /// Called once per subtask before the first record.
    fn open(&mut self, _ctx: &mut RuntimeContext<'_>) -> Result<(), BoxError> {
        Ok(())
    }

    /// Called when a checkpoint is taken: copy local variables into operator state here
    /// (Flink's `CheckpointedFunction.snapshotState`).
    fn snapshot_state(&mut self, _ctx: &FunctionSnapshotContext) -> Result<(), BoxError> {
        Ok(())
    }

    /// Called when a checkpoint completed, or with `u64::MAX` when the whole job finished:
    /// commit side effects it covers (Flink's `CheckpointListener`).
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<(), BoxError> {
        Ok(())
    }

    /// Called once per subtask at the end.
    fn close(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}

/// One record in, one record out.
pub trait RichMapFunction<T, O>: RichFunction + Clone + Send + 'static {
    /// Transforms a record.
    fn map(&mut self, value: T) -> Result<O, BoxError>;
}

/// One record in, any number out.
pub trait RichFlatMapFunction<T, O>: RichFunction + Clone + Send + 'static {
    /// Emits zero or more records for `value`.
    fn flat_map(&mut self, value: T, out: &mut Collector<'_, O>) -> Result<(), BoxError>;
}

/// Keeps the records for which it returns true.
pub trait RichFilterFunction<T>: RichFunction + Clone + Send + 'static {
    /// Whether to keep `value`.
    fn filter(&mut self, value: &T) -> Result<bool, BoxError>;
}

/// The most general per-record function of a non-keyed stream: records in, records out, with
/// the record's timestamp and side outputs (Flink's `ProcessFunction`).
pub trait ProcessFunction<I, O>: RichFunction + Clone + Send + 'static {
    /// Processes one record.
    fn process_element(
        &mut self,
        value: I,
        ctx: &mut ProcessContext<'_, O>,
        out: &mut Collector<'_, O>,
    ) -> Result<(), BoxError>;
}

/// A map over two connected streams (Flink's `CoMapFunction`).
pub trait RichCoMapFunction<A, B, O>: RichFunction + Clone + Send + 'static {
    /// Transforms a record of the first stream.
    fn map1(&mut self, value: A) -> Result<O, BoxError>;
    /// Transforms a record of the second stream.
    fn map2(&mut self, value: B) -> Result<O, BoxError>;
}

/// A flat map over two connected streams (Flink's `CoFlatMapFunction`).
pub trait RichCoFlatMapFunction<A, B, O>: RichFunction + Clone + Send + 'static {
    /// Emits records for a record of the first stream.
    fn flat_map1(&mut self, value: A, out: &mut Collector<'_, O>) -> Result<(), BoxError>;
    /// Emits records for a record of the second stream.
    fn flat_map2(&mut self, value: B, out: &mut Collector<'_, O>) -> Result<(), BoxError>;
}

/// A process function over two connected streams (Flink's `CoProcessFunction`).
pub trait CoProcessFunction<A, B, O>: RichFunction + Clone + Send + 'static {
    /// Processes a record of the first stream.
    fn process_element1(
        &mut self,
        value: A,
        ctx: &mut ProcessContext<'_, O>,
        out: &mut Collector<'_, O>,
    ) -> Result<(), BoxError>;
    /// Processes a record of the second stream.
    fn process_element2(
        &mut self,
        value: B,
        ctx: &mut ProcessContext<'_, O>,
        out: &mut Collector<'_, O>,
    ) -> Result<(), BoxError>;
}

/// Writes records to an external system (Flink's `SinkFunction`).
pub trait SinkFunction<T>: RichFunction + Clone + Send + 'static {
    /// Writes one record.
    fn invoke(&mut self, value: T, ctx: &SinkContext<'_>) -> Result<(), BoxError>;

    /// The input ended: write out anything buffered.
    fn finish(&mut self) -> Result<(), BoxError> {
        Ok(())
    }

    /// Checks the sink's configuration when the job is built (e.g. that its output path can
    /// be created): an error fails `execute` before anything runs.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// What a sink knows about the record it writes.
#[derive(Clone, Copy)]
pub struct SinkContext<'a> {
    timestamp: i64,
    time: &'a ProcessingTimeService,
}

impl<'a> SinkContext<'a> {
    /// A context for a record with `timestamp`.
    pub fn new(timestamp: i64, time: &'a ProcessingTimeService) -> Self {
        SinkContext { timestamp, time }
    }

    /// The record's event timestamp.
    pub fn timestamp(&self) -> Option<i64> {
        (self.timestamp != brisk_core::NO_TIMESTAMP).then_some(self.timestamp)
    }

    /// Current processing time in epoch milliseconds (read on demand: clocks cost).
    pub fn current_processing_time(&self) -> i64 {
        self.time.current_processing_time()
    }
}

/// Adapts a closure to [`RichMapFunction`].
#[derive(Clone)]
pub struct MapFn<F>(pub F);
impl<F> RichFunction for MapFn<F> {}
impl<T, O, F: FnMut(T) -> O + Clone + Send + 'static> RichMapFunction<T, O> for MapFn<F> {
    #[inline]
    fn map(&mut self, value: T) -> Result<O, BoxError> {
        Ok((self.0)(value))
    }
}

/// Adapts a closure to [`RichFlatMapFunction`].
#[derive(Clone)]
pub struct FlatMapFn<F>(pub F);
impl<F> RichFunction for FlatMapFn<F> {}
impl<T, O, F: FnMut(T, &mut Collector<'_, O>) + Clone + Send + 'static> RichFlatMapFunction<T, O> for FlatMapFn<F> {
    #[inline]
    fn flat_map(&mut self, value: T, out: &mut Collector<'_, O>) -> Result<(), BoxError> {
        (self.0)(value, out);
        Ok(())
    }
}

/// Adapts a closure to [`RichFilterFunction`].
#[derive(Clone)]
pub struct FilterFn<F>(pub F);
impl<F> RichFunction for FilterFn<F> {}
impl<T, F: FnMut(&T) -> bool + Clone + Send + 'static> RichFilterFunction<T> for FilterFn<F> {
    #[inline]
    fn filter(&mut self, value: &T) -> Result<bool, BoxError> {
        Ok((self.0)(value))
    }
}

/// Adapts two closures to [`RichCoMapFunction`].
#[derive(Clone)]
pub struct CoMapFn<F1, F2>(pub F1, pub F2);
impl<F1, F2> RichFunction for CoMapFn<F1, F2> {}
impl<A, B, O, F1, F2> RichCoMapFunction<A, B, O> for CoMapFn<F1, F2>
where
    F1: FnMut(A) -> O + Clone + Send + 'static,
    F2: FnMut(B) -> O + Clone + Send + 'static,
{
    fn map1(&mut self, value: A) -> Result<O, BoxError> {
        Ok((self.0)(value))
    }
    fn map2(&mut self, value: B) -> Result<O, BoxError> {
        Ok((self.1)(value))
    }
}

/// Adapts two closures to [`RichCoFlatMapFunction`].
#[derive(Clone)]
pub struct CoFlatMapFn<F1, F2>(pub F1, pub F2);
impl<F1, F2> RichFunction for CoFlatMapFn<F1, F2> {}
impl<A, B, O, F1, F2> RichCoFlatMapFunction<A, B, O> for CoFlatMapFn<F1, F2>
where
    F1: FnMut(A, &mut Collector<'_, O>) + Clone + Send + 'static,
    F2: FnMut(B, &mut Collector<'_, O>) + Clone + Send + 'static,
{
    fn flat_map1(&mut self, value: A, out: &mut Collector<'_, O>) -> Result<(), BoxError> {
        (self.0)(value, out);
        Ok(())
    }
    fn flat_map2(&mut self, value: B, out: &mut Collector<'_, O>) -> Result<(), BoxError> {
        (self.1)(value, out);
        Ok(())
    }
}

/// Adapts a closure to [`SinkFunction`].
#[derive(Clone)]
pub struct SinkFn<F>(pub F);
impl<F> RichFunction for SinkFn<F> {}
impl<T, F: FnMut(T) + Clone + Send + 'static> SinkFunction<T> for SinkFn<F> {
    fn invoke(&mut self, value: T, _: &SinkContext<'_>) -> Result<(), BoxError> {
        (self.0)(value);
        Ok(())
    }
}
