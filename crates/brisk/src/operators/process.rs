//! `process` on a non-keyed stream.

use super::map::function_operator;
use super::{FunctionStores, KeySetter, close_function};
use crate::functions::{Emitter, ProcessFunction};
use brisk_core::StreamRecord;
use brisk_runtime::taskexecutor::output::StateQuery;
use brisk_runtime::{OneInputStreamOperator, OperatorContext, OperatorOutput, StreamOperator, TaskResult};
use std::marker::PhantomData;

function_operator!(
    /// Runs a [`ProcessFunction`] per record.
    ProcessOperator<T, O>, ProcessFunction<T, O>);

impl<T, O, F: ProcessFunction<T, O>> OneInputStreamOperator<T, O> for ProcessOperator<F, T, O> {
    fn process_element(&mut self, record: StreamRecord<T>, out: &mut OperatorOutput<O>) -> TaskResult {
        self.set_key(&record.value)?;
        let emitter = Emitter::new(out, record.timestamp);
        let result = self.f.process_element(record.value, &mut emitter.context(), &mut emitter.collector());
        emitter.finish(result)
    }
}
