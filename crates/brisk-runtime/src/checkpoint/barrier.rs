//! Barrier handling on a task's inputs (Flink's `CheckpointBarrierHandler`):
//! - aligned (exactly-once): a channel that delivered the barrier is blocked until every
//!   channel has; then the task snapshots;
//! - at-least-once: nothing is blocked; the task snapshots when the last barrier arrives;
//! - unaligned (exactly-once): the task snapshots at the first barrier; the records that
//!   arrive afterwards on channels still ahead of their barrier, or behind a barrier that
//!   overtook them, are stored with the snapshot (in-flight data) and replayed first after a
//!   restore.
//!
//! With an aligned-checkpoint timeout, unaligned checkpoints start aligned and switch once
//! alignment has taken longer than the timeout.

use super::{CheckpointBarrier, CheckpointConfig, CheckpointingMode};
use std::time::{Duration, Instant};

/// What the task must do after a barrier or a channel end.
#[derive(Debug, PartialEq, Eq)]
pub enum BarrierAction {
    /// Nothing yet.
    Wait,
    /// Stop reading this channel until the checkpoint is taken.
    Block(usize),
    /// Take the snapshot now.
    Snapshot {
        /// The checkpoint.
        barrier: CheckpointBarrier,
        /// Time from the first barrier to now.
        alignment: Duration,
        /// Whether in-flight records are being recorded (unaligned): the snapshot is complete
        /// only after [`BarrierAction::InFlightComplete`].
        unaligned: bool,
    },
    /// Every channel delivered the barrier of an unaligned snapshot: its in-flight data is
    /// complete.
    InFlightComplete(u64),
}

struct Pending {
    barrier: CheckpointBarrier,
    received: Vec<bool>,
    started: Instant,
    /// Snapshot taken (unaligned or at-least-once bookkeeping continues until all arrive).
    taken: bool,
    /// Taken unaligned: records of channels still ahead of their barrier are in-flight data.
    unaligned: bool,
}

/// Tracks barriers over all input channels of a task (both inputs of a two-input task).
pub struct BarrierHandler {
    mode: CheckpointingMode,
    unaligned: bool,
    aligned_timeout: Duration,
    ended: Vec<bool>,
    pending: Option<Pending>,
    blocked: Vec<bool>,
    /// The newest checkpoint seen; older barriers are stale.
    last: u64,
}

impl BarrierHandler {
    /// A handler for `channels` input channels.
    pub fn new(channels: usize, config: &CheckpointConfig) -> Self {
        BarrierHandler {
            mode: config.mode,
            unaligned: config.unaligned && config.mode == CheckpointingMode::ExactlyOnce,
            aligned_timeout: config.aligned_checkpoint_timeout,
            ended: vec![false; channels],
            pending: None,
            blocked: vec![false; channels],
            last: 0,
        }
    }

    /// Whether `channel` is blocked for alignment.
    #[inline]
    pub fn is_blocked(&self, channel: usize) -> bool {
        self.blocked.get(channel).copied().unwrap_or(false)
    }

    /// Whether records of `channel` belong to the in-flight data of an unaligned snapshot.
    #[inline]
    pub fn is_recording(&self, channel: usize) -> bool {
        match &self.pending {
            Some(p) => p.unaligned && !p.received.get(channel).copied().unwrap_or(true),
            None => false,
        }
    }

    /// Whether the pending checkpoint runs unaligned (at once, or after the alignment timeout).
    fn unaligned_now(&self, pending: &Pending) -> bool {
        self.unaligned && pending.started.elapsed() >= self.aligned_timeout
    }

    fn complete(&self, pending: &Pending) -> bool {
        pending.received.iter().zip(&self.ended).all(|(r, e)| *r || *e)
    }

    /// A barrier arrived on `channel`.
    pub fn on_barrier(&mut self, channel: usize, barrier: CheckpointBarrier) -> Vec<BarrierAction> {
        self.barrier(channel, barrier, true)
    }

