//! The mini cluster's deployer: every subtask of the plan as a thread of this process. The
//! slots are spread over one or more task managers; channels within one are in-process,
//! channels between two go over TCP on 127.0.0.1, exactly as between processes.

use crate::checkpoint::TaskEvent;
use crate::checkpoint::restore::JobRestore;
use crate::error::{JobError, TaskError, lock};
use crate::graph::execution_plan::{ExecutionPlan, PlannedChannel, SubtaskId};
use crate::graph::stream_graph::{ErasedReceiver, ErasedSender};
use crate::jobmaster::deployer::{Deployer, Restarted, SourceNode, TaskHandle};
use crate::jobmaster::job::Deployable;
use crate::jobmaster::master::JobControl;
use crate::metrics::task_io::TaskIoMetrics;
use crate::network::channel::{CancelToken, TaskWaker};
use crate::network::tcp::ConnectionManager;
use crate::taskexecutor::context::TaskInfo;
use crate::taskexecutor::deployment::{SubtaskDeployment, SubtaskRuntime, TaskOutcome, chain_for, run_subtask};
use crate::taskexecutor::mailbox::{Mail, Mailbox};
use std::collections::HashMap;
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
    /// publish their mailboxes in `control`.
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

    /// The exchange of the next wiring, with a cancel token per region.
    fn exchange(&mut self, regions: usize) -> Exchange<'_> {
        self.generation += 1;
        Exchange {
            task_managers: &self.task_managers,
            generation: self.generation,
            region_cancel: (0..regions).map(|_| CancelToken::new()).collect(),
        }
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
            let metrics = TaskIoMetrics::new();
            {
                let mut published = lock(&self.control.task_metrics);
                let entry = (deployment.info.attempt_number, metrics.clone());
                match published.get_mut(index) {
                    Some(slot) => *slot = entry,
                    None => published.push(entry),
                }
            }
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
        let mut mailboxes = lock(&self.control.mailboxes);
        if only.is_none() {
            *mailboxes = wired.mailboxes;
        } else {
            for (vertex, by_subtask) in wired.mailboxes.into_iter().enumerate() {
                for (subtask, mailbox) in by_subtask.into_iter().enumerate() {
                    if only == Some(plan.tasks[plan.task_index(vertex, subtask)].region) {
                        mailboxes[vertex][subtask] = mailbox;
                    }
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
        let exchange = self.exchange(job.plan.regions);
        let wired = wire(job, restore, number, sources, None, &exchange)?;
        let region_cancel = exchange.region_cancel;
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
        let exchange = self.exchange(job.plan.regions);
        let wired = wire(job, restore, number, sources, Some(region), &exchange)?;
        let region_cancel = exchange.region_cancel;
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

/// How one wiring connects tasks: in-process, or over TCP between task managers.
struct Exchange<'a> {
    task_managers: &'a [ConnectionManager],
    generation: u64,
    /// What stops each region's tasks (and their network outputs).
    region_cancel: Vec<CancelToken>,
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

/// The tasks of one deployment, wired together, before their threads start.
struct Wiring {
    /// In task order.
    wakers: Vec<Arc<TaskWaker>>,
    /// By vertex and subtask.
    mailboxes: Vec<Vec<Mailbox>>,
    /// In task order; `None` for tasks outside the region being deployed.
    deployments: Vec<Option<SubtaskDeployment>>,
}

/// Wires channels, mailboxes and operator chains for every task of the plan, and the
/// restored state of the tasks of `only` (a region), or of all.
fn wire(
    deployable: &Deployable,
    restore: Option<&JobRestore>,
    attempt: usize,
    sources: &[SourceNode],
    only: Option<usize>,
    exchange: &Exchange<'_>,
) -> Result<Wiring, JobError> {
    let Deployable { graph, job, plan, options } = deployable;
    // One waker per subtask, so channels can wake their consumer.
    let wakers: Vec<Arc<TaskWaker>> = plan.tasks.iter().map(|_| TaskWaker::new()).collect();

    // Channels of every exchange, in the plan's order (which is the order of the consumers
    // a partitioner chooses from): senders by (edge, producer subtask), receivers by
    // (consumer vertex, subtask, input).
    let mut senders: HashMap<(usize, usize), Vec<ErasedSender>> = HashMap::new();
    let mut receivers: HashMap<(usize, usize, usize), Vec<ErasedReceiver>> = HashMap::new();
    for (index, channel) in plan.channels.iter().enumerate() {
        // A region is closed under channels: both ends are in the region or neither is.
        let region = plan.tasks[channel.producer].region;
        if only.is_some_and(|r| r != region) {
            continue;
        }
        let (producer, consumer) = (plan.tasks[channel.producer].id, plan.tasks[channel.consumer].id);
        let type_ops = &graph.edges[channel.edge].type_ops;
        let (capacity, waker) = (options.buffers_per_channel, wakers[channel.consumer].clone());
        let (tx, rx) = match exchange.remote(plan, channel) {
            None => type_ops.channel(capacity, waker),
            Some((from, to)) => {
                let id = exchange.generation << 32 | index as u64;
                let cancel = &exchange.region_cancel[region];
                type_ops.remote_channel(from, to, id, capacity, waker, cancel).map_err(|e| {
                    let name = |t: SubtaskId| {
                        let v = &job.vertices[t.vertex];
                        format!("{} ({}/{})", v.name, t.subtask + 1, v.parallelism)
                    };
                    JobError::Exchange(format!("channel {} -> {}: {e}", name(producer), name(consumer)))
                })?
            }
        };
        senders.entry((channel.edge, producer.subtask)).or_default().push(tx);
        receivers.entry((consumer.vertex, consumer.subtask, channel.input)).or_default().push(rx);
    }

    let mailboxes: Vec<Vec<Mailbox>> = job
        .vertices
        .iter()
        .enumerate()
        .map(|(vi, v)| (0..v.parallelism).map(|i| Mailbox::new(wakers[plan.task_index(vi, i)].clone())).collect())
        .collect();
    let mut deployments = Vec::with_capacity(plan.tasks.len());
    for (vi, v) in job.vertices.iter().enumerate() {
        let chain_ids: Vec<String> = v.nodes.iter().map(|n| job.operator_ids[*n].clone()).collect();
        let enumerator = sources.iter().find(|(id, _, _)| *id == job.operator_ids[v.head]).map(|(_, _, e)| e.clone());
        for (subtask, mailbox) in mailboxes[vi].iter().enumerate() {
            let task = plan.task_index(vi, subtask);
            let head = chain_for(graph, job, v.head, subtask, &mut senders);
            if only.is_some_and(|r| r != plan.tasks[task].region) {
                deployments.push(None);
                continue;
            }
            let task_restore = match restore {
                Some(r) => Some(Arc::new(
                    r.for_subtask(&chain_ids, subtask, v.parallelism, v.max_parallelism)
                        .map_err(JobError::InvalidJob)?,
                )),
                None => None,
            };
            deployments.push(Some(SubtaskDeployment {
                info: TaskInfo {
                    job_name: options.defaults.job_name.clone(),
                    task_name: v.name.clone(),
                    subtask_index: subtask,
                    parallelism: v.parallelism,
                    max_parallelism: v.max_parallelism,
                    attempt_number: attempt,
                },
                head,
                inputs: [
                    receivers.remove(&(vi, subtask, 1)).unwrap_or_default(),
                    receivers.remove(&(vi, subtask, 2)).unwrap_or_default(),
                ],
                input_type: graph.in_edges(v.head).next().map(|(_, e)| e.type_ops.clone()),
                enumerator: enumerator.clone(),
                waker: wakers[task].clone(),
                mailbox: mailbox.clone(),
                restore: task_restore,
            }));
        }
    }
    Ok(Wiring { wakers, mailboxes, deployments })
}
