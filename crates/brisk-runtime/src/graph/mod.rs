//! The graphs a job passes through on its way to running subtasks: the stream graph the API
//! builds, the job graph of chained vertices, and the execution plan of subtasks, channels,
//! regions and slots.

pub mod execution_plan;
pub mod job_graph;
pub mod stream_graph;
