//! Stream elements: records with optional event timestamps, and watermarks.

use serde::{Deserialize, Serialize};

/// Marks a record without an event-time timestamp (Flink's `hasTimestamp() == false`).
pub const NO_TIMESTAMP: i64 = i64::MIN;

/// A user value with its event-time timestamp in epoch milliseconds, or [`NO_TIMESTAMP`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRecord<T> {
    /// The user value.
    pub value: T,
    /// Event time in milliseconds, or [`NO_TIMESTAMP`].
    pub timestamp: i64,
}

impl<T> StreamRecord<T> {
    /// A record without a timestamp.
    #[inline]
    pub fn new(value: T) -> Self {
        StreamRecord { value, timestamp: NO_TIMESTAMP }
    }

    /// A record with an event-time timestamp.
    #[inline]
    pub fn with_timestamp(value: T, timestamp: i64) -> Self {
        StreamRecord { value, timestamp }
    }

    /// The timestamp, if the record has one.
    #[inline]
    pub fn timestamp(&self) -> Option<i64> {
        (self.timestamp != NO_TIMESTAMP).then_some(self.timestamp)
    }

    /// The same timestamp on another value.
    #[inline]
    pub fn replace<U>(&self, value: U) -> StreamRecord<U> {
        StreamRecord { value, timestamp: self.timestamp }
    }
}

/// Event-time progress: no record with a timestamp at or below it is expected any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Watermark(pub i64);

impl Watermark {
    /// The watermark a bounded input emits at its end: every event-time timer fires.
    pub const MAX: Watermark = Watermark(i64::MAX);
    /// The initial watermark of every channel.
    pub const MIN: Watermark = Watermark(i64::MIN);

    /// The watermark's timestamp in milliseconds.
    #[inline]
    pub fn timestamp(self) -> i64 {
        self.0
    }
}

/// Whether a channel takes part in watermark alignment (Flink's `WatermarkStatus`): an idle
/// input does not hold back the operator's watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatermarkStatus {
    /// The input emits records and watermarks.
    Active,
    /// The input has been silent longer than its idleness timeout.
    Idle,
}
