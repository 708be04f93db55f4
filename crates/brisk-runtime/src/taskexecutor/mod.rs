//! The task executor's side of a job: subtasks running a mailbox loop over operator chains,
//! with the contexts, outputs and processing-time service their operators use.

pub mod chain;
pub mod context;
pub(crate) mod deployment;
pub mod mailbox;
pub mod operator;
pub mod output;
pub mod task;
pub mod time;
pub(crate) mod wiring;
