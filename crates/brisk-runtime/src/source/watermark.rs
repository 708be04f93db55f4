//! Event time: where timestamps come from and how watermarks are generated (Flink's
//! `WatermarkStrategy`, `WatermarkGenerator`, `TimestampAssigner`).

use brisk_core::{Clock, Watermark, WatermarkStatus};
use std::sync::Arc;
use std::time::Duration;

/// Collects what a generator emits: the highest watermark and idleness changes.
#[derive(Debug, Default)]
pub struct WatermarkOutput {
    watermark: Option<i64>,
    idle: Option<bool>,
}

impl WatermarkOutput {
    /// Emits a watermark (lower ones than before are ignored downstream).
    pub fn emit_watermark(&mut self, watermark: Watermark) {
        self.watermark = Some(self.watermark.map_or(watermark.0, |w| w.max(watermark.0)));
    }

    /// The input is idle: it does not hold back downstream watermarks.
    pub fn mark_idle(&mut self) {
        self.idle = Some(true);
    }

    /// The input is active again.
    pub fn mark_active(&mut self) {
        self.idle = Some(false);
    }

    /// Takes what was emitted since the last call.
    pub fn take(&mut self) -> (Option<i64>, Option<bool>) {
        (self.watermark.take(), self.idle.take())
    }
}

/// Generates watermarks from events and periodically (Flink's `WatermarkGenerator`).
pub trait WatermarkGenerator<T>: Send {
    /// Sees every event with its timestamp; may emit a watermark (punctuated watermarks).
    fn on_event(&mut self, event: &T, timestamp: i64, output: &mut WatermarkOutput);
    /// Called every auto-watermark interval; periodic generators emit here.
    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput);
}

/// Watermarks that trail the highest timestamp by a fixed bound: events may arrive out of
/// order by at most that much (Flink's `BoundedOutOfOrdernessWatermarks`).
#[derive(Clone, Debug)]
pub struct BoundedOutOfOrderness {
    max_timestamp: i64,
    bound: i64,
}

impl BoundedOutOfOrderness {
    /// A generator allowing `bound` of disorder.
    pub fn new(bound: Duration) -> Self {
        let bound = i64::try_from(bound.as_millis()).unwrap_or(i64::MAX / 2);
        BoundedOutOfOrderness { max_timestamp: i64::MIN.saturating_add(bound).saturating_add(1), bound }
    }
}

impl<T> WatermarkGenerator<T> for BoundedOutOfOrderness {
    fn on_event(&mut self, _: &T, timestamp: i64, _: &mut WatermarkOutput) {
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput) {
        output.emit_watermark(Watermark(self.max_timestamp.saturating_sub(self.bound).saturating_sub(1)));
    }
}

/// Emits no watermarks (processing-time jobs, or event time driven by the end of input).
#[derive(Clone, Debug, Default)]
pub struct NoWatermarksGenerator;

impl<T> WatermarkGenerator<T> for NoWatermarksGenerator {
    fn on_event(&mut self, _: &T, _: i64, _: &mut WatermarkOutput) {}
    fn on_periodic_emit(&mut self, _: &mut WatermarkOutput) {}
}

/// Marks the input idle when no event arrived for a while (Flink's `WatermarksWithIdleness`).
pub struct WithIdleness<T> {
    inner: Box<dyn WatermarkGenerator<T>>,
    timeout: i64,
    clock: Arc<dyn Clock>,
    last_activity: i64,
    idle: bool,
}

impl<T> WatermarkGenerator<T> for WithIdleness<T> {
    fn on_event(&mut self, event: &T, timestamp: i64, output: &mut WatermarkOutput) {
        self.last_activity = self.clock.now_millis();
        if self.idle {
            self.idle = false;
            output.mark_active();
        }
        self.inner.on_event(event, timestamp, output);
    }

    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput) {
        if self.clock.now_millis().saturating_sub(self.last_activity) > self.timeout {
            if !self.idle {
                self.idle = true;
                output.mark_idle();
            }
        } else {
            self.inner.on_periodic_emit(output);
        }
    }
}

/// Extracts an event's timestamp; gets the timestamp the record already has (or
/// [`NO_TIMESTAMP`]).
pub type TimestampAssigner<T> = Arc<dyn Fn(&T, i64) -> i64 + Send + Sync>;

type GeneratorFactory<T> = Arc<dyn Fn() -> Box<dyn WatermarkGenerator<T>> + Send + Sync>;

