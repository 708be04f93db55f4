//! `reduce` and the aggregations (`sum`, `min`, `max`, `min_by`, `max_by`) on a keyed stream.
//! With RocksDB the running value per key lives in the keyed backend; with the heap backend
//! it lives in a typed hash map in the operator (one lookup per record, no key encoding),
//! snapshotted in the same canonical format, so both restore each other's snapshots.

use super::{FunctionStores, state_error};
use crate::key_selector::KeySelector;
use brisk_core::key_group::assign_to_key_group;
use brisk_core::{Data, Key, KeyGroupRange, StreamRecord};
use brisk_runtime::checkpoint::{CheckpointBarrier, OperatorSnapshot};
use brisk_runtime::taskexecutor::output::StateQuery;
use brisk_runtime::{
    ExecutionMode, OneInputStreamOperator, OperatorContext, OperatorOutput, StreamOperator, TaskError, TaskResult,
};
use brisk_state::snapshot::{StateEntry, StateMeta};
use brisk_state::{
    KeyedStateSnapshot, KeyedStore, SnapshotWriter, StateBackendKind, StateId, StateKind, StateResult, codec,
};
use hashbrown::HashMap;

/// Name of the state holding the running value (queryable under this name).
pub const REDUCE_STATE: &str = "reduce";

/// Where the running values are.
enum Running<K, T> {
    /// In the keyed backend (RocksDB).
    Backend(StateId),
    /// In the operator (heap backend); a value is `None` only while it is being reduced.
    Memory(HashMap<K, Option<T>>),
}

/// Folds the records of each key with a reduce function. In streaming mode every record
/// emits the key's new value; in batch mode each key's final value is emitted at the end of
/// input, as Flink's batch execution does.
pub struct KeyedReduceOperator<T, K, F> {
    key_selector: KeySelector<T, K>,
    reduce: F,
    stores: Option<FunctionStores>,
    running: Option<Running<K, T>>,
    batch: bool,
    key_groups: (usize, KeyGroupRange),
}

impl<T, K, F> KeyedReduceOperator<T, K, F> {
    /// Reduces per key of `key_selector` with `reduce`.
    pub fn new(key_selector: KeySelector<T, K>, reduce: F) -> Self {
        KeyedReduceOperator {
            key_selector,
            reduce,
            stores: None,
            running: None,
            batch: false,
            key_groups: (1, KeyGroupRange::new(0, 0)),
        }
    }
}

impl<T: Data, K: Key, F> KeyedReduceOperator<T, K, F> {
    /// Moves restored values out of the backend into the map.
    fn take_restored(
        stores: &FunctionStores,
        id: StateId,
        range: KeyGroupRange,
        into: &mut HashMap<K, Option<T>>,
    ) -> TaskResult {
        let Some(backend) = &stores.keyed else { return Ok(()) };
        for kg in range.iter() {
            let values = backend.with(REDUCE_STATE, |b| b.store().value_entries::<T>(id, kg)).map_err(state_error)?;
            for (key, value) in values {
                let decoded: K =
                    codec::decode(&key).map_err(|e| TaskError::msg(format!("a restored key does not decode: {e}")))?;
                backend.with(REDUCE_STATE, |b| b.store().remove(id, kg, &key)).map_err(state_error)?;
                into.insert(decoded, Some(value));
            }
        }
        Ok(())
    }
}

impl<T: Data, K: Key, F> StreamOperator for KeyedReduceOperator<T, K, F> {
    fn open(&mut self, ctx: &mut OperatorContext<'_>) -> TaskResult {
        self.batch = ctx.task.execution_mode == ExecutionMode::Batch;
        self.key_groups = (ctx.task.info.max_parallelism, ctx.task.info.key_group_range());
        let stores = FunctionStores::create(ctx, true)?;
        let id = match &stores.keyed {
            Some(backend) => backend
                .with(REDUCE_STATE, |b| b.register_value::<T>(REDUCE_STATE, StateKind::Reducing, None))
                .map_err(state_error)?,
            None => return Err(TaskError::msg("keyed reduce without keyed state")),
        };
        self.running = Some(if ctx.task.state_backend.kind == StateBackendKind::HashMap {
            let mut values = HashMap::new();
            Self::take_restored(&stores, id, self.key_groups.1, &mut values)?;
            Running::Memory(values)
        } else {
            Running::Backend(id)
        });
        self.stores = Some(stores);
        Ok(())
    }

