//! Where an operator's results go: the next chained operator, the network, or several.
//!
//! An operator chain is a tree of [`Output`]s. Data travels down it by plain calls
//! ([`Output::collect`]); so do the control calls of [`ChainControl`] (open, finish, flush,
//! timers, reports), each operator handling its part before passing the call on.

use crate::checkpoint::{CheckpointBarrier, CheckpointId, TaskSnapshot};
use crate::error::{TaskError, TaskResult};
use crate::metrics::OperatorReport;
use crate::taskexecutor::context::TaskContext;
use brisk_core::{StreamRecord, Watermark, WatermarkStatus};
use std::any::Any;

/// Control calls that travel down an operator chain.
pub trait ChainControl {
    /// Prepares the operators for records (downstream operators first).
    fn open(&mut self, _task: &TaskContext) -> TaskResult {
        Ok(())
    }
    /// All input has been processed: operators emit their final results, then the network
    /// outputs send end-of-input.
    fn finish(&mut self) -> TaskResult {
        Ok(())
    }
    /// Releases resources; called once whether the task succeeded or failed.
    fn close(&mut self) -> TaskResult {
        Ok(())
    }
    /// Sends partially filled network buffers (buffer timeout, or before the task sleeps).
    fn flush(&mut self) -> TaskResult {
        Ok(())
    }
    /// Processing time reached `now`: operators fire what is due.
    fn on_processing_time(&mut self, _now: i64) -> TaskResult {
        Ok(())
    }
    /// Appends a report per operator.
    fn report(&self, _into: &mut Vec<OperatorReport>) {}
    /// The encoded value of keyed state `state` for an encoded key, from the first operator of
    /// the chain that has such a state (queryable state).
    fn query_state(&mut self, _query: &StateQuery) -> Option<Result<Option<Vec<u8>>, String>> {
        None
    }
    /// A checkpoint event: each operator handles it, then passes it down the chain.
    fn on_checkpoint(&mut self, _event: &mut CheckpointEvent<'_>) -> TaskResult {
        Ok(())
    }
}

/// What happens to a checkpoint, as the operators of a chain see it.
pub enum CheckpointEvent<'a> {
    /// Take the synchronous part of a snapshot.
    Snapshot {
        /// The checkpoint.
        barrier: &'a CheckpointBarrier,
        /// Where each operator puts its state.
        into: &'a mut TaskSnapshot,
    },
    /// Send the barrier on every network output (after the snapshot).
    Barrier(&'a CheckpointBarrier),
    /// The checkpoint completed ([`FINAL_CHECKPOINT`](crate::checkpoint::FINAL_CHECKPOINT):
    /// the job finished): commit what it covers.
    Complete(CheckpointId),
    /// The checkpoint was abandoned.
    Aborted(CheckpointId),
}

/// A lookup of one keyed state value from outside the task.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StateQuery {
    /// The state's name.
    pub state: String,
    /// The key's key group.
    pub key_group: usize,
    /// The encoded key.
    pub key: Vec<u8>,
    /// Whether the answer is the value as JSON (for people) rather than encoded.
    pub json: bool,
}

/// The receiving end of a stream inside a task: a chained operator or a network writer.
pub trait Output<T>: ChainControl {
    /// Passes on one record.
    fn collect(&mut self, record: StreamRecord<T>) -> TaskResult;
    /// Passes on a watermark.
    fn emit_watermark(&mut self, watermark: Watermark) -> TaskResult;
    /// Passes on a change of watermark status.
    fn emit_watermark_status(&mut self, status: WatermarkStatus) -> TaskResult;
}

/// A side output's receiving end, type-erased so one operator can have several of them.
pub trait ErasedSideOutput: ChainControl {
    /// The typed [`SideOutput`] behind it.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Passes on a watermark.
    fn emit_watermark(&mut self, watermark: Watermark) -> TaskResult;
    /// Passes on a watermark status.
    fn emit_watermark_status(&mut self, status: WatermarkStatus) -> TaskResult;
}

/// The receiver of the records an operator emits under one `OutputTag`.
pub struct SideOutput<X>(pub Box<dyn Output<X>>);

impl<X> ChainControl for SideOutput<X> {
    fn open(&mut self, task: &TaskContext) -> TaskResult {
        self.0.open(task)
    }
    fn finish(&mut self) -> TaskResult {
        self.0.finish()
    }
    fn close(&mut self) -> TaskResult {
        self.0.close()
    }
    fn flush(&mut self) -> TaskResult {
        self.0.flush()
    }
    fn on_processing_time(&mut self, now: i64) -> TaskResult {
        self.0.on_processing_time(now)
    }
    fn report(&self, into: &mut Vec<OperatorReport>) {
        self.0.report(into)
    }
    fn query_state(&mut self, query: &StateQuery) -> Option<Result<Option<Vec<u8>>, String>> {
        self.0.query_state(query)
    }
    fn on_checkpoint(&mut self, event: &mut CheckpointEvent<'_>) -> TaskResult {
        self.0.on_checkpoint(event)
    }
}

