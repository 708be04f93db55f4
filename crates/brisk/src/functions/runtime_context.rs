//! What a rich function sees of the subtask it runs in (Flink's `RuntimeContext`).

use brisk_runtime::metrics::{Accumulator, AccumulatorHandle, MetricGroup};
use brisk_runtime::{ExecutionMode, OperatorContext};

/// The subtask a function runs in: its index, the parallelism, metrics and accumulators.
pub struct RuntimeContext<'a> {
    ctx: &'a OperatorContext<'a>,
}

impl<'a> RuntimeContext<'a> {
    /// Wraps an operator context.
    pub fn new(ctx: &'a OperatorContext<'a>) -> Self {
        RuntimeContext { ctx }
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
}
