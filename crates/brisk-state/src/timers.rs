//! Timers of keyed operators (Flink's `InternalTimerService`): per key and namespace, in event
//! or processing time, deduplicated, fired in time order, and snapshotted with the keyed state
//! of their key group. They are kept in memory for both backends (Flink's `HEAP` timer option).

use std::collections::BTreeSet;

/// The clock a timer follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeDomain {
    /// Fires when the watermark passes it.
    EventTime,
    /// Fires when the wall clock passes it.
    ProcessingTime,
}

/// One timer: when, for which (encoded) key and namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer {
    /// When it fires (epoch milliseconds).
    pub timestamp: i64,
    /// The key's key group.
    pub key_group: usize,
    /// The encoded key.
    pub key: Vec<u8>,
    /// The encoded namespace (empty for user timers, the window for window timers).
    pub namespace: Vec<u8>,
}

/// Timers of one service in one time domain, ordered by time.
#[derive(Clone, Debug, Default)]
pub struct TimerQueue {
    timers: BTreeSet<Timer>,
}

impl TimerQueue {
    /// Adds a timer; false if it was already registered.
    pub fn register(&mut self, timer: Timer) -> bool {
        self.timers.insert(timer)
    }

    /// Removes a timer.
    pub fn delete(&mut self, timer: &Timer) -> bool {
        self.timers.remove(timer)
    }

    /// The earliest timer's time.
    pub fn next_time(&self) -> Option<i64> {
        self.timers.first().map(|t| t.timestamp)
    }

    /// Removes and returns the earliest timer if it is due at `time`.
    pub fn pop_due(&mut self, time: i64) -> Option<Timer> {
        if self.timers.first().is_some_and(|t| t.timestamp <= time) { self.timers.pop_first() } else { None }
    }

    /// All timers, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Timer> {
        self.timers.iter()
    }

    /// Number of timers.
    pub fn len(&self) -> usize {
        self.timers.len()
    }

    /// Whether there are no timers.
    pub fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(ts: i64, key: u8) -> Timer {
        Timer { timestamp: ts, key_group: 0, key: vec![key], namespace: vec![] }
    }

    #[test]
    fn timers_fire_in_time_order_once() {
        let mut q = TimerQueue::default();
        assert!(q.register(timer(20, 1)));
        assert!(q.register(timer(10, 2)));
        assert!(!q.register(timer(10, 2)), "deduplicated");
        assert!(q.register(timer(10, 3)));
        assert_eq!(q.next_time(), Some(10));
        assert!(q.delete(&timer(10, 3)));
        assert_eq!(q.pop_due(9), None);
        assert_eq!(q.pop_due(15), Some(timer(10, 2)));
        assert_eq!(q.pop_due(15), None);
        assert_eq!(q.pop_due(20), Some(timer(20, 1)));
        assert!(q.is_empty());
    }
}