    /// An overtaking barrier arrived on `channel` ahead of messages sent before it: the
    /// snapshot may start, and the channel's records are in-flight data until
    /// [`on_barrier_passed`](Self::on_barrier_passed).
    pub fn on_barrier_ahead(&mut self, channel: usize, barrier: CheckpointBarrier) -> Vec<BarrierAction> {
        self.barrier(channel, barrier, false)
    }

    /// The messages an overtaking barrier of `channel` had passed were all read.
    pub fn on_barrier_passed(&mut self, channel: usize) -> Vec<BarrierAction> {
        let Some(pending) = self.pending.as_mut() else { return Vec::new() };
        if let Some(r) = pending.received.get_mut(channel) {
            *r = true;
        }
        self.finish_if_complete().into_iter().collect()
    }

    fn barrier(&mut self, channel: usize, barrier: CheckpointBarrier, in_place: bool) -> Vec<BarrierAction> {
        let n = self.ended.len();
        if barrier.id < self.last {
            return vec![BarrierAction::Wait];
        }
        let newer = barrier.id > self.last;
        self.last = barrier.id;
        if newer {
            // A newer barrier supersedes an unfinished alignment (its checkpoint is abandoned).
            self.blocked.iter_mut().for_each(|b| *b = false);
            self.pending = Some(Pending {
                barrier: barrier.clone(),
                received: vec![false; n],
                started: Instant::now(),
                taken: false,
                unaligned: false,
            });
        }
        let Some(pending) = self.pending.as_mut() else { return vec![BarrierAction::Wait] };
        if let Some(r) = pending.received.get_mut(channel)
            && in_place
        {
            *r = true;
        }
        let mut actions = Vec::new();
        let Some(pending) = self.pending.as_ref() else { return vec![BarrierAction::Wait] };
        let complete = self.complete(pending);
        let unaligned = self.unaligned_now(pending);
        if !pending.taken && (complete || unaligned) {
            actions.extend(self.take());
        } else if !pending.taken && self.mode == CheckpointingMode::ExactlyOnce {
            self.blocked[channel] = true;
            actions.push(BarrierAction::Block(channel));
        }
        actions.extend(self.finish_if_complete());
        actions
    }

    /// Channel `channel` ended: it no longer needs to deliver barriers.
    pub fn on_end_of_input(&mut self, channel: usize) -> Vec<BarrierAction> {
        if let Some(e) = self.ended.get_mut(channel) {
            *e = true;
        }
        let mut actions = Vec::new();
        if let Some(pending) = &self.pending
            && !pending.taken
            && self.complete(pending)
        {
            actions.extend(self.take());
        }
        actions.extend(self.finish_if_complete());
        actions
    }

    /// Checks the aligned-checkpoint timeout; call it while a checkpoint is aligning.
    pub fn poll_timeout(&mut self) -> Vec<BarrierAction> {
        match &self.pending {
            Some(p) if !p.taken && self.unaligned_now(p) => {
                let mut actions: Vec<BarrierAction> = self.take().into_iter().collect();
                actions.extend(self.finish_if_complete());
                actions
            }
            _ => Vec::new(),
        }
    }

