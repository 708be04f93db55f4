//! The stream graph: operators as the API declared them, with typed factories behind
//! type-erased handles so the runtime can wire subtasks together without knowing user types.

use crate::checkpoint::CheckpointId;
use crate::error::{TaskError, TaskResult};
use crate::network::channel::{CancelToken, ChannelReceiver, ChannelSender, TaskWaker, channel};
use crate::network::input_gate::InputGate;
use crate::network::partitioner::PartitionerSpec;
use crate::network::record_writer::RecordWriterOutput;
use crate::network::tcp::{ConnectionManager, NetworkError};
use crate::source::watermark::WatermarkStrategy;
use crate::source::{
    BadRecordPolicy, EncodedNextSplit, EnumeratorCell, RemoteEnumerator, RemoteSplits, SharedEnumerator, Source,
    SourceLink, SourceSplit, SplitAssignments,
};
use crate::taskexecutor::chain::{OneInputLink, TwoInputHead, TwoInputLink};
use crate::taskexecutor::context::OperatorInfo;
use crate::taskexecutor::operator::{OneInputStreamOperator, TwoInputStreamOperator};
use crate::taskexecutor::output::{
    BroadcastingOutput, DiscardOutput, ErasedSideOutput, OperatorOutput, Output, SideOutput,
};
use crate::taskexecutor::task::{OneInputStreamTask, SourceStreamTask, StreamTask, TwoInputStreamTask};
use brisk_core::{BoxError, Data, StreamRecord};
use std::any::Any;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;

/// A `Box<dyn Output<T>>` behind `Any`.
pub type ErasedOutput = Box<dyn Any>;
/// A `ChannelSender<T>` behind `Any`.
pub type ErasedSender = Box<dyn Any + Send>;
/// A `ChannelReceiver<T>` behind `Any`.
pub type ErasedReceiver = Box<dyn Any + Send>;
/// A shared split enumerator behind `Any`.
pub type ErasedEnumerator = Arc<dyn Any + Send + Sync>;
/// Side outputs of an operator by tag id.
pub type SideOutputs = Vec<(String, Box<dyn ErasedSideOutput>)>;

fn wrong_type(what: &str) -> TaskError {
    TaskError::msg(format!("internal error: {what} of an unexpected record type"))
}

fn downcast_output<T: 'static>(output: ErasedOutput) -> TaskResult<Box<dyn Output<T>>> {
    output.downcast::<Box<dyn Output<T>>>().map(|b| *b).map_err(|_| wrong_type("output"))
}

fn erase_output<T: 'static>(output: Box<dyn Output<T>>) -> ErasedOutput {
    Box::new(output)
}

fn downcast_receivers<T: 'static>(receivers: Vec<ErasedReceiver>) -> TaskResult<Vec<ChannelReceiver<T>>> {
    receivers
        .into_iter()
        .map(|r| r.downcast::<ChannelReceiver<T>>().map(|b| *b).map_err(|_| wrong_type("input channel")))
        .collect()
}

/// Settings a network output needs.
#[derive(Clone, Debug)]
pub struct NetworkSettings {
    /// Index of the producing subtask.
    pub subtask_index: usize,
    /// Key groups of the consumer (for hash partitioning).
    pub consumer_max_parallelism: usize,
    /// Bytes per network buffer; divided by the record size gives records per buffer.
    pub buffer_bytes: usize,
    /// The job's cancellation flag.
    pub cancel: CancelToken,
}

/// Everything the runtime does with values of one stream type, without naming the type.
pub trait TypeOps: Send + Sync {
    /// The record type's name, for errors and the web UI.
    fn type_name(&self) -> &'static str;
    /// A channel of this type.
    fn channel(&self, capacity: usize, consumer: Arc<TaskWaker>) -> (ErasedSender, ErasedReceiver);
    /// The consuming end of channel `id` of this type arriving over TCP at `network`: it
    /// announces `capacity` credits.
    fn remote_input(
        &self,
        network: &ConnectionManager,
        id: u64,
        capacity: usize,
        waker: Arc<TaskWaker>,
    ) -> Result<ErasedReceiver, NetworkError>;
    /// The producing end of channel `id` of this type, sent from `network` over TCP to the
    /// process at `peer`; it queues `capacity` messages.
    fn remote_output(
        &self,
        network: &ConnectionManager,
        peer: SocketAddr,
        id: u64,
        capacity: usize,
        cancel: &CancelToken,
    ) -> Result<ErasedSender, NetworkError>;
    /// A network writer into `senders`.
    fn network_output(
        &self,
        partitioner: &PartitionerSpec,
        senders: Vec<ErasedSender>,
        settings: &NetworkSettings,
    ) -> TaskResult<ErasedOutput>;
    /// One output feeding all of `outputs` (nothing for none, itself for one).
    fn fan_out(&self, outputs: Vec<ErasedOutput>) -> TaskResult<ErasedOutput>;
    /// A side-output slot feeding `output`.
    fn side_output(&self, output: ErasedOutput) -> TaskResult<Box<dyn ErasedSideOutput>>;
    /// A one-input task reading `receivers` into `head`.
    fn one_input_task(&self, receivers: Vec<ErasedReceiver>, head: ErasedOutput) -> TaskResult<Box<dyn StreamTask>>;
}

