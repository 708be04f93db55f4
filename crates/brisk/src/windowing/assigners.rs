//! Window assigners: which windows an element belongs to (Flink's `WindowAssigner`s).

use super::triggers::{EventTimeTrigger, NeverTrigger, ProcessingTimeTrigger, Trigger};
use super::window::{GlobalWindow, TimeWindow, Window};
use std::sync::Arc;
use std::time::Duration;

/// Windows to merge, and the window they become.
pub type MergeGroup<W> = (Vec<W>, W);

/// Puts elements into windows.
pub trait WindowAssigner<T>: Clone + Send + Sync + 'static {
    /// The window type.
    type W: Window;
    /// Appends the windows of an element with `timestamp` (event or processing time) to
    /// `windows`; an error says why they cannot be computed (e.g. the timestamp overflows).
    fn assign_windows_into(&self, element: &T, timestamp: i64, windows: &mut Vec<Self::W>) -> Result<(), String>;
    /// The windows of an element, as a new vector.
    fn assign_windows(&self, element: &T, timestamp: i64) -> Result<Vec<Self::W>, String> {
        let mut windows = Vec::new();
        self.assign_windows_into(element, timestamp, &mut windows)?;
        Ok(windows)
    }
    /// The trigger used unless another is set.
    fn default_trigger(&self) -> Box<dyn Trigger<T, Self::W>>;
    /// Whether windows follow event time (else processing time).
    fn is_event_time(&self) -> bool;
    /// For merging assigners (sessions): groups of windows to merge, each with its result.
    fn merge_windows(&self, _windows: &[Self::W]) -> Option<Vec<MergeGroup<Self::W>>> {
        None
    }
    /// Whether windows merge.
    fn is_merging(&self) -> bool {
        false
    }
    /// Checks the parameters; the message explains what is wrong.
    fn validate(&self) -> Result<(), String>;
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Checks that a window length is positive and fits in 64-bit milliseconds (`millis`
/// saturates, so `i64::MAX` means it did not).
fn check_length(what: &str, ms: i64) -> Result<(), String> {
    match ms {
        ..=0 => Err(format!("{what} must be positive, not {ms} ms")),
        i64::MAX => Err(format!("{what} does not fit in 64-bit milliseconds")),
        _ => Ok(()),
    }
}

/// Fixed-size, non-overlapping windows.
#[derive(Clone, Copy, Debug)]
pub struct TumblingWindows {
    size: i64,
    offset: i64,
    event_time: bool,
}

/// Tumbling event-time windows (Flink's `TumblingEventTimeWindows`).
pub struct TumblingEventTimeWindows;
/// Tumbling processing-time windows (Flink's `TumblingProcessingTimeWindows`).
pub struct TumblingProcessingTimeWindows;

impl TumblingEventTimeWindows {
    /// Windows of `size`.
    pub fn of(size: Duration) -> TumblingWindows {
        TumblingWindows { size: millis(size), offset: 0, event_time: true }
    }
}

impl TumblingProcessingTimeWindows {
    /// Windows of `size`.
    pub fn of(size: Duration) -> TumblingWindows {
        TumblingWindows { size: millis(size), offset: 0, event_time: false }
    }
}

impl TumblingWindows {
    /// Shifts window starts by `offset` (e.g. for time zones); negative shifts are allowed.
    pub fn with_offset(mut self, offset_millis: i64) -> Self {
        self.offset = offset_millis;
        self
    }
}

impl<T: 'static> WindowAssigner<T> for TumblingWindows {
    type W = TimeWindow;

    #[inline]
    fn assign_windows_into(&self, _: &T, timestamp: i64, windows: &mut Vec<TimeWindow>) -> Result<(), String> {
        let start = TimeWindow::window_start(timestamp, self.offset, self.size).ok_or_else(|| overflow(timestamp))?;
        let end = start.checked_add(self.size).ok_or_else(|| overflow(timestamp))?;
        windows.push(TimeWindow::new(start, end));
        Ok(())
    }

    fn default_trigger(&self) -> Box<dyn Trigger<T, TimeWindow>> {
        if self.event_time { Box::new(EventTimeTrigger) } else { Box::new(ProcessingTimeTrigger) }
    }

    fn is_event_time(&self) -> bool {
        self.event_time
    }

    fn validate(&self) -> Result<(), String> {
        check_length("the tumbling window size", self.size)?;
        if self.offset.abs() >= self.size {
            return Err(format!(
                "tumbling window offset {} ms must be smaller than the size {} ms",
                self.offset, self.size
            ));
        }
        Ok(())
    }
}

fn overflow(timestamp: i64) -> String {
    format!("the windows of timestamp {timestamp} do not fit in 64-bit milliseconds")
}