impl<X: 'static> ErasedSideOutput for SideOutput<X> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn emit_watermark(&mut self, watermark: Watermark) -> TaskResult {
        self.0.emit_watermark(watermark)
    }
    fn emit_watermark_status(&mut self, status: WatermarkStatus) -> TaskResult {
        self.0.emit_watermark_status(status)
    }
}

/// Everything an operator emits to: its main output and its side outputs by tag id. Counts the
/// records the operator emits.
pub struct OperatorOutput<OUT> {
    main: Box<dyn Output<OUT>>,
    sides: Vec<(String, Box<dyn ErasedSideOutput>)>,
    records_out: u64,
}

impl<OUT> OperatorOutput<OUT> {
    /// An output with the given main and side receivers.
    pub fn new(main: Box<dyn Output<OUT>>, sides: Vec<(String, Box<dyn ErasedSideOutput>)>) -> Self {
        OperatorOutput { main, sides, records_out: 0 }
    }

    /// Emits a record on the main output.
    #[inline]
    pub fn collect(&mut self, record: StreamRecord<OUT>) -> TaskResult {
        self.records_out += 1;
        self.main.collect(record)
    }

    /// Emits a record on the side output `tag_id`; records for tags nobody consumes are dropped,
    /// as in Flink.
    pub fn collect_side<X: 'static>(&mut self, tag_id: &str, record: StreamRecord<X>) -> TaskResult {
        self.with_side_output(tag_id, |side| match side.downcast_mut::<SideOutput<X>>() {
            Some(side) => side.0.collect(record),
            None => Err(TaskError::msg(format!(
                "side output '{tag_id}' was declared with another type than {}",
                std::any::type_name::<X>()
            ))),
        })
    }

    /// Whether some operator consumes side output `tag_id`.
    pub fn has_side_output(&self, tag_id: &str) -> bool {
        self.sides.iter().any(|(id, _)| id == tag_id)
    }

    /// Calls `emit` with the [`SideOutput`] behind `tag_id` (as `Any`), if anyone consumes it.
    pub fn with_side_output(&mut self, tag_id: &str, emit: impl FnOnce(&mut dyn Any) -> TaskResult) -> TaskResult {
        let Some((_, side)) = self.sides.iter_mut().find(|(id, _)| id == tag_id) else {
            return Ok(());
        };
        self.records_out += 1;
        emit(side.as_any_mut())
    }

    /// Emits a watermark on the main and every side output.
    pub fn emit_watermark(&mut self, watermark: Watermark) -> TaskResult {
        for (_, side) in &mut self.sides {
            side.emit_watermark(watermark)?;
        }
        self.main.emit_watermark(watermark)
    }

    /// Emits a watermark status on the main and every side output.
    pub fn emit_watermark_status(&mut self, status: WatermarkStatus) -> TaskResult {
        for (_, side) in &mut self.sides {
            side.emit_watermark_status(status)?;
        }
        self.main.emit_watermark_status(status)
    }

    /// Records emitted so far.
    pub fn records_out(&self) -> u64 {
        self.records_out
    }
}

/// The first error among results that were all computed (so every receiver got the call).
fn for_all(outputs: impl Iterator<Item = TaskResult>) -> TaskResult {
    let mut first = Ok(());
    for result in outputs {
        if first.is_ok() {
            first = result;
        }
    }
    first
}

impl<OUT> ChainControl for OperatorOutput<OUT> {
    fn open(&mut self, task: &TaskContext) -> TaskResult {
        for (_, side) in &mut self.sides {
            side.open(task)?;
        }
        self.main.open(task)
    }
    fn finish(&mut self) -> TaskResult {
        for (_, side) in &mut self.sides {
            side.finish()?;
        }
        self.main.finish()
    }
    fn close(&mut self) -> TaskResult {
        let main = self.main.close();
        for_all(std::iter::once(main).chain(self.sides.iter_mut().map(|(_, s)| s.close())))
    }
    fn flush(&mut self) -> TaskResult {
        for (_, side) in &mut self.sides {
            side.flush()?;
        }
        self.main.flush()
    }
    fn on_processing_time(&mut self, now: i64) -> TaskResult {
        for (_, side) in &mut self.sides {
            side.on_processing_time(now)?;
        }
        self.main.on_processing_time(now)
    }
    fn report(&self, into: &mut Vec<OperatorReport>) {
        self.main.report(into);
        for (_, side) in &self.sides {
            side.report(into);
        }
    }
    fn query_state(&mut self, query: &StateQuery) -> Option<Result<Option<Vec<u8>>, String>> {
        self.main.query_state(query).or_else(|| self.sides.iter_mut().find_map(|(_, s)| s.query_state(query)))
    }
    fn on_checkpoint(&mut self, event: &mut CheckpointEvent<'_>) -> TaskResult {
        for (_, side) in &mut self.sides {
            side.on_checkpoint(event)?;
        }
        self.main.on_checkpoint(event)
    }
}

