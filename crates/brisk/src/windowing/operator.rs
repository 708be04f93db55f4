//! The window operator (Flink's `WindowOperator`): assigns elements to windows, keeps their
//! contents in the keyed backend, asks the trigger when to fire, drops or side-outputs late
//! elements, and cleans windows up once the watermark passes their end plus the allowed
//! lateness. Merging windows (sessions) keep a per-key merging window set.

use super::assigners::WindowAssigner;
use super::contents::{FireContext, WindowContents};
use super::merging::{Merge, MergingWindowSet};
use super::panes::{Fire, WindowPanes};
use super::triggers::{Trigger, TriggerContext, TriggerResult, WINDOW_TIMERS};
use super::window::Window;
use crate::key_selector::KeySelector;
use crate::operators::{FunctionStores, close_function, state_error};
use brisk_core::{Data, Key, NO_TIMESTAMP, StreamRecord, Watermark};
use brisk_runtime::checkpoint::{CheckpointBarrier, CheckpointId, OperatorSnapshot};
use brisk_runtime::metrics::Counter;
use brisk_runtime::taskexecutor::output::StateQuery;
use brisk_runtime::taskexecutor::time::ProcessingTimeService;
use brisk_runtime::{
    ExecutionMode, OneInputStreamOperator, OperatorContext, OperatorOutput, StreamOperator, TaskError, TaskResult,
};
use brisk_state::{KeyedStateBackend, KeyedStore, Registered, StateBackendKind, StateId, StateKind, TimeDomain, codec};

const MERGING_SET: &str = "merging-window-set";

/// Everything that defines a window operator; cloned per subtask into a [`WindowOperator`].
pub struct WindowSpec<T, K, W, O, A> {
    pub(crate) assigner: A,
    pub(crate) trigger: Box<dyn Trigger<T, W>>,
    pub(crate) contents: Box<dyn WindowContents<T, K, W, O>>,
    pub(crate) selector: KeySelector<T, K>,
    pub(crate) lateness: i64,
    pub(crate) late_tag: Option<String>,
    /// Whether the assigner's default trigger is used (in-memory panes need it).
    pub(crate) default_trigger: bool,
}

impl<T, K, W, O, A: Clone> Clone for WindowSpec<T, K, W, O, A> {
    fn clone(&self) -> Self {
        WindowSpec {
            assigner: self.assigner.clone(),
            trigger: self.trigger.box_clone(),
            contents: self.contents.box_clone(),
            selector: self.selector.clone(),
            lateness: self.lateness,
            late_tag: self.late_tag.clone(),
            default_trigger: self.default_trigger,
        }
    }
}

impl<T, K, W, O, A: Clone> WindowSpec<T, K, W, O, A> {
    /// A fresh operator for one subtask.
    pub fn build(&self) -> WindowOperator<T, K, W, O, A> {
        WindowOperator {
            spec: self.clone(),
            stores: None,
            panes: None,
            windows: Vec::new(),
            time: None,
            watermark: i64::MIN,
            merging_set: None,
            batch: false,
            dropped: None,
        }
    }
}

/// The window operator of one subtask.
pub struct WindowOperator<T, K, W, O, A> {
    spec: WindowSpec<T, K, W, O, A>,
    stores: Option<FunctionStores>,
    /// In-memory contents, when the operator qualifies (see `panes.rs`); else the contents
    /// live in the keyed backend with a timer per key and window.
    panes: Option<Box<dyn WindowPanes<T, K, W, O>>>,
    /// Reused for the windows of each element.
    windows: Vec<W>,
    time: Option<ProcessingTimeService>,
    watermark: i64,
    merging_set: Option<StateId>,
    batch: bool,
    dropped: Option<Counter>,
}

/// Whether a restored keyed snapshot holds windows kept in the keyed backend (contents or
/// window timers), which in-memory panes would not see.
fn holds_window_contents(snapshot: &brisk_state::snapshot::KeyedStateSnapshot) -> bool {
    let contents = snapshot.states.iter().position(|s| s.name == super::contents::CONTENTS);
    snapshot.key_groups.iter().any(|group| {
        group.entries.iter().any(|e| contents.is_some_and(|c| e.state as usize == c))
            || group.timers.iter().any(|t| t.service == WINDOW_TIMERS)
    })
}

