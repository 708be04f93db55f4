//! Triggers: when a window's result is emitted and when its contents are purged (Flink's
//! `Trigger`s).

use super::window::Window;
use brisk_core::{BoxError, Data};
use brisk_runtime::taskexecutor::time::ProcessingTimeService;
use brisk_state::{KeyedStateBackend, KeyedStore, Registered, StateError, StateKind, TimeDomain};
use std::time::Duration;

/// Timer service name of window operators (trigger timers and cleanup timers).
pub(crate) const WINDOW_TIMERS: &str = "window-timers";

/// What a trigger decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerResult {
    /// Nothing happens.
    Continue,
    /// The window's function runs; the contents stay.
    Fire,
    /// The contents are dropped without a result.
    Purge,
    /// The function runs, then the contents are dropped.
    FireAndPurge,
}

impl TriggerResult {
    /// Whether the window fires.
    pub fn is_fire(self) -> bool {
        matches!(self, TriggerResult::Fire | TriggerResult::FireAndPurge)
    }

    /// Whether the contents are purged.
    pub fn is_purge(self) -> bool {
        matches!(self, TriggerResult::Purge | TriggerResult::FireAndPurge)
    }
}

/// What a trigger can do for its window: timers, clocks and per-window trigger state.
pub struct TriggerContext<'a> {
    pub(crate) backend: &'a Registered<KeyedStateBackend>,
    pub(crate) namespace: &'a [u8],
    pub(crate) watermark: i64,
    pub(crate) time: &'a ProcessingTimeService,
    pub(crate) merged: &'a [Vec<u8>],
}

impl TriggerContext<'_> {
    /// The operator's current watermark.
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    /// Current processing time.
    pub fn current_processing_time(&self) -> i64 {
        self.time.current_processing_time()
    }

    fn timer(&self, domain: TimeDomain, time: i64, register: bool) -> Result<(), StateError> {
        self.backend.with("window timer", |b| {
            if register {
                b.register_timer(WINDOW_TIMERS, domain, time, self.namespace).map(drop)
            } else {
                b.delete_timer(WINDOW_TIMERS, domain, time, self.namespace)
            }
        })
    }

    /// Calls `on_event_time` when the watermark reaches `time`.
    pub fn register_event_time_timer(&self, time: i64) -> Result<(), StateError> {
        self.timer(TimeDomain::EventTime, time, true)
    }

    /// Calls `on_processing_time` when the clock reaches `time`.
    pub fn register_processing_time_timer(&self, time: i64) -> Result<(), StateError> {
        self.timer(TimeDomain::ProcessingTime, time, true)?;
        self.time.register_wakeup(time);
        Ok(())
    }

    /// Removes an event-time timer of this window.
    pub fn delete_event_time_timer(&self, time: i64) -> Result<(), StateError> {
        self.timer(TimeDomain::EventTime, time, false)
    }

    /// Removes a processing-time timer of this window.
    pub fn delete_processing_time_timer(&self, time: i64) -> Result<(), StateError> {
        self.timer(TimeDomain::ProcessingTime, time, false)
    }

    fn with_state<V: Data, R>(
        &self,
        name: &str,
        namespace: &[u8],
        f: impl FnOnce(&mut brisk_state::StateStore, brisk_state::StateId, usize, &[u8]) -> Result<R, StateError>,
    ) -> Result<R, StateError> {
        let state = format!("trigger:{name}");
        self.backend.with(&state, |b| {
            let id = b.register_value::<V>(&state, StateKind::Value, None)?;
            b.with_namespace_bytes(&state, namespace, |store, kg, key| f(store, id, kg, key))
        })
    }

    /// The trigger's state `name` for this window.
    pub fn get_state<V: Data>(&self, name: &str) -> Result<Option<V>, StateError> {
        self.with_state::<V, _>(name, self.namespace, |s, id, kg, key| s.value_get(id, kg, key))
    }

    /// Sets the trigger's state `name` for this window.
    pub fn set_state<V: Data>(&self, name: &str, value: V) -> Result<(), StateError> {
        self.with_state::<V, _>(name, self.namespace, |s, id, kg, key| s.value_put(id, kg, key, value))
    }

    /// Removes the trigger's state `name` for this window.
    pub fn clear_state<V: Data>(&self, name: &str) -> Result<(), StateError> {
        self.with_state::<V, _>(name, self.namespace, |s, id, kg, key| s.remove(id, kg, key))
    }

    /// In `on_merge`: folds the state `name` of the merged windows into this window's.
    pub fn merge_state<V: Data>(&self, name: &str, merge: impl Fn(V, V) -> V) -> Result<(), StateError> {
        let mut merged: Option<V> = self.get_state(name)?;
        for source in self.merged {
            if let Some(v) = self.with_state::<V, _>(name, source, |s, id, kg, key| s.value_get(id, kg, key))? {
                merged = Some(match merged {
                    Some(m) => merge(m, v),
                    None => v,
                });
            }
        }
        match merged {
            Some(v) => self.set_state(name, v),
            None => Ok(()),
        }
    }
}

