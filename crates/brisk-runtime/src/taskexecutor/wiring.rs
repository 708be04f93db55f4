//! Wiring the tasks a process runs: their channels by the execution plan (in-process, or over
//! TCP where the other end runs elsewhere), their mailboxes, operator chains and restored
//! state. The mini cluster wires every task of the plan; a worker process only those in its
//! slots. Where each channel's ends are is the [`Placement`]'s answer.

use crate::checkpoint::restore::JobRestore;
use crate::error::JobError;
use crate::graph::execution_plan::{ExecutionPlan, SubtaskId};
use crate::graph::stream_graph::{ErasedEnumerator, ErasedReceiver, ErasedSender, TypeOps};
use crate::jobmaster::job::Deployable;
use crate::network::channel::{CancelToken, TaskWaker};
use crate::network::tcp::NetworkError;
use crate::taskexecutor::context::TaskInfo;
use crate::taskexecutor::deployment::{SubtaskDeployment, chain_for};
use crate::taskexecutor::mailbox::Mailbox;
use std::collections::HashMap;
use std::sync::Arc;

/// The ends of one channel that are in this process.
pub(crate) type ChannelEnds = (Option<ErasedSender>, Option<ErasedReceiver>);

/// Where the tasks of a wiring run, and so how their channels are made.
pub(crate) trait Placement {
    /// Whether task `task` of the plan runs in this process.
    fn is_local(&self, task: usize) -> bool;

    /// The ends in this process of plan channel `index`, of element type `type_ops`: a
    /// bounded channel of `capacity` messages waking `waker` (its consumer); `cancel` stops
    /// its network output.
    fn ends(
        &self,
        plan: &ExecutionPlan,
        index: usize,
        type_ops: &Arc<dyn TypeOps>,
        capacity: usize,
        waker: Arc<TaskWaker>,
        cancel: &CancelToken,
    ) -> Result<ChannelEnds, NetworkError>;
}

/// The tasks of one deployment, wired together, before their threads start.
pub(crate) struct Wiring {
    /// In task order.
    pub wakers: Vec<Arc<TaskWaker>>,
    /// In task order; `None` for tasks not deployed now (elsewhere, or outside the region).
    pub deployments: Vec<Option<SubtaskDeployment>>,
}

/// What a wiring deploys and from what.
pub(crate) struct WiringRequest<'a> {
    /// The job.
    pub deployable: &'a Deployable,
    /// State to restore the deployed tasks from.
    pub restore: Option<&'a JobRestore>,
    /// The attempt number the tasks report.
    pub attempt: usize,
    /// The enumerator of each source node by operator id (the enumerator itself in the
    /// coordinating process, a proxy in a worker).
    pub enumerators: &'a [(String, ErasedEnumerator)],
    /// Only the tasks of this region (region failover), or all.
    pub only: Option<usize>,
    /// What stops each region's tasks (and their network outputs).
    pub region_cancel: &'a [CancelToken],
}

/// Wires channels, mailboxes and operator chains for the tasks of `request` that `placement`
/// puts in this process.
pub(crate) fn wire(request: &WiringRequest<'_>, placement: &dyn Placement) -> Result<Wiring, JobError> {
    let WiringRequest { deployable, restore, attempt, enumerators, only, region_cancel } = *request;
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
        let waker = wakers[channel.consumer].clone();
        let (tx, rx) = placement
            .ends(plan, index, type_ops, options.buffers_per_channel, waker, &region_cancel[region])
            .map_err(|e| {
                let name = |t: SubtaskId| {
                    let v = &job.vertices[t.vertex];
                    format!("{} ({}/{})", v.name, t.subtask + 1, v.parallelism)
                };
                JobError::Exchange(format!("channel {} -> {}: {e}", name(producer), name(consumer)))
            })?;
        if let Some(tx) = tx {
            senders.entry((channel.edge, producer.subtask)).or_default().push(tx);
        }
        if let Some(rx) = rx {
            receivers.entry((consumer.vertex, consumer.subtask, channel.input)).or_default().push(rx);
        }
    }

    let mut deployments = Vec::with_capacity(plan.tasks.len());
    for (vi, v) in job.vertices.iter().enumerate() {
        let chain_ids: Vec<String> = v.nodes.iter().map(|n| job.operator_ids[*n].clone()).collect();
        let enumerator = enumerators.iter().find(|(id, _)| *id == job.operator_ids[v.head]).map(|(_, e)| e.clone());
        for subtask in 0..v.parallelism {
            let task = plan.task_index(vi, subtask);
            if only.is_some_and(|r| r != plan.tasks[task].region) || !placement.is_local(task) {
                deployments.push(None);
                continue;
            }
            let head = chain_for(graph, job, v.head, subtask, &mut senders);
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
                mailbox: Mailbox::new(wakers[task].clone()),
                restore: task_restore,
            }));
        }
    }
    Ok(Wiring { wakers, deployments })
}

/// The id of plan channel `index` on TCP connections in wiring number `generation`: ids never
/// repeat across restarts, so a late message of an earlier attempt reaches nobody.
pub(crate) fn network_channel_id(generation: u64, index: usize) -> u64 {
    generation << 32 | index as u64
}
