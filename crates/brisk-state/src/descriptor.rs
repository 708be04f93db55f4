//! State descriptors: a state's name, kind, type and time-to-live (Flink's `StateDescriptor`).

use crate::ttl::StateTtlConfig;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::sync::Arc;

/// The kinds of keyed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StateKind {
    /// One value per key.
    Value,
    /// A list per key.
    List,
    /// A map per key.
    Map,
    /// A value folded with a reduce function.
    Reducing,
    /// An accumulator folded with an aggregate function.
    Aggregating,
}

impl StateKind {
    /// How the state is stored: value, reducing and aggregating states store one value.
    pub fn storage(self) -> StateKind {
        match self {
            StateKind::Reducing | StateKind::Aggregating => StateKind::Value,
            other => other,
        }
    }
}

/// Incrementally combines inputs into an accumulator and produces a result from it (Flink's
/// `AggregateFunction`); used by aggregating state and window aggregations.
pub trait AggregateFunction<IN, ACC, OUT>: Send + Sync + 'static {
    /// A new, empty accumulator.
    fn create_accumulator(&self) -> ACC;
    /// Adds an input to an accumulator.
    fn add(&self, value: IN, accumulator: ACC) -> ACC;
    /// The result of an accumulator.
    fn get_result(&self, accumulator: &ACC) -> OUT;
    /// Merges two accumulators (session windows merge theirs).
    fn merge(&self, a: ACC, b: ACC) -> ACC;
}

/// A reduce function shared by all subtasks.
pub type ReduceFn<V> = Arc<dyn Fn(V, V) -> V + Send + Sync>;

macro_rules! descriptor_common {
    () => {
        /// The state's name, unique per operator.
        pub fn name(&self) -> &str {
            &self.name
        }

        /// Expires values that were not written (or read) for a while.
        pub fn enable_time_to_live(mut self, ttl: StateTtlConfig) -> Self {
            self.ttl = Some(ttl);
            self
        }

        /// The time-to-live settings, if enabled.
        pub fn ttl(&self) -> Option<&StateTtlConfig> {
            self.ttl.as_ref()
        }
    };
}

/// Describes a [`crate::ValueState`].
#[derive(Clone, Debug)]
pub struct ValueStateDescriptor<V> {
    name: String,
    ttl: Option<StateTtlConfig>,
    _value: PhantomData<fn() -> V>,
}

impl<V> ValueStateDescriptor<V> {
    /// A value state called `name`.
    pub fn new(name: &str) -> Self {
        ValueStateDescriptor { name: name.to_string(), ttl: None, _value: PhantomData }
    }
    descriptor_common!();
}

/// Describes a [`crate::ListState`].
#[derive(Clone, Debug)]
pub struct ListStateDescriptor<V> {
    name: String,
    ttl: Option<StateTtlConfig>,
    _value: PhantomData<fn() -> V>,
}

impl<V> ListStateDescriptor<V> {
    /// A list state called `name`.
    pub fn new(name: &str) -> Self {
        ListStateDescriptor { name: name.to_string(), ttl: None, _value: PhantomData }
    }
    descriptor_common!();
}

/// Describes a [`crate::MapState`] (also broadcast state).
#[derive(Clone, Debug)]
pub struct MapStateDescriptor<UK, UV> {
    name: String,
    ttl: Option<StateTtlConfig>,
    _types: PhantomData<fn() -> (UK, UV)>,
}

impl<UK, UV> MapStateDescriptor<UK, UV> {
    /// A map state called `name`.
    pub fn new(name: &str) -> Self {
        MapStateDescriptor { name: name.to_string(), ttl: None, _types: PhantomData }
    }
    descriptor_common!();
}

/// Describes a [`crate::ReducingState`].
#[derive(Clone)]
pub struct ReducingStateDescriptor<V> {
    name: String,
    ttl: Option<StateTtlConfig>,
    reduce: ReduceFn<V>,
}

impl<V> ReducingStateDescriptor<V> {
    /// A reducing state called `name` folding with `reduce`.
    pub fn new(name: &str, reduce: impl Fn(V, V) -> V + Send + Sync + 'static) -> Self {
        ReducingStateDescriptor { name: name.to_string(), ttl: None, reduce: Arc::new(reduce) }
    }

    /// The reduce function.
    pub fn reduce_function(&self) -> &ReduceFn<V> {
        &self.reduce
    }
    descriptor_common!();
}

/// Describes a [`crate::AggregatingState`].
pub struct AggregatingStateDescriptor<IN, ACC, OUT> {
    name: String,
    ttl: Option<StateTtlConfig>,
    aggregate: Arc<dyn AggregateFunction<IN, ACC, OUT>>,
}

impl<IN, ACC, OUT> Clone for AggregatingStateDescriptor<IN, ACC, OUT> {
    fn clone(&self) -> Self {
        AggregatingStateDescriptor { name: self.name.clone(), ttl: self.ttl.clone(), aggregate: self.aggregate.clone() }
    }
}

impl<IN, ACC, OUT> AggregatingStateDescriptor<IN, ACC, OUT> {
    /// An aggregating state called `name` with `aggregate`.
    pub fn new(name: &str, aggregate: impl AggregateFunction<IN, ACC, OUT>) -> Self {
        AggregatingStateDescriptor { name: name.to_string(), ttl: None, aggregate: Arc::new(aggregate) }
    }

    /// The aggregate function.
    pub fn aggregate_function(&self) -> &Arc<dyn AggregateFunction<IN, ACC, OUT>> {
        &self.aggregate
    }
    descriptor_common!();
}
