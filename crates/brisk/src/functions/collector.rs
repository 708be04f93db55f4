//! Emitting records from user functions.

use crate::side_output::OutputTag;
use brisk_core::{BoxError, Data, StreamRecord};
use brisk_runtime::taskexecutor::output::SideOutput;
use brisk_runtime::{OperatorOutput, TaskError, TaskResult};
use std::any::Any;
use std::cell::{Cell, RefCell};

/// Where collectors and contexts send records; object-safe so `Collector` needs one lifetime.
trait EmitTarget<O> {
    fn emit(&self, value: O);
    fn emit_side(&self, tag_id: &str, emit: &mut dyn FnMut(&mut dyn Any, i64) -> TaskResult);
    fn timestamp(&self) -> i64;
}

/// The emission state of one user-function call: the operator's output, the timestamp
/// emitted records get, and the first downstream error (user code does not handle those).
pub struct Emitter<'a, O> {
    out: RefCell<&'a mut OperatorOutput<O>>,
    timestamp: Cell<i64>,
    error: RefCell<Option<TaskError>>,
}

impl<'a, O> Emitter<'a, O> {
    /// Emits into `out` with records stamped `timestamp`.
    pub fn new(out: &'a mut OperatorOutput<O>, timestamp: i64) -> Self {
        Emitter { out: RefCell::new(out), timestamp: Cell::new(timestamp), error: RefCell::new(None) }
    }

    /// Changes the timestamp of records emitted from now on (timers emit with their time).
    pub fn set_timestamp(&self, timestamp: i64) {
        self.timestamp.set(timestamp);
    }

    /// A collector for the user function.
    pub fn collector(&self) -> Collector<'_, O> {
        Collector { target: self }
    }

    /// A process context for the user function.
    pub fn context(&self) -> ProcessContext<'_, O> {
        ProcessContext { target: self }
    }

    /// Combines the downstream error (first) with the user function's result.
    pub fn finish(self, user: Result<(), BoxError>) -> TaskResult {
        if let Some(e) = self.error.into_inner() {
            return Err(e);
        }
        user.map_err(TaskError::User)
    }

    fn keep_error(&self, result: TaskResult) {
        if let Err(e) = result {
            *self.error.borrow_mut() = Some(e);
        }
    }
}

impl<O> EmitTarget<O> for Emitter<'_, O> {
    fn emit(&self, value: O) {
        if self.error.borrow().is_some() {
            return;
        }
        let result = self.out.borrow_mut().collect(StreamRecord { value, timestamp: self.timestamp.get() });
        self.keep_error(result);
    }

    fn emit_side(&self, tag_id: &str, emit: &mut dyn FnMut(&mut dyn Any, i64) -> TaskResult) {
        if self.error.borrow().is_some() {
            return;
        }
        let timestamp = self.timestamp.get();
        let result = self.out.borrow_mut().with_side_output(tag_id, |side| emit(side, timestamp));
        self.keep_error(result);
    }

    fn timestamp(&self) -> i64 {
        self.timestamp.get()
    }
}

/// Collects the records a function emits (Flink's `Collector`); they carry the timestamp of
/// the record being processed.
pub struct Collector<'a, O> {
    target: &'a dyn EmitTarget<O>,
}

impl<O> Collector<'_, O> {
    /// Emits a record.
    #[inline]
    pub fn collect(&mut self, value: O) {
        self.target.emit(value);
    }
}

/// The context of a process function call (Flink's `ProcessFunction.Context`).
pub struct ProcessContext<'a, O> {
    target: &'a dyn EmitTarget<O>,
}

impl<O> ProcessContext<'_, O> {
    /// The event timestamp of the record being processed.
    pub fn timestamp(&self) -> Option<i64> {
        let ts = self.target.timestamp();
        (ts != brisk_core::NO_TIMESTAMP).then_some(ts)
    }

    /// Emits a record to a side output.
    pub fn output<X: Data>(&mut self, tag: &OutputTag<X>, value: X) {
        let mut value = Some(value);
        self.target.emit_side(tag.id(), &mut |side, timestamp| {
            let Some(value) = value.take() else { return Ok(()) };
            match side.downcast_mut::<SideOutput<X>>() {
                Some(side) => side.0.collect(StreamRecord { value, timestamp }),
                None => Err(TaskError::msg(format!("side output '{}' was declared with another type", tag.id()))),
            }
        });
    }
}
