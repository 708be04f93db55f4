//! The merging window set of session windows (Flink's `MergingWindowSet`): which window holds
//! the state of which (merged) window, updated as windows merge.

use serde::{Deserialize, Serialize};

/// One merge: `merged` windows became `result`, whose state lives in `state_window`; the
/// state of `merged_state_windows` must be folded into it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Merge<W> {
    pub result: W,
    pub merged: Vec<W>,
    pub state_window: W,
    pub merged_state_windows: Vec<W>,
}

/// Window → the window whose namespace holds its state (state stays where it was first put,
/// so merging moves only the smaller parts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MergingWindowSet<W> {
    pub mapping: Vec<(W, W)>,
}

impl<W> Default for MergingWindowSet<W> {
    fn default() -> Self {
        MergingWindowSet { mapping: Vec::new() }
    }
}

impl<W: Clone + PartialEq> MergingWindowSet<W> {
    /// The state window of `window`, if it is still in the set.
    pub fn state_window(&self, window: &W) -> Option<W> {
        self.mapping.iter().find(|(w, _)| w == window).map(|(_, s)| s.clone())
    }

    /// Forgets a window (it was purged or cleaned up).
    pub fn retire(&mut self, window: &W) {
        self.mapping.retain(|(w, _)| w != window);
    }

    /// Adds a new window, merging it with existing ones as `merge_groups` decides; returns the
    /// window the new one ended up in, and the merges to apply to state and triggers.
    pub fn add_window(&mut self, new: W, merge_groups: impl Fn(&[W]) -> Vec<(Vec<W>, W)>) -> (W, Vec<Merge<W>>) {
        let mut windows: Vec<W> = self.mapping.iter().map(|(w, _)| w.clone()).collect();
        windows.push(new.clone());
        let groups = merge_groups(&windows);
        let mut result_window = new.clone();
        let mut merged_new = false;
        let mut merges = Vec::new();
        for (mut members, result) in groups.clone() {
            if let Some(pos) = members.iter().position(|w| *w == new) {
                members.remove(pos);
                merged_new = true;
                result_window = result.clone();
            }
            let Some(first) = members.first() else { continue };
            let Some(state_window) = self.state_window(first) else { continue };
            let mut merged_state_windows = Vec::new();
            for m in &members {
                if let Some(pos) = self.mapping.iter().position(|(w, _)| w == m) {
                    merged_state_windows.push(self.mapping.remove(pos).1);
                }
            }
            self.mapping.push((result.clone(), state_window.clone()));
            merged_state_windows.retain(|w| *w != state_window);
            if !(members.len() == 1 && members[0] == result) {
                merges.push(Merge { result, merged: members, state_window, merged_state_windows });
            }
        }
        if groups.is_empty() || (result_window == new && !merged_new) {
            self.mapping.push((result_window.clone(), result_window.clone()));
        }
        (result_window, merges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::windowing::assigners::{EventTimeSessionWindows, WindowAssigner};
    use crate::windowing::window::TimeWindow;
    use std::time::Duration;

    #[test]
    fn sessions_merge_and_keep_their_first_state_window() {
        let sessions = EventTimeSessionWindows::with_gap::<()>(Duration::from_millis(10));
        let groups = |ws: &[TimeWindow]| sessions.merge_windows(ws).unwrap_or_default();
        let mut set = MergingWindowSet::default();
        let (w1, merges) = set.add_window(TimeWindow::new(0, 10), groups);
        assert_eq!((w1, merges), (TimeWindow::new(0, 10), vec![]));
        let (w2, merges) = set.add_window(TimeWindow::new(30, 40), groups);
        assert_eq!((w2, merges.len()), (TimeWindow::new(30, 40), 0));
        // A window bridging both merges all three; state stays in the first state window.
        let (w3, merges) = set.add_window(TimeWindow::new(8, 32), groups);
        assert_eq!(w3, TimeWindow::new(0, 40));
        assert_eq!(merges.len(), 1);
        assert_eq!(merges[0].state_window, TimeWindow::new(0, 10));
        assert_eq!(merges[0].merged_state_windows, vec![TimeWindow::new(30, 40)]);
        assert_eq!(set.state_window(&TimeWindow::new(0, 40)), Some(TimeWindow::new(0, 10)));
        assert_eq!(set.mapping.len(), 1);
    }
}