struct Typed<T>(PhantomData<fn() -> T>);

/// The [`TypeOps`] of `T`.
pub fn type_ops<T: Data>() -> Arc<dyn TypeOps> {
    Arc::new(Typed::<T>(PhantomData))
}

impl<T: Data> TypeOps for Typed<T> {
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn channel(&self, capacity: usize, consumer: Arc<TaskWaker>) -> (ErasedSender, ErasedReceiver) {
        let (tx, rx) = channel::<T>(capacity, consumer);
        (Box::new(tx), Box::new(rx))
    }

    fn remote_input(
        &self,
        network: &ConnectionManager,
        id: u64,
        capacity: usize,
        waker: Arc<TaskWaker>,
    ) -> Result<ErasedReceiver, NetworkError> {
        let (local, rx) = channel::<T>(capacity, waker);
        network.register_input(id, local, capacity)?;
        Ok(Box::new(rx))
    }

    fn remote_output(
        &self,
        network: &ConnectionManager,
        peer: SocketAddr,
        id: u64,
        capacity: usize,
        cancel: &CancelToken,
    ) -> Result<ErasedSender, NetworkError> {
        Ok(Box::new(network.connect_output::<T>(peer, id, capacity, cancel)?))
    }

    fn network_output(
        &self,
        partitioner: &PartitionerSpec,
        senders: Vec<ErasedSender>,
        settings: &NetworkSettings,
    ) -> TaskResult<ErasedOutput> {
        let senders: Vec<ChannelSender<T>> = senders
            .into_iter()
            .map(|s| s.downcast::<ChannelSender<T>>().map(|b| *b).map_err(|_| wrong_type("output channel")))
            .collect::<TaskResult<_>>()?;
        let partitioner = partitioner.instantiate::<T>(settings.subtask_index, settings.consumer_max_parallelism)?;
        let record_size = std::mem::size_of::<StreamRecord<T>>().max(1);
        let per_buffer = (settings.buffer_bytes / record_size).clamp(1, 4096);
        Ok(erase_output::<T>(Box::new(RecordWriterOutput::new(
            senders,
            partitioner,
            per_buffer,
            settings.cancel.clone(),
        ))))
    }

    fn fan_out(&self, outputs: Vec<ErasedOutput>) -> TaskResult<ErasedOutput> {
        let mut typed: Vec<Box<dyn Output<T>>> =
            outputs.into_iter().map(downcast_output::<T>).collect::<TaskResult<_>>()?;
        Ok(match typed.len() {
            0 => erase_output::<T>(Box::new(DiscardOutput)),
            1 => erase_output::<T>(typed.remove(0)),
            _ => erase_output::<T>(Box::new(BroadcastingOutput::new(typed))),
        })
    }

    fn side_output(&self, output: ErasedOutput) -> TaskResult<Box<dyn ErasedSideOutput>> {
        Ok(Box::new(SideOutput(downcast_output::<T>(output)?)))
    }

    fn one_input_task(&self, receivers: Vec<ErasedReceiver>, head: ErasedOutput) -> TaskResult<Box<dyn StreamTask>> {
        let gate = InputGate::new(downcast_receivers::<T>(receivers)?);
        Ok(Box::new(OneInputStreamTask::new(gate, downcast_output::<T>(head)?)))
    }
}

