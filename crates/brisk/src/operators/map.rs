//! `map`, `flat_map` and `filter`, on plain and (with a key setter) keyed streams.

use super::{FunctionStores, KeySetter, close_function};
use crate::functions::{Emitter, RichFilterFunction, RichFlatMapFunction, RichMapFunction};
use brisk_core::StreamRecord;
use brisk_runtime::taskexecutor::output::StateQuery;
use brisk_runtime::{OneInputStreamOperator, OperatorContext, OperatorOutput, StreamOperator, TaskResult};
use std::marker::PhantomData;

/// Declares a one-input operator over a rich function: its fields, constructor and lifecycle.
macro_rules! function_operator {
    ($(#[$doc:meta])* $name:ident <$($t:ident),*>, $bound:path) => {
        $(#[$doc])*
        pub struct $name<F, $($t),*> {
            f: F,
            key: Option<KeySetter<T>>,
            stores: Option<FunctionStores>,
            _types: PhantomData<fn($($t),*)>,
        }

        impl<F, $($t),*> $name<F, $($t),*> {
            /// Runs `f`; with `key`, on a keyed stream (keyed state available to `f`).
            pub fn new(f: F, key: Option<KeySetter<T>>) -> Self {
                $name { f, key, stores: None, _types: PhantomData }
            }
        }

        impl<F: $bound, $($t),*> StreamOperator for $name<F, $($t),*> {
            fn open(&mut self, ctx: &mut OperatorContext<'_>) -> TaskResult {
                self.stores = Some(FunctionStores::open(&mut self.f, ctx, self.key.is_some())?);
                Ok(())
            }
            fn close(&mut self) -> TaskResult {
                close_function(&mut self.f)
            }
            fn query_state(&mut self, query: &StateQuery) -> Option<Result<Option<Vec<u8>>, String>> {
                self.stores.as_ref()?.query(query)
            }
            super::checkpoint_hooks!(stores, f);
        }

        impl<F, $($t),*> $name<F, $($t),*> {
            #[inline]
            fn set_key(&self, value: &T) -> TaskResult {
                match &self.stores {
                    Some(stores) => stores.set_key(self.key.as_ref(), value),
                    None => Ok(()),
                }
            }
        }
    };
}
pub(crate) use function_operator;

function_operator!(
    /// Applies a map function to every record, keeping its timestamp.
    StreamMap<T, O>, RichMapFunction<T, O>);
function_operator!(
    /// Applies a flat-map function to every record; emitted records keep the input's timestamp.
    StreamFlatMap<T, O>, RichFlatMapFunction<T, O>);
function_operator!(
    /// Keeps the records a filter function accepts.
    StreamFilter<T>, RichFilterFunction<T>);

impl<T, O, F: RichMapFunction<T, O>> OneInputStreamOperator<T, O> for StreamMap<F, T, O> {
    #[inline]
    fn process_element(&mut self, record: StreamRecord<T>, out: &mut OperatorOutput<O>) -> TaskResult {
        self.set_key(&record.value)?;
        let value = self.f.map(record.value)?;
        out.collect(StreamRecord { value, timestamp: record.timestamp })
    }
}

impl<T, O, F: RichFlatMapFunction<T, O>> OneInputStreamOperator<T, O> for StreamFlatMap<F, T, O> {
    #[inline]
    fn process_element(&mut self, record: StreamRecord<T>, out: &mut OperatorOutput<O>) -> TaskResult {
        self.set_key(&record.value)?;
        let emitter = Emitter::new(out, record.timestamp);
        let result = self.f.flat_map(record.value, &mut emitter.collector());
        emitter.finish(result)
    }
}

impl<T, F: RichFilterFunction<T>> OneInputStreamOperator<T, T> for StreamFilter<F, T> {
    #[inline]
    fn process_element(&mut self, record: StreamRecord<T>, out: &mut OperatorOutput<T>) -> TaskResult {
        self.set_key(&record.value)?;
        if self.f.filter(&record.value)? { out.collect(record) } else { Ok(()) }
    }
}