fn encode<W: Window>(window: &W) -> TaskResult<Vec<u8>> {
    codec::encode(window).map_err(|e| TaskError::msg(format!("cannot encode window {window:?}: {e}")))
}

/// The runtime parts a window operator works with, borrowed apart from its spec.
struct Env<'a> {
    backend: &'a Registered<KeyedStateBackend>,
    time: &'a ProcessingTimeService,
    watermark: i64,
}

impl Env<'_> {
    fn trigger_ctx<'b>(&'b self, namespace: &'b [u8], merged: &'b [Vec<u8>]) -> TriggerContext<'b> {
        TriggerContext { backend: self.backend, namespace, watermark: self.watermark, time: self.time, merged }
    }
}

impl<T, K, W, O, A> WindowOperator<T, K, W, O, A>
where
    T: Data,
    K: Key,
    W: Window,
    A: WindowAssigner<T, W = W>,
{
    fn cleanup_time(&self, window: &W) -> i64 {
        if self.spec.assigner.is_event_time() {
            window.max_timestamp().saturating_add(self.spec.lateness)
        } else {
            window.max_timestamp()
        }
    }

    fn is_window_late(&self, window: &W) -> bool {
        self.spec.assigner.is_event_time() && self.cleanup_time(window) <= self.watermark
    }

    fn domain(&self) -> TimeDomain {
        if self.spec.assigner.is_event_time() { TimeDomain::EventTime } else { TimeDomain::ProcessingTime }
    }

    fn load_merging_set(&self, backend: &Registered<KeyedStateBackend>) -> TaskResult<MergingWindowSet<W>> {
        let Some(id) = self.merging_set else { return Ok(MergingWindowSet::default()) };
        let set = backend
            .with(MERGING_SET, |b| {
                b.with_current(MERGING_SET, |s, kg, key| s.value_get::<MergingWindowSet<W>>(id, kg, key))
            })
            .map_err(state_error)?;
        Ok(set.unwrap_or_default())
    }

    fn save_merging_set(&self, backend: &Registered<KeyedStateBackend>, set: MergingWindowSet<W>) -> TaskResult {
        let Some(id) = self.merging_set else { return Ok(()) };
        backend
            .with(MERGING_SET, |b| {
                b.with_current(MERGING_SET, |s, kg, key| {
                    if set.mapping.is_empty() { s.remove(id, kg, key) } else { s.value_put(id, kg, key, set) }
                })
            })
            .map_err(state_error)
    }

    fn set_timer(&self, env: &Env<'_>, window: &W, ns: &[u8], register: bool) -> TaskResult {
        let time = self.cleanup_time(window);
        if time == i64::MAX {
            return Ok(());
        }
        let domain = self.domain();
        env.backend
            .with("window timer", |b| {
                if register {
                    b.register_timer(WINDOW_TIMERS, domain, time, ns).map(drop)
                } else {
                    b.delete_timer(WINDOW_TIMERS, domain, time, ns)
                }
            })
            .map_err(state_error)?;
        if register && domain == TimeDomain::ProcessingTime {
            env.time.register_wakeup(time);
        }
        Ok(())
    }

    /// Applies a merge of session windows to triggers, timers and contents.
    fn apply_merge(&mut self, env: &Env<'_>, merge: &Merge<W>) -> TaskResult {
        let result_ns = encode(&merge.result)?;
        let merged_ns: Vec<Vec<u8>> = merge.merged.iter().map(encode).collect::<TaskResult<_>>()?;
        self.spec.trigger.on_merge(&merge.result, &mut env.trigger_ctx(&result_ns, &merged_ns))?;
        for (window, ns) in merge.merged.iter().zip(&merged_ns) {
            self.spec.trigger.clear(window, &mut env.trigger_ctx(ns, &[]))?;
            self.set_timer(env, window, ns, false)?;
        }
        let state_ns = encode(&merge.state_window)?;
        let sources: Vec<Vec<u8>> = merge.merged_state_windows.iter().map(encode).collect::<TaskResult<_>>()?;
        self.spec.contents.merge(env.backend, &state_ns, &sources)
    }

    fn act(
        &mut self,
        env: &Env<'_>,
        result: TriggerResult,
        key: &K,
        window: &W,
        state_ns: &[u8],
        out: &mut OperatorOutput<O>,
    ) -> TaskResult {
        if result.is_fire() {
            let fire = FireContext { key, window, watermark: env.watermark, time: env.time };
            self.spec.contents.emit(env.backend, state_ns, &fire, out)?;
        }
        if result.is_purge() {
            self.spec.contents.clear(env.backend, state_ns)?;
        }
        Ok(())
    }

    /// Fires the due window timers of `domain` at `time`.
    fn fire_timers(&mut self, domain: TimeDomain, time: i64, out: &mut OperatorOutput<O>) -> TaskResult {
        let Some(stores) = self.stores.take() else { return Ok(()) };
        let result = self.fire_timers_with(&stores, domain, time, out);
        self.stores = Some(stores);
        result
    }

    fn fire_timers_with(
        &mut self,
        stores: &FunctionStores,
        domain: TimeDomain,
        time: i64,
        out: &mut OperatorOutput<O>,
    ) -> TaskResult {
        let (Some(backend), Some(clock)) = (&stores.keyed, self.time.clone()) else { return Ok(()) };
        loop {
            let timer = backend
                .with("window timer", |b| {
                    let timer = b.pop_due_timer(WINDOW_TIMERS, domain, time);
                    if let Some(t) = &timer {
                        b.set_current_key_encoded(t.key_group, &t.key);
                    }
                    Ok(timer)
                })
                .map_err(state_error)?;
            let Some(timer) = timer else { break };
            let window: W = codec::decode(&timer.namespace)
                .map_err(|e| TaskError::msg(format!("timer window does not decode: {e}")))?;
            let key: K =
                codec::decode(&timer.key).map_err(|e| TaskError::msg(format!("timer key does not decode: {e}")))?;
            let env = Env { backend, time: &clock, watermark: self.watermark };
            let mut set = if self.spec.assigner.is_merging() { Some(self.load_merging_set(backend)?) } else { None };
            let state_ns = match &set {
                Some(set) => match set.state_window(&window) {
                    Some(state_window) => encode(&state_window)?,
                    // Merged into another window since the timer was set.
                    None => continue,
                },
                None => timer.namespace.clone(),
            };
            let mut ctx = env.trigger_ctx(&timer.namespace, &[]);
            let result = match domain {
                TimeDomain::EventTime => self.spec.trigger.on_event_time(timer.timestamp, &window, &mut ctx)?,
                TimeDomain::ProcessingTime => {
                    self.spec.trigger.on_processing_time(timer.timestamp, &window, &mut ctx)?
                }
            };
            self.act(&env, result, &key, &window, &state_ns, out)?;
            if domain == self.domain() && timer.timestamp == self.cleanup_time(&window) {
                self.spec.contents.clear(backend, &state_ns)?;
                self.spec.trigger.clear(&window, &mut env.trigger_ctx(&timer.namespace, &[]))?;
                if let Some(set) = &mut set {
                    set.retire(&window);
                }
            }
            if let Some(set) = set {
                self.save_merging_set(backend, set)?;
            }
        }
        if domain == TimeDomain::ProcessingTime
            && let Some(next) =
                backend.with("window timer", |b| Ok(b.next_timer(WINDOW_TIMERS, domain))).map_err(state_error)?
        {
            clock.register_wakeup(next);
        }
        Ok(())
    }

    /// The element's window time: its timestamp in event time, else the clock's time.
    fn element_time(&self, record: &StreamRecord<T>, clock: &ProcessingTimeService) -> TaskResult<i64> {
        if !self.spec.assigner.is_event_time() {
            return Ok(clock.current_processing_time());
        }
        if record.timestamp == NO_TIMESTAMP {
            return Err(TaskError::msg(
                "a record has no timestamp, but the window uses event time: assign timestamps with a WatermarkStrategy \
                 (assign_timestamps_and_watermarks, or from_source)",
            ));
        }
        Ok(record.timestamp)
    }

    /// An element that went into no window: to the late side output if it is late.
    fn skipped(&self, value: T, timestamp: i64, out: &mut OperatorOutput<O>) -> TaskResult {
        if !(self.spec.assigner.is_event_time() && timestamp.saturating_add(self.spec.lateness) <= self.watermark) {
            return Ok(());
        }
        match &self.spec.late_tag {
            Some(tag) => out.collect_side(tag, StreamRecord { value, timestamp }),
            None => {
                if let Some(c) = &self.dropped {
                    c.inc();
                }
                Ok(())
            }
        }
    }

    fn process_in_panes(&mut self, record: StreamRecord<T>, out: &mut OperatorOutput<O>) -> TaskResult {
        let Some(clock) = self.time.clone() else { return Ok(()) };
        let timestamp = self.element_time(&record, &clock)?;
        let mut windows = std::mem::take(&mut self.windows);
        windows.clear();
        self.spec.assigner.assign_windows_into(&record.value, timestamp, &mut windows).map_err(TaskError::msg)?;
        windows.retain(|w| !self.is_window_late(w));
        let result = match windows.pop() {
            None => self.skipped(record.value, timestamp, out),
            Some(last) => {
                let key = self.spec.selector.get_key(&record.value);
                let fire = Fire { watermark: self.watermark, time: &clock };
                let Some(panes) = &mut self.panes else { return Ok(()) };
                let earlier =
                    windows.drain(..).try_for_each(|window| panes.add(window, &key, record.value.clone(), fire, out));
                earlier.and_then(|_| panes.add(last, &key, record.value, fire, out))
            }
        };
        self.windows = windows;
        result
    }

    fn process_with(
        &mut self,
        stores: &FunctionStores,
        record: StreamRecord<T>,
        out: &mut OperatorOutput<O>,
    ) -> TaskResult {
        let (Some(backend), Some(clock)) = (&stores.keyed, self.time.clone()) else { return Ok(()) };
        let timestamp = self.element_time(&record, &clock)?;
        let windows = self.spec.assigner.assign_windows(&record.value, timestamp).map_err(TaskError::msg)?;
        let key = self.spec.selector.get_key(&record.value);
        backend.with("current key", |b| b.set_current_key(&key)).map_err(state_error)?;
        let env = Env { backend, time: &clock, watermark: self.watermark };
        let mut set = if self.spec.assigner.is_merging() { Some(self.load_merging_set(backend)?) } else { None };
        let mut skipped = true;
        for window in windows {
            let window = match &mut set {
                Some(set) => {
                    let assigner = self.spec.assigner.clone();
                    let (actual, merges) = set.add_window(window, |ws| assigner.merge_windows(ws).unwrap_or_default());
                    for merge in &merges {
                        self.apply_merge(&env, merge)?;
                    }
                    if self.is_window_late(&actual) {
                        set.retire(&actual);
                        continue;
                    }
                    actual
                }
                None if self.is_window_late(&window) => continue,
                None => window,
            };
            skipped = false;
            let ns = encode(&window)?;
            let state_ns = match &set {
                Some(set) => encode(&set.state_window(&window).unwrap_or_else(|| window.clone()))?,
                None => ns.clone(),
            };
            self.spec.contents.add(backend, &state_ns, record.value.clone(), timestamp)?;
            let result =
                self.spec.trigger.on_element(&record.value, timestamp, &window, &mut env.trigger_ctx(&ns, &[]))?;
            self.act(&env, result, &key, &window, &state_ns, out)?;
            self.set_timer(&env, &window, &ns, true)?;
        }
        if let Some(set) = set {
            self.save_merging_set(backend, set)?;
        }
        if skipped { self.skipped(record.value, timestamp, out) } else { Ok(()) }
    }
}

