//! Interval joins (Flink's `KeyedStream.intervalJoin`): an element `a` of the first stream
//! joins each element `b` of the second with the same key and
//! `a.timestamp + lower <= b.timestamp <= a.timestamp + upper`. Both sides are buffered in
//! keyed map state by timestamp; event-time timers drop them once the watermark shows that no
//! partner can still arrive.

use crate::datastream::DataStream;
use crate::functions::{Collector, Emitter, ProcessContext, RichFunction};
use crate::key_selector::KeySelector;
use crate::keyed_stream::KeyedStream;
use crate::operators::{FunctionStores, close_function, state_error};
use crate::side_output::OutputTag;
use brisk_core::{BoxError, Data, Key, NO_TIMESTAMP, StreamRecord, Watermark};
use brisk_runtime::checkpoint::{CheckpointBarrier, CheckpointId, OperatorSnapshot};
use brisk_runtime::graph::stream_graph::two_input_factory;
use brisk_runtime::metrics::Counter;
use brisk_runtime::taskexecutor::output::StateQuery;
use brisk_runtime::{OperatorContext, OperatorOutput, StreamOperator, TaskError, TaskResult, TwoInputStreamOperator};
use brisk_state::{KeyedStateBackend, KeyedStore, Registered, StateId, TimeDomain};
use std::marker::PhantomData;

const LEFT_BUFFER: &str = "interval-join-left";
const RIGHT_BUFFER: &str = "interval-join-right";
const CLEANUP_TIMERS: &str = "interval-join-cleanup";
const LEFT: &[u8] = b"L";
const RIGHT: &[u8] = b"R";

/// What a join function knows about the pair it joins.
pub struct ProcessJoinContext<'a, O> {
    left_timestamp: i64,
    right_timestamp: i64,
    inner: ProcessContext<'a, O>,
}

impl<O> ProcessJoinContext<'_, O> {
    /// The first input element's timestamp.
    pub fn left_timestamp(&self) -> i64 {
        self.left_timestamp
    }

    /// The second input element's timestamp.
    pub fn right_timestamp(&self) -> i64 {
        self.right_timestamp
    }

    /// The result's timestamp: the larger of both.
    pub fn timestamp(&self) -> i64 {
        self.left_timestamp.max(self.right_timestamp)
    }

    /// Emits to a side output.
    pub fn output<X: Data>(&mut self, tag: &OutputTag<X>, value: X) {
        self.inner.output(tag, value);
    }
}

/// Processes each joined pair (Flink's `ProcessJoinFunction`).
pub trait ProcessJoinFunction<A, B, O>: RichFunction + Clone + Send + 'static {
    /// Called once per pair of a key within the interval.
    fn process_element(
        &mut self,
        left: A,
        right: B,
        ctx: &mut ProcessJoinContext<'_, O>,
        out: &mut Collector<'_, O>,
    ) -> Result<(), BoxError>;
}

/// Adapts a closure `(a, b) -> out` to a [`ProcessJoinFunction`].
#[derive(Clone)]
pub struct JoinFn<F>(pub F);

impl<F> RichFunction for JoinFn<F> {}

impl<A, B, O, F: FnMut(A, B) -> O + Clone + Send + 'static> ProcessJoinFunction<A, B, O> for JoinFn<F> {
    fn process_element(
        &mut self,
        left: A,
        right: B,
        _: &mut ProcessJoinContext<'_, O>,
        out: &mut Collector<'_, O>,
    ) -> Result<(), BoxError> {
        out.collect((self.0)(left, right));
        Ok(())
    }
}

impl<A: Data, K: Key> KeyedStream<A, K> {
    /// Joins with `other` by key and time interval; set it with
    /// [`between`](IntervalJoin::between).
    pub fn interval_join<B: Data>(&self, other: &KeyedStream<B, K>) -> IntervalJoin<A, B, K> {
        IntervalJoin { left: self.clone(), right: other.clone() }
    }
}

/// Two keyed streams to join by time interval.
pub struct IntervalJoin<A, B, K> {
    left: KeyedStream<A, K>,
    right: KeyedStream<B, K>,
}

