//! A data generator source: records computed from their index, bounded or unbounded,
//! optionally rate-limited (Flink's `DataGeneratorSource`).

use super::{RECORDS_PER_POLL, SplitQueue};
use brisk_core::{BoxError, Data};
use brisk_runtime::source::{
    Boundedness, ReadStatus, ReaderContext, Source, SourceOutput, SourceReader, SourceSplit, SplitEnumerator,
    SplitReader, SplitReaders,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Emits `generator(i)` for indices `0..count` (or forever), at most `rate` records per second
/// over all subtasks.
pub struct DataGeneratorSource<T> {
    generator: Arc<dyn Fn(u64) -> T + Send + Sync>,
    count: Option<u64>,
    records_per_second: Option<f64>,
}

impl<T> DataGeneratorSource<T> {
    /// `count` records, `generator(0)` to `generator(count - 1)`.
    pub fn new(generator: impl Fn(u64) -> T + Send + Sync + 'static, count: u64) -> Self {
        DataGeneratorSource { generator: Arc::new(generator), count: Some(count), records_per_second: None }
    }

    /// Records without end, until the job is cancelled.
    pub fn unbounded(generator: impl Fn(u64) -> T + Send + Sync + 'static) -> Self {
        DataGeneratorSource { generator: Arc::new(generator), count: None, records_per_second: None }
    }

    /// Limits the total rate over all subtasks; a non-positive or non-finite rate is ignored.
    pub fn with_rate_limit(mut self, records_per_second: f64) -> Self {
        self.records_per_second =
            (records_per_second.is_finite() && records_per_second > 0.0).then_some(records_per_second);
        self
    }
}

/// The indices one subtask generates: `next, next + step, ...` below `end`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GeneratorSplit {
    /// Next index.
    pub next: u64,
    /// End (exclusive); `u64::MAX` for unbounded.
    pub end: u64,
    /// Distance between indices.
    pub step: u64,
}

impl SourceSplit for GeneratorSplit {
    fn split_id(&self) -> String {
        format!("generator[{}..{} step {}]", self.next, self.end, self.step)
    }
}

impl<T: Data> Source<T> for DataGeneratorSource<T> {
    type Split = GeneratorSplit;

    fn boundedness(&self) -> Boundedness {
        if self.count.is_some() { Boundedness::Bounded } else { Boundedness::ContinuousUnbounded }
    }

    fn create_enumerator(&self, parallelism: usize) -> Result<Box<dyn SplitEnumerator<GeneratorSplit>>, BoxError> {
        let p = parallelism.max(1) as u64;
        let splits = (0..p)
            .map(|i| match self.count {
                Some(count) => GeneratorSplit {
                    next: (count as u128 * i as u128 / p as u128) as u64,
                    end: (count as u128 * (i + 1) as u128 / p as u128) as u64,
                    step: 1,
                },
                None => GeneratorSplit { next: i, end: u64::MAX, step: p },
            })
            .collect();
        Ok(Box::new(SplitQueue::assigned(splits, parallelism)))
    }

    fn create_reader(&self, ctx: &ReaderContext) -> Result<Box<dyn SourceReader<T, GeneratorSplit>>, BoxError> {
        let generator = self.generator.clone();
        let rate = self.records_per_second.map(|r| r / ctx.parallelism.max(1) as f64);
        SplitReaders::boxed(move || {
            Ok(GeneratorReader { generator: generator.clone(), split: None, rate, started: None, emitted: 0 })
        })
    }
}

struct GeneratorReader<T> {
    generator: Arc<dyn Fn(u64) -> T + Send + Sync>,
    split: Option<GeneratorSplit>,
    rate: Option<f64>,
    started: Option<Instant>,
    emitted: u64,
}

impl<T: Data> SplitReader<T, GeneratorSplit> for GeneratorReader<T> {
    fn open_split(&mut self, split: GeneratorSplit) -> Result<(), BoxError> {
        self.split = Some(split);
        Ok(())
    }

    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<ReadStatus, BoxError> {
        let Some(split) = self.split.as_mut() else { return Ok(ReadStatus::SplitFinished) };
        let mut budget = RECORDS_PER_POLL as u64;
        if let Some(rate) = self.rate {
            let started = *self.started.get_or_insert_with(Instant::now);
            let allowed = (started.elapsed().as_secs_f64() * rate) as u64 + 1;
            if allowed <= self.emitted {
                let next_due = (self.emitted + 1) as f64 / rate - started.elapsed().as_secs_f64();
                return Ok(ReadStatus::Wait(Some(Duration::from_secs_f64(next_due.max(0.0005)))));
            }
            budget = budget.min(allowed - self.emitted);
        }
        for _ in 0..budget {
            if split.next >= split.end {
                return Ok(ReadStatus::SplitFinished);
            }
            if out.should_yield() {
                break;
            }
            out.collect((self.generator)(split.next));
            self.emitted += 1;
            split.next = split.next.saturating_add(split.step);
        }
        Ok(if split.next >= split.end { ReadStatus::SplitFinished } else { ReadStatus::More })
    }

    fn snapshot_state(&self) -> Vec<GeneratorSplit> {
        self.split.iter().filter(|s| s.next < s.end).cloned().collect()
    }
}