impl<T, K, W, O, A> StreamOperator for WindowOperator<T, K, W, O, A>
where
    T: Data,
    K: Key,
    W: Window,
    A: WindowAssigner<T, W = W>,
{
    fn open(&mut self, ctx: &mut OperatorContext<'_>) -> TaskResult {
        self.batch = ctx.task.execution_mode == ExecutionMode::Batch;
        self.time = Some(ctx.task.processing_time.clone());
        self.dropped = Some(ctx.metrics.counter("numLateRecordsDropped"));
        // Incremental event-time windows keep their contents in in-memory panes with the heap
        // backend, else in the keyed backend (contents state and timers). A restored snapshot
        // decides too, so that moving a savepoint between backends keeps the open windows:
        // windows restored from the backend stay there, and open panes restored into RocksDB
        // stay in memory (they are not converted into backend state).
        let panes_possible =
            self.spec.assigner.is_event_time() && !self.spec.assigner.is_merging() && self.spec.default_trigger;
        let restored_contents = ctx.restored().and_then(|r| r.keyed.as_ref()).is_some_and(holds_window_contents);
        let heap = ctx.task.state_backend.kind == StateBackendKind::HashMap;
        let mut panes = if panes_possible && !restored_contents { self.spec.contents.panes() } else { None };
        if let (Some(panes), Some(restored)) = (&mut panes, ctx.restored()) {
            let (range, max_parallelism) = (ctx.task.info.key_group_range(), ctx.task.info.max_parallelism);
            panes.restore(&restored.raw, &|key: &K| {
                range.contains(brisk_core::key_group::assign_to_key_group(key, max_parallelism))
            })?;
        }
        if !heap && panes.as_ref().is_some_and(|p| p.is_empty()) {
            panes = None;
        }
        if !heap && panes.is_some() {
            tracing::warn!(
                operator = %ctx.operator.name,
                "open windows restored from the heap backend's in-memory panes stay in memory with this backend"
            );
        }
        self.panes = panes;
        let function = match &mut self.panes {
            Some(panes) => panes.function(),
            None => self.spec.contents.function(),
        };
        let stores = FunctionStores::open(function, ctx, true)?;
        if let Some(backend) = &stores.keyed
            && let Some(next) = backend
                .with("window timer", |b| Ok(b.next_timer(WINDOW_TIMERS, TimeDomain::ProcessingTime)))
                .map_err(state_error)?
        {
            ctx.task.processing_time.register_wakeup(next);
        }
        if let Some(backend) = &stores.keyed {
            self.spec.contents.register(backend)?;
            if self.spec.assigner.is_merging() {
                let id = backend
                    .with(MERGING_SET, |b| b.register_value::<MergingWindowSet<W>>(MERGING_SET, StateKind::Value, None))
                    .map_err(state_error)?;
                self.merging_set = Some(id);
            }
        }
        self.stores = Some(stores);
        Ok(())
    }

    fn close(&mut self) -> TaskResult {
        match &mut self.panes {
            Some(panes) => close_function(panes.function()),
            None => close_function(self.spec.contents.function()),
        }
    }

    fn snapshot_state(&mut self, barrier: &CheckpointBarrier) -> TaskResult<OperatorSnapshot> {
        match &mut self.panes {
            Some(panes) => {
                let raw = panes.snapshot()?;
                let mut snapshot = FunctionStores::snapshot(self.stores.as_ref(), panes.function(), barrier)?;
                snapshot.raw = Some(raw);
                Ok(snapshot)
            }
            None => FunctionStores::snapshot(self.stores.as_ref(), self.spec.contents.function(), barrier),
        }
    }

    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> TaskResult {
        let function = match &mut self.panes {
            Some(panes) => panes.function(),
            None => self.spec.contents.function(),
        };
        function.notify_checkpoint_complete(id).map_err(TaskError::User)
    }

    fn query_state(&mut self, query: &StateQuery) -> Option<Result<Option<Vec<u8>>, String>> {
        self.stores.as_ref()?.query(query)
    }
}

