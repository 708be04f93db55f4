//! `WindowedStream`: a keyed stream cut into windows (and `window_all` on a plain stream).

use super::assigners::{GlobalWindows, WindowAssigner};
use super::contents::{AggregateContents, AggregateThen, ListContents, ReduceContents, ReduceThen, WindowContents};
use super::evictors::{CountEvictor, Evictor};
use super::functions::{PassThrough, ProcessWindowFunction, WindowFn};
use super::operator::WindowSpec;
use super::triggers::{CountTrigger, PurgingTrigger, Trigger};
use crate::aggregations;
use crate::datastream::DataStream;
use crate::functions::Collector;
use crate::keyed_stream::KeyedStream;
use crate::side_output::OutputTag;
use brisk_core::{Data, Key};
use brisk_runtime::graph::stream_graph::one_input_factory;
use brisk_state::AggregateFunction;
use std::ops::Add;
use std::sync::Arc;
use std::time::Duration;

/// A keyed stream cut into windows (Flink's `WindowedStream`; with key `()` and one subtask,
/// `AllWindowedStream`).
pub struct WindowedStream<T, K, A: WindowAssigner<T>> {
    keyed: KeyedStream<T, K>,
    assigner: A,
    trigger: Option<Box<dyn Trigger<T, A::W>>>,
    evictor: Option<Box<dyn Evictor<T, A::W>>>,
    lateness: i64,
    late_tag: Option<String>,
    all: bool,
}

impl<T: Data, K: Key> KeyedStream<T, K> {
    /// Cuts each key's stream into the windows of `assigner`.
    pub fn window<A: WindowAssigner<T>>(&self, assigner: A) -> WindowedStream<T, K, A> {
        if let Err(e) = assigner.validate() {
            self.get_execution_environment().record_error(format!("window: {e}"));
        }
        WindowedStream {
            keyed: self.clone(),
            assigner,
            trigger: None,
            evictor: None,
            lateness: 0,
            late_tag: None,
            all: false,
        }
    }

    /// Windows of `size` elements per key (tumbling count windows).
    pub fn count_window(&self, size: u64) -> WindowedStream<T, K, GlobalWindows> {
        if size == 0 {
            self.get_execution_environment().record_error("count_window: the size must be at least 1".into());
        }
        self.window(GlobalWindows).trigger(PurgingTrigger::of(CountTrigger::of(size)))
    }

    /// Windows of the last `size` elements per key, every `slide` elements (Flink's
    /// `countWindow(size, slide)`).
    pub fn count_window_sliding(&self, size: u64, slide: u64) -> WindowedStream<T, K, GlobalWindows> {
        if size == 0 || slide == 0 {
            self.get_execution_environment()
                .record_error("count_window_sliding: size and slide must be at least 1".into());
        }
        self.window(GlobalWindows).evictor(CountEvictor::of(size as usize)).trigger(CountTrigger::of(slide))
    }
}

impl<T: Data> DataStream<T> {
    /// Cuts the whole stream into windows, computed by one subtask (Flink's `windowAll`).
    pub fn window_all<A: WindowAssigner<T>>(&self, assigner: A) -> WindowedStream<T, (), A> {
        let mut windowed = self.key_by(|_| ()).window(assigner);
        windowed.all = true;
        windowed
    }

    /// Windows of `size` elements over the whole stream (Flink's `countWindowAll`).
    pub fn count_window_all(&self, size: u64) -> WindowedStream<T, (), GlobalWindows> {
        let mut windowed = self.key_by(|_| ()).count_window(size);
        windowed.all = true;
        windowed
    }
}

impl<T: Data, K: Key, A: WindowAssigner<T>> WindowedStream<T, K, A> {
    /// Replaces the assigner's default trigger.
    pub fn trigger(mut self, trigger: impl Trigger<T, A::W> + 'static) -> Self {
        self.trigger = Some(Box::new(trigger));
        self
    }

    /// Removes elements before or after the window function runs.
    pub fn evictor(mut self, evictor: impl Evictor<T, A::W> + 'static) -> Self {
        self.evictor = Some(Box::new(evictor));
        self
    }

