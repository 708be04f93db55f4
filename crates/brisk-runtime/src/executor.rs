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
use crate::jobmaster::job::{Deployable, JobOptions};
use crate::minicluster::{self, JobClient};
use crate::remote::coordinator::Coordinator;
use crate::remote::worker::run_worker;
use std::path::PathBuf;
use tracing::info;

/// The environment variable naming the file a program in plan mode writes its plan to.
pub const PLAN_FILE_ENV: &str = "BRISK_PLAN_FILE";
/// Set by the JobManager for a job's coordinator process: the JobManager's RPC address.
pub const JOBMANAGER_ENV: &str = "BRISK_JOBMANAGER_ADDRESS";
/// Set by the JobManager and the TaskManagers for a job's processes: the job's id.
pub const JOB_ID_ENV: &str = "BRISK_JOB_ID";
/// Set by a TaskManager for a worker process: the address of the job's coordinator.
pub const COORDINATOR_ENV: &str = "BRISK_WORKER_COORDINATOR";
/// Set by a TaskManager for a worker process: the worker's index within the job.
pub const WORKER_INDEX_ENV: &str = "BRISK_WORKER_INDEX";
/// Set by the JobManager for a job's coordinator process: the file the coordinator records
/// the job's end in (JSON: `null` when it finished, or why it did not).
pub const JOB_RESULT_FILE_ENV: &str = "BRISK_JOB_RESULT_FILE";
/// Set for a job's processes in a cluster: the job's configuration (`brisk run -p`, `-D`) as
/// a JSON list of `[key, value]` pairs, which every environment the program creates starts
/// from.
pub const JOB_CONFIG_ENV: &str = "BRISK_JOB_CONFIG";

/// How this process runs the jobs it declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Executor {
    /// In an embedded mini cluster (the default).
    Local,
    /// Not at all: write the execution plan as JSON to the file and end the process.
    Plan(PathBuf),
    /// As the coordinator of job `job_id` in the cluster of the JobManager at `jobmanager`:
    /// the job master here, the tasks in worker processes on the TaskManagers.
    Coordinator {
        /// The JobManager's RPC address.
        jobmanager: String,
        /// The job's id.
        job_id: String,
    },
    /// As worker `index` of a job: run the subtasks its coordinator deploys here, then end
    /// the process.
    Worker {
        /// The coordinator's address.
        coordinator: String,
        /// The worker's index.
        index: usize,
    },
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Executor {
    /// The executor the process was started for: plan mode when [`PLAN_FILE_ENV`] is set, a
    /// job's coordinator or worker when the JobManager or a TaskManager started it.
    pub fn from_environment() -> Result<Executor, JobError> {
        if let Some(path) = env(PLAN_FILE_ENV) {
            return Ok(Executor::Plan(PathBuf::from(path)));
        }
        if let (Some(jobmanager), Some(job_id)) = (env(JOBMANAGER_ENV), env(JOB_ID_ENV)) {
            return Ok(Executor::Coordinator { jobmanager, job_id });
        }
        if let (Some(coordinator), Some(index)) = (env(COORDINATOR_ENV), env(WORKER_INDEX_ENV)) {
            let index = index
                .parse()
                .map_err(|_| JobError::Worker(format!("{WORKER_INDEX_ENV}={index} is not a worker index")))?;
            return Ok(Executor::Worker { coordinator, index });
        }
        Ok(Executor::Local)
    }

    /// The job configuration a cluster gave this process ([`JOB_CONFIG_ENV`]), if any.
    pub fn job_configuration() -> Result<Option<Vec<(String, String)>>, String> {
        match env(JOB_CONFIG_ENV) {
            None => Ok(None),
            Some(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| format!("{JOB_CONFIG_ENV} is not a JSON list of [key, value] pairs: {e}")),
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
            Executor::Coordinator { jobmanager, job_id } => {
                let (jobmanager, job_id) = (jobmanager.clone(), job_id.clone());
                minicluster::submit_with(graph, options, Some(job_id.clone()), move |deployable, events, control| {
                    let coordinator = Coordinator::start(deployable, &jobmanager, &job_id, control.clone())?;
                    let deployer = coordinator.deployer(events, control);
                    let hook: minicluster::EndHook =
                        Box::new(move |error: Option<&JobError>| coordinator.finish(error));
                    Ok((Box::new(deployer), Some(hook)))
                })
            }
            Executor::Worker { coordinator, index } => {
                let job = JobGraph::build(&graph, &options.defaults)?;
                options.validate()?;
                let plan = ExecutionPlan::build(&job, options.task_slots)?;
                run_worker(Deployable { graph, job, plan, options }, coordinator, *index)?;
                info!(worker = index, "the job ended; this worker process exits");
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
