//! `assign_timestamps_and_watermarks`: timestamps from a timestamp assigner and watermarks from
//! a generator, in the middle of a stream (Flink's `TimestampsAndWatermarksOperator`).

use brisk_core::{StreamRecord, Watermark};
use brisk_runtime::source::emit_updates;
use brisk_runtime::source::watermark::{WatermarkStrategy, WatermarkTracker};
use brisk_runtime::taskexecutor::time::ProcessingTimeService;
use brisk_runtime::{
    ExecutionMode, OneInputStreamOperator, OperatorContext, OperatorOutput, StreamOperator, TaskResult,
};

/// Assigns timestamps and generates watermarks; upstream watermarks are dropped (the strategy
/// replaces them), except the final one that ends bounded input.
pub struct TimestampsAndWatermarksOperator<T> {
    strategy: WatermarkStrategy<T>,
    tracker: Option<WatermarkTracker<T>>,
    periodic: Option<(ProcessingTimeService, i64)>,
}

impl<T> TimestampsAndWatermarksOperator<T> {
    /// An operator applying `strategy`.
    pub fn new(strategy: WatermarkStrategy<T>) -> Self {
        TimestampsAndWatermarksOperator { strategy, tracker: None, periodic: None }
    }
}

impl<T: 'static> StreamOperator for TimestampsAndWatermarksOperator<T> {
    fn open(&mut self, ctx: &mut OperatorContext<'_>) -> TaskResult {
        let mut tracker = WatermarkTracker::new(self.strategy.clone(), ctx.task.clock.clone());
        tracker.add_part("stream");
        self.tracker = Some(tracker);
        if ctx.task.execution_mode == ExecutionMode::Streaming && self.strategy.generates_watermarks() {
            let interval = ctx.task.auto_watermark_interval.as_millis().max(1) as i64;
            let time = ctx.task.processing_time.clone();
            time.register_wakeup(time.current_processing_time() + interval);
            self.periodic = Some((time, interval));
        }
        Ok(())
    }
}

impl<T: 'static> OneInputStreamOperator<T, T> for TimestampsAndWatermarksOperator<T> {
    #[inline]
    fn process_element(&mut self, record: StreamRecord<T>, out: &mut OperatorOutput<T>) -> TaskResult {
        let Some(tracker) = &mut self.tracker else { return out.collect(record) };
        let (timestamp, status, watermark) = tracker.on_event(0, &record.value, record.timestamp);
        out.collect(StreamRecord { value: record.value, timestamp })?;
        emit_updates(out, status.into_iter().chain(watermark))
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut OperatorOutput<T>) -> TaskResult {
        if watermark == Watermark::MAX { out.emit_watermark(watermark) } else { Ok(()) }
    }

    fn on_processing_time(&mut self, now: i64, out: &mut OperatorOutput<T>) -> TaskResult {
        if let (Some(tracker), Some((time, interval))) = (&mut self.tracker, &self.periodic) {
            let updates = tracker.on_periodic_emit();
            emit_updates(out, updates)?;
            time.register_wakeup(now + interval);
        }
        Ok(())
    }
}