/// Copies every record to several receivers (a stream consumed by several operators).
pub struct BroadcastingOutput<T> {
    outputs: Vec<Box<dyn Output<T>>>,
}

impl<T> BroadcastingOutput<T> {
    /// Sends to all of `outputs`.
    pub fn new(outputs: Vec<Box<dyn Output<T>>>) -> Self {
        BroadcastingOutput { outputs }
    }
}

impl<T> ChainControl for BroadcastingOutput<T> {
    fn open(&mut self, task: &TaskContext) -> TaskResult {
        self.outputs.iter_mut().try_for_each(|o| o.open(task))
    }
    fn finish(&mut self) -> TaskResult {
        self.outputs.iter_mut().try_for_each(|o| o.finish())
    }
    fn close(&mut self) -> TaskResult {
        for_all(self.outputs.iter_mut().map(|o| o.close()))
    }
    fn flush(&mut self) -> TaskResult {
        self.outputs.iter_mut().try_for_each(|o| o.flush())
    }
    fn on_processing_time(&mut self, now: i64) -> TaskResult {
        self.outputs.iter_mut().try_for_each(|o| o.on_processing_time(now))
    }
    fn report(&self, into: &mut Vec<OperatorReport>) {
        self.outputs.iter().for_each(|o| o.report(into))
    }
    fn query_state(&mut self, query: &StateQuery) -> Option<Result<Option<Vec<u8>>, String>> {
        self.outputs.iter_mut().find_map(|o| o.query_state(query))
    }
    fn on_checkpoint(&mut self, event: &mut CheckpointEvent<'_>) -> TaskResult {
        self.outputs.iter_mut().try_for_each(|o| o.on_checkpoint(event))
    }
}

impl<T: Clone> Output<T> for BroadcastingOutput<T> {
    #[inline]
    fn collect(&mut self, record: StreamRecord<T>) -> TaskResult {
        if let Some((last, rest)) = self.outputs.split_last_mut() {
            for o in rest {
                o.collect(record.clone())?;
            }
            last.collect(record)?;
        }
        Ok(())
    }
    fn emit_watermark(&mut self, watermark: Watermark) -> TaskResult {
        self.outputs.iter_mut().try_for_each(|o| o.emit_watermark(watermark))
    }
    fn emit_watermark_status(&mut self, status: WatermarkStatus) -> TaskResult {
        self.outputs.iter_mut().try_for_each(|o| o.emit_watermark_status(status))
    }
}

/// Drops everything: the output of an operator nobody consumes.
pub struct DiscardOutput;

impl ChainControl for DiscardOutput {}

impl<T> Output<T> for DiscardOutput {
    #[inline]
    fn collect(&mut self, _: StreamRecord<T>) -> TaskResult {
        Ok(())
    }
    fn emit_watermark(&mut self, _: Watermark) -> TaskResult {
        Ok(())
    }
    fn emit_watermark_status(&mut self, _: WatermarkStatus) -> TaskResult {
        Ok(())
    }
}

/// What a [`CollectingOutput`] received, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum CollectedElement<T> {
    /// A record.
    Record(StreamRecord<T>),
    /// A watermark.
    Watermark(Watermark),
    /// A watermark status change.
    Status(WatermarkStatus),
}

/// An output that keeps everything it receives, for tests and operator test harnesses.
pub struct CollectingOutput<T> {
    elements: std::rc::Rc<std::cell::RefCell<Vec<CollectedElement<T>>>>,
}

impl<T> CollectingOutput<T> {
    /// A collecting output and the shared list it fills.
    pub fn new() -> (Self, std::rc::Rc<std::cell::RefCell<Vec<CollectedElement<T>>>>) {
        let elements = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        (CollectingOutput { elements: elements.clone() }, elements)
    }
}

impl<T> ChainControl for CollectingOutput<T> {}

impl<T> Output<T> for CollectingOutput<T> {
    fn collect(&mut self, record: StreamRecord<T>) -> TaskResult {
        self.elements.borrow_mut().push(CollectedElement::Record(record));
        Ok(())
    }
    fn emit_watermark(&mut self, watermark: Watermark) -> TaskResult {
        self.elements.borrow_mut().push(CollectedElement::Watermark(watermark));
        Ok(())
    }
    fn emit_watermark_status(&mut self, status: WatermarkStatus) -> TaskResult {
        self.elements.borrow_mut().push(CollectedElement::Status(status));
        Ok(())
    }
}
