//! The operator contracts: what the runtime calls on an operator, with default no-op hooks so
//! an operator implements only what it needs.

use crate::checkpoint::{CheckpointBarrier, CheckpointId, OperatorSnapshot};
use crate::error::TaskResult;
use crate::taskexecutor::context::OperatorContext;
use crate::taskexecutor::output::{OperatorOutput, StateQuery};
use brisk_core::{StreamRecord, Watermark};

/// Lifecycle shared by all operators.
pub trait StreamOperator {
    /// Called once before the first record, on the task thread.
    fn open(&mut self, _ctx: &mut OperatorContext<'_>) -> TaskResult {
        Ok(())
    }

    /// Called once at the end, whether the task succeeded or failed.
    fn close(&mut self) -> TaskResult {
        Ok(())
    }

    /// Answers a query of keyed state by name, if the operator has such a state.
    fn query_state(&mut self, _query: &StateQuery) -> Option<Result<Option<Vec<u8>>, String>> {
        None
    }

    /// The synchronous part of a snapshot of the operator's state (Flink's `snapshotState`).
    fn snapshot_state(&mut self, _barrier: &CheckpointBarrier) -> TaskResult<OperatorSnapshot> {
        Ok(OperatorSnapshot::default())
    }

    /// A checkpoint completed: commit what it covers (two-phase-commit sinks).
    fn notify_checkpoint_complete(&mut self, _checkpoint: CheckpointId) -> TaskResult {
        Ok(())
    }

    /// A checkpoint was abandoned.
    fn notify_checkpoint_aborted(&mut self, _checkpoint: CheckpointId) -> TaskResult {
        Ok(())
    }
}

/// An operator with one input (map, filter, keyed reduce, window, sink, ...).
pub trait OneInputStreamOperator<IN, OUT>: StreamOperator {
    /// Processes one record.
    fn process_element(&mut self, record: StreamRecord<IN>, out: &mut OperatorOutput<OUT>) -> TaskResult;

    /// The input's watermark advanced; the default passes it on.
    fn process_watermark(&mut self, watermark: Watermark, out: &mut OperatorOutput<OUT>) -> TaskResult {
        out.emit_watermark(watermark)
    }

    /// The input ended: emit final results (Flink's `finish`).
    fn finish(&mut self, _out: &mut OperatorOutput<OUT>) -> TaskResult {
        Ok(())
    }

    /// Processing time reached `now` (after the operator asked for a wakeup).
    fn on_processing_time(&mut self, _now: i64, _out: &mut OperatorOutput<OUT>) -> TaskResult {
        Ok(())
    }
}

/// An operator with two inputs of possibly different types (connect, joins).
pub trait TwoInputStreamOperator<IN1, IN2, OUT>: StreamOperator {
    /// Processes a record of the first input.
    fn process_element1(&mut self, record: StreamRecord<IN1>, out: &mut OperatorOutput<OUT>) -> TaskResult;

    /// Processes a record of the second input.
    fn process_element2(&mut self, record: StreamRecord<IN2>, out: &mut OperatorOutput<OUT>) -> TaskResult;

    /// The combined watermark (minimum of both inputs) advanced; the default passes it on.
    fn process_watermark(&mut self, watermark: Watermark, out: &mut OperatorOutput<OUT>) -> TaskResult {
        out.emit_watermark(watermark)
    }

    /// Input 1 or 2 ended (Flink's `BoundedMultiInput.endInput`).
    fn end_input(&mut self, _input: usize, _out: &mut OperatorOutput<OUT>) -> TaskResult {
        Ok(())
    }

    /// Both inputs ended: emit final results.
    fn finish(&mut self, _out: &mut OperatorOutput<OUT>) -> TaskResult {
        Ok(())
    }

    /// Processing time reached `now`.
    fn on_processing_time(&mut self, _now: i64, _out: &mut OperatorOutput<OUT>) -> TaskResult {
        Ok(())
    }
}
