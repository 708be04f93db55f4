//! The jobs behind the runnable examples, shared by the example binaries and the tests.

pub mod cli;
#[cfg(feature = "kafka")]
pub mod fraud;
pub mod window_agg;
pub mod word_count;