    fn query_state(&mut self, query: &StateQuery) -> Option<Result<Option<Vec<u8>>, String>> {
        match &self.running {
            Some(Running::Memory(values)) if query.state == REDUCE_STATE => {
                let encode = |value: &T| match query.json {
                    true => serde_json::to_vec(value).map_err(|e| format!("cannot show the value as JSON: {e}")),
                    false => codec::encode(value),
                };
                let answer = codec::decode::<K>(&query.key)
                    .and_then(|key| values.get(&key).and_then(Option::as_ref).map(encode).transpose());
                Some(answer)
            }
            _ => self.stores.as_ref()?.query(query),
        }
    }

    fn snapshot_state(&mut self, _: &CheckpointBarrier) -> TaskResult<OperatorSnapshot> {
        let Some(stores) = &self.stores else { return Ok(OperatorSnapshot::default()) };
        let mut snapshot = stores.snapshot_state()?;
        if let Some(Running::Memory(values)) = &self.running {
            let (max_parallelism, range) = self.key_groups;
            let entries: Vec<(K, T)> = values.iter().filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect();
            snapshot.keyed = Some(Box::new(ReduceSnapshotWriter { entries, max_parallelism, range }));
        }
        Ok(snapshot)
    }
}

/// Encodes the in-memory running values as the canonical snapshot of the `reduce` state.
struct ReduceSnapshotWriter<K, T> {
    entries: Vec<(K, T)>,
    max_parallelism: usize,
    range: KeyGroupRange,
}

impl<K: Key, T: Data> SnapshotWriter for ReduceSnapshotWriter<K, T> {
    fn write(self: Box<Self>) -> StateResult<KeyedStateSnapshot> {
        let mut out = KeyedStateSnapshot::new("hashmap", self.max_parallelism, self.range);
        let state = out.state_index(&StateMeta::of::<T>(REDUCE_STATE, StateKind::Reducing));
        for (key, value) in &self.entries {
            let encode = |e: String| brisk_state::StateError::Snapshot { what: "keyed reduce".into(), reason: e };
            let entry = StateEntry {
                state,
                key: codec::encode(key).map_err(encode)?,
                user_key: Vec::new(),
                value: codec::encode(value).map_err(encode)?,
            };
            out.key_group_mut(assign_to_key_group(key, self.max_parallelism)).entries.push(entry);
        }
        out.key_groups.sort_by_key(|g| g.key_group);
        Ok(out)
    }
}

impl<T: Data, K: Key, F: FnMut(T, T) -> T> OneInputStreamOperator<T, T> for KeyedReduceOperator<T, K, F> {
    #[inline]
    fn process_element(&mut self, record: StreamRecord<T>, out: &mut OperatorOutput<T>) -> TaskResult {
        let (reduce, batch) = (&mut self.reduce, self.batch);
        let emitted = match &mut self.running {
            Some(Running::Memory(values)) => {
                let found = self.key_selector.with_key(&record.value, |key| values.get_mut(key));
                match found {
                    Some(slot) => {
                        let value = match slot.take() {
                            Some(accumulated) => reduce(accumulated, record.value),
                            None => record.value,
                        };
                        let emit = (!batch).then(|| value.clone());
                        *slot = Some(value);
                        emit
                    }
                    None => {
                        let key = self.key_selector.get_key(&record.value);
                        let emit = (!batch).then(|| record.value.clone());
                        values.insert(key, Some(record.value));
                        emit
                    }
                }
            }
            Some(Running::Backend(id)) => {
                let id = *id;
                let Some(backend) = self.stores.as_ref().and_then(|s| s.keyed.as_ref()) else { return Ok(()) };
                backend
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
                    .map_err(state_error)?
            }
            None => return Ok(()),
        };
        match emitted {
            Some(value) => out.collect(StreamRecord { value, timestamp: record.timestamp }),
            None => Ok(()),
        }
    }

    fn finish(&mut self, out: &mut OperatorOutput<T>) -> TaskResult {
        if !self.batch {
            return Ok(());
        }
        match &mut self.running {
            Some(Running::Memory(values)) => {
                for value in values.drain().filter_map(|(_, v)| v) {
                    out.collect(StreamRecord::new(value))?;
                }
                Ok(())
            }
            Some(Running::Backend(id)) => {
                let id = *id;
                let Some(backend) = self.stores.as_ref().and_then(|s| s.keyed.as_ref()) else { return Ok(()) };
                let range = self.key_groups.1;
                for kg in range.iter() {
                    // One key group at a time, emitted outside the backend's borrow.
                    let values =
                        backend.with(REDUCE_STATE, |b| b.store().value_entries::<T>(id, kg)).map_err(state_error)?;
                    for (_, value) in values {
                        out.collect(StreamRecord::new(value))?;
                    }
                }
                Ok(())
            }
            None => Ok(()),
        }
    }
}