    /// Whether a checkpoint is aligning (the task should check the timeout now and then).
    pub fn is_aligning(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| !p.taken)
    }

    /// Takes the pending checkpoint's snapshot (nothing without one).
    fn take(&mut self) -> Option<BarrierAction> {
        let unaligned = self.pending.as_ref().is_some_and(|p| self.unaligned_now(p) && !self.complete(p));
        self.blocked.iter_mut().for_each(|b| *b = false);
        let pending = self.pending.as_mut()?;
        pending.taken = true;
        pending.unaligned = unaligned;
        Some(BarrierAction::Snapshot {
            barrier: pending.barrier.clone(),
            alignment: pending.started.elapsed(),
            unaligned,
        })
    }

    fn finish_if_complete(&mut self) -> Option<BarrierAction> {
        let pending = self.pending.as_ref()?;
        if !(pending.taken && self.complete(pending)) {
            return None;
        }
        let id = pending.barrier.id;
        let was_unaligned = pending.unaligned;
        self.pending = None;
        was_unaligned.then_some(BarrierAction::InFlightComplete(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::SnapshotKind;

    fn barrier(id: u64) -> CheckpointBarrier {
        CheckpointBarrier {
            id,
            timestamp: 0,
            kind: SnapshotKind::Checkpoint,
            stop: None,
            target: std::path::Path::new("/tmp").into(),
            remote: None,
            overtaking: false,
        }
    }

    fn config(mode: CheckpointingMode, unaligned: bool) -> CheckpointConfig {
        CheckpointConfig { mode, unaligned, ..CheckpointConfig::default() }
    }

    fn snapshot_of(actions: &[BarrierAction]) -> Option<(u64, bool)> {
        actions.iter().find_map(|a| match a {
            BarrierAction::Snapshot { barrier, unaligned, .. } => Some((barrier.id, *unaligned)),
            _ => None,
        })
    }

    #[test]
    fn aligned_blocks_until_every_live_channel_delivered() {
        let mut h = BarrierHandler::new(3, &config(CheckpointingMode::ExactlyOnce, false));
        assert_eq!(h.on_barrier(1, barrier(1)), vec![BarrierAction::Block(1)]);
        assert!(h.is_blocked(1) && !h.is_blocked(0));
        assert_eq!(h.on_end_of_input(2), vec![]);
        let actions = h.on_barrier(0, barrier(1));
        assert_eq!(snapshot_of(&actions), Some((1, false)));
        assert!(!h.is_blocked(1), "unblocked after the snapshot");
        assert!(!h.is_aligning());
    }

    #[test]
    fn at_least_once_never_blocks() {
        let mut h = BarrierHandler::new(2, &config(CheckpointingMode::AtLeastOnce, false));
        assert_eq!(h.on_barrier(0, barrier(4)), vec![]);
        assert!(!h.is_blocked(0));
        assert_eq!(snapshot_of(&h.on_barrier(1, barrier(4))), Some((4, false)));
    }

    #[test]
    fn unaligned_snapshots_at_the_first_barrier_and_records_the_rest() {
        let mut h = BarrierHandler::new(2, &config(CheckpointingMode::ExactlyOnce, true));
        assert_eq!(snapshot_of(&h.on_barrier(0, barrier(2))), Some((2, true)));
        assert!(!h.is_recording(0) && h.is_recording(1), "channel 1 is still ahead of its barrier");
        assert_eq!(h.on_barrier(1, barrier(2)), vec![BarrierAction::InFlightComplete(2)]);
        assert!(!h.is_recording(1));
    }

    #[test]
    fn an_overtaking_barrier_records_its_channel_until_it_has_passed() {
        let mut h = BarrierHandler::new(2, &config(CheckpointingMode::ExactlyOnce, true));
        assert_eq!(snapshot_of(&h.on_barrier_ahead(0, barrier(3))), Some((3, true)), "snapshot at once");
        assert!(h.is_recording(0) && h.is_recording(1), "both channels still deliver records sent before it");
        assert_eq!(h.on_barrier(1, barrier(3)), Vec::new());
        assert!(h.is_recording(0) && !h.is_recording(1));
        assert_eq!(h.on_barrier_passed(0), vec![BarrierAction::InFlightComplete(3)]);
        assert!(!h.is_recording(0));
    }

    #[test]
    fn a_newer_barrier_supersedes_an_unfinished_alignment() {
        let mut h = BarrierHandler::new(2, &config(CheckpointingMode::ExactlyOnce, false));
        h.on_barrier(0, barrier(1));
        assert_eq!(h.on_barrier(0, barrier(2)), vec![BarrierAction::Block(0)]);
        assert_eq!(snapshot_of(&h.on_barrier(1, barrier(2))), Some((2, false)));
        assert_eq!(h.on_barrier(1, barrier(1)), vec![BarrierAction::Wait], "stale barriers are ignored");
    }
}
