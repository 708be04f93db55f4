//! Operators over connected streams: `map`, `flat_map` and `process` with two inputs.

use super::{FunctionStores, close_function};
use crate::functions::{CoProcessFunction, Emitter, RichCoFlatMapFunction, RichCoMapFunction};
use brisk_core::StreamRecord;
use brisk_runtime::{OperatorContext, OperatorOutput, StreamOperator, TaskResult, TwoInputStreamOperator};
use std::marker::PhantomData;

macro_rules! rich_operator {
    ($name:ident, $bound:ident) => {
        impl<A, B, O, F: $bound<A, B, O>> StreamOperator for $name<F, A, B, O> {
            fn open(&mut self, ctx: &mut OperatorContext<'_>) -> TaskResult {
                self.stores = Some(FunctionStores::open(&mut self.f, ctx, false)?);
                Ok(())
            }
            fn close(&mut self) -> TaskResult {
                close_function(&mut self.f)
            }
            super::checkpoint_hooks!(stores, f);
        }
        impl<F, A, B, O> $name<F, A, B, O> {
            /// Wraps the function.
            pub fn new(f: F) -> Self {
                $name { f, stores: None, _types: PhantomData }
            }
        }
    };
}

/// Maps each input with its own function into one output type.
pub struct CoMapOperator<F, A, B, O> {
    f: F,
    stores: Option<FunctionStores>,
    _types: PhantomData<fn(A, B) -> O>,
}
rich_operator!(CoMapOperator, RichCoMapFunction);

impl<A, B, O, F: RichCoMapFunction<A, B, O>> TwoInputStreamOperator<A, B, O> for CoMapOperator<F, A, B, O> {
    fn process_element1(&mut self, record: StreamRecord<A>, out: &mut OperatorOutput<O>) -> TaskResult {
        let value = self.f.map1(record.value)?;
        out.collect(StreamRecord { value, timestamp: record.timestamp })
    }
    fn process_element2(&mut self, record: StreamRecord<B>, out: &mut OperatorOutput<O>) -> TaskResult {
        let value = self.f.map2(record.value)?;
        out.collect(StreamRecord { value, timestamp: record.timestamp })
    }
}

/// Flat-maps each input with its own function into one output type.
pub struct CoFlatMapOperator<F, A, B, O> {
    f: F,
    stores: Option<FunctionStores>,
    _types: PhantomData<fn(A, B) -> O>,
}
rich_operator!(CoFlatMapOperator, RichCoFlatMapFunction);

impl<A, B, O, F: RichCoFlatMapFunction<A, B, O>> TwoInputStreamOperator<A, B, O> for CoFlatMapOperator<F, A, B, O> {
    fn process_element1(&mut self, record: StreamRecord<A>, out: &mut OperatorOutput<O>) -> TaskResult {
        let emitter = Emitter::new(out, record.timestamp);
        let result = self.f.flat_map1(record.value, &mut emitter.collector());
        emitter.finish(result)
    }
    fn process_element2(&mut self, record: StreamRecord<B>, out: &mut OperatorOutput<O>) -> TaskResult {
        let emitter = Emitter::new(out, record.timestamp);
        let result = self.f.flat_map2(record.value, &mut emitter.collector());
        emitter.finish(result)
    }
}

/// Runs a [`CoProcessFunction`].
pub struct CoProcessOperator<F, A, B, O> {
    f: F,
    stores: Option<FunctionStores>,
    _types: PhantomData<fn(A, B) -> O>,
}
rich_operator!(CoProcessOperator, CoProcessFunction);

impl<A, B, O, F: CoProcessFunction<A, B, O>> TwoInputStreamOperator<A, B, O> for CoProcessOperator<F, A, B, O> {
    fn process_element1(&mut self, record: StreamRecord<A>, out: &mut OperatorOutput<O>) -> TaskResult {
        let emitter = Emitter::new(out, record.timestamp);
        let result = self.f.process_element1(record.value, &mut emitter.context(), &mut emitter.collector());
        emitter.finish(result)
    }
    fn process_element2(&mut self, record: StreamRecord<B>, out: &mut OperatorOutput<O>) -> TaskResult {
        let emitter = Emitter::new(out, record.timestamp);
        let result = self.f.process_element2(record.value, &mut emitter.context(), &mut emitter.collector());
        emitter.finish(result)
    }
}
