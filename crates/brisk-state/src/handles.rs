//! User-facing state handles (Flink's `ValueState`, `ListState`, `MapState`, `ReducingState`,
//! `AggregatingState`). Handles are cheap to clone and `Send`, so they live in function fields;
//! every call works on the state of the current key.

use crate::backend::{KeyedStateBackend, KeyedStore, StateId, StateStore};
use crate::descriptor::{
    AggregateFunction, AggregatingStateDescriptor, ListStateDescriptor, MapStateDescriptor, ReduceFn,
    ReducingStateDescriptor, StateKind, ValueStateDescriptor,
};
use crate::error::StateResult;
use crate::registry::{self, Registered, RegistryId};
use brisk_core::{Data, Key};
use std::marker::PhantomData;
use std::sync::Arc;

/// Reads and writes one value.
pub trait ValueAccess<V>: Send + Sync {
    /// The value, if set.
    fn value(&self) -> StateResult<Option<V>>;
    /// Sets the value.
    fn update(&self, value: V) -> StateResult;
    /// Removes the value.
    fn clear(&self) -> StateResult;
}

/// Reads and writes a list.
pub trait ListAccess<V>: Send + Sync {
    /// The elements (empty if none).
    fn get(&self) -> StateResult<Vec<V>>;
    /// Appends elements.
    fn add_all(&self, values: Vec<V>) -> StateResult;
    /// Replaces the elements.
    fn update(&self, values: Vec<V>) -> StateResult;
}

/// Reads and writes a map.
pub trait MapAccess<UK, UV>: Send + Sync {
    /// One entry.
    fn get(&self, key: &UK) -> StateResult<Option<UV>>;
    /// Sets an entry.
    fn put(&self, key: UK, value: UV) -> StateResult;
    /// Removes an entry.
    fn remove(&self, key: &UK) -> StateResult;
    /// All entries.
    fn entries(&self) -> StateResult<Vec<(UK, UV)>>;
    /// Removes every entry.
    fn clear(&self) -> StateResult;
}

/// One value per key (Flink's `ValueState`).
pub struct ValueState<V>(Arc<dyn ValueAccess<V>>);
/// A list per key (Flink's `ListState`); also operator list state.
pub struct ListState<V>(Arc<dyn ListAccess<V>>);
/// A map per key (Flink's `MapState`).
pub struct MapState<UK, UV>(Arc<dyn MapAccess<UK, UV>>);
/// A value per key folded with a reduce function (Flink's `ReducingState`).
pub struct ReducingState<V>(Arc<dyn ValueAccess<V>>, ReduceFn<V>);
/// An accumulator per key folded with an aggregate function (Flink's `AggregatingState`).
pub struct AggregatingState<IN, ACC, OUT>(Arc<dyn ValueAccess<ACC>>, Arc<dyn AggregateFunction<IN, ACC, OUT>>);

macro_rules! clone_handle {
    ($t:ident < $($p:ident),* > $(, $extra:tt)*) => {
        impl<$($p),*> Clone for $t<$($p),*> {
            fn clone(&self) -> Self {
                $t(self.0.clone() $(, self.$extra.clone())*)
            }
        }
    };
}
clone_handle!(ValueState<V>);
clone_handle!(ListState<V>);
clone_handle!(MapState<UK, UV>);
clone_handle!(ReducingState<V>, 1);
clone_handle!(AggregatingState<IN, ACC, OUT>, 1);

impl<V> ValueState<V> {
    /// A handle over any value store.
    pub fn new(access: Arc<dyn ValueAccess<V>>) -> Self {
        ValueState(access)
    }
    /// The current key's value, if set.
    pub fn value(&self) -> StateResult<Option<V>> {
        self.0.value()
    }
    /// Sets the current key's value.
    pub fn update(&self, value: V) -> StateResult {
        self.0.update(value)
    }
    /// Removes the current key's value.
    pub fn clear(&self) -> StateResult {
        self.0.clear()
    }
}

impl<V> ListState<V> {
    /// A handle over any list store.
    pub fn new(access: Arc<dyn ListAccess<V>>) -> Self {
        ListState(access)
    }
    /// The current key's elements (empty if none).
    pub fn get(&self) -> StateResult<Vec<V>> {
        self.0.get()
    }
    /// Appends an element.
    pub fn add(&self, value: V) -> StateResult {
        self.0.add_all(vec![value])
    }
    /// Appends elements.
    pub fn add_all(&self, values: Vec<V>) -> StateResult {
        self.0.add_all(values)
    }
    /// Replaces the elements.
    pub fn update(&self, values: Vec<V>) -> StateResult {
        self.0.update(values)
    }
    /// Removes every element.
    pub fn clear(&self) -> StateResult {
        self.0.update(Vec::new())
    }
}

