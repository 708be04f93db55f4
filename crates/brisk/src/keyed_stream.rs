//! `KeyedStream`: a stream partitioned by key, with per-key reductions and aggregations.

use crate::aggregations;
use crate::datastream::DataStream;
use crate::functions::{KeyedProcessFunction, RichFilterFunction, RichFlatMapFunction, RichMapFunction};
use crate::key_selector::KeySelector;
use crate::operators::{
    KeySetter, KeyedProcessOperator, KeyedReduceOperator, StreamFilter, StreamFlatMap, StreamMap, key_setter,
};
use brisk_core::{Data, Key};
use brisk_runtime::graph::stream_graph::one_input_factory;
use std::ops::{Add, Deref};

/// A stream partitioned by key (Flink's `KeyedStream`). It is also a `DataStream`: operators
/// applied through `Deref` keep the key partitioning.
pub struct KeyedStream<T, K> {
    stream: DataStream<T>,
    key_selector: KeySelector<T, K>,
}

impl<T, K> Clone for KeyedStream<T, K> {
    fn clone(&self) -> Self {
        KeyedStream { stream: self.stream.clone(), key_selector: self.key_selector.clone() }
    }
}

impl<T, K> Deref for KeyedStream<T, K> {
    type Target = DataStream<T>;

    fn deref(&self) -> &DataStream<T> {
        &self.stream
    }
}

impl<T: Data, K: Key> KeyedStream<T, K> {
    pub(crate) fn new(stream: DataStream<T>, key_selector: KeySelector<T, K>) -> Self {
        KeyedStream { stream, key_selector }
    }

    /// The key selector.
    pub fn key_selector(&self) -> &KeySelector<T, K> {
        &self.key_selector
    }

    fn key_setter(&self) -> Option<KeySetter<T>> {
        Some(key_setter(self.key_selector.clone()))
    }

    /// Applies a [`RichMapFunction`] with keyed state: in `open`, `ctx.get_state(..)` gives
    /// state of the current record's key.
    pub fn rich_map<O: Data, F: RichMapFunction<T, O>>(&self, f: F) -> DataStream<O> {
        let key = self.key_setter();
        self.stream.transform("Map", one_input_factory::<T, O, _, _>(move || StreamMap::new(f.clone(), key.clone())))
    }

    /// Applies a [`RichFlatMapFunction`] with keyed state.
    pub fn rich_flat_map<O: Data, F: RichFlatMapFunction<T, O>>(&self, f: F) -> DataStream<O> {
        let key = self.key_setter();
        self.stream
            .transform("Flat Map", one_input_factory::<T, O, _, _>(move || StreamFlatMap::new(f.clone(), key.clone())))
    }

    /// Applies a [`RichFilterFunction`] with keyed state.
    pub fn rich_filter<F: RichFilterFunction<T>>(&self, f: F) -> DataStream<T> {
        let key = self.key_setter();
        self.stream
            .transform("Filter", one_input_factory::<T, T, _, _>(move || StreamFilter::new(f.clone(), key.clone())))
    }

    /// Runs a [`KeyedProcessFunction`]: keyed state and timers per key.
    pub fn process<O: Data, F: KeyedProcessFunction<K, T, O>>(&self, f: F) -> DataStream<O> {
        let selector = self.key_selector.clone();
        self.stream.transform(
            "KeyedProcess",
            one_input_factory::<T, O, _, _>(move || KeyedProcessOperator::new(f.clone(), selector.clone())),
        )
    }

    /// Combines the records of each key with `f(accumulated, next)`: streaming mode emits the
    /// new value per record, batch mode the final value per key.
    pub fn reduce<F: FnMut(T, T) -> T + Clone + Send + 'static>(&self, f: F) -> DataStream<T> {
        self.reduce_named("Keyed Reduce", f)
    }

    fn reduce_named<F: FnMut(T, T) -> T + Clone + Send + 'static>(&self, name: &str, f: F) -> DataStream<T> {
        let selector = self.key_selector.clone();
        self.stream.transform(
            name,
            one_input_factory::<T, T, _, _>(move || KeyedReduceOperator::new(selector.clone(), f.clone())),
        )
    }

    /// Sums a field per key; the other fields are those of the key's first record (Flink's
    /// `sum`). `field` gives access to the summed field, e.g. `|t| &mut t.1`.
    pub fn sum<V, F>(&self, field: F) -> DataStream<T>
    where
        V: Add<Output = V> + Clone,
        F: for<'a> Fn(&'a mut T) -> &'a mut V + Clone + Send + 'static,
    {
        self.reduce_named("Keyed Aggregation", aggregations::sum(field))
    }

    /// The minimum of a field per key, other fields from the key's first record (`min`).
    pub fn min<V, F>(&self, field: F) -> DataStream<T>
    where
        V: PartialOrd + Clone,
        F: for<'a> Fn(&'a mut T) -> &'a mut V + Clone + Send + 'static,
    {
        self.reduce_named("Keyed Aggregation", aggregations::min(field))
    }

    /// The maximum of a field per key, other fields from the key's first record (`max`).
    pub fn max<V, F>(&self, field: F) -> DataStream<T>
    where
        V: PartialOrd + Clone,
        F: for<'a> Fn(&'a mut T) -> &'a mut V + Clone + Send + 'static,
    {
        self.reduce_named("Keyed Aggregation", aggregations::max(field))
    }

    /// The record with the smallest field per key; the earliest wins ties (`minBy`).
    pub fn min_by<V, F>(&self, field: F) -> DataStream<T>
    where
        V: PartialOrd,
        F: for<'a> Fn(&'a mut T) -> &'a mut V + Clone + Send + 'static,
    {
        self.reduce_named("Keyed Aggregation", aggregations::min_by(field))
    }

    /// The record with the largest field per key; the earliest wins ties (`maxBy`).
    pub fn max_by<V, F>(&self, field: F) -> DataStream<T>
    where
        V: PartialOrd,
        F: for<'a> Fn(&'a mut T) -> &'a mut V + Clone + Send + 'static,
    {
        self.reduce_named("Keyed Aggregation", aggregations::max_by(field))
    }
}
