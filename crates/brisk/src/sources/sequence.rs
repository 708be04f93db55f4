//! `from_sequence`: the numbers of an inclusive range, split evenly over the subtasks.

use super::{RECORDS_PER_POLL, SplitQueue};
use brisk_core::BoxError;
use brisk_runtime::source::{
    Boundedness, ReadStatus, ReaderContext, Source, SourceOutput, SourceReader, SourceSplit, SplitEnumerator,
    SplitReader, SplitReaders,
};
use serde::{Deserialize, Serialize};

/// Emits every number from `from` to `to` inclusive (Flink's `fromSequence`).
pub struct NumberSequenceSource {
    from: i64,
    to: i64,
}

impl NumberSequenceSource {
    /// The numbers `from..=to`; empty when `from > to`.
    pub fn new(from: i64, to: i64) -> Self {
        NumberSequenceSource { from, to }
    }
}

/// A sub-range still to emit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SequenceSplit {
    /// Next number to emit.
    pub next: i64,
    /// Last number (inclusive).
    pub last: i64,
    /// Whether `next` is past `last` (needed because `last` may be `i64::MAX`).
    pub exhausted: bool,
}

impl SourceSplit for SequenceSplit {
    fn split_id(&self) -> String {
        format!("sequence[{}..={}]", self.next, self.last)
    }
}

impl Source<i64> for NumberSequenceSource {
    type Split = SequenceSplit;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn create_enumerator(&self, parallelism: usize) -> Result<Box<dyn SplitEnumerator<SequenceSplit>>, BoxError> {
        let mut splits = Vec::new();
        if self.from <= self.to {
            let total = (self.to as i128) - (self.from as i128) + 1;
            let p = parallelism.max(1) as i128;
            for i in 0..p {
                let start = self.from as i128 + total * i / p;
                let end = self.from as i128 + total * (i + 1) / p - 1;
                if start <= end {
                    splits.push(SequenceSplit { next: start as i64, last: end as i64, exhausted: false });
                }
            }
        }
        Ok(Box::new(SplitQueue::assigned(splits, parallelism)))
    }

    fn create_reader(&self, _: &ReaderContext) -> Result<Box<dyn SourceReader<i64, SequenceSplit>>, BoxError> {
        SplitReaders::boxed(|| Ok(SequenceReader { split: None }))
    }
}

struct SequenceReader {
    split: Option<SequenceSplit>,
}

impl SplitReader<i64, SequenceSplit> for SequenceReader {
    fn open_split(&mut self, split: SequenceSplit) -> Result<(), BoxError> {
        self.split = Some(split);
        Ok(())
    }

    fn poll(&mut self, out: &mut SourceOutput<'_, i64>) -> Result<ReadStatus, BoxError> {
        let Some(split) = self.split.as_mut() else { return Ok(ReadStatus::SplitFinished) };
        for _ in 0..RECORDS_PER_POLL {
            if split.exhausted || out.should_yield() {
                break;
            }
            out.collect(split.next);
            if split.next == split.last {
                split.exhausted = true;
            } else {
                split.next += 1;
            }
        }
        Ok(if split.exhausted { ReadStatus::SplitFinished } else { ReadStatus::More })
    }

    fn snapshot_state(&self) -> Vec<SequenceSplit> {
        self.split.iter().filter(|s| !s.exhausted).cloned().collect()
    }
}