/// Creates the operator of a one-input node in each subtask.
pub trait OneInputFactory: Send {
    /// A copy for another subtask.
    fn clone_box(&self) -> Box<dyn OneInputFactory>;
    /// The operator linked to its outputs, as the `Output` of its input type.
    fn create(self: Box<Self>, main: ErasedOutput, sides: SideOutputs, info: OperatorInfo) -> TaskResult<ErasedOutput>;
}

struct OneInputFactoryImpl<IN, OUT, F> {
    make: F,
    _types: PhantomData<fn(IN) -> OUT>,
}

/// A factory that builds a fresh operator per subtask with `make` (each subtask gets its own
/// copy of the user function, as Flink deserializes one per subtask).
pub fn one_input_factory<IN, OUT, OP, F>(make: F) -> Box<dyn OneInputFactory>
where
    IN: Data,
    OUT: Data,
    OP: OneInputStreamOperator<IN, OUT> + 'static,
    F: Fn() -> OP + Clone + Send + 'static,
{
    Box::new(OneInputFactoryImpl::<IN, OUT, F> { make, _types: PhantomData })
}

impl<IN, OUT, OP, F> OneInputFactory for OneInputFactoryImpl<IN, OUT, F>
where
    IN: Data,
    OUT: Data,
    OP: OneInputStreamOperator<IN, OUT> + 'static,
    F: Fn() -> OP + Clone + Send + 'static,
{
    fn clone_box(&self) -> Box<dyn OneInputFactory> {
        Box::new(OneInputFactoryImpl::<IN, OUT, F> { make: self.make.clone(), _types: PhantomData })
    }

    fn create(self: Box<Self>, main: ErasedOutput, sides: SideOutputs, info: OperatorInfo) -> TaskResult<ErasedOutput> {
        let out = OperatorOutput::new(downcast_output::<OUT>(main)?, sides);
        let link: Box<dyn Output<IN>> = Box::new(OneInputLink::new((self.make)(), out, info));
        Ok(erase_output::<IN>(link))
    }
}

/// Creates the operator and task of a two-input node in each subtask.
pub trait TwoInputFactory: Send {
    /// A copy for another subtask.
    fn clone_box(&self) -> Box<dyn TwoInputFactory>;
    /// The task reading both inputs into the operator.
    fn create_task(
        self: Box<Self>,
        inputs1: Vec<ErasedReceiver>,
        inputs2: Vec<ErasedReceiver>,
        main: ErasedOutput,
        sides: SideOutputs,
        info: OperatorInfo,
    ) -> TaskResult<Box<dyn StreamTask>>;
    /// The operator linked to its outputs, as a `Box<dyn TwoInputHead<IN1, IN2>>` behind `Any`
    /// (for operator test harnesses, which drive it without a task).
    fn create_head(
        self: Box<Self>,
        main: ErasedOutput,
        sides: SideOutputs,
        info: OperatorInfo,
    ) -> TaskResult<ErasedOutput>;
}

struct TwoInputFactoryImpl<IN1, IN2, OUT, F> {
    make: F,
    _types: PhantomData<fn(IN1, IN2) -> OUT>,
}

/// A factory building a fresh two-input operator per subtask with `make`.
pub fn two_input_factory<IN1, IN2, OUT, OP, F>(make: F) -> Box<dyn TwoInputFactory>
where
    IN1: Data,
    IN2: Data,
    OUT: Data,
    OP: TwoInputStreamOperator<IN1, IN2, OUT> + 'static,
    F: Fn() -> OP + Clone + Send + 'static,
{
    Box::new(TwoInputFactoryImpl::<IN1, IN2, OUT, F> { make, _types: PhantomData })
}

impl<IN1, IN2, OUT, OP, F> TwoInputFactory for TwoInputFactoryImpl<IN1, IN2, OUT, F>
where
    IN1: Data,
    IN2: Data,
    OUT: Data,
    OP: TwoInputStreamOperator<IN1, IN2, OUT> + 'static,
    F: Fn() -> OP + Clone + Send + 'static,
{
    fn clone_box(&self) -> Box<dyn TwoInputFactory> {
        Box::new(TwoInputFactoryImpl::<IN1, IN2, OUT, F> { make: self.make.clone(), _types: PhantomData })
    }

    fn create_head(
        self: Box<Self>,
        main: ErasedOutput,
        sides: SideOutputs,
        info: OperatorInfo,
    ) -> TaskResult<ErasedOutput> {
        let head: Box<dyn TwoInputHead<IN1, IN2>> = self.link(main, sides, info)?;
        Ok(Box::new(head))
    }

    fn create_task(
        self: Box<Self>,
        inputs1: Vec<ErasedReceiver>,
        inputs2: Vec<ErasedReceiver>,
        main: ErasedOutput,
        sides: SideOutputs,
        info: OperatorInfo,
    ) -> TaskResult<Box<dyn StreamTask>> {
        let head = self.link(main, sides, info)?;
        let gate1 = InputGate::new(downcast_receivers::<IN1>(inputs1)?);
        let gate2 = InputGate::new(downcast_receivers::<IN2>(inputs2)?);
        Ok(Box::new(TwoInputStreamTask::new(gate1, gate2, head)))
    }
}

