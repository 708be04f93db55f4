//! Timers of keyed operators (Flink's `InternalTimerService`): per key and namespace, in event
//! or processing time, deduplicated, fired in time order, and snapshotted with the keyed state
//! of their key group. They are kept in memory for both backends (Flink's `HEAP` timer option).

use std::collections::BTreeMap;

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

/// Who a timer is for: key group, encoded key and namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct TimerTarget {
    key_group: usize,
    key: Box<[u8]>,
    namespace: Box<[u8]>,
}

/// A borrowed [`TimerTarget`], for lookups that allocate nothing.
#[derive(Hash)]
struct TargetRef<'a> {
    key_group: usize,
    key: &'a [u8],
    namespace: &'a [u8],
}

impl hashbrown::Equivalent<TimerTarget> for TargetRef<'_> {
    fn equivalent(&self, t: &TimerTarget) -> bool {
        self.key_group == t.key_group && self.key == &*t.key && self.namespace == &*t.namespace
    }
}

type TargetSet = hashbrown::HashSet<TimerTarget, std::hash::BuildHasherDefault<brisk_core::hash::StableHasher>>;

/// Timers of one service in one time domain, ordered by time. Registering a timer that
/// exists allocates nothing: operators re-register timers for every element (as Flink's
/// event-time trigger does).
#[derive(Clone, Debug, Default)]
pub struct TimerQueue {
    by_time: BTreeMap<i64, TargetSet>,
    len: usize,
}

impl TimerQueue {
    /// Adds a timer; false if it was already registered.
    pub fn register(&mut self, timestamp: i64, key_group: usize, key: &[u8], namespace: &[u8]) -> bool {
        let targets = self.by_time.entry(timestamp).or_default();
        if targets.contains(&TargetRef { key_group, key, namespace }) {
            return false;
        }
        targets.insert(TimerTarget { key_group, key: key.into(), namespace: namespace.into() });
        self.len += 1;
        true
    }

    /// Removes a timer; false if there was none.
    pub fn delete(&mut self, timestamp: i64, key_group: usize, key: &[u8], namespace: &[u8]) -> bool {
        let Some(targets) = self.by_time.get_mut(&timestamp) else { return false };
        if !targets.remove(&TargetRef { key_group, key, namespace }) {
            return false;
        }
        if targets.is_empty() {
            self.by_time.remove(&timestamp);
        }
        self.len -= 1;
        true
    }

    /// The earliest timer's time.
    pub fn next_time(&self) -> Option<i64> {
        self.by_time.keys().next().copied()
    }

    /// Removes and returns a timer due at `time` (earliest first), if any.
    pub fn pop_due(&mut self, time: i64) -> Option<Timer> {
        let mut entry = self.by_time.first_entry()?;
        if *entry.key() > time {
            return None;
        }
        let timestamp = *entry.key();
        let target = entry.get().iter().next().cloned()?;
        entry.get_mut().remove(&target);
        if entry.get().is_empty() {
            entry.remove();
        }
        self.len -= 1;
        Some(Timer {
            timestamp,
            key_group: target.key_group,
            key: target.key.into_vec(),
            namespace: target.namespace.into_vec(),
        })
    }

    /// All timers, in time order.
    pub fn iter(&self) -> impl Iterator<Item = Timer> + '_ {
        self.by_time.iter().flat_map(|(ts, targets)| {
            targets.iter().map(move |t| Timer {
                timestamp: *ts,
                key_group: t.key_group,
                key: t.key.to_vec(),
                namespace: t.namespace.to_vec(),
            })
        })
    }

    /// Number of timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no timers.
    pub fn is_empty(&self) -> bool {
        self.len == 0
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
        let reg = |q: &mut TimerQueue, t: Timer| q.register(t.timestamp, t.key_group, &t.key, &t.namespace);
        assert!(reg(&mut q, timer(20, 1)));
        assert!(reg(&mut q, timer(10, 2)));
        assert!(!reg(&mut q, timer(10, 2)), "deduplicated");
        assert!(reg(&mut q, timer(10, 3)));
        assert_eq!((q.next_time(), q.len()), (Some(10), 3));
        assert!(q.delete(10, 0, &[3], &[]));
        assert_eq!(q.pop_due(9), None);
        assert_eq!(q.pop_due(15), Some(timer(10, 2)));
        assert_eq!(q.pop_due(15), None);
        assert_eq!(q.pop_due(20), Some(timer(20, 1)));
        assert!(q.is_empty());
    }
}