impl<A: Data, B: Data, K: Key> IntervalJoin<A, B, K> {
    /// `b` joins `a` when `a.ts + lower_ms <= b.ts <= a.ts + upper_ms` (milliseconds; negative
    /// bounds look back in time, as in Flink's `between(Time, Time)`).
    pub fn between(self, lower_ms: i64, upper_ms: i64) -> IntervalJoined<A, B, K> {
        if lower_ms > upper_ms {
            self.left.get_execution_environment().record_error(format!(
                "interval join: the lower bound {lower_ms} ms must not be greater than the upper bound {upper_ms} ms"
            ));
        }
        IntervalJoined { join: self, lower: lower_ms, upper: upper_ms, late_left: None, late_right: None }
    }
}

/// An interval join with its bounds, waiting for its function.
pub struct IntervalJoined<A, B, K> {
    join: IntervalJoin<A, B, K>,
    lower: i64,
    upper: i64,
    late_left: Option<String>,
    late_right: Option<String>,
}

impl<A: Data, B: Data, K: Key> IntervalJoined<A, B, K> {
    /// Excludes the lower bound itself.
    pub fn lower_bound_exclusive(mut self) -> Self {
        self.lower = self.lower.saturating_add(1);
        self
    }

    /// Excludes the upper bound itself.
    pub fn upper_bound_exclusive(mut self) -> Self {
        self.upper = self.upper.saturating_sub(1);
        self
    }

    /// Sends first-input elements behind the watermark to a side output (else dropped).
    pub fn side_output_left_late_data(mut self, tag: &OutputTag<A>) -> Self {
        self.late_left = Some(tag.id().to_string());
        self
    }

    /// Sends second-input elements behind the watermark to a side output (else dropped).
    pub fn side_output_right_late_data(mut self, tag: &OutputTag<B>) -> Self {
        self.late_right = Some(tag.id().to_string());
        self
    }

    /// Runs `f` on each joined pair.
    pub fn process<O: Data, F: ProcessJoinFunction<A, B, O>>(self, f: F) -> DataStream<O> {
        let spec = IntervalJoinSpec {
            f,
            left_key: self.join.left.key_selector().clone(),
            right_key: self.join.right.key_selector().clone(),
            lower: self.lower,
            upper: self.upper,
            late_left: self.late_left,
            late_right: self.late_right,
        };
        let left: &DataStream<A> = &self.join.left;
        left.transform_two(&self.join.right, "IntervalJoin", two_input_factory::<A, B, O, _, _>(move || spec.build()))
    }

    /// Emits `f(a, b)` for each joined pair.
    pub fn join<O: Data, F: FnMut(A, B) -> O + Clone + Send + 'static>(self, f: F) -> DataStream<O> {
        self.process(JoinFn(f))
    }
}

/// What defines an interval join; cloned per subtask into an [`IntervalJoinOperator`].
struct IntervalJoinSpec<A, B, K, F> {
    f: F,
    left_key: KeySelector<A, K>,
    right_key: KeySelector<B, K>,
    lower: i64,
    upper: i64,
    late_left: Option<String>,
    late_right: Option<String>,
}

/// The interval join operator of one subtask.
struct IntervalJoinOperator<A, B, K, O, F> {
    spec: IntervalJoinSpec<A, B, K, F>,
    stores: Option<FunctionStores>,
    buffers: Option<(StateId, StateId)>,
    watermark: i64,
    dropped: Option<Counter>,
    _out: PhantomData<fn() -> O>,
}

impl<A, B, K, F: Clone> Clone for IntervalJoinSpec<A, B, K, F> {
    fn clone(&self) -> Self {
        IntervalJoinSpec {
            f: self.f.clone(),
            left_key: self.left_key.clone(),
            right_key: self.right_key.clone(),
            lower: self.lower,
            upper: self.upper,
            late_left: self.late_left.clone(),
            late_right: self.late_right.clone(),
        }
    }
}

impl<A, B, K, F: Clone> IntervalJoinSpec<A, B, K, F> {
    fn build<O>(&self) -> IntervalJoinOperator<A, B, K, O, F> {
        IntervalJoinOperator {
            spec: self.clone(),
            stores: None,
            buffers: None,
            watermark: i64::MIN,
            dropped: None,
            _out: PhantomData,
        }
    }
}

/// Elements of one side buffered under one timestamp.
type Bucket<T> = Vec<T>;

fn buffer_add<T: Data>(
    backend: &Registered<KeyedStateBackend>,
    name: &str,
    id: StateId,
    ts: i64,
    value: T,
) -> TaskResult {
    backend
        .with(name, |b| {
            b.with_current(name, |s, kg, key| {
                let mut bucket: Bucket<T> = s.map_get(id, kg, key, &ts)?.unwrap_or_default();
                bucket.push(value);
                s.map_put(id, kg, key, ts, bucket)
            })
        })
        .map_err(state_error)
}

