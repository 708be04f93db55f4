//! Window joins and co-groups (Flink's `JoinedStreams` and `CoGroupedStreams`): both inputs
//! are tagged, united, keyed by their own key selectors and windowed together; each firing
//! window hands the elements of both sides to the user function.

use crate::datastream::DataStream;
use crate::functions::Collector;
use crate::windowing::{Evictor, Trigger, WindowAssigner, WindowedStream};
use brisk_core::{Data, Key};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// An element of either input of a join, as the shared window sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TaggedUnion<A, B> {
    /// From the first input.
    One(A),
    /// From the second input.
    Two(B),
}

type Selector<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// Marks a chain that ends in a join function.
pub struct Join;
/// Marks a chain that ends in a co-group function.
pub struct CoGroup;

/// Two streams to co-group: `a.co_group(&b).where_(..).equal_to(..).window(..).apply(..)`.
pub type CoGroupedStreams<A, B> = TwoStreams<A, B, CoGroup>;
/// Two streams to join: `a.join(&b).where_(..).equal_to(..).window(..).apply(..)`.
pub type JoinedStreams<A, B> = TwoStreams<A, B, Join>;

/// The two inputs of a window join or co-group.
pub struct TwoStreams<A, B, M> {
    first: DataStream<A>,
    second: DataStream<B>,
    _mode: PhantomData<M>,
}

impl<A: Data> DataStream<A> {
    /// Joins this stream with `other`: pairs of equal keys in the same window (Flink's `join`).
    pub fn join<B: Data>(&self, other: &DataStream<B>) -> JoinedStreams<A, B> {
        TwoStreams { first: self.clone(), second: other.clone(), _mode: PhantomData }
    }

    /// Co-groups this stream with `other`: all elements of a key and window from both sides
    /// at once, also when one side has none (Flink's `coGroup`).
    pub fn co_group<B: Data>(&self, other: &DataStream<B>) -> CoGroupedStreams<A, B> {
        TwoStreams { first: self.clone(), second: other.clone(), _mode: PhantomData }
    }
}

impl<A: Data, B: Data, M> TwoStreams<A, B, M> {
    /// The key of the first input.
    pub fn where_<K: Key>(self, key: impl Fn(&A) -> K + Send + Sync + 'static) -> Where<A, B, K, M> {
        Where { streams: self, key1: Arc::new(key) }
    }
}

/// A join with the first input's key chosen.
pub struct Where<A, B, K, M> {
    streams: TwoStreams<A, B, M>,
    key1: Selector<A, K>,
}

impl<A: Data, B: Data, K: Key, M> Where<A, B, K, M> {
    /// The key of the second input; elements with equal keys meet.
    pub fn equal_to(self, key: impl Fn(&B) -> K + Send + Sync + 'static) -> EqualTo<A, B, K, M> {
        EqualTo { streams: self.streams, key1: self.key1, key2: Arc::new(key) }
    }
}

/// A join with both keys chosen.
pub struct EqualTo<A, B, K, M> {
    streams: TwoStreams<A, B, M>,
    key1: Selector<A, K>,
    key2: Selector<B, K>,
}

impl<A: Data, B: Data, K: Key, M> EqualTo<A, B, K, M> {
    /// Windows both inputs together with `assigner`.
    pub fn window<W: WindowAssigner<TaggedUnion<A, B>>>(self, assigner: W) -> WithWindow<A, B, K, W, M> {
        let (key1, key2) = (self.key1, self.key2);
        let first = self.streams.first.map(TaggedUnion::One);
        let second = self.streams.second.map(TaggedUnion::Two);
        let windowed = first
            .union(&second)
            .key_by(move |t: &TaggedUnion<A, B>| match t {
                TaggedUnion::One(a) => key1(a),
                TaggedUnion::Two(b) => key2(b),
            })
            .window(assigner);
        WithWindow { windowed, _mode: PhantomData }
    }
}

/// A windowed join or co-group, waiting for its function.
pub struct WithWindow<A, B, K, W: WindowAssigner<TaggedUnion<A, B>>, M> {
    windowed: WindowedStream<TaggedUnion<A, B>, K, W>,
    _mode: PhantomData<M>,
}

impl<A: Data, B: Data, K: Key, W: WindowAssigner<TaggedUnion<A, B>>, M> WithWindow<A, B, K, W, M> {
    /// Replaces the assigner's default trigger.
    pub fn trigger(self, trigger: impl Trigger<TaggedUnion<A, B>, W::W> + 'static) -> Self {
        WithWindow { windowed: self.windowed.trigger(trigger), _mode: PhantomData }
    }

    /// Removes elements before the function runs.
    pub fn evictor(self, evictor: impl Evictor<TaggedUnion<A, B>, W::W> + 'static) -> Self {
        WithWindow { windowed: self.windowed.evictor(evictor), _mode: PhantomData }
    }

    /// Keeps windows this long after the watermark passed their end.
    pub fn allowed_lateness(self, lateness: Duration) -> Self {
        WithWindow { windowed: self.windowed.allowed_lateness(lateness), _mode: PhantomData }
    }

    fn co_group_with<O: Data, F>(self, mut f: F) -> DataStream<O>
    where
        F: FnMut(Vec<A>, Vec<B>, &mut Collector<'_, O>) + Clone + Send + 'static,
    {
        self.windowed.apply(move |_: &K, _: &W::W, elements: Vec<TaggedUnion<A, B>>, out: &mut Collector<'_, O>| {
            let (mut first, mut second) = (Vec::new(), Vec::new());
            for element in elements {
                match element {
                    TaggedUnion::One(a) => first.push(a),
                    TaggedUnion::Two(b) => second.push(b),
                }
            }
            f(first, second, out)
        })
    }
}

impl<A: Data, B: Data, K: Key, W: WindowAssigner<TaggedUnion<A, B>>> WithWindow<A, B, K, W, CoGroup> {
    /// Calls `f(first elements, second elements, out)` per key and window (Flink's
    /// `CoGroupFunction`).
    pub fn apply<O: Data, F>(self, f: F) -> DataStream<O>
    where
        F: FnMut(Vec<A>, Vec<B>, &mut Collector<'_, O>) + Clone + Send + 'static,
    {
        self.co_group_with(f)
    }
}

impl<A: Data, B: Data, K: Key, W: WindowAssigner<TaggedUnion<A, B>>> WithWindow<A, B, K, W, Join> {
    /// Emits `f(a, b)` for every pair of a key and window (an inner join; Flink's
    /// `JoinFunction`).
    pub fn apply<O: Data, F>(self, mut f: F) -> DataStream<O>
    where
        F: FnMut(A, B) -> O + Clone + Send + 'static,
    {
        self.flat_apply(move |a: A, b: B, out: &mut Collector<'_, O>| out.collect(f(a, b)))
    }

    /// Calls `f(a, b, out)` for every pair of a key and window (Flink's `FlatJoinFunction`).
    pub fn flat_apply<O: Data, F>(self, mut f: F) -> DataStream<O>
    where
        F: FnMut(A, B, &mut Collector<'_, O>) + Clone + Send + 'static,
    {
        self.co_group_with(move |first: Vec<A>, second: Vec<B>, out: &mut Collector<'_, O>| {
            for a in &first {
                for b in &second {
                    f(a.clone(), b.clone(), out);
                }
            }
        })
    }
}
