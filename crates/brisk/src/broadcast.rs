//! Broadcast state (Flink's broadcast state pattern): a low-volume stream (rules, config) is
//! broadcast to every subtask of an operator, which keeps it in a map identical everywhere and
//! applies it to the records of a regular or keyed stream.

use crate::datastream::DataStream;
use crate::functions::{Collector, Emitter, ProcessContext, RichFunction};
use crate::key_selector::KeySelector;
use crate::operators::{FunctionStores, KeySetter, close_function, key_setter, state_error};
use crate::side_output::OutputTag;
use brisk_core::{BoxError, Data, Key, StreamRecord};
use brisk_runtime::graph::stream_graph::two_input_factory;
use brisk_runtime::taskexecutor::output::StateQuery;
use brisk_runtime::{OperatorContext, OperatorOutput, StreamOperator, TaskResult, TwoInputStreamOperator};
use brisk_state::operator_state::broadcast_state;
use brisk_state::{MapState, MapStateDescriptor, StateError};
use std::marker::PhantomData;

/// A stream broadcast to every subtask together with the descriptor of the state it fills.
pub struct BroadcastStream<T, K, V> {
    stream: DataStream<T>,
    descriptor: MapStateDescriptor<K, V>,
}

impl<T: Data> DataStream<T> {
    /// Broadcasts this stream for the broadcast state pattern (Flink's `broadcast(descriptor)`).
    pub fn broadcast_with<K: Key, V: Data>(&self, descriptor: MapStateDescriptor<K, V>) -> BroadcastStream<T, K, V> {
        BroadcastStream { stream: self.broadcast(), descriptor }
    }

    /// Connects with a broadcast stream (Flink's `connect(BroadcastStream)`).
    pub fn connect_broadcast<B: Data, K: Key, V: Data>(
        &self,
        broadcast: &BroadcastStream<B, K, V>,
    ) -> BroadcastConnectedStream<T, B, K, V> {
        BroadcastConnectedStream {
            stream: self.clone(),
            broadcast: broadcast.stream.clone(),
            descriptor: broadcast.descriptor.clone(),
            key: None,
        }
    }
}

impl<T: Data, KEY: Key> crate::keyed_stream::KeyedStream<T, KEY> {
    /// Connects a keyed stream with a broadcast stream: elements are processed with keyed
    /// state of their key, and the broadcast state of the operator.
    pub fn connect_broadcast<B: Data, K: Key, V: Data>(
        &self,
        broadcast: &BroadcastStream<B, K, V>,
    ) -> BroadcastConnectedStream<T, B, K, V> {
        let selector: KeySelector<T, KEY> = self.key_selector().clone();
        BroadcastConnectedStream {
            stream: (**self).clone(),
            broadcast: broadcast.stream.clone(),
            descriptor: broadcast.descriptor.clone(),
            key: Some(key_setter(selector)),
        }
    }
}

/// A (keyed or plain) stream connected with a broadcast stream.
pub struct BroadcastConnectedStream<T, B, K, V> {
    stream: DataStream<T>,
    broadcast: DataStream<B>,
    descriptor: MapStateDescriptor<K, V>,
    key: Option<KeySetter<T>>,
}

impl<T: Data, B: Data, K: Key, V: Data> BroadcastConnectedStream<T, B, K, V> {
    /// Runs a [`BroadcastProcessFunction`] (on a keyed stream, with keyed state in `open`).
    pub fn process<O: Data, F: BroadcastProcessFunction<T, B, O, K, V>>(&self, f: F) -> DataStream<O> {
        let (descriptor, key) = (self.descriptor.clone(), self.key.clone());
        self.stream.transform_two(
            &self.broadcast,
            "Co-Process-Broadcast",
            two_input_factory::<T, B, O, _, _>(move || BroadcastProcessOperator {
                f: f.clone(),
                descriptor: descriptor.clone(),
                key: key.clone(),
                stores: None,
                state: None,
                _types: PhantomData,
            }),
        )
    }
}

/// Processes a stream with a broadcast stream's state (Flink's `BroadcastProcessFunction` and,
/// on keyed streams, `KeyedBroadcastProcessFunction`).
pub trait BroadcastProcessFunction<IN, B, OUT, K, V>: RichFunction + Clone + Send + 'static {
    /// A record of the (keyed) stream; the broadcast state is read-only here.
    fn process_element(
        &mut self,
        value: IN,
        ctx: &mut ReadOnlyBroadcastContext<'_, OUT, K, V>,
        out: &mut Collector<'_, OUT>,
    ) -> Result<(), BoxError>;
    /// A record of the broadcast stream; every subtask sees it and may update the state.
    fn process_broadcast_element(
        &mut self,
        value: B,
        ctx: &mut BroadcastContext<'_, OUT, K, V>,
        out: &mut Collector<'_, OUT>,
    ) -> Result<(), BoxError>;
}

