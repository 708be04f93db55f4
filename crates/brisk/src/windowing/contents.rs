//! What a window keeps until it fires: a running reduction, an aggregate accumulator, or all
//! elements (for process functions and evictors). Stored in the keyed backend under the
//! window's namespace.

use super::evictors::{Evictor, TimestampedValue};
use super::functions::{ProcessWindowContext, ProcessWindowFunction};
use super::panes::{AggregateAccumulate, Panes, ReduceAccumulate, WindowPanes};
use super::window::Window;
use crate::functions::{Collector, Emitter, RichFunction};
use crate::operators::state_error;
use brisk_core::{BoxError, Data, Key};
use brisk_runtime::taskexecutor::time::ProcessingTimeService;
use brisk_runtime::{OperatorOutput, TaskResult};
use brisk_state::{
    AggregateFunction, KeyedStateBackend, KeyedStore, Registered, StateId, StateKind, StateResult, StateStore,
};
use std::marker::PhantomData;
use std::sync::Arc;

/// Name of the state holding window contents.
pub(crate) const CONTENTS: &str = "window-contents";

/// Runs `f` on the store under the current key and the encoded window `ns`.
fn with_ns<R>(
    backend: &Registered<KeyedStateBackend>,
    ns: &[u8],
    f: impl FnOnce(&mut StateStore, usize, &[u8]) -> StateResult<R>,
) -> TaskResult<R> {
    backend.with(CONTENTS, |b| b.with_namespace_bytes(CONTENTS, ns, f)).map_err(state_error)
}

/// Where a firing window's function runs.
pub(crate) struct FireContext<'a, K, W> {
    pub key: &'a K,
    pub window: &'a W,
    pub watermark: i64,
    pub time: &'a ProcessingTimeService,
}

/// Calls a window function with a collector stamped with the window's max timestamp.
pub(crate) fn run<IN, O, K, W: Window, P: ProcessWindowFunction<IN, O, K, W>>(
    process: &mut P,
    fire: &FireContext<'_, K, W>,
    elements: Vec<IN>,
    out: &mut OperatorOutput<O>,
) -> TaskResult {
    let emitter = Emitter::new(out, fire.window.max_timestamp());
    let mut ctx = ProcessWindowContext {
        window: fire.window,
        watermark: fire.watermark,
        time: fire.time,
        inner: emitter.context(),
    };
    let result = process.process(fire.key, &mut ctx, elements, &mut emitter.collector());
    emitter.finish(result)
}

/// The state a window operator keeps per window and how it becomes a result.
pub(crate) trait WindowContents<T, K, W, O>: Send {
    /// The user function, for `initialize_state`/`open`/`close`.
    fn function(&mut self) -> &mut dyn RichFunction;
    /// Registers the contents state.
    fn register(&mut self, backend: &Registered<KeyedStateBackend>) -> TaskResult;
    /// Adds an element to the window `ns`.
    fn add(&mut self, backend: &Registered<KeyedStateBackend>, ns: &[u8], value: T, timestamp: i64) -> TaskResult;
    /// Folds the contents of `sources` into `target` (merging windows).
    fn merge(&mut self, backend: &Registered<KeyedStateBackend>, target: &[u8], sources: &[Vec<u8>]) -> TaskResult;
    /// Drops the window's contents.
    fn clear(&mut self, backend: &Registered<KeyedStateBackend>, ns: &[u8]) -> TaskResult;
    /// Computes and emits the window's result.
    fn emit(
        &mut self,
        backend: &Registered<KeyedStateBackend>,
        ns: &[u8],
        fire: &FireContext<'_, K, W>,
        out: &mut OperatorOutput<O>,
    ) -> TaskResult;
    /// A copy for another subtask.
    fn box_clone(&self) -> Box<dyn WindowContents<T, K, W, O>>;
    /// The same function over in-memory panes, where the contents are incremental.
    fn panes(&self) -> Option<Box<dyn WindowPanes<T, K, W, O>>> {
        None
    }
}

fn register_value<V: Data>(backend: &Registered<KeyedStateBackend>, kind: StateKind) -> TaskResult<StateId> {
    backend.with(CONTENTS, |b| b.register_value::<V>(CONTENTS, kind, None)).map_err(state_error)
}

fn id(id: Option<StateId>) -> TaskResult<StateId> {
    id.ok_or_else(|| brisk_runtime::TaskError::msg("window contents used before registration"))
}

/// A running reduction per window (Flink's `ReducingState` window contents).
pub(crate) struct ReduceContents<T, F, P> {
    reduce: F,
    process: P,
    state: Option<StateId>,
    _type: PhantomData<fn(T)>,
}