fn buffer_entries<T: Data>(
    backend: &Registered<KeyedStateBackend>,
    name: &str,
    id: StateId,
) -> TaskResult<Vec<(i64, Bucket<T>)>> {
    backend.with(name, |b| b.with_current(name, |s, kg, key| s.map_entries(id, kg, key))).map_err(state_error)
}

impl<A: Data, B: Data, K: Key, O: Data, F: ProcessJoinFunction<A, B, O>> IntervalJoinOperator<A, B, K, O, F> {
    fn emit(&mut self, left: A, left_ts: i64, right: B, right_ts: i64, out: &mut OperatorOutput<O>) -> TaskResult {
        let emitter = Emitter::new(out, left_ts.max(right_ts));
        let mut ctx =
            ProcessJoinContext { left_timestamp: left_ts, right_timestamp: right_ts, inner: emitter.context() };
        let result = self.spec.f.process_element(left, right, &mut ctx, &mut emitter.collector());
        emitter.finish(result)
    }

    /// Whether a record is behind the watermark; sends it to the late side output if so.
    fn handle_late<T: Clone + 'static>(
        &self,
        record: &StreamRecord<T>,
        tag: &Option<String>,
        out: &mut OperatorOutput<O>,
    ) -> TaskResult<bool> {
        if record.timestamp == NO_TIMESTAMP {
            return Err(TaskError::msg(
                "an interval join got a record without a timestamp: assign timestamps with a WatermarkStrategy first",
            ));
        }
        if self.watermark == i64::MIN || record.timestamp >= self.watermark {
            return Ok(false);
        }
        match tag {
            Some(tag) => out.collect_side(tag, record.clone())?,
            None => {
                if let Some(c) = &self.dropped {
                    c.inc();
                }
            }
        }
        Ok(true)
    }

    fn fire_cleanup(&mut self, time: i64) -> TaskResult {
        let (Some(stores), Some((left, right))) = (&self.stores, self.buffers) else { return Ok(()) };
        let Some(backend) = &stores.keyed else { return Ok(()) };
        loop {
            let timer = backend
                .with("interval join timer", |b| {
                    let timer = b.pop_due_timer(CLEANUP_TIMERS, TimeDomain::EventTime, time);
                    if let Some(t) = &timer {
                        b.set_current_key_encoded(t.key_group, &t.key);
                    }
                    Ok(timer)
                })
                .map_err(state_error)?;
            let Some(timer) = timer else { break };
            // Undo the offset added when the timer was registered to find the bucket.
            let removed = if timer.namespace == LEFT {
                let bucket = if self.spec.upper > 0 { timer.timestamp - self.spec.upper } else { timer.timestamp };
                backend.with(LEFT_BUFFER, |b| {
                    b.with_current(LEFT_BUFFER, |s, kg, key| s.map_remove::<i64, Bucket<A>>(left, kg, key, &bucket))
                })
            } else {
                let bucket = if self.spec.lower < 0 { timer.timestamp + self.spec.lower } else { timer.timestamp };
                backend.with(RIGHT_BUFFER, |b| {
                    b.with_current(RIGHT_BUFFER, |s, kg, key| s.map_remove::<i64, Bucket<B>>(right, kg, key, &bucket))
                })
            };
            removed.map_err(state_error)?;
        }
        Ok(())
    }
}

impl<A: Data, B: Data, K: Key, O: Data, F: ProcessJoinFunction<A, B, O>> StreamOperator
    for IntervalJoinOperator<A, B, K, O, F>
{
    fn open(&mut self, ctx: &mut OperatorContext<'_>) -> TaskResult {
        self.dropped = Some(ctx.metrics.counter("numLateRecordsDropped"));
        let stores = FunctionStores::open(&mut self.spec.f, ctx, true)?;
        if let Some(backend) = &stores.keyed {
            let ids = backend
                .with(LEFT_BUFFER, |b| {
                    let left = b.store().register_map::<i64, Bucket<A>>(LEFT_BUFFER, None)?;
                    let right = b.store().register_map::<i64, Bucket<B>>(RIGHT_BUFFER, None)?;
                    Ok((left, right))
                })
                .map_err(state_error)?;
            self.buffers = Some(ids);
        }
        self.stores = Some(stores);
        Ok(())
    }

    fn close(&mut self) -> TaskResult {
        close_function(&mut self.spec.f)
    }

    fn query_state(&mut self, query: &StateQuery) -> Option<Result<Option<Vec<u8>>, String>> {
        self.stores.as_ref()?.query(query)
    }

    fn snapshot_state(&mut self, barrier: &CheckpointBarrier) -> TaskResult<OperatorSnapshot> {
        FunctionStores::snapshot(self.stores.as_ref(), &mut self.spec.f, barrier)
    }

    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> TaskResult {
        self.spec.f.notify_checkpoint_complete(id).map_err(TaskError::User)
    }
}