/// Fixed-size windows that start every `slide` and may overlap.
#[derive(Clone, Copy, Debug)]
pub struct SlidingWindows {
    size: i64,
    slide: i64,
    offset: i64,
    event_time: bool,
}

/// Sliding event-time windows (Flink's `SlidingEventTimeWindows`).
pub struct SlidingEventTimeWindows;
/// Sliding processing-time windows (Flink's `SlidingProcessingTimeWindows`).
pub struct SlidingProcessingTimeWindows;

impl SlidingEventTimeWindows {
    /// Windows of `size` every `slide`.
    pub fn of(size: Duration, slide: Duration) -> SlidingWindows {
        SlidingWindows { size: millis(size), slide: millis(slide), offset: 0, event_time: true }
    }
}

impl SlidingProcessingTimeWindows {
    /// Windows of `size` every `slide`.
    pub fn of(size: Duration, slide: Duration) -> SlidingWindows {
        SlidingWindows { size: millis(size), slide: millis(slide), offset: 0, event_time: false }
    }
}

impl SlidingWindows {
    /// Shifts window starts by `offset`.
    pub fn with_offset(mut self, offset_millis: i64) -> Self {
        self.offset = offset_millis;
        self
    }
}

impl<T: 'static> WindowAssigner<T> for SlidingWindows {
    type W = TimeWindow;

    fn assign_windows_into(&self, _: &T, timestamp: i64, windows: &mut Vec<TimeWindow>) -> Result<(), String> {
        let mut start =
            TimeWindow::window_start(timestamp, self.offset, self.slide).ok_or_else(|| overflow(timestamp))?;
        let earliest = timestamp.checked_sub(self.size).ok_or_else(|| overflow(timestamp))?;
        while start > earliest {
            windows.push(TimeWindow::new(start, start.checked_add(self.size).ok_or_else(|| overflow(timestamp))?));
            start = match start.checked_sub(self.slide) {
                Some(s) => s,
                None => break,
            };
        }
        Ok(())
    }

    fn default_trigger(&self) -> Box<dyn Trigger<T, TimeWindow>> {
        if self.event_time { Box::new(EventTimeTrigger) } else { Box::new(ProcessingTimeTrigger) }
    }

    fn is_event_time(&self) -> bool {
        self.event_time
    }

    fn validate(&self) -> Result<(), String> {
        check_length("the sliding window size", self.size)?;
        check_length("the sliding window slide", self.slide)?;
        if self.offset.abs() >= self.slide {
            return Err(format!(
                "sliding window offset {} ms must be smaller than the slide {} ms",
                self.offset, self.slide
            ));
        }
        Ok(())
    }
}

/// The gap that closes a session.
pub enum SessionGap<T> {
    /// The same gap for every element.
    Static(i64),
    /// A gap computed per element.
    Dynamic(Arc<dyn Fn(&T) -> Duration + Send + Sync>),
}

impl<T> Clone for SessionGap<T> {
    fn clone(&self) -> Self {
        match self {
            SessionGap::Static(g) => SessionGap::Static(*g),
            SessionGap::Dynamic(f) => SessionGap::Dynamic(f.clone()),
        }
    }
}

/// Windows that close after a gap of inactivity; they merge as elements arrive.
pub struct SessionWindows<T> {
    gap: SessionGap<T>,
    event_time: bool,
}

impl<T> Clone for SessionWindows<T> {
    fn clone(&self) -> Self {
        SessionWindows { gap: self.gap.clone(), event_time: self.event_time }
    }
}

/// Event-time session windows (Flink's `EventTimeSessionWindows`).
pub struct EventTimeSessionWindows;
/// Processing-time session windows (Flink's `ProcessingTimeSessionWindows`).
pub struct ProcessingTimeSessionWindows;

impl EventTimeSessionWindows {
    /// Sessions closing after `gap` without events.
    pub fn with_gap<T>(gap: Duration) -> SessionWindows<T> {
        SessionWindows { gap: SessionGap::Static(millis(gap)), event_time: true }
    }

    /// Sessions whose gap each element decides.
    pub fn with_dynamic_gap<T>(gap: impl Fn(&T) -> Duration + Send + Sync + 'static) -> SessionWindows<T> {
        SessionWindows { gap: SessionGap::Dynamic(Arc::new(gap)), event_time: true }
    }
}

impl ProcessingTimeSessionWindows {
    /// Sessions closing after `gap` without events.
    pub fn with_gap<T>(gap: Duration) -> SessionWindows<T> {
        SessionWindows { gap: SessionGap::Static(millis(gap)), event_time: false }
    }

    /// Sessions whose gap each element decides.
    pub fn with_dynamic_gap<T>(gap: impl Fn(&T) -> Duration + Send + Sync + 'static) -> SessionWindows<T> {
        SessionWindows { gap: SessionGap::Dynamic(Arc::new(gap)), event_time: false }
    }
}