impl<T, F, P> ReduceContents<T, F, P> {
    pub fn new(reduce: F, process: P) -> Self {
        ReduceContents { reduce, process, state: None, _type: PhantomData }
    }
}

impl<T, K, W, O, F, P> WindowContents<T, K, W, O> for ReduceContents<T, F, P>
where
    T: Data,
    K: Key,
    W: Window,
    F: FnMut(T, T) -> T + Clone + Send + 'static,
    P: ProcessWindowFunction<T, O, K, W>,
{
    fn function(&mut self) -> &mut dyn RichFunction {
        &mut self.process
    }
    fn register(&mut self, backend: &Registered<KeyedStateBackend>) -> TaskResult {
        self.state = Some(register_value::<T>(backend, StateKind::Reducing)?);
        Ok(())
    }
    #[inline]
    fn add(&mut self, backend: &Registered<KeyedStateBackend>, ns: &[u8], value: T, _: i64) -> TaskResult {
        let (id, reduce) = (id(self.state)?, &mut self.reduce);
        with_ns(backend, ns, |s, kg, key| {
            s.value_update::<T, ()>(id, kg, key, |old| {
                (
                    Some(match old {
                        Some(acc) => reduce(acc, value),
                        None => value,
                    }),
                    (),
                )
            })
        })
    }
    fn merge(&mut self, backend: &Registered<KeyedStateBackend>, target: &[u8], sources: &[Vec<u8>]) -> TaskResult {
        let id = id(self.state)?;
        let mut acc: Option<T> = with_ns(backend, target, |s, kg, key| s.value_get(id, kg, key))?;
        for source in sources {
            let value: Option<T> = with_ns(backend, source, |s, kg, key| {
                let v = s.value_get(id, kg, key)?;
                s.remove(id, kg, key)?;
                Ok(v)
            })?;
            if let Some(v) = value {
                acc = Some(match acc {
                    Some(a) => (self.reduce)(a, v),
                    None => v,
                });
            }
        }
        match acc {
            Some(v) => with_ns(backend, target, |s, kg, key| s.value_put(id, kg, key, v)),
            None => Ok(()),
        }
    }
    fn clear(&mut self, backend: &Registered<KeyedStateBackend>, ns: &[u8]) -> TaskResult {
        let id = id(self.state)?;
        with_ns(backend, ns, |s, kg, key| s.remove(id, kg, key))
    }
    fn emit(
        &mut self,
        backend: &Registered<KeyedStateBackend>,
        ns: &[u8],
        fire: &FireContext<'_, K, W>,
        out: &mut OperatorOutput<O>,
    ) -> TaskResult {
        let id = id(self.state)?;
        match with_ns(backend, ns, |s, kg, key| s.value_get::<T>(id, kg, key))? {
            Some(value) => run(&mut self.process, fire, vec![value], out),
            None => Ok(()),
        }
    }
    fn box_clone(&self) -> Box<dyn WindowContents<T, K, W, O>> {
        Box::new(ReduceContents::<T, F, P>::new(self.reduce.clone(), self.process.clone()))
    }
    fn panes(&self) -> Option<Box<dyn WindowPanes<T, K, W, O>>> {
        Some(Box::new(Panes::new(ReduceAccumulate(self.reduce.clone()), self.process.clone())))
    }
}

/// An aggregate accumulator per window (Flink's `AggregatingState` window contents).
pub(crate) struct AggregateContents<T, ACC, R, P> {
    aggregate: Arc<dyn AggregateFunction<T, ACC, R>>,
    process: P,
    state: Option<StateId>,
}

impl<T, ACC, R, P> AggregateContents<T, ACC, R, P> {
    pub fn new(aggregate: Arc<dyn AggregateFunction<T, ACC, R>>, process: P) -> Self {
        AggregateContents { aggregate, process, state: None }
    }
}

