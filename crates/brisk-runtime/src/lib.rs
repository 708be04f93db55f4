//! Brisk's execution engine: operator chains, tasks with a mailbox-style loop, bounded
//! channels with backpressure, partitioners, split-based sources and the in-process mini
//! cluster. The user-facing API lives in the `brisk` crate.
#![deny(missing_docs)]

pub mod chain;
pub mod channel;
pub mod checkpoint;
pub mod context;
pub mod error;
pub mod failure;
pub mod graph;
pub mod job_graph;
pub mod mailbox;
pub mod master;
pub mod metrics;
pub mod minicluster;
pub mod network;
pub mod operator;
pub mod output;
pub mod partitioner;
pub mod source;
pub mod task;
pub mod time;
pub mod watermark;

pub use context::{ExecutionMode, OperatorContext, OperatorInfo, TaskContext, TaskInfo};
pub use error::{JobError, TaskError, TaskResult};
pub use minicluster::{JobClient, JobExecutionResult, JobOptions, OperatorMetricsSummary};
pub use operator::{OneInputStreamOperator, StreamOperator, TwoInputStreamOperator};
pub use output::OperatorOutput;
