//! The checkpoint statistics of a job (Flink's `CheckpointStatsTracker`): counts and
//! summaries over all its checkpoints, the latest of each kind, and the details of only the
//! most recent ones, so a job that checkpoints every second for months keeps a bounded record.

use super::SnapshotKind;
use super::coordinator::{CheckpointStats, CheckpointStatus};
use std::collections::VecDeque;

/// Minimum, maximum and sum of a figure over checkpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSummary {
    /// Values seen.
    pub count: u64,
    /// The smallest (0 when none).
    pub min: u64,
    /// The largest.
    pub max: u64,
    /// Their sum.
    pub sum: u64,
}

impl StatsSummary {
    fn add(&mut self, value: u64) {
        self.min = if self.count == 0 { value } else { self.min.min(value) };
        self.max = self.max.max(value);
        self.sum = self.sum.saturating_add(value);
        self.count += 1;
    }

    /// The average (0 when none).
    pub fn avg(&self) -> u64 {
        self.sum.checked_div(self.count).unwrap_or(0)
    }
}

/// What a job's checkpoints amount to so far.
#[derive(Clone, Debug, Default)]
pub struct CheckpointStatsSnapshot {
    /// Checkpoints and savepoints completed.
    pub completed: u64,
    /// Those abandoned.
    pub failed: u64,
    /// Bytes written by the completed ones.
    pub state_size: StatsSummary,
    /// Milliseconds from trigger to completion of the completed ones.
    pub end_to_end_duration: StatsSummary,
    /// Longest barrier alignment of the completed ones, in milliseconds.
    pub alignment_duration: StatsSummary,
    /// The latest completed checkpoint.
    pub latest_completed: Option<CheckpointStats>,
    /// The latest completed savepoint.
    pub latest_savepoint: Option<CheckpointStats>,
    /// The latest failed one.
    pub latest_failed: Option<CheckpointStats>,
    /// The most recent ones, oldest first.
    history: VecDeque<CheckpointStats>,
    /// How many the history keeps.
    history_size: usize,
}

impl CheckpointStatsSnapshot {
    /// No checkpoints yet; the history will keep the latest `history_size`.
    pub fn new(history_size: usize) -> Self {
        CheckpointStatsSnapshot { history_size, ..Default::default() }
    }

    /// Counts `stats` in.
    pub fn record(&mut self, stats: CheckpointStats) {
        match stats.status {
            CheckpointStatus::Completed => {
                self.completed += 1;
                self.state_size.add(stats.size);
                self.end_to_end_duration.add(stats.duration.as_millis() as u64);
                self.alignment_duration.add(stats.alignment.as_millis() as u64);
                match stats.kind {
                    SnapshotKind::Checkpoint => self.latest_completed = Some(stats.clone()),
                    SnapshotKind::Savepoint => self.latest_savepoint = Some(stats.clone()),
                }
            }
            CheckpointStatus::Failed(_) => {
                self.failed += 1;
                self.latest_failed = Some(stats.clone());
            }
        }
        if self.history_size > 0 {
            if self.history.len() == self.history_size {
                self.history.pop_front();
            }
            self.history.push_back(stats);
        }
    }

    /// Checkpoints and savepoints so far, completed or failed.
    pub fn total(&self) -> u64 {
        self.completed + self.failed
    }

    /// The most recent ones, oldest first.
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &CheckpointStats> + ExactSizeIterator {
        self.history.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::SnapshotLocation;
    use std::time::Duration;

    fn stats(id: u64, kind: SnapshotKind, completed: bool, size: u64) -> CheckpointStats {
        CheckpointStats {
            id,
            kind,
            status: if completed { CheckpointStatus::Completed } else { CheckpointStatus::Failed("timeout".into()) },
            trigger_timestamp_ms: id as i64,
            acknowledged: 1,
            subtasks: 1,
            size,
            duration: Duration::from_millis(id * 10),
            alignment: Duration::from_millis(id),
            sync: Duration::ZERO,
            async_part: Duration::ZERO,
            path: SnapshotLocation::parse(&format!("/tmp/chk-{id}")).unwrap(),
        }
    }

    #[test]
    fn counts_and_summaries_cover_every_checkpoint_while_the_history_keeps_the_latest() {
        let mut snapshot = CheckpointStatsSnapshot::new(3);
        let all: Vec<CheckpointStats> = (1..=20)
            .map(|id| match id {
                7 | 15 => stats(id, SnapshotKind::Checkpoint, false, 0),
                12 => stats(id, SnapshotKind::Savepoint, true, 5),
                _ => stats(id, SnapshotKind::Checkpoint, true, id * 100),
            })
            .collect();
        all.iter().cloned().for_each(|s| snapshot.record(s));

        let completed: Vec<&CheckpointStats> = all.iter().filter(|c| c.status == CheckpointStatus::Completed).collect();
        assert_eq!((snapshot.completed, snapshot.failed, snapshot.total()), (18, 2, 20));
        let sizes: Vec<u64> = completed.iter().map(|c| c.size).collect();
        assert_eq!(snapshot.state_size.min, *sizes.iter().min().unwrap());
        assert_eq!(snapshot.state_size.max, *sizes.iter().max().unwrap());
        assert_eq!(snapshot.state_size.avg(), sizes.iter().sum::<u64>() / 18);
        let durations: Vec<u64> = completed.iter().map(|c| c.duration.as_millis() as u64).collect();
        assert_eq!(snapshot.end_to_end_duration.sum, durations.iter().sum::<u64>());
        assert_eq!(snapshot.latest_completed.as_ref().map(|c| c.id), Some(20));
        assert_eq!(snapshot.latest_savepoint.as_ref().map(|c| c.id), Some(12));
        assert_eq!(snapshot.latest_failed.as_ref().map(|c| c.id), Some(15));
        assert_eq!(snapshot.history().map(|c| c.id).collect::<Vec<_>>(), vec![18, 19, 20]);
    }

    #[test]
    fn an_empty_record_has_zero_summaries() {
        let snapshot = CheckpointStatsSnapshot::new(10);
        assert_eq!((snapshot.total(), snapshot.state_size.avg(), snapshot.history().len()), (0, 0, 0));
    }
}