impl<IN1, IN2, OUT, OP, F> TwoInputFactoryImpl<IN1, IN2, OUT, F>
where
    IN1: Data,
    IN2: Data,
    OUT: Data,
    OP: TwoInputStreamOperator<IN1, IN2, OUT> + 'static,
    F: Fn() -> OP + Clone + Send + 'static,
{
    fn link(
        &self,
        main: ErasedOutput,
        sides: SideOutputs,
        info: OperatorInfo,
    ) -> TaskResult<Box<TwoInputLink<IN1, IN2, OUT, OP>>> {
        let out = OperatorOutput::new(downcast_output::<OUT>(main)?, sides);
        Ok(Box::new(TwoInputLink::new((self.make)(), out, info)))
    }
}

/// Creates the enumerator of a source node once and its readers per subtask.
pub trait SourceFactory: Send {
    /// A copy for another subtask.
    fn clone_box(&self) -> Box<dyn SourceFactory>;
    /// Whether the source ends by itself.
    fn is_bounded(&self) -> bool;
    /// The enumerator, shared by all readers of the node, for a run that starts from
    /// checkpoint `epoch` (0 for none).
    fn create_enumerator(&self, parallelism: usize, epoch: CheckpointId) -> Result<ErasedEnumerator, BoxError>;
    /// Snapshots the enumerator for checkpoint `id` and pauses split assignment until each
    /// reader took its snapshot.
    fn snapshot_enumerator(&self, enumerator: &ErasedEnumerator, id: CheckpointId) -> Result<Vec<u8>, BoxError>;
    /// Lets readers take splits again (the checkpoint was abandoned).
    fn resume_enumerator(&self, enumerator: &ErasedEnumerator);
    /// Work for reader `subtask` in another process, the split encoded.
    fn next_split_encoded(&self, enumerator: &ErasedEnumerator, subtask: usize) -> Result<EncodedNextSplit, BoxError>;
    /// Reader `subtask` in another process took its snapshot (or the checkpoint was abandoned).
    fn resume_reader(&self, enumerator: &ErasedEnumerator, subtask: usize);
    /// Checkpoint `id` completed (readers restarted alone now restore from it or later).
    fn enumerator_checkpoint_completed(&self, enumerator: &ErasedEnumerator, id: CheckpointId);
    /// Restores the enumerator from its snapshot in checkpoint `id` and the readers'
    /// in-progress splits.
    fn restore_enumerator(
        &self,
        enumerator: &ErasedEnumerator,
        id: CheckpointId,
        state: &[u8],
        readers: &[Vec<u8>],
    ) -> Result<(), BoxError>;
    /// Reader `subtask` restarts alone from checkpoint `from`, where it was reading the splits
    /// in `reader_state` (region failover): its splits go back to it.
    fn reset_reader(
        &self,
        enumerator: &ErasedEnumerator,
        subtask: usize,
        from: CheckpointId,
        reader_state: Option<&[u8]>,
    ) -> Result<(), BoxError>;
    /// Treats the records the source cannot read as `policy` says.
    fn set_bad_record_policy(&mut self, policy: BadRecordPolicy);
    /// The source task of one subtask.
    fn create_task(
        self: Box<Self>,
        enumerator: ErasedEnumerator,
        main: ErasedOutput,
        sides: SideOutputs,
        info: OperatorInfo,
    ) -> TaskResult<Box<dyn StreamTask>>;
}

struct SourceFactoryImpl<T, S> {
    source: Arc<S>,
    strategy: Option<WatermarkStrategy<T>>,
    policy: BadRecordPolicy,
}

