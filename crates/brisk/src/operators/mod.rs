//! The operators behind the DataStream API's transformations.

mod co;
mod keyed_reduce;
mod map;
mod process;
mod sink;

pub use co::{CoFlatMapOperator, CoMapOperator, CoProcessOperator};
pub use keyed_reduce::KeyedReduceOperator;
pub use map::{StreamFilter, StreamFlatMap, StreamMap};
pub use process::ProcessOperator;
pub use sink::SinkOperator;

use crate::functions::{RichFunction, RuntimeContext};
use brisk_runtime::{OperatorContext, TaskError, TaskResult};

/// Opens a rich function with the operator's context.
pub(crate) fn open_function<F: RichFunction>(f: &mut F, ctx: &mut OperatorContext<'_>) -> TaskResult {
    f.open(&mut RuntimeContext::new(ctx)).map_err(TaskError::User)
}

/// Closes a rich function.
pub(crate) fn close_function<F: RichFunction>(f: &mut F) -> TaskResult {
    f.close().map_err(TaskError::User)
}
