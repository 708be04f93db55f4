//! Brisk's execution engine, organised by Flink's runtime roles: the graphs a job passes
//! through (`graph`), the job master that schedules and recovers it (`jobmaster`), the task
//! executor that runs subtasks (`taskexecutor`), the data exchange between subtasks
//! (`network`), checkpoints, split-based sources, metrics, and the in-process mini cluster
//! that puts them together. The user-facing API lives in the `brisk` crate.
#![deny(missing_docs)]

pub mod checkpoint;
pub mod error;
pub mod executor;
pub mod failure;
pub mod graph;
pub mod jobmaster;
pub mod logging;
pub mod metrics;
pub mod minicluster;
pub mod network;
pub(crate) mod remote;
pub mod source;
pub mod taskexecutor;

pub use error::{JobError, TaskError, TaskResult};
pub use jobmaster::job::JobOptions;
pub use jobmaster::result::{JobExecutionResult, OperatorMetricsSummary};
pub use minicluster::JobClient;
pub use taskexecutor::context::{ExecutionMode, OperatorContext, OperatorInfo, TaskContext, TaskInfo};
pub use taskexecutor::operator::{OneInputStreamOperator, StreamOperator, TwoInputStreamOperator};
pub use taskexecutor::output::OperatorOutput;