/// The factory of a source node reading `source` with timestamps and watermarks from
/// `strategy`.
pub fn source_factory<T: Data, S: Source<T>>(
    source: S,
    strategy: Option<WatermarkStrategy<T>>,
) -> Box<dyn SourceFactory> {
    Box::new(SourceFactoryImpl::<T, S> { source: Arc::new(source), strategy, policy: BadRecordPolicy::default() })
}

impl<T: Data, S: Source<T>> SourceFactory for SourceFactoryImpl<T, S> {
    fn clone_box(&self) -> Box<dyn SourceFactory> {
        Box::new(SourceFactoryImpl::<T, S> {
            source: self.source.clone(),
            strategy: self.strategy.clone(),
            policy: self.policy,
        })
    }

    fn set_bad_record_policy(&mut self, policy: BadRecordPolicy) {
        self.policy = policy;
    }

    fn is_bounded(&self) -> bool {
        self.source.boundedness() == crate::source::Boundedness::Bounded
    }

    fn create_enumerator(&self, parallelism: usize, epoch: CheckpointId) -> Result<ErasedEnumerator, BoxError> {
        let enumerator: SharedEnumerator<S::Split> =
            Arc::new(EnumeratorCell::new(self.source.create_enumerator(parallelism)?, parallelism, epoch));
        Ok(Arc::new(enumerator))
    }

    fn snapshot_enumerator(&self, enumerator: &ErasedEnumerator, id: CheckpointId) -> Result<Vec<u8>, BoxError> {
        cell::<S::Split>(enumerator)?.snapshot_for_checkpoint(id)
    }

    fn enumerator_checkpoint_completed(&self, enumerator: &ErasedEnumerator, id: CheckpointId) {
        if let Ok(cell) = cell::<S::Split>(enumerator) {
            cell.checkpoint_completed(id);
        }
    }

    fn reset_reader(
        &self,
        enumerator: &ErasedEnumerator,
        subtask: usize,
        from: CheckpointId,
        reader_state: Option<&[u8]>,
    ) -> Result<(), BoxError> {
        let checkpointed = match reader_state {
            Some(bytes) => decode_splits::<S::Split>(bytes)?,
            None => Vec::new(),
        };
        cell::<S::Split>(enumerator)?.reset_reader(subtask, from, checkpointed);
        Ok(())
    }

    fn resume_enumerator(&self, enumerator: &ErasedEnumerator) {
        if let Ok(cell) = cell::<S::Split>(enumerator) {
            cell.resume_all();
        }
    }

    fn next_split_encoded(&self, enumerator: &ErasedEnumerator, subtask: usize) -> Result<EncodedNextSplit, BoxError> {
        cell::<S::Split>(enumerator)?.next_split_encoded(subtask)
    }

    fn resume_reader(&self, enumerator: &ErasedEnumerator, subtask: usize) {
        if let Ok(cell) = cell::<S::Split>(enumerator) {
            cell.resume(subtask);
        }
    }

    fn restore_enumerator(
        &self,
        enumerator: &ErasedEnumerator,
        id: CheckpointId,
        state: &[u8],
        readers: &[Vec<u8>],
    ) -> Result<(), BoxError> {
        let cell = cell::<S::Split>(enumerator)?;
        let mut in_progress = Vec::new();
        for bytes in readers {
            in_progress.extend(decode_splits::<S::Split>(bytes)?);
        }
        cell.restore(id, state, in_progress)
    }

    fn create_task(
        self: Box<Self>,
        enumerator: ErasedEnumerator,
        main: ErasedOutput,
        sides: SideOutputs,
        info: OperatorInfo,
    ) -> TaskResult<Box<dyn StreamTask>> {
        let enumerator: Arc<dyn SplitAssignments<S::Split>> =
            match enumerator.downcast_ref::<SharedEnumerator<S::Split>>() {
                Some(cell) => cell.clone(),
                None => match enumerator.downcast_ref::<RemoteEnumerator>() {
                    Some(remote) => Arc::new(RemoteSplits::<S::Split>::new(remote.clone())),
                    None => return Err(wrong_type("split enumerator")),
                },
            };
        let out = OperatorOutput::new(downcast_output::<T>(main)?, sides);
        let head = SourceLink::new(self.source, self.strategy, enumerator, self.policy, out, info);
        Ok(Box::new(SourceStreamTask::new(Box::new(head))))
    }
}

/// A reader's checkpointed split positions.
fn decode_splits<S: SourceSplit>(bytes: &[u8]) -> Result<Vec<S>, BoxError> {
    brisk_state::codec::decode(bytes).map_err(|e| format!("a reader's split positions do not decode: {e}").into())
}

