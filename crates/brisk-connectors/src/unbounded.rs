//! The enumerator of sources whose splits are all known at the start and never end (queues,
//! streams): each split assigned to one reader; a reader without one waits.

use brisk::runtime::source::{NextSplit, SourceSplit, SplitEnumerator};
use brisk::sources::SplitQueue;
use brisk_core::BoxError;
use std::time::Duration;

/// Hands out the splits given at the start, split `i` to reader `i % parallelism`.
pub(crate) struct AssignedSplits<S>(SplitQueue<S>);

impl<S: SourceSplit> AssignedSplits<S> {
    /// The enumerator of `splits` for `parallelism` readers.
    pub(crate) fn new(splits: Vec<S>, parallelism: usize) -> Self {
        AssignedSplits(SplitQueue::assigned(splits, parallelism))
    }
}

impl<S: SourceSplit> SplitEnumerator<S> for AssignedSplits<S> {
    fn next_split(&mut self, subtask: usize) -> Result<NextSplit<S>, BoxError> {
        Ok(match self.0.take(subtask) {
            Some(split) => NextSplit::Split(split),
            None => NextSplit::NotYet(Duration::from_secs(1)),
        })
    }

    fn add_splits_back(&mut self, splits: Vec<S>, subtask: usize) {
        self.0.add_splits_back(splits, subtask);
    }

    fn snapshot_state(&mut self) -> Result<Vec<u8>, BoxError> {
        self.0.snapshot_state()
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), BoxError> {
        self.0.restore_state(state)
    }
}
