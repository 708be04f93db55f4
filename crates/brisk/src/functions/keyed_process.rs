//! `KeyedProcessFunction`: per-record processing on a keyed stream with keyed state and timers.

use super::{Collector, ProcessContext, RichFunction};
use crate::side_output::OutputTag;
use brisk_core::{BoxError, Data};
use brisk_runtime::taskexecutor::time::ProcessingTimeService;
use brisk_state::{KeyedStateBackend, Registered, StateError, TimeDomain};

/// Name of the timer service of process functions.
pub(crate) const USER_TIMERS: &str = "user-timers";

/// Registers timers for the current key and reads the clocks (Flink's `TimerService`).
pub struct TimerService<'a> {
    pub(crate) backend: &'a Registered<KeyedStateBackend>,
    pub(crate) time: &'a ProcessingTimeService,
    pub(crate) watermark: i64,
}

impl TimerService<'_> {
    /// Current processing time (epoch milliseconds).
    pub fn current_processing_time(&self) -> i64 {
        self.time.current_processing_time()
    }

    /// The operator's current watermark.
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    /// Calls `on_timer` when the watermark reaches `time` (once per key and time).
    pub fn register_event_time_timer(&self, time: i64) -> Result<(), StateError> {
        self.backend.with("timer", |b| b.register_timer(USER_TIMERS, TimeDomain::EventTime, time, &[]).map(drop))
    }

    /// Calls `on_timer` when the wall clock reaches `time` (once per key and time).
    pub fn register_processing_time_timer(&self, time: i64) -> Result<(), StateError> {
        self.backend
            .with("timer", |b| b.register_timer(USER_TIMERS, TimeDomain::ProcessingTime, time, &[]).map(drop))?;
        self.time.register_wakeup(time);
        Ok(())
    }

    /// Removes an event-time timer of the current key.
    pub fn delete_event_time_timer(&self, time: i64) -> Result<(), StateError> {
        self.backend.with("timer", |b| b.delete_timer(USER_TIMERS, TimeDomain::EventTime, time, &[]))
    }

    /// Removes a processing-time timer of the current key.
    pub fn delete_processing_time_timer(&self, time: i64) -> Result<(), StateError> {
        self.backend.with("timer", |b| b.delete_timer(USER_TIMERS, TimeDomain::ProcessingTime, time, &[]))
    }
}

/// The context of a keyed process function call (Flink's `KeyedProcessFunction.Context`, and
/// `OnTimerContext` when called for a timer).
pub struct KeyedProcessContext<'a, K, O> {
    pub(crate) inner: ProcessContext<'a, O>,
    pub(crate) key: &'a K,
    pub(crate) timers: TimerService<'a>,
    pub(crate) domain: Option<TimeDomain>,
}

impl<K, O> KeyedProcessContext<'_, K, O> {
    /// The record's (or firing event-time timer's) timestamp.
    pub fn timestamp(&self) -> Option<i64> {
        self.inner.timestamp()
    }

    /// The key being processed.
    pub fn get_current_key(&self) -> &K {
        self.key
    }

    /// Timers and clocks.
    pub fn timer_service(&self) -> &TimerService<'_> {
        &self.timers
    }

    /// For `on_timer`: whether an event-time or processing-time timer fired.
    pub fn time_domain(&self) -> Option<TimeDomain> {
        self.domain
    }

    /// Emits to a side output.
    pub fn output<X: Data>(&mut self, tag: &OutputTag<X>, value: X) {
        self.inner.output(tag, value);
    }
}

/// Processes each record of a keyed stream with keyed state and timers (Flink's
/// `KeyedProcessFunction`).
pub trait KeyedProcessFunction<K, I, O>: RichFunction + Clone + Send + 'static {
    /// Processes one record under its key.
    fn process_element(
        &mut self,
        value: I,
        ctx: &mut KeyedProcessContext<'_, K, O>,
        out: &mut Collector<'_, O>,
    ) -> Result<(), BoxError>;

    /// A timer of the current key fired at `timestamp`.
    fn on_timer(
        &mut self,
        _timestamp: i64,
        _ctx: &mut KeyedProcessContext<'_, K, O>,
        _out: &mut Collector<'_, O>,
    ) -> Result<(), BoxError> {
        Ok(())
    }
}