/// How a stream gets event timestamps and watermarks (Flink's `WatermarkStrategy`).
pub struct WatermarkStrategy<T> {
    generator: Option<GeneratorFactory<T>>,
    assigner: Option<TimestampAssigner<T>>,
    idleness: Option<Duration>,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        WatermarkStrategy {
            generator: self.generator.clone(),
            assigner: self.assigner.clone(),
            idleness: self.idleness,
        }
    }
}

impl<T: 'static> WatermarkStrategy<T> {
    /// Watermarks trailing the highest timestamp seen by `bound`.
    pub fn for_bounded_out_of_orderness(bound: Duration) -> Self {
        Self::for_generator(move || BoundedOutOfOrderness::new(bound))
    }

    /// Timestamps only ever increase: the watermark is the highest timestamp seen, minus one.
    pub fn for_monotonous_timestamps() -> Self {
        Self::for_bounded_out_of_orderness(Duration::ZERO)
    }

    /// No watermarks: event-time windows fire only at the end of bounded input.
    pub fn no_watermarks() -> Self {
        WatermarkStrategy { generator: None, assigner: None, idleness: None }
    }

    /// A custom generator, created once per subtask (and per source split).
    pub fn for_generator<G: WatermarkGenerator<T> + 'static>(make: impl Fn() -> G + Send + Sync + 'static) -> Self {
        WatermarkStrategy { generator: Some(Arc::new(move || Box::new(make()))), assigner: None, idleness: None }
    }

    /// Takes event timestamps from `assigner(event, existing_timestamp)`.
    pub fn with_timestamp_assigner(mut self, assigner: impl Fn(&T, i64) -> i64 + Send + Sync + 'static) -> Self {
        self.assigner = Some(Arc::new(assigner));
        self
    }

    /// Marks the input idle after `timeout` without events, so it does not stall downstream
    /// watermarks.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idleness = Some(timeout);
        self
    }

    /// Whether this strategy generates watermarks at all.
    pub fn generates_watermarks(&self) -> bool {
        self.generator.is_some()
    }

    /// The timestamp of `event`, which had `existing` ([`NO_TIMESTAMP`] if none).
    #[inline]
    pub fn timestamp(&self, event: &T, existing: i64) -> i64 {
        match &self.assigner {
            Some(assign) => assign(event, existing),
            None => existing,
        }
    }

    /// Whether the strategy assigns timestamps.
    pub fn assigns_timestamps(&self) -> bool {
        self.assigner.is_some()
    }

    /// A new generator (with idleness detection if configured).
    pub fn create_generator(&self, clock: Arc<dyn Clock>) -> Box<dyn WatermarkGenerator<T>> {
        let inner: Box<dyn WatermarkGenerator<T>> = match &self.generator {
            Some(make) => make(),
            None => Box::new(NoWatermarksGenerator),
        };
        match self.idleness {
            Some(timeout) => {
                let last_activity = clock.now_millis();
                Box::new(WithIdleness { inner, timeout: timeout.as_millis() as i64, clock, last_activity, idle: false })
            }
            None => inner,
        }
    }
}

/// Flink's default interval between periodic watermarks.
pub const DEFAULT_AUTO_WATERMARK_INTERVAL: Duration = Duration::from_millis(200);

/// A change of an input's combined watermark or status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatermarkUpdate {
    /// The watermark advanced.
    Watermark(Watermark),
    /// The input became idle or active.
    Status(WatermarkStatus),
}

struct Tracked<T> {
    id: String,
    generator: Box<dyn WatermarkGenerator<T>>,
    watermark: i64,
    idle: bool,
}

/// Runs one generator per input part (a source split, or the whole stream) and combines their
/// watermarks: the minimum over active parts, emitted only when it advances; when every part
/// is idle, the input is idle. Per-split watermarks let a source read splits of different
/// speeds without making the faster one's records look late.
pub struct WatermarkTracker<T> {
    strategy: WatermarkStrategy<T>,
    clock: Arc<dyn Clock>,
    parts: Vec<Tracked<T>>,
    emitted: i64,
    idle: bool,
    scratch: WatermarkOutput,
}

