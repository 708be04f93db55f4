//! Runs a `KeyedProcessFunction`: sets the key per record, fires timers on watermarks and on
//! processing time.

use super::{FunctionStores, close_function, state_error};
use crate::functions::{Emitter, KeyedProcessContext, KeyedProcessFunction, TimerService, USER_TIMERS};
use crate::key_selector::KeySelector;
use brisk_core::{Key, NO_TIMESTAMP, StreamRecord, Watermark};
use brisk_runtime::taskexecutor::output::StateQuery;
use brisk_runtime::taskexecutor::time::ProcessingTimeService;
use brisk_runtime::{
    ExecutionMode, OneInputStreamOperator, OperatorContext, OperatorOutput, StreamOperator, TaskError, TaskResult,
};
use brisk_state::{TimeDomain, codec};
use std::marker::PhantomData;

/// The operator of `KeyedStream::process`.
pub struct KeyedProcessOperator<F, K, I, O> {
    f: F,
    selector: KeySelector<I, K>,
    stores: Option<FunctionStores>,
    time: Option<ProcessingTimeService>,
    watermark: i64,
    batch: bool,
    _types: PhantomData<fn(I) -> O>,
}

impl<F, K, I, O> KeyedProcessOperator<F, K, I, O> {
    /// Runs `f` per key of `selector`.
    pub fn new(f: F, selector: KeySelector<I, K>) -> Self {
        KeyedProcessOperator {
            f,
            selector,
            stores: None,
            time: None,
            watermark: i64::MIN,
            batch: false,
            _types: PhantomData,
        }
    }
}

impl<F: KeyedProcessFunction<K, I, O>, K: Key, I, O> KeyedProcessOperator<F, K, I, O> {
    /// Fires the due timers of `domain` at `time`, each under its key.
    fn fire_timers(&mut self, domain: TimeDomain, time: i64, out: &mut OperatorOutput<O>) -> TaskResult {
        let (Some(stores), Some(clock)) = (&self.stores, &self.time) else { return Ok(()) };
        let Some(backend) = &stores.keyed else { return Ok(()) };
        loop {
            let timer = backend
                .with("timer", |b| {
                    let timer = b.pop_due_timer(USER_TIMERS, domain, time);
                    if let Some(t) = &timer {
                        b.set_current_key_encoded(t.key_group, &t.key);
                    }
                    Ok(timer)
                })
                .map_err(state_error)?;
            let Some(timer) = timer else { break };
            let key: K =
                codec::decode(&timer.key).map_err(|e| TaskError::msg(format!("timer key does not decode: {e}")))?;
            let timestamp = if domain == TimeDomain::EventTime { timer.timestamp } else { NO_TIMESTAMP };
            let emitter = Emitter::new(out, timestamp);
            let timers = TimerService { backend, time: clock, watermark: self.watermark };
            let mut ctx = KeyedProcessContext { inner: emitter.context(), key: &key, timers, domain: Some(domain) };
            let result = self.f.on_timer(timer.timestamp, &mut ctx, &mut emitter.collector());
            emitter.finish(result)?;
        }
        if domain == TimeDomain::ProcessingTime
            && let Some(next) = backend.with("timer", |b| Ok(b.next_timer(USER_TIMERS, domain))).map_err(state_error)?
        {
            clock.register_wakeup(next);
        }
        Ok(())
    }
}

impl<F: KeyedProcessFunction<K, I, O>, K: Key, I, O> StreamOperator for KeyedProcessOperator<F, K, I, O> {
    fn open(&mut self, ctx: &mut OperatorContext<'_>) -> TaskResult {
        self.batch = ctx.task.execution_mode == ExecutionMode::Batch;
        self.time = Some(ctx.task.processing_time.clone());
        let stores = FunctionStores::open(&mut self.f, ctx, true)?;
        // Restored processing-time timers need a wakeup.
        if let Some(backend) = &stores.keyed
            && let Some(next) = backend
                .with("timer", |b| Ok(b.next_timer(USER_TIMERS, TimeDomain::ProcessingTime)))
                .map_err(state_error)?
        {
            ctx.task.processing_time.register_wakeup(next);
        }
        self.stores = Some(stores);
        Ok(())
    }

    fn close(&mut self) -> TaskResult {
        close_function(&mut self.f)
    }

    fn query_state(&mut self, query: &StateQuery) -> Option<Result<Option<Vec<u8>>, String>> {
        self.stores.as_ref()?.query(query)
    }

    super::checkpoint_hooks!(stores, f);
}

impl<F: KeyedProcessFunction<K, I, O>, K: Key, I, O> OneInputStreamOperator<I, O> for KeyedProcessOperator<F, K, I, O> {
    fn process_element(&mut self, record: StreamRecord<I>, out: &mut OperatorOutput<O>) -> TaskResult {
        let (Some(stores), Some(clock)) = (&self.stores, &self.time) else { return Ok(()) };
        let Some(backend) = &stores.keyed else { return Ok(()) };
        let key = self.selector.get_key(&record.value);
        backend.with("current key", |b| b.set_current_key(&key)).map_err(state_error)?;
        let emitter = Emitter::new(out, record.timestamp);
        let timers = TimerService { backend, time: clock, watermark: self.watermark };
        let mut ctx = KeyedProcessContext { inner: emitter.context(), key: &key, timers, domain: None };
        let result = self.f.process_element(record.value, &mut ctx, &mut emitter.collector());
        emitter.finish(result)
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut OperatorOutput<O>) -> TaskResult {
        self.watermark = watermark.0;
        self.fire_timers(TimeDomain::EventTime, watermark.0, out)?;
        out.emit_watermark(watermark)
    }

    fn on_processing_time(&mut self, now: i64, out: &mut OperatorOutput<O>) -> TaskResult {
        self.fire_timers(TimeDomain::ProcessingTime, now, out)
    }

    fn finish(&mut self, out: &mut OperatorOutput<O>) -> TaskResult {
        // Batch execution has no running clock: processing-time timers fire at the end.
        if self.batch { self.fire_timers(TimeDomain::ProcessingTime, i64::MAX, out) } else { Ok(()) }
    }
}
