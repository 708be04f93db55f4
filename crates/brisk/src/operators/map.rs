//! `map`, `flat_map` and `filter`.

use super::{close_function, open_function};
use crate::functions::{Emitter, RichFilterFunction, RichFlatMapFunction, RichMapFunction};
use brisk_core::StreamRecord;
use brisk_runtime::{OneInputStreamOperator, OperatorContext, OperatorOutput, StreamOperator, TaskResult};
use std::marker::PhantomData;

/// Applies a map function to every record, keeping its timestamp.
pub struct StreamMap<F, T, O> {
    f: F,
    _types: PhantomData<fn(T) -> O>,
}

impl<F, T, O> StreamMap<F, T, O> {
    /// Maps with `f`.
    pub fn new(f: F) -> Self {
        StreamMap { f, _types: PhantomData }
    }
}

impl<T, O, F: RichMapFunction<T, O>> StreamOperator for StreamMap<F, T, O> {
    fn open(&mut self, ctx: &mut OperatorContext<'_>) -> TaskResult {
        open_function(&mut self.f, ctx)
    }
    fn close(&mut self) -> TaskResult {
        close_function(&mut self.f)
    }
}

impl<T, O, F: RichMapFunction<T, O>> OneInputStreamOperator<T, O> for StreamMap<F, T, O> {
    #[inline]
    fn process_element(&mut self, record: StreamRecord<T>, out: &mut OperatorOutput<O>) -> TaskResult {
        let value = self.f.map(record.value)?;
        out.collect(StreamRecord { value, timestamp: record.timestamp })
    }
}

/// Applies a flat-map function to every record; emitted records keep the input's timestamp.
pub struct StreamFlatMap<F, T, O> {
    f: F,
    _types: PhantomData<fn(T) -> O>,
}

impl<F, T, O> StreamFlatMap<F, T, O> {
    /// Flat-maps with `f`.
    pub fn new(f: F) -> Self {
        StreamFlatMap { f, _types: PhantomData }
    }
}

impl<T, O, F: RichFlatMapFunction<T, O>> StreamOperator for StreamFlatMap<F, T, O> {
    fn open(&mut self, ctx: &mut OperatorContext<'_>) -> TaskResult {
        open_function(&mut self.f, ctx)
    }
    fn close(&mut self) -> TaskResult {
        close_function(&mut self.f)
    }
}

impl<T, O, F: RichFlatMapFunction<T, O>> OneInputStreamOperator<T, O> for StreamFlatMap<F, T, O> {
    #[inline]
    fn process_element(&mut self, record: StreamRecord<T>, out: &mut OperatorOutput<O>) -> TaskResult {
        let emitter = Emitter::new(out, record.timestamp);
        let result = self.f.flat_map(record.value, &mut emitter.collector());
        emitter.finish(result)
    }
}

/// Keeps the records a filter function accepts.
pub struct StreamFilter<F, T> {
    f: F,
    _type: PhantomData<fn(T)>,
}

impl<F, T> StreamFilter<F, T> {
    /// Filters with `f`.
    pub fn new(f: F) -> Self {
        StreamFilter { f, _type: PhantomData }
    }
}

impl<T, F: RichFilterFunction<T>> StreamOperator for StreamFilter<F, T> {
    fn open(&mut self, ctx: &mut OperatorContext<'_>) -> TaskResult {
        open_function(&mut self.f, ctx)
    }
    fn close(&mut self) -> TaskResult {
        close_function(&mut self.f)
    }
}

impl<T, F: RichFilterFunction<T>> OneInputStreamOperator<T, T> for StreamFilter<F, T> {
    #[inline]
    fn process_element(&mut self, record: StreamRecord<T>, out: &mut OperatorOutput<T>) -> TaskResult {
        if self.f.filter(&record.value)? { out.collect(record) } else { Ok(()) }
    }
}
