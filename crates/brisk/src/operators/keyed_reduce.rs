//! `reduce` and the aggregations (`sum`, `min`, `max`, `min_by`, `max_by`) on a keyed stream.

use crate::key_selector::KeySelector;
use brisk_core::StreamRecord;
use brisk_core::hash::StableHasher;
use brisk_runtime::{
    ExecutionMode, OneInputStreamOperator, OperatorContext, OperatorOutput, StreamOperator, TaskResult,
};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// Folds the records of each key with a reduce function. In streaming mode every record
/// emits the key's new value; in batch mode each key's final value is emitted at the end of
/// input, as Flink's batch execution does.
pub struct KeyedReduceOperator<T, K, F> {
    key_selector: KeySelector<T, K>,
    reduce: F,
    values: HashMap<K, Option<T>, BuildHasherDefault<StableHasher>>,
    batch: bool,
}

impl<T, K, F> KeyedReduceOperator<T, K, F> {
    /// Reduces per key of `key_selector` with `reduce`.
    pub fn new(key_selector: KeySelector<T, K>, reduce: F) -> Self {
        KeyedReduceOperator { key_selector, reduce, values: HashMap::default(), batch: false }
    }
}

impl<T, K, F> StreamOperator for KeyedReduceOperator<T, K, F> {
    fn open(&mut self, ctx: &mut OperatorContext<'_>) -> TaskResult {
        self.batch = ctx.task.execution_mode == ExecutionMode::Batch;
        Ok(())
    }
}

impl<T: Clone, K: std::hash::Hash + Eq + Clone, F: FnMut(T, T) -> T> OneInputStreamOperator<T, T>
    for KeyedReduceOperator<T, K, F>
{
    #[inline]
    fn process_element(&mut self, record: StreamRecord<T>, out: &mut OperatorOutput<T>) -> TaskResult {
        let values = &mut self.values;
        // Look the key up borrowed; only a new key is copied into the map.
        let slot = match self.key_selector.with_key(&record.value, move |key| values.get_mut(key)) {
            Some(slot) => slot,
            None => {
                let key = self.key_selector.get_key(&record.value);
                self.values.entry(key).or_insert(None)
            }
        };
        let value = match slot.take() {
            Some(accumulated) => (self.reduce)(accumulated, record.value),
            None => record.value,
        };
        if self.batch {
            *slot = Some(value);
            Ok(())
        } else {
            *slot = Some(value.clone());
            out.collect(StreamRecord { value, timestamp: record.timestamp })
        }
    }

    fn finish(&mut self, out: &mut OperatorOutput<T>) -> TaskResult {
        if self.batch {
            for value in self.values.drain().filter_map(|(_, v)| v) {
                out.collect(StreamRecord::new(value))?;
            }
        }
        Ok(())
    }
}
