//! Sinks: the end of a stream.

use super::{FunctionStores, close_function};
use crate::functions::{SinkContext, SinkFunction};
use brisk_core::StreamRecord;
use brisk_runtime::taskexecutor::time::ProcessingTimeService;
use brisk_runtime::{OneInputStreamOperator, OperatorContext, OperatorOutput, StreamOperator, TaskError, TaskResult};
use std::marker::PhantomData;

/// Hands every record to a [`SinkFunction`].
pub struct SinkOperator<F, T> {
    f: F,
    time: Option<ProcessingTimeService>,
    stores: Option<FunctionStores>,
    _type: PhantomData<fn(T)>,
}

impl<F, T> SinkOperator<F, T> {
    /// Writes with `f`.
    pub fn new(f: F) -> Self {
        SinkOperator { f, time: None, stores: None, _type: PhantomData }
    }
}

impl<T, F: SinkFunction<T>> StreamOperator for SinkOperator<F, T> {
    fn open(&mut self, ctx: &mut OperatorContext<'_>) -> TaskResult {
        self.time = Some(ctx.task.processing_time.clone());
        self.stores = Some(FunctionStores::open(&mut self.f, ctx, false)?);
        Ok(())
    }
    fn close(&mut self) -> TaskResult {
        close_function(&mut self.f)
    }
    super::checkpoint_hooks!(stores, f);
}

impl<T, F: SinkFunction<T>> OneInputStreamOperator<T, ()> for SinkOperator<F, T> {
    #[inline]
    fn process_element(&mut self, record: StreamRecord<T>, _: &mut OperatorOutput<()>) -> TaskResult {
        let time = self.time.as_ref().ok_or_else(|| TaskError::msg("sink used before open"))?;
        self.f.invoke(record.value, &SinkContext::new(record.timestamp, time)).map_err(TaskError::User)
    }

    fn finish(&mut self, _: &mut OperatorOutput<()>) -> TaskResult {
        self.f.finish().map_err(TaskError::User)
    }
}