impl<UK, UV> MapState<UK, UV> {
    /// A handle over any map store.
    pub fn new(access: Arc<dyn MapAccess<UK, UV>>) -> Self {
        MapState(access)
    }
    /// The value under `key`.
    pub fn get(&self, key: &UK) -> StateResult<Option<UV>> {
        self.0.get(key)
    }
    /// Sets `key` to `value`.
    pub fn put(&self, key: UK, value: UV) -> StateResult {
        self.0.put(key, value)
    }
    /// Sets all entries.
    pub fn put_all(&self, entries: impl IntoIterator<Item = (UK, UV)>) -> StateResult {
        entries.into_iter().try_for_each(|(k, v)| self.0.put(k, v))
    }
    /// Removes `key`.
    pub fn remove(&self, key: &UK) -> StateResult {
        self.0.remove(key)
    }
    /// Whether `key` is present.
    pub fn contains(&self, key: &UK) -> StateResult<bool> {
        Ok(self.0.get(key)?.is_some())
    }
    /// All entries (in no particular order).
    pub fn entries(&self) -> StateResult<Vec<(UK, UV)>> {
        self.0.entries()
    }
    /// All keys.
    pub fn keys(&self) -> StateResult<Vec<UK>> {
        Ok(self.0.entries()?.into_iter().map(|(k, _)| k).collect())
    }
    /// All values.
    pub fn values(&self) -> StateResult<Vec<UV>> {
        Ok(self.0.entries()?.into_iter().map(|(_, v)| v).collect())
    }
    /// Whether the map is empty.
    pub fn is_empty(&self) -> StateResult<bool> {
        Ok(self.0.entries()?.is_empty())
    }
    /// Removes every entry.
    pub fn clear(&self) -> StateResult {
        self.0.clear()
    }
}

impl<V> ReducingState<V> {
    /// The folded value, if any.
    pub fn get(&self) -> StateResult<Option<V>> {
        self.0.value()
    }
    /// Folds `value` in.
    pub fn add(&self, value: V) -> StateResult {
        let folded = match self.0.value()? {
            Some(current) => (self.1)(current, value),
            None => value,
        };
        self.0.update(folded)
    }
    /// Removes the value.
    pub fn clear(&self) -> StateResult {
        self.0.clear()
    }
}

impl<IN: 'static, ACC: 'static, OUT: 'static> AggregatingState<IN, ACC, OUT> {
    /// The result of the accumulator, if any input was added.
    pub fn get(&self) -> StateResult<Option<OUT>> {
        Ok(self.0.value()?.map(|acc| self.1.get_result(&acc)))
    }
    /// Adds an input.
    pub fn add(&self, value: IN) -> StateResult {
        let acc = self.0.value()?.unwrap_or_else(|| self.1.create_accumulator());
        self.0.update(self.1.add(value, acc))
    }
    /// Removes the accumulator.
    pub fn clear(&self) -> StateResult {
        self.0.clear()
    }
}

/// A keyed state of a backend registered on the task thread, used under the current key.
struct KeyedHandle<T> {
    backend: RegistryId,
    state: StateId,
    name: Arc<str>,
    _type: PhantomData<fn() -> T>,
}

impl<T> KeyedHandle<T> {
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut StateStore, StateId, usize, &[u8]) -> StateResult<R>) -> StateResult<R> {
        registry::with::<KeyedStateBackend, R>(self.backend, &self.name, |backend| {
            backend.with_current(&self.name, |store, kg, key| f(store, self.state, kg, key))
        })
    }
}

impl<V: Data> ValueAccess<V> for KeyedHandle<V> {
    fn value(&self) -> StateResult<Option<V>> {
        self.with(|s, id, kg, key| s.value_get(id, kg, key))
    }
    fn update(&self, value: V) -> StateResult {
        self.with(|s, id, kg, key| s.value_put(id, kg, key, value))
    }
    fn clear(&self) -> StateResult {
        self.with(|s, id, kg, key| s.remove(id, kg, key))
    }
}

