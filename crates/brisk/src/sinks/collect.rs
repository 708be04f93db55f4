//! Collecting results back to the caller (tests, notebooks).

use crate::functions::{RichFunction, SinkContext, SinkFunction};
use brisk_core::BoxError;
use std::sync::{Arc, Mutex, PoisonError};

/// Appends every record to a list shared with the caller.
pub struct CollectSink<T> {
    results: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for CollectSink<T> {
    fn clone(&self) -> Self {
        CollectSink { results: self.results.clone() }
    }
}

/// The caller's side of a collect sink: the records collected so far.
pub struct CollectResult<T> {
    results: Arc<Mutex<Vec<T>>>,
}

impl<T> CollectSink<T> {
    /// A sink and the handle to read what it collects.
    pub fn new() -> (Self, CollectResult<T>) {
        let results = Arc::new(Mutex::new(Vec::new()));
        (CollectSink { results: results.clone() }, CollectResult { results })
    }
}

impl<T> CollectResult<T> {
    /// Takes the records collected so far, in arrival order (per subtask in emission order).
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.results.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Number of records collected so far and not yet taken.
    pub fn len(&self) -> usize {
        self.results.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether nothing is waiting to be taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> RichFunction for CollectSink<T> {}

impl<T: Send + 'static> SinkFunction<T> for CollectSink<T> {
    fn invoke(&mut self, value: T, _: &SinkContext<'_>) -> Result<(), BoxError> {
        self.results.lock().unwrap_or_else(PoisonError::into_inner).push(value);
        Ok(())
    }
}
