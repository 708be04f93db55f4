//! A sink that drops everything (benchmarks).

use crate::functions::{RichFunction, SinkContext, SinkFunction};
use brisk_core::BoxError;

/// Drops every record (Flink's `DiscardingSink`).
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscardingSink;

impl RichFunction for DiscardingSink {}

impl<T> SinkFunction<T> for DiscardingSink {
    #[inline]
    fn invoke(&mut self, _: T, _: &SinkContext<'_>) -> Result<(), BoxError> {
        Ok(())
    }
}
