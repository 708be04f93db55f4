//! The seam between the job master and wherever tasks run: the master decides what runs
//! (attempts, regions, restored state) and a [`Deployer`] starts it — as threads of this
//! process in the mini cluster, or in the slots of TaskManagers. The master reaches each
//! deployed task only through its [`TaskHandle`].

use crate::checkpoint::coordinator::TaskDescriptor;
use crate::checkpoint::restore::JobRestore;
use crate::error::JobError;
use crate::graph::stream_graph::{ErasedEnumerator, SourceFactory};
use crate::jobmaster::job::Deployable;
use crate::network::channel::CancelToken;
use crate::taskexecutor::deployment::TaskOutcome;
use crate::taskexecutor::mailbox::Mail;

/// A source node's operator id, factory and split enumerator (enumerators run beside the job
/// master, readers in the tasks).
pub(crate) type SourceNode = (String, Box<dyn SourceFactory>, ErasedEnumerator);

/// Handles of restarted tasks, by task index.
pub(crate) type Restarted = Vec<(usize, Box<dyn TaskHandle>)>;

/// The job master's handle on one deployed task, wherever it runs.
pub(crate) trait TaskHandle: Send {
    /// Delivers a control message (checkpoint trigger, completion, abort, state query).
    fn send(&self, mail: Mail);
    /// Stops the task and the tasks of its pipelined region.
    fn cancel(&self);
    /// Waits for the task to end and tells how it ended (called after it reported its end).
    fn join(self: Box<Self>) -> TaskOutcome;
}

/// Starts the tasks of a job.
pub(crate) trait Deployer: Send {
    /// Starts every task of attempt `number`, restored from `restore`; handles in task order.
    fn deploy(
        &mut self,
        job: &Deployable,
        sources: &[SourceNode],
        restore: Option<&JobRestore>,
        number: usize,
    ) -> Result<Vec<Box<dyn TaskHandle>>, JobError>;

    /// Starts the tasks of `region` again (region failover), restored from `restore`; returns
    /// the new handles by task index.
    fn redeploy_region(
        &mut self,
        job: &Deployable,
        sources: &[SourceNode],
        region: usize,
        restore: Option<&JobRestore>,
        number: usize,
    ) -> Result<Restarted, JobError>;
}

/// One attempt at running the job: its tasks, and how the master reaches them.
pub(crate) struct Attempt {
    /// Set when the whole attempt is cancelled.
    pub cancel: CancelToken,
    /// Each task until the master collected its outcome, in task order.
    handles: Vec<Option<Box<dyn TaskHandle>>>,
    /// Source nodes: operator id, factory and enumerator.
    pub sources: Vec<SourceNode>,
    /// Task index of each source subtask.
    pub source_tasks: Vec<usize>,
    /// What the coordinator records per task.
    pub tasks: Vec<TaskDescriptor>,
    /// The pipelined region of each task.
    pub region_of: Vec<usize>,
    regions: usize,
}

impl Attempt {
    /// An attempt of `job` whose tasks `handles` reach, with the job's split enumerators.
    pub fn new(job: &Deployable, sources: Vec<SourceNode>, handles: Vec<Box<dyn TaskHandle>>) -> Attempt {
        let plan = &job.plan;
        let mut tasks = Vec::with_capacity(plan.tasks.len());
        let mut source_tasks = Vec::new();
        for (index, task) in plan.tasks.iter().enumerate() {
            let vertex = &job.job.vertices[task.id.vertex];
            let head = &job.job.operator_ids[vertex.head];
            if sources.iter().any(|(id, _, _)| id == head) {
                source_tasks.push(index);
            }
            tasks.push(TaskDescriptor {
                subtask: task.id.subtask,
                parallelism: vertex.parallelism,
                operator_ids: vertex.nodes.iter().map(|n| job.job.operator_ids[*n].clone()).collect(),
            });
        }
        Attempt {
            cancel: CancelToken::new(),
            handles: handles.into_iter().map(Some).collect(),
            sources,
            source_tasks,
            tasks,
            region_of: plan.tasks.iter().map(|t| t.region).collect(),
            regions: plan.regions,
        }
    }

    /// Number of tasks.
    pub fn task_count(&self) -> usize {
        self.handles.len()
    }

    /// Cancels every task of the attempt.
    pub fn cancel(&self) {
        self.cancel.cancel();
        self.handles.iter().flatten().for_each(|h| h.cancel());
    }

    /// Cancels the tasks of `region`.
    pub fn cancel_region(&self, region: usize) {
        for task in self.tasks_of(region) {
            if let Some(handle) = &self.handles[task] {
                handle.cancel();
            }
        }
    }

    /// The tasks of `region`.
    pub fn tasks_of(&self, region: usize) -> impl Iterator<Item = usize> + '_ {
        self.region_of.iter().enumerate().filter(move |(_, r)| **r == region).map(|(t, _)| t)
    }

    /// Number of regions.
    pub fn regions(&self) -> usize {
        self.regions
    }

    /// Sends `mail` to every task still running.
    pub fn broadcast(&self, mail: impl Fn() -> Mail) {
        self.handles.iter().flatten().for_each(|h| h.send(mail()));
    }

    /// Sends `mail` to task `index`, if it still runs.
    pub fn send(&self, index: usize, mail: Mail) {
        if let Some(Some(handle)) = self.handles.get(index) {
            handle.send(mail);
        }
    }

    /// How task `index` ended, once (it reported its end).
    pub fn take_outcome(&mut self, index: usize) -> Option<TaskOutcome> {
        self.handles.get_mut(index).and_then(Option::take).map(|h| h.join())
    }

    /// Puts the handles of restarted tasks in place.
    pub fn replace(&mut self, restarted: Restarted) {
        for (index, handle) in restarted {
            if let Some(slot) = self.handles.get_mut(index) {
                *slot = Some(handle);
            }
        }
    }

    /// Waits for every task not collected yet; `None` for tasks already collected.
    pub fn join_all(&mut self) -> Vec<Option<TaskOutcome>> {
        self.handles.iter_mut().map(|h| h.take().map(|h| h.join())).collect()
    }
}