/// The typed enumerator behind an erased one.
fn cell<S: SourceSplit>(enumerator: &ErasedEnumerator) -> Result<&SharedEnumerator<S>, BoxError> {
    enumerator
        .downcast_ref::<SharedEnumerator<S>>()
        .ok_or_else(|| "internal error: split enumerator of another type".into())
}

/// How a node's operator is created.
pub enum NodeKind {
    /// A source.
    Source(Box<dyn SourceFactory>),
    /// A one-input operator (including sinks).
    OneInput(Box<dyn OneInputFactory>),
    /// A two-input operator.
    TwoInput(Box<dyn TwoInputFactory>),
}

impl NodeKind {
    pub(crate) fn clone_kind(&self) -> NodeKind {
        match self {
            NodeKind::Source(f) => NodeKind::Source(f.clone_box()),
            NodeKind::OneInput(f) => NodeKind::OneInput(f.clone_box()),
            NodeKind::TwoInput(f) => NodeKind::TwoInput(f.clone_box()),
        }
    }
}

/// Whether an operator may be chained to its neighbours (Flink's `ChainingStrategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainingStrategy {
    /// Chain with predecessor and successors where possible.
    Always,
    /// Start a new chain here; successors may chain to it (`start_new_chain`).
    Head,
    /// Never chain (`disable_chaining`).
    Never,
}

/// One operator of the stream graph.
pub struct StreamNode {
    /// Index in the graph.
    pub id: usize,
    /// Display name.
    pub name: String,
    /// User-given stable id.
    pub uid: Option<String>,
    /// Parallelism; `None` takes the job default.
    pub parallelism: Option<usize>,
    /// Upper bound of the parallelism (a non-parallel source has 1).
    pub max_allowed_parallelism: Option<usize>,
    /// Key groups; `None` takes the job default.
    pub max_parallelism: Option<usize>,
    /// Chaining strategy.
    pub chaining: ChainingStrategy,
    /// Slot sharing group.
    pub slot_sharing_group: String,
    /// How its operator is created.
    pub kind: NodeKind,
    /// The main output's type.
    pub output_type: Arc<dyn TypeOps>,
    /// Side outputs declared on it: tag id and type.
    pub side_outputs: Vec<(String, Arc<dyn TypeOps>)>,
}

/// A stream from one node to another.
#[derive(Clone)]
pub struct StreamEdge {
    /// Producing node.
    pub source: usize,
    /// Consuming node.
    pub target: usize,
    /// The side output the stream comes from, `None` for the main output.
    pub side_output: Option<String>,
    /// Explicit partitioning; `None` means forward at equal parallelism, else rebalance.
    pub partitioner: Option<PartitionerSpec>,
    /// Which input of the target (1 or 2).
    pub input: usize,
    /// The stream's type.
    pub type_ops: Arc<dyn TypeOps>,
}

/// The dataflow as declared by the API.
#[derive(Default)]
pub struct StreamGraph {
    /// Operators, indexed by id.
    pub nodes: Vec<StreamNode>,
    /// Streams between them, in declaration order.
    pub edges: Vec<StreamEdge>,
}

impl StreamGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node and returns its id.
    pub fn add_node(&mut self, name: impl Into<String>, kind: NodeKind, output_type: Arc<dyn TypeOps>) -> usize {
        let id = self.nodes.len();
        self.nodes.push(StreamNode {
            id,
            name: name.into(),
            uid: None,
            parallelism: None,
            max_allowed_parallelism: None,
            max_parallelism: None,
            chaining: ChainingStrategy::Always,
            slot_sharing_group: "default".into(),
            kind,
            output_type,
            side_outputs: Vec::new(),
        });
        id
    }

    /// Adds an edge.
    pub fn add_edge(&mut self, edge: StreamEdge) {
        self.edges.push(edge);
    }

    /// Edges into `node`.
    pub fn in_edges(&self, node: usize) -> impl Iterator<Item = (usize, &StreamEdge)> {
        self.edges.iter().enumerate().filter(move |(_, e)| e.target == node)
    }

    /// Edges out of `node`.
    pub fn out_edges(&self, node: usize) -> impl Iterator<Item = (usize, &StreamEdge)> {
        self.edges.iter().enumerate().filter(move |(_, e)| e.source == node)
    }
}