impl<T, K, W, O, A> OneInputStreamOperator<T, O> for WindowOperator<T, K, W, O, A>
where
    T: Data,
    K: Key,
    W: Window,
    A: WindowAssigner<T, W = W>,
{
    fn process_element(&mut self, record: StreamRecord<T>, out: &mut OperatorOutput<O>) -> TaskResult {
        if self.panes.is_some() {
            return self.process_in_panes(record, out);
        }
        let Some(stores) = self.stores.take() else { return Ok(()) };
        let result = self.process_with(&stores, record, out);
        self.stores = Some(stores);
        result
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut OperatorOutput<O>) -> TaskResult {
        self.watermark = watermark.0;
        match (&mut self.panes, &self.time) {
            (Some(panes), Some(time)) => panes.advance(watermark.0, self.spec.lateness, time, out)?,
            _ => self.fire_timers(TimeDomain::EventTime, watermark.0, out)?,
        }
        out.emit_watermark(watermark)
    }

    fn on_processing_time(&mut self, now: i64, out: &mut OperatorOutput<O>) -> TaskResult {
        self.fire_timers(TimeDomain::ProcessingTime, now, out)
    }

    fn finish(&mut self, out: &mut OperatorOutput<O>) -> TaskResult {
        // Batch execution has no running clock: processing-time windows fire at the end.
        if self.batch { self.fire_timers(TimeDomain::ProcessingTime, i64::MAX, out) } else { Ok(()) }
    }
}
