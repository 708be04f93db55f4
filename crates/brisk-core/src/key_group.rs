//! Key groups: the unit in which keyed state is partitioned and redistributed.
//!
//! `key → stable hash → murmur → key group (0..max_parallelism) → subtask`. A subtask owns a
//! contiguous range of key groups, so changing the parallelism moves whole key groups between
//! subtasks and never splits one (Flink's `KeyGroupRangeAssignment`).

use crate::hash::{murmur_hash, stable_hash};
use serde::{Deserialize, Serialize};
use std::hash::Hash;

/// The default number of key groups (Flink's lower bound for the default max parallelism).
pub const DEFAULT_MAX_PARALLELISM: usize = 128;
/// The largest supported number of key groups (Flink's upper bound).
pub const MAX_MAX_PARALLELISM: usize = 32_768;

/// The key group of a key hash (see [`key_hash`]).
#[inline]
pub fn key_group_for_hash(hash: u64, max_parallelism: usize) -> usize {
    let folded = (hash as u32) ^ ((hash >> 32) as u32);
    // max_parallelism ≤ 32768 fits u32, and a 32-bit division is much cheaper per record.
    (murmur_hash(folded) % max_parallelism as u32) as usize
}

/// The stable hash a key group is derived from.
#[inline]
pub fn key_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    stable_hash(key)
}

/// The key group of a key.
#[inline]
pub fn assign_to_key_group<K: Hash + ?Sized>(key: &K, max_parallelism: usize) -> usize {
    key_group_for_hash(key_hash(key), max_parallelism)
}

/// The subtask that owns a key group.
#[inline]
pub fn operator_index_for_key_group(max_parallelism: usize, parallelism: usize, key_group: usize) -> usize {
    key_group * parallelism / max_parallelism
}

/// An inclusive range of key groups owned by one subtask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyGroupRange {
    /// First key group of the range.
    pub start: usize,
    /// Last key group of the range (inclusive); `end < start` means empty.
    pub end: usize,
}

impl KeyGroupRange {
    /// The range `start..=end`.
    pub fn new(start: usize, end: usize) -> Self {
        KeyGroupRange { start, end }
    }

    /// The key groups owned by `operator_index` of `parallelism` subtasks.
    pub fn for_operator(max_parallelism: usize, parallelism: usize, operator_index: usize) -> Self {
        let start = (operator_index * max_parallelism).div_ceil(parallelism);
        let end = ((operator_index + 1) * max_parallelism - 1) / parallelism;
        KeyGroupRange { start, end }
    }

    /// Number of key groups in the range.
    pub fn len(&self) -> usize {
        if self.end < self.start { 0 } else { self.end - self.start + 1 }
    }

    /// True when the range holds no key group.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the range holds `key_group`.
    #[inline]
    pub fn contains(&self, key_group: usize) -> bool {
        key_group >= self.start && key_group <= self.end
    }

    /// The key groups of the range, in order.
    pub fn iter(&self) -> std::ops::RangeInclusive<usize> {
        self.start..=self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges_partition_all_key_groups() {
        for max in [1, 7, 128, 1000] {
            for p in 1..=max.min(17) {
                let mut next = 0;
                for i in 0..p {
                    let r = KeyGroupRange::for_operator(max, p, i);
                    assert_eq!(r.start, next, "max {max} p {p} i {i}");
                    for kg in r.iter() {
                        assert_eq!(operator_index_for_key_group(max, p, kg), i);
                    }
                    next = r.end + 1;
                }
                assert_eq!(next, max);
            }
        }
    }

    proptest! {
        #[test]
        fn key_group_in_range(key in any::<String>(), max in 1usize..=MAX_MAX_PARALLELISM) {
            let kg = assign_to_key_group(&key, max);
            prop_assert!(kg < max);
            prop_assert_eq!(kg, assign_to_key_group(&key.clone(), max));
        }
    }

    #[test]
    fn keys_spread_over_key_groups() {
        let mut counts = vec![0usize; 128];
        for i in 0..128_000u64 {
            counts[assign_to_key_group(&i, 128)] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }
}