impl<A: Data, B: Data, K: Key, O: Data, F: ProcessJoinFunction<A, B, O>> TwoInputStreamOperator<A, B, O>
    for IntervalJoinOperator<A, B, K, O, F>
{
    fn process_element1(&mut self, record: StreamRecord<A>, out: &mut OperatorOutput<O>) -> TaskResult {
        if self.handle_late(&record, &self.spec.late_left.clone(), out)? {
            return Ok(());
        }
        let Some(stores) = self.stores.take() else { return Ok(()) };
        let result = self.left_with(&stores, record, out);
        self.stores = Some(stores);
        result
    }

    fn process_element2(&mut self, record: StreamRecord<B>, out: &mut OperatorOutput<O>) -> TaskResult {
        if self.handle_late(&record, &self.spec.late_right.clone(), out)? {
            return Ok(());
        }
        let Some(stores) = self.stores.take() else { return Ok(()) };
        let result = self.right_with(&stores, record, out);
        self.stores = Some(stores);
        result
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut OperatorOutput<O>) -> TaskResult {
        self.watermark = watermark.0;
        self.fire_cleanup(watermark.0)?;
        out.emit_watermark(watermark)
    }
}

impl<A: Data, B: Data, K: Key, O: Data, F: ProcessJoinFunction<A, B, O>> IntervalJoinOperator<A, B, K, O, F> {
    fn left_with(
        &mut self,
        stores: &FunctionStores,
        record: StreamRecord<A>,
        out: &mut OperatorOutput<O>,
    ) -> TaskResult {
        let (Some(backend), Some((left, right))) = (&stores.keyed, self.buffers) else { return Ok(()) };
        let ts = record.timestamp;
        backend
            .with("current key", |b| b.set_current_key(&self.spec.left_key.get_key(&record.value)))
            .map_err(state_error)?;
        buffer_add(backend, LEFT_BUFFER, left, ts, record.value.clone())?;
        let (from, to) = (ts.saturating_add(self.spec.lower), ts.saturating_add(self.spec.upper));
        for (right_ts, bucket) in buffer_entries::<B>(backend, RIGHT_BUFFER, right)? {
            if (from..=to).contains(&right_ts) {
                for b in bucket {
                    self.emit(record.value.clone(), ts, b, right_ts, out)?;
                }
            }
        }
        let cleanup = if self.spec.upper > 0 { ts.saturating_add(self.spec.upper) } else { ts };
        backend
            .with("interval join timer", |b| {
                b.register_timer(CLEANUP_TIMERS, TimeDomain::EventTime, cleanup, LEFT).map(drop)
            })
            .map_err(state_error)
    }

    fn right_with(
        &mut self,
        stores: &FunctionStores,
        record: StreamRecord<B>,
        out: &mut OperatorOutput<O>,
    ) -> TaskResult {
        let (Some(backend), Some((left, right))) = (&stores.keyed, self.buffers) else { return Ok(()) };
        let ts = record.timestamp;
        backend
            .with("current key", |b| b.set_current_key(&self.spec.right_key.get_key(&record.value)))
            .map_err(state_error)?;
        buffer_add(backend, RIGHT_BUFFER, right, ts, record.value.clone())?;
        let (from, to) = (ts.saturating_sub(self.spec.upper), ts.saturating_sub(self.spec.lower));
        for (left_ts, bucket) in buffer_entries::<A>(backend, LEFT_BUFFER, left)? {
            if (from..=to).contains(&left_ts) {
                for a in bucket {
                    self.emit(a, left_ts, record.value.clone(), ts, out)?;
                }
            }
        }
        let cleanup = if self.spec.lower < 0 { ts.saturating_sub(self.spec.lower) } else { ts };
        backend
            .with("interval join timer", |b| {
                b.register_timer(CLEANUP_TIMERS, TimeDomain::EventTime, cleanup, RIGHT).map(drop)
            })
            .map_err(state_error)
    }
}
