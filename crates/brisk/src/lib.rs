//! Brisk's DataStream API, with Apache Flink's concepts and names.
//!
//! ```no_run
//! use brisk::prelude::*;
//!
//! let env = StreamExecutionEnvironment::get_execution_environment();
//! env.from_collection(vec!["to be or not to be".to_string()])
//!     .flat_map(|line: String, out: &mut Collector<'_, (String, i64)>| {
//!         for word in line.split(' ') {
//!             out.collect((word.to_string(), 1));
//!         }
//!     })
//!     .key_by(|(word, _)| word.clone())
//!     .sum(|(_, count)| count)
//!     .print();
//! env.execute("WordCount").unwrap();
//! ```
#![deny(missing_docs)]

pub mod aggregations;
pub mod async_io;
pub mod broadcast;
pub mod connected;
pub mod datastream;
pub mod environment;
pub mod format;
pub mod functions;
pub mod joins;
pub mod key_selector;
pub mod keyed_stream;
pub mod operators;
pub mod options;
pub mod prelude;
pub mod side_output;
pub mod sinks;
pub mod sources;
pub mod testing;
pub mod windowing;

pub use brisk_core as core;
pub use brisk_rest as rest;
pub use brisk_runtime as runtime;
pub use brisk_runtime::checkpoint::SnapshotLocation;
pub use brisk_runtime::{JobClient, JobError, JobExecutionResult, TaskError};
/// A string stored inline up to 24 bytes: words and short keys without heap allocations, so
/// they cross task threads without allocator or cache traffic.
pub use compact_str::CompactString;
