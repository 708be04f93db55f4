//! Where `execute` runs a job (Flink's `PipelineExecutor`): in the mini cluster of this
//! process, or nowhere at all when the program was started only to tell its job — then the
//! execution plan is written where the caller asked and the program ends.
//!
//! A job is a program (ARCHITECTURE.md §3): the `brisk` command line and the JobManager learn
//! a job by running its artifact in plan mode, so user code never has to be loaded into them.

use crate::error::JobError;
use crate::graph::execution_plan::ExecutionPlan;
use crate::graph::job_graph::JobGraph;
use crate::graph::stream_graph::StreamGraph;
use crate::jobmaster::job::JobOptions;
use crate::minicluster::{self, JobClient};
use std::path::PathBuf;
use tracing::info;

/// The environment variable naming the file a program in plan mode writes its plan to.
pub const PLAN_FILE_ENV: &str = "BRISK_PLAN_FILE";

/// How this process runs the jobs it declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Executor {
    /// In an embedded mini cluster (the default).
    Local,
    /// Not at all: write the execution plan as JSON to the file and end the process.
    Plan(PathBuf),
}

impl Executor {
    /// The executor the process was started for: plan mode when [`PLAN_FILE_ENV`] is set.
    pub fn from_environment() -> Executor {
        match std::env::var_os(PLAN_FILE_ENV) {
            Some(path) if !path.is_empty() => Executor::Plan(PathBuf::from(path)),
            _ => Executor::Local,
        }
    }

    /// Runs the job of `graph`. In plan mode this writes the plan and exits the process with
    /// status 0 (or returns the error that kept it from writing the plan).
    pub fn execute(&self, graph: StreamGraph, options: JobOptions) -> Result<JobClient, JobError> {
        match self {
            Executor::Local => minicluster::submit(graph, options),
            Executor::Plan(path) => {
                let plan = plan_job(&graph, &options)?;
                let json = serde_json::to_vec_pretty(&plan)
                    .map_err(|e| JobError::InvalidJob(format!("cannot encode the execution plan: {e}")))?;
                std::fs::write(path, json).map_err(|e| {
                    JobError::InvalidJob(format!("cannot write the execution plan to '{}': {e}", path.display()))
                })?;
                info!(job = %plan.job.job_name, fingerprint = %plan.fingerprint, path = %path.display(), "wrote the execution plan; not running the job (plan mode)");
                std::process::exit(0)
            }
        }
    }
}

/// The execution plan of `graph` as `options` would run it.
pub fn plan_job(graph: &StreamGraph, options: &JobOptions) -> Result<ExecutionPlan, JobError> {
    options.validate()?;
    let job = JobGraph::build(graph, &options.defaults)?;
    ExecutionPlan::build(&job, options.task_slots)
}