/// Decides when a window fires (Flink's `Trigger`). Each subtask gets its own copy.
pub trait Trigger<T, W>: Send {
    /// An element was added to `window`.
    fn on_element(
        &mut self,
        element: &T,
        timestamp: i64,
        window: &W,
        ctx: &mut TriggerContext<'_>,
    ) -> Result<TriggerResult, BoxError>;
    /// An event-time timer of `window` fired; by default nothing happens ([`TriggerResult::Continue`]).
    fn on_event_time(
        &mut self,
        _time: i64,
        _window: &W,
        _ctx: &mut TriggerContext<'_>,
    ) -> Result<TriggerResult, BoxError> {
        Ok(TriggerResult::Continue)
    }
    /// A processing-time timer of `window` fired; by default nothing happens ([`TriggerResult::Continue`]).
    fn on_processing_time(
        &mut self,
        _time: i64,
        _window: &W,
        _ctx: &mut TriggerContext<'_>,
    ) -> Result<TriggerResult, BoxError> {
        Ok(TriggerResult::Continue)
    }
    /// Whether the trigger supports merging windows (sessions).
    fn can_merge(&self) -> bool {
        false
    }
    /// Windows were merged into `window`.
    fn on_merge(&mut self, _window: &W, _ctx: &mut TriggerContext<'_>) -> Result<(), BoxError> {
        Err("this trigger does not support merging windows".into())
    }
    /// The window is gone: remove its timers and state.
    fn clear(&mut self, window: &W, ctx: &mut TriggerContext<'_>) -> Result<(), BoxError>;
    /// A copy for another subtask.
    fn box_clone(&self) -> Box<dyn Trigger<T, W>>;
}

/// Fires when the watermark passes the window's end (Flink's `EventTimeTrigger`).
#[derive(Clone, Copy, Debug, Default)]
pub struct EventTimeTrigger;

impl<T, W: Window> Trigger<T, W> for EventTimeTrigger {
    fn on_element(
        &mut self,
        _: &T,
        _: i64,
        window: &W,
        ctx: &mut TriggerContext<'_>,
    ) -> Result<TriggerResult, BoxError> {
        if window.max_timestamp() <= ctx.current_watermark() {
            // Late but within the allowed lateness: fire at once.
            return Ok(TriggerResult::Fire);
        }
        ctx.register_event_time_timer(window.max_timestamp())?;
        Ok(TriggerResult::Continue)
    }
    fn on_event_time(&mut self, time: i64, window: &W, _: &mut TriggerContext<'_>) -> Result<TriggerResult, BoxError> {
        Ok(if time == window.max_timestamp() { TriggerResult::Fire } else { TriggerResult::Continue })
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&mut self, window: &W, ctx: &mut TriggerContext<'_>) -> Result<(), BoxError> {
        if window.max_timestamp() > ctx.current_watermark() {
            ctx.register_event_time_timer(window.max_timestamp())?;
        }
        Ok(())
    }
    fn clear(&mut self, window: &W, ctx: &mut TriggerContext<'_>) -> Result<(), BoxError> {
        Ok(ctx.delete_event_time_timer(window.max_timestamp())?)
    }
    fn box_clone(&self) -> Box<dyn Trigger<T, W>> {
        Box::new(*self)
    }
}

/// Fires when the clock passes the window's end (Flink's `ProcessingTimeTrigger`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessingTimeTrigger;

impl<T, W: Window> Trigger<T, W> for ProcessingTimeTrigger {
    fn on_element(
        &mut self,
        _: &T,
        _: i64,
        window: &W,
        ctx: &mut TriggerContext<'_>,
    ) -> Result<TriggerResult, BoxError> {
        ctx.register_processing_time_timer(window.max_timestamp())?;
        Ok(TriggerResult::Continue)
    }
    fn on_processing_time(&mut self, _: i64, _: &W, _: &mut TriggerContext<'_>) -> Result<TriggerResult, BoxError> {
        Ok(TriggerResult::Fire)
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&mut self, window: &W, ctx: &mut TriggerContext<'_>) -> Result<(), BoxError> {
        Ok(ctx.register_processing_time_timer(window.max_timestamp())?)
    }
    fn clear(&mut self, window: &W, ctx: &mut TriggerContext<'_>) -> Result<(), BoxError> {
        Ok(ctx.delete_processing_time_timer(window.max_timestamp())?)
    }
    fn box_clone(&self) -> Box<dyn Trigger<T, W>> {
        Box::new(*self)
    }
}

/// Never fires (the default of global windows, which need an explicit trigger).
#[derive(Clone, Copy, Debug, Default)]
pub struct NeverTrigger;

impl<T, W> Trigger<T, W> for NeverTrigger {
    fn on_element(&mut self, _: &T, _: i64, _: &W, _: &mut TriggerContext<'_>) -> Result<TriggerResult, BoxError> {
        Ok(TriggerResult::Continue)
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&mut self, _: &W, _: &mut TriggerContext<'_>) -> Result<(), BoxError> {
        Ok(())
    }
    fn clear(&mut self, _: &W, _: &mut TriggerContext<'_>) -> Result<(), BoxError> {
        Ok(())
    }
    fn box_clone(&self) -> Box<dyn Trigger<T, W>> {
        Box::new(*self)
    }
}

const COUNT: &str = "count";
const FIRE_TIME: &str = "fire-time";

/// Fires every `n` elements (Flink's `CountTrigger`).
#[derive(Clone, Copy, Debug)]
pub struct CountTrigger {
    max_count: u64,
}

impl CountTrigger {
    /// Fires when `n` elements have arrived since the last firing.
    pub fn of(n: u64) -> Self {
        CountTrigger { max_count: n.max(1) }
    }
}

impl<T, W: Window> Trigger<T, W> for CountTrigger {
    fn on_element(&mut self, _: &T, _: i64, _: &W, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult, BoxError> {
        let count = ctx.get_state::<u64>(COUNT)?.unwrap_or(0) + 1;
        if count >= self.max_count {
            ctx.clear_state::<u64>(COUNT)?;
            return Ok(TriggerResult::Fire);
        }
        ctx.set_state(COUNT, count)?;
        Ok(TriggerResult::Continue)
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&mut self, _: &W, ctx: &mut TriggerContext<'_>) -> Result<(), BoxError> {
        Ok(ctx.merge_state::<u64>(COUNT, |a, b| a + b)?)
    }
    fn clear(&mut self, _: &W, ctx: &mut TriggerContext<'_>) -> Result<(), BoxError> {
        Ok(ctx.clear_state::<u64>(COUNT)?)
    }
    fn box_clone(&self) -> Box<dyn Trigger<T, W>> {
        Box::new(*self)
    }
}

/// Turns every firing of another trigger into fire-and-purge (Flink's `PurgingTrigger`).
pub struct PurgingTrigger<T, W>(Box<dyn Trigger<T, W>>);

impl<T: 'static, W: 'static> PurgingTrigger<T, W> {
    /// Purges after each firing of `inner`.
    pub fn of(inner: impl Trigger<T, W> + 'static) -> Self {
        PurgingTrigger(Box::new(inner))
    }
}

fn purging(result: TriggerResult) -> TriggerResult {
    if result.is_fire() { TriggerResult::FireAndPurge } else { result }
}

impl<T: 'static, W: 'static> Trigger<T, W> for PurgingTrigger<T, W> {
    fn on_element(
        &mut self,
        element: &T,
        timestamp: i64,
        window: &W,
        ctx: &mut TriggerContext<'_>,
    ) -> Result<TriggerResult, BoxError> {
        self.0.on_element(element, timestamp, window, ctx).map(purging)
    }
    fn on_event_time(
        &mut self,
        time: i64,
        window: &W,
        ctx: &mut TriggerContext<'_>,
    ) -> Result<TriggerResult, BoxError> {
        self.0.on_event_time(time, window, ctx).map(purging)
    }
    fn on_processing_time(
        &mut self,
        time: i64,
        window: &W,
        ctx: &mut TriggerContext<'_>,
    ) -> Result<TriggerResult, BoxError> {
        self.0.on_processing_time(time, window, ctx).map(purging)
    }
    fn can_merge(&self) -> bool {
        self.0.can_merge()
    }
    fn on_merge(&mut self, window: &W, ctx: &mut TriggerContext<'_>) -> Result<(), BoxError> {
        self.0.on_merge(window, ctx)
    }
    fn clear(&mut self, window: &W, ctx: &mut TriggerContext<'_>) -> Result<(), BoxError> {
        self.0.clear(window, ctx)
    }
    fn box_clone(&self) -> Box<dyn Trigger<T, W>> {
        Box::new(PurgingTrigger(self.0.box_clone()))
    }
}

/// Fires periodically in event time while the window is open, and at its end (Flink's
/// `ContinuousEventTimeTrigger`).
#[derive(Clone, Copy, Debug)]
pub struct ContinuousEventTimeTrigger {
    interval: i64,
}

impl ContinuousEventTimeTrigger {
    /// Fires every `interval` of event time.
    pub fn of(interval: Duration) -> Self {
        ContinuousEventTimeTrigger { interval: (interval.as_millis() as i64).max(1) }
    }
}

impl<T, W: Window> Trigger<T, W> for ContinuousEventTimeTrigger {
    fn on_element(
        &mut self,
        _: &T,
        timestamp: i64,
        window: &W,
        ctx: &mut TriggerContext<'_>,
    ) -> Result<TriggerResult, BoxError> {
        if window.max_timestamp() <= ctx.current_watermark() {
            return Ok(TriggerResult::Fire);
        }
        ctx.register_event_time_timer(window.max_timestamp())?;
        if ctx.get_state::<i64>(FIRE_TIME)?.is_none() {
            let next = timestamp - timestamp.rem_euclid(self.interval) + self.interval;
            ctx.register_event_time_timer(next)?;
            ctx.set_state(FIRE_TIME, next)?;
        }
        Ok(TriggerResult::Continue)
    }
    fn on_event_time(
        &mut self,
        time: i64,
        window: &W,
        ctx: &mut TriggerContext<'_>,
    ) -> Result<TriggerResult, BoxError> {
        if time == window.max_timestamp() {
            return Ok(TriggerResult::Fire);
        }
        if ctx.get_state::<i64>(FIRE_TIME)? == Some(time) {
            let next = time + self.interval;
            ctx.register_event_time_timer(next)?;
            ctx.set_state(FIRE_TIME, next)?;
            return Ok(TriggerResult::Fire);
        }
        Ok(TriggerResult::Continue)
    }
    fn clear(&mut self, window: &W, ctx: &mut TriggerContext<'_>) -> Result<(), BoxError> {
        if let Some(t) = ctx.get_state::<i64>(FIRE_TIME)? {
            ctx.delete_event_time_timer(t)?;
        }
        ctx.clear_state::<i64>(FIRE_TIME)?;
        Ok(ctx.delete_event_time_timer(window.max_timestamp())?)
    }
    fn box_clone(&self) -> Box<dyn Trigger<T, W>> {
        Box::new(*self)
    }
}

/// Fires periodically in processing time (Flink's `ContinuousProcessingTimeTrigger`).
#[derive(Clone, Copy, Debug)]
pub struct ContinuousProcessingTimeTrigger {
    interval: i64,
}

impl ContinuousProcessingTimeTrigger {
    /// Fires every `interval` of processing time.
    pub fn of(interval: Duration) -> Self {
        ContinuousProcessingTimeTrigger { interval: (interval.as_millis() as i64).max(1) }
    }
}

impl<T, W: Window> Trigger<T, W> for ContinuousProcessingTimeTrigger {
    fn on_element(&mut self, _: &T, _: i64, _: &W, ctx: &mut TriggerContext<'_>) -> Result<TriggerResult, BoxError> {
        if ctx.get_state::<i64>(FIRE_TIME)?.is_none() {
            let now = ctx.current_processing_time();
            let next = now - now.rem_euclid(self.interval) + self.interval;
            ctx.register_processing_time_timer(next)?;
            ctx.set_state(FIRE_TIME, next)?;
        }
        Ok(TriggerResult::Continue)
    }
    fn on_processing_time(
        &mut self,
        time: i64,
        _: &W,
        ctx: &mut TriggerContext<'_>,
    ) -> Result<TriggerResult, BoxError> {
        if ctx.get_state::<i64>(FIRE_TIME)? == Some(time) {
            let next = time + self.interval;
            ctx.register_processing_time_timer(next)?;
            ctx.set_state(FIRE_TIME, next)?;
            return Ok(TriggerResult::Fire);
        }
        Ok(TriggerResult::Continue)
    }
    fn clear(&mut self, _: &W, ctx: &mut TriggerContext<'_>) -> Result<(), BoxError> {
        if let Some(t) = ctx.get_state::<i64>(FIRE_TIME)? {
            ctx.delete_processing_time_timer(t)?;
        }
        Ok(ctx.clear_state::<i64>(FIRE_TIME)?)
    }
    fn box_clone(&self) -> Box<dyn Trigger<T, W>> {
        Box::new(*self)
    }
}
