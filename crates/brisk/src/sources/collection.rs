//! `from_collection` / `from_iter`: a non-parallel source over values held in memory.

use super::{RECORDS_PER_POLL, SplitQueue};
use brisk_core::{BoxError, Data};
use brisk_runtime::source::{
    Boundedness, ReadStatus, ReaderContext, Source, SourceOutput, SourceReader, SourceSplit, SplitEnumerator,
    SplitReader, SplitReaders,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Emits the values of a collection in order (Flink's `fromCollection`; parallelism 1).
pub struct CollectionSource<T> {
    values: Arc<Vec<T>>,
}

impl<T> CollectionSource<T> {
    /// A source over `values`.
    pub fn new(values: Vec<T>) -> Self {
        CollectionSource { values: Arc::new(values) }
    }
}

/// A position range in a collection.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IndexSplit {
    /// Next index to emit.
    pub next: usize,
    /// End index (exclusive).
    pub end: usize,
}

impl SourceSplit for IndexSplit {
    fn split_id(&self) -> String {
        format!("collection[{}..{}]", self.next, self.end)
    }
}

impl<T: Data> Source<T> for CollectionSource<T> {
    type Split = IndexSplit;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn create_enumerator(&self, _parallelism: usize) -> Result<Box<dyn SplitEnumerator<IndexSplit>>, BoxError> {
        Ok(Box::new(SplitQueue::assigned(vec![IndexSplit { next: 0, end: self.values.len() }], 1)))
    }

    fn create_reader(&self, _: &ReaderContext) -> Result<Box<dyn SourceReader<T, IndexSplit>>, BoxError> {
        let values = self.values.clone();
        SplitReaders::boxed(move || Ok(CollectionReader { values: values.clone(), split: None }))
    }
}

struct CollectionReader<T> {
    values: Arc<Vec<T>>,
    split: Option<IndexSplit>,
}

impl<T: Data> SplitReader<T, IndexSplit> for CollectionReader<T> {
    fn open_split(&mut self, split: IndexSplit) -> Result<(), BoxError> {
        self.split = Some(split);
        Ok(())
    }

    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<ReadStatus, BoxError> {
        let Some(split) = self.split.as_mut() else { return Ok(ReadStatus::SplitFinished) };
        let end = split.end.min(self.values.len()).min(split.next + RECORDS_PER_POLL);
        while split.next < end && !out.should_yield() {
            out.collect(self.values[split.next].clone());
            split.next += 1;
        }
        Ok(if split.next >= split.end.min(self.values.len()) { ReadStatus::SplitFinished } else { ReadStatus::More })
    }

    fn snapshot_state(&self) -> Vec<IndexSplit> {
        self.split.iter().cloned().collect()
    }
}