impl<T, ACC, R, K, W, O, P> WindowContents<T, K, W, O> for AggregateContents<T, ACC, R, P>
where
    T: Data,
    K: Key,
    ACC: Data,
    R: 'static,
    W: Window,
    P: ProcessWindowFunction<R, O, K, W>,
{
    fn function(&mut self) -> &mut dyn RichFunction {
        &mut self.process
    }
    fn register(&mut self, backend: &Registered<KeyedStateBackend>) -> TaskResult {
        self.state = Some(register_value::<ACC>(backend, StateKind::Aggregating)?);
        Ok(())
    }
    #[inline]
    fn add(&mut self, backend: &Registered<KeyedStateBackend>, ns: &[u8], value: T, _: i64) -> TaskResult {
        let (id, agg) = (id(self.state)?, &self.aggregate);
        with_ns(backend, ns, |s, kg, key| {
            s.value_update::<ACC, ()>(id, kg, key, |old| {
                (Some(agg.add(value, old.unwrap_or_else(|| agg.create_accumulator()))), ())
            })
        })
    }
    fn merge(&mut self, backend: &Registered<KeyedStateBackend>, target: &[u8], sources: &[Vec<u8>]) -> TaskResult {
        let id = id(self.state)?;
        let mut acc: Option<ACC> = with_ns(backend, target, |s, kg, key| s.value_get(id, kg, key))?;
        for source in sources {
            let value: Option<ACC> = with_ns(backend, source, |s, kg, key| {
                let v = s.value_get(id, kg, key)?;
                s.remove(id, kg, key)?;
                Ok(v)
            })?;
            if let Some(v) = value {
                acc = Some(match acc {
                    Some(a) => self.aggregate.merge(a, v),
                    None => v,
                });
            }
        }
        match acc {
            Some(v) => with_ns(backend, target, |s, kg, key| s.value_put(id, kg, key, v)),
            None => Ok(()),
        }
    }
    fn clear(&mut self, backend: &Registered<KeyedStateBackend>, ns: &[u8]) -> TaskResult {
        let id = id(self.state)?;
        with_ns(backend, ns, |s, kg, key| s.remove(id, kg, key))
    }
    fn emit(
        &mut self,
        backend: &Registered<KeyedStateBackend>,
        ns: &[u8],
        fire: &FireContext<'_, K, W>,
        out: &mut OperatorOutput<O>,
    ) -> TaskResult {
        let id = id(self.state)?;
        match with_ns(backend, ns, |s, kg, key| s.value_get::<ACC>(id, kg, key))? {
            Some(acc) => {
                let result = self.aggregate.get_result(&acc);
                run(&mut self.process, fire, vec![result], out)
            }
            None => Ok(()),
        }
    }
    fn box_clone(&self) -> Box<dyn WindowContents<T, K, W, O>> {
        Box::new(AggregateContents::<T, ACC, R, P>::new(self.aggregate.clone(), self.process.clone()))
    }
    fn panes(&self) -> Option<Box<dyn WindowPanes<T, K, W, O>>> {
        Some(Box::new(Panes::new(AggregateAccumulate(self.aggregate.clone()), self.process.clone())))
    }
}

/// All elements of a window with their timestamps; an optional evictor trims them around the
/// function (Flink's `ListState` window contents and `EvictingWindowOperator`).
pub(crate) struct ListContents<T, W, P> {
    process: P,
    evictor: Option<Box<dyn Evictor<T, W>>>,
    state: Option<StateId>,
}

impl<T, W, P> ListContents<T, W, P> {
    pub fn new(process: P, evictor: Option<Box<dyn Evictor<T, W>>>) -> Self {
        ListContents { process, evictor, state: None }
    }
}

impl<T, K, W, O, P> WindowContents<T, K, W, O> for ListContents<T, W, P>
where
    T: Data,
    W: Window,
    P: ProcessWindowFunction<T, O, K, W>,
{
    fn function(&mut self) -> &mut dyn RichFunction {
        &mut self.process
    }
    fn register(&mut self, backend: &Registered<KeyedStateBackend>) -> TaskResult {
        self.state = Some(
            backend
                .with(CONTENTS, |b| b.store().register_list::<TimestampedValue<T>>(CONTENTS, None))
                .map_err(state_error)?,
        );
        Ok(())
    }
    #[inline]
    fn add(&mut self, backend: &Registered<KeyedStateBackend>, ns: &[u8], value: T, timestamp: i64) -> TaskResult {
        let id = id(self.state)?;
        with_ns(backend, ns, |s, kg, key| s.list_add(id, kg, key, vec![TimestampedValue { value, timestamp }]))
    }
    fn merge(&mut self, backend: &Registered<KeyedStateBackend>, target: &[u8], sources: &[Vec<u8>]) -> TaskResult {
        let id = id(self.state)?;
        for source in sources {
            let values: Vec<TimestampedValue<T>> = with_ns(backend, source, |s, kg, key| {
                let v = s.list_get(id, kg, key)?;
                s.remove(id, kg, key)?;
                Ok(v)
            })?;
            with_ns(backend, target, |s, kg, key| s.list_add(id, kg, key, values))?;
        }
        Ok(())
    }
    fn clear(&mut self, backend: &Registered<KeyedStateBackend>, ns: &[u8]) -> TaskResult {
        let id = id(self.state)?;
        with_ns(backend, ns, |s, kg, key| s.remove(id, kg, key))
    }
    fn emit(
        &mut self,
        backend: &Registered<KeyedStateBackend>,
        ns: &[u8],
        fire: &FireContext<'_, K, W>,
        out: &mut OperatorOutput<O>,
    ) -> TaskResult {
        let id = id(self.state)?;
        let mut elements: Vec<TimestampedValue<T>> = with_ns(backend, ns, |s, kg, key| s.list_get(id, kg, key))?;
        if elements.is_empty() {
            return Ok(());
        }
        let Some(evictor) = &mut self.evictor else {
            return run(&mut self.process, fire, elements.into_iter().map(|e| e.value).collect(), out);
        };
        let before = elements.len();
        evictor.evict_before(&mut elements, fire.window);
        run(&mut self.process, fire, elements.iter().map(|e| e.value.clone()).collect(), out)?;
        evictor.evict_after(&mut elements, fire.window);
        if elements.len() != before {
            with_ns(backend, ns, |s, kg, key| s.list_update(id, kg, key, elements))?;
        }
        Ok(())
    }
    fn box_clone(&self) -> Box<dyn WindowContents<T, K, W, O>> {
        Box::new(ListContents::<T, W, P>::new(self.process.clone(), self.evictor.as_ref().map(|e| e.box_clone())))
    }
}

