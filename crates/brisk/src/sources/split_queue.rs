//! A split enumerator over splits known up front.

use brisk_core::BoxError;
use brisk_runtime::source::{NextSplit, SourceSplit, SplitEnumerator};
use std::collections::VecDeque;

/// Hands out a fixed set of splits: either each to a given subtask (even, deterministic
/// distribution) or to whichever reader asks first (load balancing).
pub struct SplitQueue<S> {
    per_subtask: Vec<VecDeque<S>>,
    shared: VecDeque<S>,
}

impl<S: SourceSplit> SplitQueue<S> {
    /// Split `i` goes to subtask `i % parallelism`.
    pub fn assigned(splits: Vec<S>, parallelism: usize) -> Self {
        let mut per_subtask: Vec<VecDeque<S>> = (0..parallelism.max(1)).map(|_| VecDeque::new()).collect();
        let n = per_subtask.len();
        for (i, split) in splits.into_iter().enumerate() {
            per_subtask[i % n].push_back(split);
        }
        SplitQueue { per_subtask, shared: VecDeque::new() }
    }

    /// Any reader takes the next split.
    pub fn shared(splits: Vec<S>) -> Self {
        SplitQueue { per_subtask: Vec::new(), shared: splits.into() }
    }

    /// Adds splits any reader may take.
    pub fn push_shared(&mut self, splits: impl IntoIterator<Item = S>) {
        self.shared.extend(splits);
    }

    /// Takes the next split for `subtask`, if any is left.
    pub fn take(&mut self, subtask: usize) -> Option<S> {
        self.per_subtask.get_mut(subtask).and_then(VecDeque::pop_front).or_else(|| self.shared.pop_front())
    }
}

impl<S: SourceSplit> SplitEnumerator<S> for SplitQueue<S> {
    fn next_split(&mut self, subtask: usize) -> Result<NextSplit<S>, BoxError> {
        Ok(match self.take(subtask) {
            Some(split) => NextSplit::Split(split),
            None => NextSplit::NoMoreSplits,
        })
    }

    fn add_splits_back(&mut self, splits: Vec<S>, subtask: usize) {
        match self.per_subtask.get_mut(subtask) {
            Some(queue) => splits.into_iter().rev().for_each(|s| queue.push_front(s)),
            None => splits.into_iter().rev().for_each(|s| self.shared.push_front(s)),
        }
    }

    fn snapshot_state(&mut self) -> Result<Vec<u8>, BoxError> {
        let remaining: Vec<&S> = self.per_subtask.iter().flatten().chain(&self.shared).collect();
        Ok(brisk_state::codec::encode(&remaining)?)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), BoxError> {
        // Restored splits go to whichever reader asks: the parallelism may have changed.
        let remaining: Vec<S> = brisk_state::codec::decode(state)?;
        self.per_subtask.iter_mut().for_each(VecDeque::clear);
        self.shared = remaining.into();
        Ok(())
    }
}