impl<T: 'static> WindowAssigner<T> for SessionWindows<T> {
    type W = TimeWindow;

    fn assign_windows_into(&self, element: &T, timestamp: i64, windows: &mut Vec<TimeWindow>) -> Result<(), String> {
        let gap = match &self.gap {
            SessionGap::Static(g) => *g,
            SessionGap::Dynamic(f) => millis(f(element)),
        };
        check_length("the session gap", gap)?;
        windows.push(TimeWindow::new(timestamp, timestamp.checked_add(gap).ok_or_else(|| overflow(timestamp))?));
        Ok(())
    }

    fn default_trigger(&self) -> Box<dyn Trigger<T, TimeWindow>> {
        if self.event_time { Box::new(EventTimeTrigger) } else { Box::new(ProcessingTimeTrigger) }
    }

    fn is_event_time(&self) -> bool {
        self.event_time
    }

    fn is_merging(&self) -> bool {
        true
    }

    fn merge_windows(&self, windows: &[TimeWindow]) -> Option<Vec<MergeGroup<TimeWindow>>> {
        let mut sorted = windows.to_vec();
        sorted.sort();
        let mut groups: Vec<(Vec<TimeWindow>, TimeWindow)> = Vec::new();
        for w in sorted {
            match groups.last_mut() {
                Some((members, cover)) if cover.intersects(&w) => {
                    *cover = cover.cover(&w);
                    members.push(w);
                }
                _ => groups.push((vec![w], w)),
            }
        }
        Some(groups.into_iter().filter(|(members, _)| members.len() > 1).collect())
    }

    fn validate(&self) -> Result<(), String> {
        match self.gap {
            SessionGap::Static(g) => check_length("the session gap", g),
            SessionGap::Dynamic(_) => Ok(()),
        }
    }
}

/// One window for everything (Flink's `GlobalWindows`); needs a trigger to emit anything.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalWindows;

impl GlobalWindows {
    /// The global window assigner.
    pub fn create() -> Self {
        GlobalWindows
    }
}

impl<T: 'static> WindowAssigner<T> for GlobalWindows {
    type W = GlobalWindow;

    fn assign_windows_into(&self, _: &T, _: i64, windows: &mut Vec<GlobalWindow>) -> Result<(), String> {
        windows.push(GlobalWindow);
        Ok(())
    }

    fn default_trigger(&self) -> Box<dyn Trigger<T, GlobalWindow>> {
        Box::new(NeverTrigger)
    }

    fn is_event_time(&self) -> bool {
        false
    }

    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_windows_cover_the_timestamp() {
        let a = SlidingEventTimeWindows::of(Duration::from_secs(10), Duration::from_secs(5));
        let mut w = WindowAssigner::<()>::assign_windows(&a, &(), 12_000).unwrap();
        w.sort();
        assert_eq!(w, vec![TimeWindow::new(5_000, 15_000), TimeWindow::new(10_000, 20_000)]);
        let gaps = SlidingEventTimeWindows::of(Duration::from_secs(2), Duration::from_secs(5));
        assert!(WindowAssigner::<()>::assign_windows(&gaps, &(), 3_000).unwrap().is_empty(), "between windows");
    }

    #[test]
    fn invalid_parameters_are_explained() {
        assert!(
            WindowAssigner::<()>::validate(&TumblingEventTimeWindows::of(Duration::ZERO))
                .unwrap_err()
                .contains("positive")
        );
        assert!(
            WindowAssigner::<()>::validate(&SlidingEventTimeWindows::of(Duration::from_secs(1), Duration::ZERO))
                .is_err()
        );
        assert!(WindowAssigner::<()>::validate(&EventTimeSessionWindows::with_gap::<()>(Duration::ZERO)).is_err());
        let huge = TumblingEventTimeWindows::of(Duration::from_secs(u64::MAX));
        assert!(WindowAssigner::<()>::validate(&huge).unwrap_err().contains("does not fit"));
        let big = TumblingEventTimeWindows::of(Duration::from_secs(10));
        assert!(WindowAssigner::<()>::assign_windows(&big, &(), i64::MAX - 5).unwrap_err().contains("64-bit"));
    }

    #[test]
    fn sessions_merge_touching_windows() {
        let s = EventTimeSessionWindows::with_gap::<()>(Duration::from_millis(10));
        let merged =
            s.merge_windows(&[TimeWindow::new(0, 10), TimeWindow::new(25, 35), TimeWindow::new(8, 18)]).unwrap();
        assert_eq!(merged, vec![(vec![TimeWindow::new(0, 10), TimeWindow::new(8, 18)], TimeWindow::new(0, 18))]);
    }
}
