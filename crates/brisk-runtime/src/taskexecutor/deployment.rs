//! Building a subtask from its deployment: the operator chain with its outputs (chained
//! operators, network writers, side outputs), its input gates, and the thread body that runs
//! it and reports how it ended. The same code serves any deployer; only where the channels
//! lead differs.

use crate::checkpoint::TaskEvent;
use crate::checkpoint::restore::TaskRestore;
use crate::error::{TaskError, TaskResult};
use crate::graph::job_graph::JobGraph;
use crate::graph::stream_graph::{
    ErasedEnumerator, ErasedOutput, ErasedReceiver, ErasedSender, NetworkSettings, NodeKind, SideOutputs, StreamGraph,
    TypeOps,
};
use crate::jobmaster::job::JobOptions;
use crate::metrics::task_io::TaskIoMetrics;
use crate::metrics::{AccumulatorRegistry, TaskReport};
use crate::network::channel::{CancelToken, TaskWaker};
use crate::network::partitioner::PartitionerSpec;
use crate::taskexecutor::chain::take_panicked_operator;
use crate::taskexecutor::context::{OperatorInfo, TaskContext, TaskEvents, TaskInfo};
use crate::taskexecutor::mailbox::Mailbox;
use crate::taskexecutor::task::{StreamTask, run_task};
use crate::taskexecutor::time::ProcessingTimeService;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use tracing::{debug, warn};

/// How one subtask ended.
pub(crate) struct TaskOutcome {
    pub task_name: String,
    pub result: TaskResult<TaskReport>,
}

/// One node's operator in a subtask's chain, with where its outputs go.
pub(crate) struct ChainedOperator {
    kind: NodeKind,
    info: OperatorInfo,
    output_type: Arc<dyn TypeOps>,
    outputs: Vec<OutputGroup>,
}

/// The consumers of one of an operator's outputs (main or a side output).
pub(crate) struct OutputGroup {
    side_output: Option<String>,
    type_ops: Arc<dyn TypeOps>,
    targets: Vec<OutputTarget>,
}

pub(crate) enum OutputTarget {
    Chained(Box<ChainedOperator>),
    Network { partitioner: PartitionerSpec, senders: Vec<ErasedSender>, consumer_max_parallelism: usize },
}

/// Everything a subtask's thread needs to build and run its task.
pub(crate) struct SubtaskDeployment {
    pub info: TaskInfo,
    pub head: ChainedOperator,
    pub inputs: [Vec<ErasedReceiver>; 2],
    pub input_type: Option<Arc<dyn TypeOps>>,
    pub enumerator: Option<ErasedEnumerator>,
    pub waker: Arc<TaskWaker>,
    pub mailbox: Mailbox,
    pub restore: Option<Arc<TaskRestore>>,
}

pub(crate) fn chain_for(
    graph: &StreamGraph,
    job: &JobGraph,
    node: usize,
    subtask: usize,
    senders: &mut HashMap<(usize, usize), Vec<ErasedSender>>,
) -> ChainedOperator {
    let n = &graph.nodes[node];
    let mut outputs: Vec<OutputGroup> = Vec::new();
    for (e, edge) in graph.out_edges(node) {
        let target = if job.chained[e] {
            OutputTarget::Chained(Box::new(chain_for(graph, job, edge.target, subtask, senders)))
        } else {
            let consumer_vertex = &job.vertices[job.vertex_of[edge.target]];
            OutputTarget::Network {
                partitioner: job.partitioners[e].clone(),
                senders: senders.remove(&(e, subtask)).unwrap_or_default(),
                consumer_max_parallelism: consumer_vertex.max_parallelism,
            }
        };
        match outputs.iter_mut().find(|g| g.side_output == edge.side_output) {
            Some(group) => group.targets.push(target),
            None => outputs.push(OutputGroup {
                side_output: edge.side_output.clone(),
                type_ops: edge.type_ops.clone(),
                targets: vec![target],
            }),
        }
    }
    ChainedOperator {
        kind: n.kind.clone_kind(),
        info: OperatorInfo {
            node_id: node,
            operator_id: job.operator_ids[node].clone(),
            name: n.name.clone(),
            uid: n.uid.clone(),
        },
        output_type: n.output_type.clone(),
        outputs,
    }
}