impl<T: 'static> WatermarkTracker<T> {
    /// A tracker without parts yet.
    pub fn new(strategy: WatermarkStrategy<T>, clock: Arc<dyn Clock>) -> Self {
        WatermarkTracker {
            strategy,
            clock,
            parts: Vec::new(),
            emitted: i64::MIN,
            idle: false,
            scratch: WatermarkOutput::default(),
        }
    }

    /// The strategy (for timestamps).
    pub fn strategy(&self) -> &WatermarkStrategy<T> {
        &self.strategy
    }

    /// Starts tracking a part (a split was assigned).
    pub fn add_part(&mut self, id: &str) {
        if !self.parts.iter().any(|p| p.id == id) {
            let generator = self.strategy.create_generator(self.clock.clone());
            self.parts.push(Tracked { id: id.to_string(), generator, watermark: i64::MIN, idle: false });
        }
    }

    /// Stops tracking a part (its split is finished); it no longer holds others back.
    pub fn remove_part(&mut self, id: &str) -> Option<WatermarkUpdate> {
        self.parts.retain(|p| p.id != id);
        self.combine().0
    }

    /// An event of the part at `id_index`: returns its timestamp, then any status change and
    /// watermark advance it caused (punctuated watermarks).
    #[inline]
    pub fn on_event(
        &mut self,
        id_index: usize,
        event: &T,
        existing: i64,
    ) -> (i64, Option<WatermarkUpdate>, Option<WatermarkUpdate>) {
        let timestamp = self.strategy.timestamp(event, existing);
        let Some(part) = self.parts.get_mut(id_index) else { return (timestamp, None, None) };
        part.generator.on_event(event, timestamp, &mut self.scratch);
        if Self::absorb(part, &mut self.scratch) {
            let (status, watermark) = self.combine();
            (timestamp, status, watermark)
        } else {
            (timestamp, None, None)
        }
    }

    /// Index of part `id`, for [`Self::on_event`].
    pub fn part_index(&self, id: &str) -> Option<usize> {
        self.parts.iter().position(|p| p.id == id)
    }

    /// The periodic emission: asks every generator and returns the updates.
    pub fn on_periodic_emit(&mut self) -> Vec<WatermarkUpdate> {
        let mut changed = false;
        for part in &mut self.parts {
            part.generator.on_periodic_emit(&mut self.scratch);
            changed |= Self::absorb(part, &mut self.scratch);
        }
        if !changed {
            return Vec::new();
        }
        let (a, b) = self.combine();
        a.into_iter().chain(b).collect()
    }

    fn absorb(part: &mut Tracked<T>, out: &mut WatermarkOutput) -> bool {
        let (watermark, idle) = out.take();
        let mut changed = false;
        if let Some(w) = watermark
            && w > part.watermark
        {
            part.watermark = w;
            changed = true;
        }
        if let Some(idle) = idle
            && idle != part.idle
        {
            part.idle = idle;
            changed = true;
        }
        changed
    }

    /// The combined status change (first) and watermark advance, if any.
    fn combine(&mut self) -> (Option<WatermarkUpdate>, Option<WatermarkUpdate>) {
        let all_idle = !self.parts.is_empty() && self.parts.iter().all(|p| p.idle);
        let status = (all_idle != self.idle).then(|| {
            self.idle = all_idle;
            WatermarkUpdate::Status(if all_idle { WatermarkStatus::Idle } else { WatermarkStatus::Active })
        });
        let min = self.parts.iter().filter(|p| !p.idle).map(|p| p.watermark).min();
        let watermark = match min {
            Some(m) if m > self.emitted => {
                self.emitted = m;
                Some(WatermarkUpdate::Watermark(Watermark(m)))
            }
            _ => None,
        };
        (status, watermark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brisk_core::ManualClock;

    #[test]
    fn bounded_out_of_orderness_trails_the_maximum() {
        let mut g = BoundedOutOfOrderness::new(Duration::from_millis(100));
        let mut out = WatermarkOutput::default();
        WatermarkGenerator::<()>::on_periodic_emit(&mut g, &mut out);
        assert!(out.take().0.unwrap() < -1_000_000_000, "nothing seen yet: a very low watermark");
        for ts in [1000, 1500, 1200] {
            g.on_event(&(), ts, &mut out);
        }
        WatermarkGenerator::<()>::on_periodic_emit(&mut g, &mut out);
        assert_eq!(out.take(), (Some(1399), None));
    }

    #[test]
    fn idleness_marks_and_clears() {
        let clock = ManualClock::new(0);
        let strategy = WatermarkStrategy::<u32>::for_monotonous_timestamps().with_idleness(Duration::from_millis(50));
        let mut g = strategy.create_generator(clock.clone());
        let mut out = WatermarkOutput::default();
        g.on_event(&1, 10, &mut out);
        g.on_periodic_emit(&mut out);
        assert_eq!(out.take(), (Some(9), None));
        clock.advance(60);
        g.on_periodic_emit(&mut out);
        assert_eq!(out.take(), (None, Some(true)));
        g.on_event(&1, 20, &mut out);
        assert_eq!(out.take(), (None, Some(false)));
    }
}
