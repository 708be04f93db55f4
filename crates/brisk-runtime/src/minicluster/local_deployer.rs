//! The mini cluster's deployer: every subtask of the plan as a thread of this process. The
//! slots are spread over one or more task managers; channels within one are in-process,
//! channels between two go over TCP on 127.0.0.1, exactly as between processes.

use crate::checkpoint::TaskEvent;
use crate::checkpoint::restore::JobRestore;
use crate::error::{JobError, TaskError, lock};
use crate::graph::execution_plan::{ExecutionPlan, PlannedChannel};
use crate::graph::stream_graph::{ErasedEnumerator, TypeOps};
use crate::jobmaster::deployer::{Deployer, Restarted, SourceNode, TaskHandle};
use crate::jobmaster::job::Deployable;
use crate::jobmaster::master::JobControl;
use crate::metrics::task_io::TaskIoMetrics;
use crate::network::channel::{CancelToken, TaskWaker};
use crate::network::tcp::{ConnectionManager, NetworkError};
use crate::taskexecutor::deployment::{SubtaskRuntime, TaskOutcome, run_subtask};
use crate::taskexecutor::mailbox::{Mail, Mailbox};
use crate::taskexecutor::wiring::{ChannelEnds, Placement, Wiring, WiringRequest, network_channel_id, wire};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use tracing::debug;

/// Starts subtasks as threads of this process.
pub(crate) struct LocalDeployer {
    events: Sender<TaskEvent>,
    control: Arc<JobControl>,
    /// The wakers of the running tasks, in task order.
    wakers: Vec<Arc<TaskWaker>>,
    /// The network endpoint of each task manager, when there are several.
    task_managers: Vec<ConnectionManager>,
    /// Numbers each wiring, so channel ids on the connections never repeat across restarts.
    generation: u64,
}

impl LocalDeployer {
    /// A deployer over `task_managers` task managers whose tasks report to `events` and
    /// publish their metrics and state lookups in `control`.
    pub fn new(events: Sender<TaskEvent>, control: Arc<JobControl>, task_managers: usize) -> Result<Self, JobError> {
        let task_managers = match task_managers {
            0 | 1 => Vec::new(),
            n => (0..n)
                .map(|_| ConnectionManager::bind("127.0.0.1:0"))
                .collect::<Result<_, _>>()
                .map_err(|e| JobError::Exchange(e.to_string()))?,
        };
        Ok(LocalDeployer { events, control, wakers: Vec::new(), task_managers, generation: 0 })
    }

    /// Wires the tasks of `job` (of region `only`, or all) for attempt `number`, with a
    /// cancel token per region.
    fn wire(
        &mut self,
        job: &Deployable,
        sources: &[SourceNode],
        restore: Option<&JobRestore>,
        number: usize,
        only: Option<usize>,
    ) -> Result<(Wiring, Vec<CancelToken>), JobError> {
        self.generation += 1;
        let exchange = Exchange { task_managers: &self.task_managers, generation: self.generation };
        let region_cancel: Vec<CancelToken> = (0..job.plan.regions).map(|_| CancelToken::new()).collect();
        let enumerators: Vec<(String, ErasedEnumerator)> =
            sources.iter().map(|(id, _, e)| (id.clone(), e.clone())).collect();
        let request = WiringRequest {
            deployable: job,
            restore,
            attempt: number,
            enumerators: &enumerators,
            only,
            region_cancel: &region_cancel,
        };
        Ok((wire(&request, &exchange)?, region_cancel))
    }

