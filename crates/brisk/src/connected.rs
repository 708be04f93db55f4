//! `ConnectedStreams`: two streams of different types processed by one operator.

use crate::datastream::DataStream;
use crate::functions::{CoFlatMapFn, CoMapFn, CoProcessFunction, Collector, RichCoFlatMapFunction, RichCoMapFunction};
use crate::operators::{CoFlatMapOperator, CoMapOperator, CoProcessOperator};
use brisk_core::{Data, Key};
use brisk_runtime::graph::stream_graph::two_input_factory;

/// Two streams connected for a two-input operator (Flink's `ConnectedStreams`); the operator
/// may share state between them.
pub struct ConnectedStreams<A, B> {
    first: DataStream<A>,
    second: DataStream<B>,
}

impl<A: Data, B: Data> ConnectedStreams<A, B> {
    pub(crate) fn new(first: DataStream<A>, second: DataStream<B>) -> Self {
        ConnectedStreams { first, second }
    }

    /// The first stream.
    pub fn first_input(&self) -> &DataStream<A> {
        &self.first
    }

    /// The second stream.
    pub fn second_input(&self) -> &DataStream<B> {
        &self.second
    }

    /// Partitions both streams by key so equal keys of both meet in one subtask.
    pub fn key_by<K, F1, F2>(&self, key1: F1, key2: F2) -> ConnectedStreams<A, B>
    where
        K: Key,
        F1: Fn(&A) -> K + Send + Sync + 'static,
        F2: Fn(&B) -> K + Send + Sync + 'static,
    {
        let first = (*self.first.key_by(key1)).clone();
        let second = (*self.second.key_by(key2)).clone();
        ConnectedStreams { first, second }
    }

    /// Maps each stream with its own closure into one output type.
    pub fn map<O, F1, F2>(&self, map1: F1, map2: F2) -> DataStream<O>
    where
        O: Data,
        F1: FnMut(A) -> O + Clone + Send + 'static,
        F2: FnMut(B) -> O + Clone + Send + 'static,
    {
        self.rich_map(CoMapFn(map1, map2))
    }

    /// Applies a [`RichCoMapFunction`].
    pub fn rich_map<O: Data, F: RichCoMapFunction<A, B, O>>(&self, f: F) -> DataStream<O> {
        self.first.transform_two(
            &self.second,
            "Co-Map",
            two_input_factory::<A, B, O, _, _>(move || CoMapOperator::new(f.clone())),
        )
    }

    /// Flat-maps each stream with its own closure into one output type.
    pub fn flat_map<O, F1, F2>(&self, flat_map1: F1, flat_map2: F2) -> DataStream<O>
    where
        O: Data,
        F1: FnMut(A, &mut Collector<'_, O>) + Clone + Send + 'static,
        F2: FnMut(B, &mut Collector<'_, O>) + Clone + Send + 'static,
    {
        self.rich_flat_map(CoFlatMapFn(flat_map1, flat_map2))
    }

    /// Applies a [`RichCoFlatMapFunction`].
    pub fn rich_flat_map<O: Data, F: RichCoFlatMapFunction<A, B, O>>(&self, f: F) -> DataStream<O> {
        self.first.transform_two(
            &self.second,
            "Co-Flat Map",
            two_input_factory::<A, B, O, _, _>(move || CoFlatMapOperator::new(f.clone())),
        )
    }

    /// Runs a [`CoProcessFunction`].
    pub fn process<O: Data, F: CoProcessFunction<A, B, O>>(&self, f: F) -> DataStream<O> {
        self.first.transform_two(
            &self.second,
            "Co-Process",
            two_input_factory::<A, B, O, _, _>(move || CoProcessOperator::new(f.clone())),
        )
    }
}