/// A window function that first folds the elements with a reduce function (reduce with an
/// evictor: the reduction runs over what the evictor kept).
#[derive(Clone)]
pub(crate) struct ReduceThen<F, P> {
    pub reduce: F,
    pub process: P,
}

impl<F, P: RichFunction> RichFunction for ReduceThen<F, P> {
    fn initialize_state(
        &mut self,
        ctx: &mut crate::functions::FunctionInitializationContext<'_>,
    ) -> Result<(), BoxError> {
        self.process.initialize_state(ctx)
    }
    fn open(&mut self, ctx: &mut crate::functions::RuntimeContext<'_>) -> Result<(), BoxError> {
        self.process.open(ctx)
    }
    fn close(&mut self) -> Result<(), BoxError> {
        self.process.close()
    }
}

impl<T, O, K, W, F, P> ProcessWindowFunction<T, O, K, W> for ReduceThen<F, P>
where
    F: FnMut(T, T) -> T + Clone + Send + 'static,
    P: ProcessWindowFunction<T, O, K, W>,
{
    fn process(
        &mut self,
        key: &K,
        ctx: &mut ProcessWindowContext<'_, W, O>,
        elements: Vec<T>,
        out: &mut Collector<'_, O>,
    ) -> Result<(), BoxError> {
        let reduced = elements.into_iter().reduce(&mut self.reduce);
        self.process.process(key, ctx, reduced.into_iter().collect(), out)
    }
}

/// A window function that first aggregates the elements (aggregate with an evictor).
pub(crate) struct AggregateThen<T, ACC, R, P> {
    pub aggregate: Arc<dyn AggregateFunction<T, ACC, R>>,
    pub process: P,
}

impl<T, ACC, R, P: Clone> Clone for AggregateThen<T, ACC, R, P> {
    fn clone(&self) -> Self {
        AggregateThen { aggregate: self.aggregate.clone(), process: self.process.clone() }
    }
}

impl<T, ACC, R, P: RichFunction> RichFunction for AggregateThen<T, ACC, R, P> {
    fn initialize_state(
        &mut self,
        ctx: &mut crate::functions::FunctionInitializationContext<'_>,
    ) -> Result<(), BoxError> {
        self.process.initialize_state(ctx)
    }
    fn open(&mut self, ctx: &mut crate::functions::RuntimeContext<'_>) -> Result<(), BoxError> {
        self.process.open(ctx)
    }
    fn close(&mut self) -> Result<(), BoxError> {
        self.process.close()
    }
}

impl<T, ACC, R, O, K, W, P> ProcessWindowFunction<T, O, K, W> for AggregateThen<T, ACC, R, P>
where
    T: 'static,
    ACC: 'static,
    R: 'static,
    P: ProcessWindowFunction<R, O, K, W>,
{
    fn process(
        &mut self,
        key: &K,
        ctx: &mut ProcessWindowContext<'_, W, O>,
        elements: Vec<T>,
        out: &mut Collector<'_, O>,
    ) -> Result<(), BoxError> {
        let acc = elements.into_iter().fold(self.aggregate.create_accumulator(), |acc, v| self.aggregate.add(v, acc));
        let result = self.aggregate.get_result(&acc);
        self.process.process(key, ctx, vec![result], out)
    }
}
