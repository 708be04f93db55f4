//! `reduce` and the aggregations (`sum`, `min`, `max`, `min_by`, `max_by`) on a keyed stream,
//! with the running value per key in the keyed state backend.

use super::{FunctionStores, state_error};
use crate::key_selector::KeySelector;
use brisk_core::{Data, Key, StreamRecord};
use brisk_runtime::output::StateQuery;
use brisk_runtime::{
    ExecutionMode, OneInputStreamOperator, OperatorContext, OperatorOutput, StreamOperator, TaskResult,
};
use brisk_state::{KeyedStore, StateId, StateKind};

/// Name of the state holding the running value (queryable under this name).
pub const REDUCE_STATE: &str = "reduce";

/// Folds the records of each key with a reduce function. In streaming mode every record
/// emits the key's new value; in batch mode each key's final value is emitted at the end of
/// input, as Flink's batch execution does.
pub struct KeyedReduceOperator<T, K, F> {
    key_selector: KeySelector<T, K>,
    reduce: F,
    stores: Option<(FunctionStores, StateId)>,
    batch: bool,
}

impl<T, K, F> KeyedReduceOperator<T, K, F> {
    /// Reduces per key of `key_selector` with `reduce`.
    pub fn new(key_selector: KeySelector<T, K>, reduce: F) -> Self {
        KeyedReduceOperator { key_selector, reduce, stores: None, batch: false }
    }
}

impl<T: Data, K, F> StreamOperator for KeyedReduceOperator<T, K, F> {
    fn open(&mut self, ctx: &mut OperatorContext<'_>) -> TaskResult {
        self.batch = ctx.task.execution_mode == ExecutionMode::Batch;
        let stores = FunctionStores::create(ctx, true)?;
        let id = match &stores.keyed {
            Some(backend) => backend
                .with(REDUCE_STATE, |b| b.store().register_value::<T>(REDUCE_STATE, StateKind::Reducing, None))
                .map_err(state_error)?,
            None => return Err(brisk_runtime::TaskError::msg("keyed reduce without keyed state")),
        };
        self.stores = Some((stores, id));
        Ok(())
    }

    fn query_state(&mut self, query: &StateQuery) -> Option<Result<Option<Vec<u8>>, String>> {
        self.stores.as_ref()?.0.query(query)
    }

    fn snapshot_state(
        &mut self,
        _: &brisk_runtime::checkpoint::CheckpointBarrier,
    ) -> TaskResult<brisk_runtime::checkpoint::OperatorSnapshot> {
        match &self.stores {
            Some((stores, _)) => stores.snapshot_state(),
            None => Ok(Default::default()),
        }
    }
}

impl<T: Data, K: Key, F: FnMut(T, T) -> T> OneInputStreamOperator<T, T> for KeyedReduceOperator<T, K, F> {
    #[inline]
    fn process_element(&mut self, record: StreamRecord<T>, out: &mut OperatorOutput<T>) -> TaskResult {
        let Some((stores, id)) = &self.stores else { return Ok(()) };
        let Some(backend) = &stores.keyed else { return Ok(()) };
        let (reduce, batch, id) = (&mut self.reduce, self.batch, *id);
        let emitted = backend
            .with(REDUCE_STATE, |b| {
                self.key_selector.with_key(&record.value, |key| b.set_current_key(key))?;
                b.with_current(REDUCE_STATE, |store, kg, key| {
                    store.value_update::<T, Option<T>>(id, kg, key, |old| {
                        let value = match old {
                            Some(accumulated) => reduce(accumulated, record.value),
                            None => record.value,
                        };
                        let emit = (!batch).then(|| value.clone());
                        (Some(value), emit)
                    })
                })
            })
            .map_err(state_error)?;
        match emitted {
            Some(value) => out.collect(StreamRecord { value, timestamp: record.timestamp }),
            None => Ok(()),
        }
    }

    fn finish(&mut self, out: &mut OperatorOutput<T>) -> TaskResult {
        if !self.batch {
            return Ok(());
        }
        let Some((stores, id)) = &self.stores else { return Ok(()) };
        let Some(backend) = &stores.keyed else { return Ok(()) };
        let range = backend.with(REDUCE_STATE, |b| Ok(b.context().key_group_range)).map_err(state_error)?;
        for kg in range.iter() {
            // One key group at a time, emitted outside the backend's borrow.
            let values = backend.with(REDUCE_STATE, |b| b.store().value_entries::<T>(*id, kg)).map_err(state_error)?;
            for (_, value) in values {
                out.collect(StreamRecord::new(value))?;
            }
        }
        Ok(())
    }
}
