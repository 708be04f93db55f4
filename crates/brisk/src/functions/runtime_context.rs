//! What a rich function sees of the subtask it runs in (Flink's `RuntimeContext`), and the
//! state it reaches while initializing and snapshotting (Flink's `CheckpointedFunction`
//! contexts).

use brisk_core::{Data, Key};
use brisk_runtime::metrics::{Accumulator, AccumulatorHandle, MetricGroup};
use brisk_runtime::{ExecutionMode, OperatorContext};
use brisk_state::handles::{
    keyed_aggregating_state, keyed_list_state, keyed_map_state, keyed_reducing_state, keyed_value_state,
};
use brisk_state::operator_state::{Distribution, operator_list_state};
use brisk_state::{
    AggregatingState, AggregatingStateDescriptor, KeyedStateBackend, ListState, ListStateDescriptor, MapState,
    MapStateDescriptor, OperatorStateBackend, ReducingState, ReducingStateDescriptor, Registered, StateError,
    ValueState, ValueStateDescriptor,
};

/// The subtask a function runs in: its index, the parallelism, metrics, accumulators and, on a
/// keyed stream, keyed state.
pub struct RuntimeContext<'a> {
    ctx: &'a OperatorContext<'a>,
    keyed: Option<&'a Registered<KeyedStateBackend>>,
}

fn not_keyed(state: &str) -> StateError {
    StateError::NoCurrentKey(state.to_string())
}

impl<'a> RuntimeContext<'a> {
    /// Wraps an operator context; `keyed` is the operator's keyed state, if it is keyed.
    pub fn new(ctx: &'a OperatorContext<'a>, keyed: Option<&'a Registered<KeyedStateBackend>>) -> Self {
        RuntimeContext { ctx, keyed }
    }

    /// The job's name.
    pub fn job_name(&self) -> &str {
        &self.ctx.task.info.job_name
    }

    /// The task's name, e.g. `Flat Map -> Filter`.
    pub fn task_name(&self) -> &str {
        &self.ctx.task.info.task_name
    }

    /// `Flat Map -> Filter (2/4)`.
    pub fn task_name_with_subtasks(&self) -> String {
        self.ctx.task.info.name_with_subtask()
    }

    /// The operator's name.
    pub fn operator_name(&self) -> &str {
        &self.ctx.operator.name
    }

    /// 0-based index of this parallel subtask.
    pub fn index_of_this_subtask(&self) -> usize {
        self.ctx.task.info.subtask_index
    }

    /// Number of parallel subtasks.
    pub fn number_of_parallel_subtasks(&self) -> usize {
        self.ctx.task.info.parallelism
    }

    /// Number of key groups (the max parallelism).
    pub fn max_number_of_parallel_subtasks(&self) -> usize {
        self.ctx.task.info.max_parallelism
    }

    /// 0 on the first run, counting up with restarts.
    pub fn attempt_number(&self) -> usize {
        self.ctx.task.info.attempt_number
    }

    /// Streaming or batch.
    pub fn execution_mode(&self) -> ExecutionMode {
        self.ctx.task.execution_mode
    }

    /// The operator's metric group, for user counters.
    pub fn metric_group(&self) -> &MetricGroup {
        self.ctx.metrics
    }

    /// Registers an accumulator, merged over all subtasks into the job result.
    pub fn add_accumulator<A: Accumulator>(&self, name: &str, accumulator: A) -> AccumulatorHandle<A> {
        self.ctx.task.accumulators.add(name, accumulator)
    }

    /// A keyed value state (only on a `KeyedStream`).
    pub fn get_state<V: Data>(&self, desc: &ValueStateDescriptor<V>) -> Result<ValueState<V>, StateError> {
        keyed_value_state(self.keyed.ok_or_else(|| not_keyed(desc.name()))?, desc)
    }

    /// A keyed list state (only on a `KeyedStream`).
    pub fn get_list_state<V: Data>(&self, desc: &ListStateDescriptor<V>) -> Result<ListState<V>, StateError> {
        keyed_list_state(self.keyed.ok_or_else(|| not_keyed(desc.name()))?, desc)
    }

    /// A keyed map state (only on a `KeyedStream`).
    pub fn get_map_state<UK: Key, UV: Data>(
        &self,
        desc: &MapStateDescriptor<UK, UV>,
    ) -> Result<MapState<UK, UV>, StateError> {
        keyed_map_state(self.keyed.ok_or_else(|| not_keyed(desc.name()))?, desc)
    }

    /// A keyed reducing state (only on a `KeyedStream`).
    pub fn get_reducing_state<V: Data>(
        &self,
        desc: &ReducingStateDescriptor<V>,
    ) -> Result<ReducingState<V>, StateError> {
        keyed_reducing_state(self.keyed.ok_or_else(|| not_keyed(desc.name()))?, desc)
    }

    /// A keyed aggregating state (only on a `KeyedStream`).
    pub fn get_aggregating_state<IN, ACC: Data, OUT>(
        &self,
        desc: &AggregatingStateDescriptor<IN, ACC, OUT>,
    ) -> Result<AggregatingState<IN, ACC, OUT>, StateError> {
        keyed_aggregating_state(self.keyed.ok_or_else(|| not_keyed(desc.name()))?, desc)
    }
}

/// The state a function sets up in `initialize_state` (Flink's
/// `FunctionInitializationContext`): operator list state that survives failures and is
/// redistributed on rescaling, and keyed state on keyed streams.
pub struct FunctionInitializationContext<'a> {
    runtime: RuntimeContext<'a>,
    operator_state: &'a Registered<OperatorStateBackend>,
    restored: bool,
}

impl<'a> FunctionInitializationContext<'a> {
    /// A context over the operator's state stores.
    pub fn new(
        runtime: RuntimeContext<'a>,
        operator_state: &'a Registered<OperatorStateBackend>,
        restored: bool,
    ) -> Self {
        FunctionInitializationContext { runtime, operator_state, restored }
    }

    /// Whether the state comes from a checkpoint or savepoint.
    pub fn is_restored(&self) -> bool {
        self.restored
    }

    /// Operator list state, split evenly over the subtasks when the parallelism changes.
    pub fn get_list_state<T: Data>(&self, desc: &ListStateDescriptor<T>) -> Result<ListState<T>, StateError> {
        operator_list_state(self.operator_state, desc, Distribution::EvenSplit)
    }

    /// Operator list state that every subtask receives whole after a restore.
    pub fn get_union_list_state<T: Data>(&self, desc: &ListStateDescriptor<T>) -> Result<ListState<T>, StateError> {
        operator_list_state(self.operator_state, desc, Distribution::Union)
    }

    /// The runtime context, for keyed state and subtask information.
    pub fn runtime_context(&self) -> &RuntimeContext<'a> {
        &self.runtime
    }
}

/// What a function learns when its state is snapshotted (Flink's `FunctionSnapshotContext`).
#[derive(Clone, Copy, Debug)]
pub struct FunctionSnapshotContext {
    /// The checkpoint's id.
    pub checkpoint_id: u64,
    /// When the checkpoint was triggered (epoch milliseconds).
    pub checkpoint_timestamp: i64,
}