/// The context of a regular element: the broadcast state, read only.
pub struct ReadOnlyBroadcastContext<'a, OUT, K, V> {
    inner: ProcessContext<'a, OUT>,
    state: &'a MapState<K, V>,
}

impl<OUT, K, V> ReadOnlyBroadcastContext<'_, OUT, K, V> {
    /// The broadcast state's value under `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>, StateError> {
        self.state.get(key)
    }
    /// Whether the broadcast state has `key`.
    pub fn contains(&self, key: &K) -> Result<bool, StateError> {
        self.state.contains(key)
    }
    /// All entries of the broadcast state.
    pub fn entries(&self) -> Result<Vec<(K, V)>, StateError> {
        self.state.entries()
    }
    /// The element's timestamp.
    pub fn timestamp(&self) -> Option<i64> {
        self.inner.timestamp()
    }
    /// Emits to a side output.
    pub fn output<X: Data>(&mut self, tag: &OutputTag<X>, value: X) {
        self.inner.output(tag, value);
    }
}

/// The context of a broadcast element: the broadcast state, writable.
pub struct BroadcastContext<'a, OUT, K, V> {
    inner: ProcessContext<'a, OUT>,
    state: &'a MapState<K, V>,
}

impl<OUT, K, V> BroadcastContext<'_, OUT, K, V> {
    /// The broadcast state.
    pub fn broadcast_state(&self) -> &MapState<K, V> {
        self.state
    }
    /// The element's timestamp.
    pub fn timestamp(&self) -> Option<i64> {
        self.inner.timestamp()
    }
    /// Emits to a side output.
    pub fn output<X: Data>(&mut self, tag: &OutputTag<X>, value: X) {
        self.inner.output(tag, value);
    }
}

struct BroadcastProcessOperator<F, T, B, O, K, V> {
    f: F,
    descriptor: MapStateDescriptor<K, V>,
    key: Option<KeySetter<T>>,
    stores: Option<FunctionStores>,
    state: Option<MapState<K, V>>,
    _types: PhantomData<fn(T, B) -> O>,
}

impl<F: RichFunction, T, B, O, K: Key, V: Data> StreamOperator for BroadcastProcessOperator<F, T, B, O, K, V> {
    fn open(&mut self, ctx: &mut OperatorContext<'_>) -> TaskResult {
        let stores = FunctionStores::open(&mut self.f, ctx, self.key.is_some())?;
        self.state = Some(broadcast_state(&stores.operator, &self.descriptor).map_err(state_error)?);
        self.stores = Some(stores);
        Ok(())
    }
    fn close(&mut self) -> TaskResult {
        close_function(&mut self.f)
    }
    fn query_state(&mut self, query: &StateQuery) -> Option<Result<Option<Vec<u8>>, String>> {
        self.stores.as_ref()?.query(query)
    }
    crate::operators::checkpoint_hooks!(stores, f);
}

impl<F, T, B, O, K, V> TwoInputStreamOperator<T, B, O> for BroadcastProcessOperator<F, T, B, O, K, V>
where
    F: BroadcastProcessFunction<T, B, O, K, V>,
    K: Key,
    V: Data,
{
    fn process_element1(&mut self, record: StreamRecord<T>, out: &mut OperatorOutput<O>) -> TaskResult {
        let (Some(stores), Some(state)) = (&self.stores, &self.state) else { return Ok(()) };
        stores.set_key(self.key.as_ref(), &record.value)?;
        let emitter = Emitter::new(out, record.timestamp);
        let mut ctx = ReadOnlyBroadcastContext { inner: emitter.context(), state };
        let result = self.f.process_element(record.value, &mut ctx, &mut emitter.collector());
        emitter.finish(result)
    }

    fn process_element2(&mut self, record: StreamRecord<B>, out: &mut OperatorOutput<O>) -> TaskResult {
        let Some(state) = &self.state else { return Ok(()) };
        let emitter = Emitter::new(out, record.timestamp);
        let mut ctx = BroadcastContext { inner: emitter.context(), state };
        let result = self.f.process_broadcast_element(record.value, &mut ctx, &mut emitter.collector());
        emitter.finish(result)
    }
}