    /// Keeps windows this long after the watermark passed their end; late elements update and
    /// re-fire them (event time).
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness = i64::try_from(lateness.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Sends elements that arrive after their windows were cleaned up to a side output.
    pub fn side_output_late_data(mut self, tag: &OutputTag<T>) -> Self {
        self.late_tag = Some(tag.id().to_string());
        self
    }

    fn build<O: Data>(self, contents: Box<dyn WindowContents<T, K, A::W, O>>) -> DataStream<O> {
        if self.assigner.is_merging() && self.trigger.as_ref().is_some_and(|t| !t.can_merge()) {
            self.keyed
                .get_execution_environment()
                .record_error("window: the trigger cannot be used with merging (session) windows".into());
        }
        let spec = WindowSpec {
            default_trigger: self.trigger.is_none(),
            trigger: self.trigger.unwrap_or_else(|| self.assigner.default_trigger()),
            assigner: self.assigner,
            contents,
            selector: self.keyed.key_selector().clone(),
            lateness: self.lateness,
            late_tag: self.late_tag,
        };
        let name = if self.all { "Window(All)" } else { "Window" };
        let out = self.keyed.transform(name, one_input_factory::<T, O, _, _>(move || spec.build()));
        if self.all { out.set_parallelism(1).not_parallel() } else { out }
    }

    fn list_or<O: Data>(
        evictor: Option<Box<dyn Evictor<T, A::W>>>,
        incremental: impl FnOnce() -> Box<dyn WindowContents<T, K, A::W, O>>,
        with_evictor: impl FnOnce(Box<dyn Evictor<T, A::W>>) -> Box<dyn WindowContents<T, K, A::W, O>>,
    ) -> Box<dyn WindowContents<T, K, A::W, O>> {
        match evictor {
            Some(e) => with_evictor(e),
            None => incremental(),
        }
    }

    /// Reduces each window incrementally; emits the reduced value.
    pub fn reduce<F: FnMut(T, T) -> T + Clone + Send + 'static>(self, f: F) -> DataStream<T> {
        self.reduce_with(f, PassThrough)
    }

    /// Reduces each window incrementally, then runs `process` on the result.
    pub fn reduce_with<O: Data, F, P>(mut self, f: F, process: P) -> DataStream<O>
    where
        F: FnMut(T, T) -> T + Clone + Send + 'static,
        P: ProcessWindowFunction<T, O, K, A::W>,
    {
        let contents = Self::list_or(
            self.evictor.take(),
            || Box::new(ReduceContents::new(f.clone(), process.clone())),
            |e| Box::new(ListContents::new(ReduceThen { reduce: f.clone(), process: process.clone() }, Some(e))),
        );
        self.build(contents)
    }

    /// Aggregates each window incrementally; emits the aggregate's result.
    pub fn aggregate<ACC: Data, R: Data>(self, aggregate: impl AggregateFunction<T, ACC, R>) -> DataStream<R> {
        self.aggregate_with(aggregate, PassThrough)
    }

    /// Aggregates each window incrementally, then runs `process` on the result.
    pub fn aggregate_with<ACC: Data, R: Data, O: Data, P>(
        mut self,
        aggregate: impl AggregateFunction<T, ACC, R>,
        process: P,
    ) -> DataStream<O>
    where
        P: ProcessWindowFunction<R, O, K, A::W>,
    {
        let aggregate: Arc<dyn AggregateFunction<T, ACC, R>> = Arc::new(aggregate);
        let contents = Self::list_or(
            self.evictor.take(),
            || Box::new(AggregateContents::new(aggregate.clone(), process.clone())),
            |e| {
                Box::new(ListContents::new(
                    AggregateThen { aggregate: aggregate.clone(), process: process.clone() },
                    Some(e),
                ))
            },
        );
        self.build(contents)
    }

    /// Runs `process` on all elements of each firing window.
    pub fn process<O: Data, P: ProcessWindowFunction<T, O, K, A::W>>(mut self, process: P) -> DataStream<O> {
        let evictor = self.evictor.take();
        self.build(Box::new(ListContents::new(process, evictor)))
    }

    /// Runs `f(key, window, elements, out)` on each firing window (Flink's `WindowFunction`).
    pub fn apply<O: Data, F>(self, f: F) -> DataStream<O>
    where
        F: FnMut(&K, &A::W, Vec<T>, &mut Collector<'_, O>) + Clone + Send + 'static,
    {
        self.process(WindowFn(f))
    }

    /// Sums a field per window.
    pub fn sum<V, F>(self, field: F) -> DataStream<T>
    where
        V: Add<Output = V> + Clone,
        F: for<'a> Fn(&'a mut T) -> &'a mut V + Clone + Send + 'static,
    {
        self.reduce(aggregations::sum(field))
    }

    /// The minimum of a field per window.
    pub fn min<V, F>(self, field: F) -> DataStream<T>
    where
        V: PartialOrd + Clone,
        F: for<'a> Fn(&'a mut T) -> &'a mut V + Clone + Send + 'static,
    {
        self.reduce(aggregations::min(field))
    }

    /// The maximum of a field per window.
    pub fn max<V, F>(self, field: F) -> DataStream<T>
    where
        V: PartialOrd + Clone,
        F: for<'a> Fn(&'a mut T) -> &'a mut V + Clone + Send + 'static,
    {
        self.reduce(aggregations::max(field))
    }

    /// The record with the smallest field per window.
    pub fn min_by<V, F>(self, field: F) -> DataStream<T>
    where
        V: PartialOrd,
        F: for<'a> Fn(&'a mut T) -> &'a mut V + Clone + Send + 'static,
    {
        self.reduce(aggregations::min_by(field))
    }

    /// The record with the largest field per window.
    pub fn max_by<V, F>(self, field: F) -> DataStream<T>
    where
        V: PartialOrd,
        F: for<'a> Fn(&'a mut T) -> &'a mut V + Clone + Send + 'static,
    {
        self.reduce(aggregations::max_by(field))
    }
}