    /// Starts the threads of `deployments` (`None`: a task not deployed now); the tasks of a
    /// region share a cancel token. On failure, what was started is cancelled.
    fn start(
        &mut self,
        job: &Deployable,
        wired: Wiring,
        region_cancel: Vec<CancelToken>,
        only: Option<usize>,
    ) -> Result<Restarted, JobError> {
        let plan = &job.plan;
        let first_failure: Vec<Arc<AtomicBool>> = (0..plan.regions).map(|_| Arc::new(AtomicBool::new(false))).collect();
        for (task, waker) in wired.wakers.iter().enumerate() {
            if only.is_none_or(|r| plan.tasks[task].region == r) {
                match self.wakers.get_mut(task) {
                    Some(slot) => *slot = waker.clone(),
                    None => self.wakers.push(waker.clone()),
                }
            }
        }
        let mut started: Restarted = Vec::new();
        for (index, deployment) in wired.deployments.into_iter().enumerate() {
            let Some(deployment) = deployment else { continue };
            let region = plan.tasks[index].region;
            let name = deployment.info.name_with_subtask();
            debug!(task = %name, attempt = deployment.info.attempt_number, slot = plan.tasks[index].slot, "deploying subtask");
            let (mailbox, waker) = (deployment.mailbox.clone(), deployment.waker.clone());
            self.control.publish_state_lookup(index, Arc::new(mailbox.clone()));
            let metrics = TaskIoMetrics::new();
            self.control.publish_task(index, deployment.info.attempt_number, metrics.clone());
            let runtime = SubtaskRuntime {
                index,
                options: job.options.clone(),
                cancel: region_cancel[region].clone(),
                wakers: self.wakers.clone(),
                events: self.events.clone(),
                records_read: self.control.records_read.clone(),
                metrics,
                first_failure: first_failure[region].clone(),
            };
            let spawned = std::thread::Builder::new().name(name).spawn(move || run_subtask(deployment, runtime));
            match spawned {
                Ok(thread) => started.push((
                    index,
                    Box::new(LocalTask { mailbox, waker, region_cancel: region_cancel[region].clone(), thread }),
                )),
                Err(e) => {
                    // Joined here, so their end events reach the master before it deploys again
                    // and no thread outlives the failed deployment.
                    started.iter().for_each(|(_, task)| task.cancel());
                    started.into_iter().for_each(|(_, task)| drop(task.join()));
                    return Err(JobError::Spawn(e));
                }
            }
        }
        Ok(started)
    }
}

impl Deployer for LocalDeployer {
    fn deploy(
        &mut self,
        job: &Deployable,
        sources: &[SourceNode],
        restore: Option<&JobRestore>,
        number: usize,
    ) -> Result<Vec<Box<dyn TaskHandle>>, JobError> {
        self.wakers.clear();
        lock(&self.control.task_metrics).clear();
        let (wired, region_cancel) = self.wire(job, sources, restore, number, None)?;
        Ok(self.start(job, wired, region_cancel, None)?.into_iter().map(|(_, task)| task).collect())
    }

    fn redeploy_region(
        &mut self,
        job: &Deployable,
        sources: &[SourceNode],
        region: usize,
        restore: Option<&JobRestore>,
        number: usize,
    ) -> Result<Restarted, JobError> {
        let (wired, region_cancel) = self.wire(job, sources, restore, number, Some(region))?;
        self.start(job, wired, region_cancel, Some(region))
    }
}

/// A subtask running as a thread of this process.
struct LocalTask {
    mailbox: Mailbox,
    waker: Arc<TaskWaker>,
    region_cancel: CancelToken,
    thread: JoinHandle<TaskOutcome>,
}

impl TaskHandle for LocalTask {
    fn send(&self, mail: Mail) {
        self.mailbox.send(mail);
    }

    fn cancel(&self) {
        self.region_cancel.cancel();
        self.waker.wake();
    }

    fn join(self: Box<Self>) -> TaskOutcome {
        self.thread.join().unwrap_or_else(|_| TaskOutcome {
            task_name: "unknown".into(),
            result: Err(TaskError::msg("a task thread died unexpectedly")),
        })
    }
}

/// How one wiring of the mini cluster connects tasks: in-process, or over TCP between task
/// managers.
struct Exchange<'a> {
    task_managers: &'a [ConnectionManager],
    generation: u64,
}

impl Exchange<'_> {
    /// The task managers of a channel's two ends, when they differ.
    fn remote(
        &self,
        plan: &ExecutionPlan,
        channel: &PlannedChannel,
    ) -> Option<(&ConnectionManager, &ConnectionManager)> {
        let n = self.task_managers.len();
        if n < 2 {
            return None;
        }
        // Slots fill the task managers in order, as a cluster's slots would be offered.
        let of = |task: usize| plan.tasks[task].slot * n / plan.slots.max(1);
        let (p, c) = (of(channel.producer), of(channel.consumer));
        (p != c).then(|| (&self.task_managers[p], &self.task_managers[c]))
    }
}

impl Placement for Exchange<'_> {
    fn is_local(&self, _task: usize) -> bool {
        true
    }

    fn ends(
        &self,
        plan: &ExecutionPlan,
        index: usize,
        type_ops: &Arc<dyn TypeOps>,
        capacity: usize,
        waker: Arc<TaskWaker>,
        cancel: &CancelToken,
    ) -> Result<ChannelEnds, NetworkError> {
        match self.remote(plan, &plan.channels[index]) {
            None => {
                let (tx, rx) = type_ops.channel(capacity, waker);
                Ok((Some(tx), Some(rx)))
            }
            Some((from, to)) => {
                let id = network_channel_id(self.generation, index);
                let rx = type_ops.remote_input(to, id, capacity, waker)?;
                let tx = type_ops.remote_output(from, to.local_addr(), id, capacity, cancel)?;
                Ok((Some(tx), Some(rx)))
            }
        }
    }
}
