//! Windows: finite slices of a stream that results are computed over.

use brisk_core::Key;
use serde::{Deserialize, Serialize};

/// A window of elements (Flink's `Window`).
pub trait Window: Key + Ord {
    /// The largest timestamp that belongs to the window; results carry it.
    fn max_timestamp(&self) -> i64;
}

/// A time interval `[start, end)` (Flink's `TimeWindow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TimeWindow {
    /// First millisecond of the window.
    pub start: i64,
    /// First millisecond after the window.
    pub end: i64,
}

impl TimeWindow {
    /// The window `[start, end)`.
    pub fn new(start: i64, end: i64) -> Self {
        TimeWindow { start, end }
    }

    /// Whether the windows overlap or touch (session windows merge then).
    pub fn intersects(&self, other: &TimeWindow) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &TimeWindow) -> TimeWindow {
        TimeWindow { start: self.start.min(other.start), end: self.end.max(other.end) }
    }

    /// The start of the window of `size` (aligned to `offset`) that holds `timestamp`; `None`
    /// when the computation would overflow.
    pub fn window_start(timestamp: i64, offset: i64, size: i64) -> Option<i64> {
        let shifted = timestamp.checked_sub(offset)?;
        timestamp.checked_sub(shifted.checked_rem_euclid(size)?)
    }
}

impl Window for TimeWindow {
    fn max_timestamp(&self) -> i64 {
        self.end.saturating_sub(1)
    }
}

/// The one window of all elements (Flink's `GlobalWindow`), closed only by its trigger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GlobalWindow;

impl Window for GlobalWindow {
    fn max_timestamp(&self) -> i64 {
        i64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_starts_align_to_size_and_offset() {
        assert_eq!(TimeWindow::window_start(12_345, 0, 10_000), Some(10_000));
        assert_eq!(TimeWindow::window_start(-1, 0, 10_000), Some(-10_000), "negative timestamps round down");
        assert_eq!(TimeWindow::window_start(12_345, 2_000, 10_000), Some(12_000));
        assert_eq!(TimeWindow::window_start(i64::MIN, 1, 10), None, "overflow is reported, not a panic");
    }

    #[test]
    fn time_windows_merge_when_they_touch() {
        let a = TimeWindow::new(0, 10);
        assert!(a.intersects(&TimeWindow::new(10, 20)));
        assert!(!a.intersects(&TimeWindow::new(11, 20)));
        assert_eq!(a.cover(&TimeWindow::new(5, 30)), TimeWindow::new(0, 30));
        assert_eq!(a.max_timestamp(), 9);
    }
}
