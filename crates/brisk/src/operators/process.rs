//! `process` on a non-keyed stream.

use super::{close_function, open_function};
use crate::functions::{Emitter, ProcessFunction};
use brisk_core::StreamRecord;
use brisk_runtime::{OneInputStreamOperator, OperatorContext, OperatorOutput, StreamOperator, TaskResult};
use std::marker::PhantomData;

/// Runs a [`ProcessFunction`] per record.
pub struct ProcessOperator<F, I, O> {
    f: F,
    _types: PhantomData<fn(I) -> O>,
}

impl<F, I, O> ProcessOperator<F, I, O> {
    /// Processes with `f`.
    pub fn new(f: F) -> Self {
        ProcessOperator { f, _types: PhantomData }
    }
}

impl<I, O, F: ProcessFunction<I, O>> StreamOperator for ProcessOperator<F, I, O> {
    fn open(&mut self, ctx: &mut OperatorContext<'_>) -> TaskResult {
        open_function(&mut self.f, ctx)
    }
    fn close(&mut self) -> TaskResult {
        close_function(&mut self.f)
    }
}

impl<I, O, F: ProcessFunction<I, O>> OneInputStreamOperator<I, O> for ProcessOperator<F, I, O> {
    fn process_element(&mut self, record: StreamRecord<I>, out: &mut OperatorOutput<O>) -> TaskResult {
        let emitter = Emitter::new(out, record.timestamp);
        let result = self.f.process_element(record.value, &mut emitter.context(), &mut emitter.collector());
        emitter.finish(result)
    }
}