/// Builds the outputs of an operator: its main output and its side outputs.
fn build_outputs(
    op_outputs: Vec<OutputGroup>,
    output_type: &Arc<dyn TypeOps>,
    settings: &NetworkSettings,
) -> TaskResult<(ErasedOutput, SideOutputs)> {
    let mut main = None;
    let mut sides = Vec::new();
    for group in op_outputs {
        let mut targets = Vec::with_capacity(group.targets.len());
        for target in group.targets {
            targets.push(match target {
                OutputTarget::Chained(op) => build_chained(*op, settings)?,
                OutputTarget::Network { partitioner, senders, consumer_max_parallelism } => {
                    let settings = NetworkSettings { consumer_max_parallelism, ..settings.clone() };
                    group.type_ops.network_output(&partitioner, senders, &settings)?
                }
            });
        }
        let combined = group.type_ops.fan_out(targets)?;
        match group.side_output {
            None => main = Some(combined),
            Some(tag) => sides.push((tag, group.type_ops.side_output(combined)?)),
        }
    }
    let main = match main {
        Some(m) => m,
        None => output_type.fan_out(Vec::new())?,
    };
    Ok((main, sides))
}

fn build_chained(op: ChainedOperator, settings: &NetworkSettings) -> TaskResult<ErasedOutput> {
    let (main, sides) = build_outputs(op.outputs, &op.output_type, settings)?;
    match op.kind {
        NodeKind::OneInput(factory) => factory.create(main, sides, op.info),
        _ => Err(TaskError::msg("internal error: only one-input operators can be chained")),
    }
}

fn build_task(d: SubtaskDeployment, settings: &NetworkSettings) -> TaskResult<Box<dyn StreamTask>> {
    let head = d.head;
    let (main, sides) = build_outputs(head.outputs, &head.output_type, settings)?;
    let [inputs1, inputs2] = d.inputs;
    match head.kind {
        NodeKind::Source(factory) => {
            let enumerator = d.enumerator.ok_or_else(|| TaskError::msg("internal error: source without enumerator"))?;
            factory.create_task(enumerator, main, sides, head.info)
        }
        NodeKind::OneInput(factory) => {
            let link = factory.create(main, sides, head.info)?;
            let input_type = d.input_type.ok_or_else(|| TaskError::msg("internal error: operator without input"))?;
            input_type.one_input_task(inputs1, link)
        }
        NodeKind::TwoInput(factory) => factory.create_task(inputs1, inputs2, main, sides, head.info),
    }
}

/// What a subtask thread shares with its attempt and the job master.
pub(crate) struct SubtaskRuntime {
    /// The task's index in the execution plan.
    pub index: usize,
    pub options: JobOptions,
    /// Set when the task's region is cancelled or failing.
    pub cancel: CancelToken,
    /// Every task of the attempt here, woken when this one fails.
    pub wakers: Vec<Arc<TaskWaker>>,
    pub events: Sender<TaskEvent>,
    pub records_read: Arc<AtomicU64>,
    /// The task's live metrics.
    pub metrics: Arc<TaskIoMetrics>,
    /// Set by the first task of the region that fails (only it logs the failure).
    pub first_failure: Arc<AtomicBool>,
}

pub(crate) fn run_subtask(d: SubtaskDeployment, rt: SubtaskRuntime) -> TaskOutcome {
    let task_name = d.info.name_with_subtask();
    let options = &rt.options;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let settings = NetworkSettings {
            subtask_index: d.info.subtask_index,
            consumer_max_parallelism: d.info.max_parallelism,
            buffer_bytes: options.buffer_bytes,
            cancel: rt.cancel.clone(),
        };
        let ctx = TaskContext {
            info: d.info.clone(),
            execution_mode: options.execution_mode,
            config: options.config.clone(),
            processing_time: ProcessingTimeService::new(options.clock.clone()),
            accumulators: AccumulatorRegistry::default(),
            waker: d.waker.clone(),
            cancel: rt.cancel.clone(),
            records_read: rt.records_read.clone(),
            metrics: rt.metrics.clone(),
            state_backend: options.state_backend.clone(),
            clock: options.clock.clone(),
            mailbox: d.mailbox.clone(),
            auto_watermark_interval: options.auto_watermark_interval,
            checkpoint_config: options.checkpoint.is_enabled().then(|| options.checkpoint.clone()),
            events: TaskEvents::new(rt.index, rt.events.clone()),
            restore: d.restore.clone(),
            failures: options.failures.clone(),
        };
        let mut task = build_task(d, &settings)?;
        run_task(task.as_mut(), &ctx, options.buffer_timeout)
    }));
    let result = result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic payload".into());
        Err(TaskError::Panic { operator: take_panicked_operator().unwrap_or_else(|| task_name.clone()), message })
    });
    if let Err(e) = &result {
        if !e.is_consequence() && !rt.first_failure.swap(true, Ordering::AcqRel) {
            warn!(task = %task_name, error = %e, "task failed; cancelling the attempt");
        }
        rt.cancel.cancel();
        rt.wakers.iter().for_each(|w| w.wake());
    } else {
        debug!(task = %task_name, "task finished");
    }
    let _ = rt.events.send(TaskEvent::Ended(rt.index));
    TaskOutcome { task_name, result }
}