impl<V: Data> ListAccess<V> for KeyedHandle<Vec<V>> {
    fn get(&self) -> StateResult<Vec<V>> {
        self.with(|s, id, kg, key| s.list_get(id, kg, key))
    }
    fn add_all(&self, values: Vec<V>) -> StateResult {
        self.with(|s, id, kg, key| s.list_add(id, kg, key, values))
    }
    fn update(&self, values: Vec<V>) -> StateResult {
        self.with(|s, id, kg, key| s.list_update(id, kg, key, values))
    }
}

impl<UK: Key, UV: Data> MapAccess<UK, UV> for KeyedHandle<(UK, UV)> {
    fn get(&self, user_key: &UK) -> StateResult<Option<UV>> {
        self.with(|s, id, kg, key| s.map_get(id, kg, key, user_key))
    }
    fn put(&self, user_key: UK, value: UV) -> StateResult {
        self.with(|s, id, kg, key| s.map_put(id, kg, key, user_key, value))
    }
    fn remove(&self, user_key: &UK) -> StateResult {
        self.with(|s, id, kg, key| s.map_remove::<UK, UV>(id, kg, key, user_key))
    }
    fn entries(&self) -> StateResult<Vec<(UK, UV)>> {
        self.with(|s, id, kg, key| s.map_entries(id, kg, key))
    }
    fn clear(&self) -> StateResult {
        self.with(|s, id, kg, key| s.remove(id, kg, key))
    }
}

fn handle<T>(backend: &Registered<KeyedStateBackend>, state: StateId, name: &str) -> KeyedHandle<T> {
    KeyedHandle { backend: backend.id(), state, name: name.into(), _type: PhantomData }
}

/// Registers a value state with a task's keyed backend and returns its handle.
pub fn keyed_value_state<V: Data>(
    backend: &Registered<KeyedStateBackend>,
    desc: &ValueStateDescriptor<V>,
) -> StateResult<ValueState<V>> {
    let id = backend.with(desc.name(), |b| b.register_value::<V>(desc.name(), StateKind::Value, desc.ttl()))?;
    Ok(ValueState(Arc::new(handle::<V>(backend, id, desc.name()))))
}

/// Registers a list state with a task's keyed backend and returns its handle.
pub fn keyed_list_state<V: Data>(
    backend: &Registered<KeyedStateBackend>,
    desc: &ListStateDescriptor<V>,
) -> StateResult<ListState<V>> {
    let id = backend.with(desc.name(), |b| b.store().register_list::<V>(desc.name(), desc.ttl()))?;
    Ok(ListState(Arc::new(handle::<Vec<V>>(backend, id, desc.name()))))
}

/// Registers a map state with a task's keyed backend and returns its handle.
pub fn keyed_map_state<UK: Key, UV: Data>(
    backend: &Registered<KeyedStateBackend>,
    desc: &MapStateDescriptor<UK, UV>,
) -> StateResult<MapState<UK, UV>> {
    let id = backend.with(desc.name(), |b| b.store().register_map::<UK, UV>(desc.name(), desc.ttl()))?;
    Ok(MapState(Arc::new(handle::<(UK, UV)>(backend, id, desc.name()))))
}

/// Registers a reducing state with a task's keyed backend and returns its handle.
pub fn keyed_reducing_state<V: Data>(
    backend: &Registered<KeyedStateBackend>,
    desc: &ReducingStateDescriptor<V>,
) -> StateResult<ReducingState<V>> {
    let id = backend.with(desc.name(), |b| b.register_value::<V>(desc.name(), StateKind::Reducing, desc.ttl()))?;
    Ok(ReducingState(Arc::new(handle::<V>(backend, id, desc.name())), desc.reduce_function().clone()))
}

/// Registers an aggregating state with a task's keyed backend and returns its handle.
pub fn keyed_aggregating_state<IN, ACC: Data, OUT>(
    backend: &Registered<KeyedStateBackend>,
    desc: &AggregatingStateDescriptor<IN, ACC, OUT>,
) -> StateResult<AggregatingState<IN, ACC, OUT>> {
    let id = backend.with(desc.name(), |b| b.register_value::<ACC>(desc.name(), StateKind::Aggregating, desc.ttl()))?;
    Ok(AggregatingState(Arc::new(handle::<ACC>(backend, id, desc.name())), desc.aggregate_function().clone()))
}
