//! Operator test harnesses (like Flink's `OneInputStreamOperatorTestHarness`): build one
//! operator from a DataStream fragment, push records and watermarks into it, move a manual
//! processing-time clock, and read what it emitted on its main and side outputs. No threads,
//! no sleeps: every call runs the operator to completion before it returns.

use crate::datastream::DataStream;
use crate::environment::StreamExecutionEnvironment;
use crate::side_output::OutputTag;
use brisk_core::{Configuration, Data, StreamRecord, Watermark};
use brisk_runtime::checkpoint::restore::{OperatorRestore, TaskRestore, encode_operator_snapshot};
use brisk_runtime::checkpoint::{CheckpointBarrier, CheckpointId, OperatorSubtaskState, SnapshotKind, TaskSnapshot};
use brisk_runtime::failure::FailureInjector;
use brisk_runtime::graph::stream_graph::{ErasedOutput, NodeKind, SideOutputs};
use brisk_runtime::metrics::AccumulatorRegistry;
use brisk_runtime::metrics::task_io::TaskIoMetrics;
use brisk_runtime::network::channel::{CancelToken, TaskWaker};
use brisk_runtime::taskexecutor::chain::TwoInputHead;
use brisk_runtime::taskexecutor::context::TaskEvents;
use brisk_runtime::taskexecutor::mailbox::Mailbox;
use brisk_runtime::taskexecutor::output::CheckpointEvent;
use brisk_runtime::taskexecutor::output::{ChainControl, CollectedElement, CollectingOutput, Output, SideOutput};
use brisk_runtime::taskexecutor::time::{Clock, ManualClock, ProcessingTimeService};
use brisk_runtime::{ExecutionMode, JobError, OperatorInfo, TaskContext, TaskError, TaskInfo, TaskResult};
use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

type Collected<T> = Rc<RefCell<Vec<CollectedElement<T>>>>;

/// What both harnesses share: the task around the operator, the clock and the outputs.
struct HarnessCore<OUT> {
    task: TaskContext,
    clock: Arc<ManualClock>,
    info: OperatorInfo,
    output: Collected<OUT>,
    main: Option<Box<dyn Output<OUT>>>,
    side_outputs: SideOutputs,
    side_collected: Vec<(String, Box<dyn Any>)>,
}

impl<OUT: Data> HarnessCore<OUT> {
    fn new(env: &StreamExecutionEnvironment, node: usize, inputs: usize) -> Result<(Self, NodeKind), JobError> {
        let state = env.state.borrow();
        if let Some(first) = state.errors.first() {
            return Err(JobError::InvalidJob(first.clone()));
        }
        if state.graph.nodes.len() != inputs + 1 {
            return Err(JobError::InvalidJob(format!(
                "an operator test harness tests one operator, but the fragment added {} operators",
                state.graph.nodes.len().saturating_sub(inputs)
            )));
        }
        let node = &state.graph.nodes[node];
        let kind = match &node.kind {
            NodeKind::OneInput(f) if inputs == 1 => NodeKind::OneInput(f.clone_box()),
            NodeKind::TwoInput(f) if inputs == 2 => NodeKind::TwoInput(f.clone_box()),
            _ => return Err(JobError::InvalidJob(format!("'{}' is not a {inputs}-input operator", node.name))),
        };
        let clock = ManualClock::new(0);
        let max_parallelism = state.max_parallelism.unwrap_or(128);
        let waker = TaskWaker::new();
        let task = TaskContext {
            info: TaskInfo {
                job_name: "test harness".into(),
                task_name: node.name.clone(),
                subtask_index: 0,
                parallelism: 1,
                max_parallelism,
                attempt_number: 0,
            },
            execution_mode: ExecutionMode::Streaming,
            config: Arc::new(Configuration::default()),
            processing_time: ProcessingTimeService::new(clock.clone()),
            accumulators: AccumulatorRegistry::default(),
            mailbox: Mailbox::new(waker.clone()),
            waker,
            cancel: CancelToken::new(),
            records_read: Arc::default(),
            metrics: TaskIoMetrics::new(),
            state_backend: state.state_backend.clone(),
            clock: clock.clone(),
            auto_watermark_interval: Duration::from_millis(200),
            checkpoint_config: None,
            events: TaskEvents::detached(),
            restore: None,
            failures: FailureInjector::default(),
        };
        let info = OperatorInfo {
            node_id: node.id,
            operator_id: format!("{:032x}", node.id),
            name: node.name.clone(),
            uid: node.uid.clone(),
        };
        let (collecting, output) = CollectingOutput::<OUT>::new();
        let core = HarnessCore {
            task,
            clock,
            info,
            output,
            main: Some(Box::new(collecting)),
            side_outputs: Vec::new(),
            side_collected: Vec::new(),
        };
        Ok((core, kind))
    }

    /// The collecting main output and the declared side outputs, for the operator's factory.
    fn take_outputs(&mut self) -> TaskResult<(ErasedOutput, SideOutputs)> {
        let main = self.main.take().ok_or_else(|| TaskError::msg("the harness was opened already"))?;
        Ok((Box::new(main), std::mem::take(&mut self.side_outputs)))
    }

    fn declare_side_output<X: Data>(&mut self, tag: &OutputTag<X>) -> TaskResult {
        if self.main.is_none() {
            return Err(TaskError::msg("declare side outputs before opening the harness"));
        }
        let (collecting, elements) = CollectingOutput::<X>::new();
        self.side_outputs.push((tag.id().to_string(), Box::new(SideOutput::<X>(Box::new(collecting)))));
        self.side_collected.push((tag.id().to_string(), Box::new(elements)));
        Ok(())
    }

    fn side_elements<X: Data>(&self, tag: &OutputTag<X>) -> Vec<CollectedElement<X>> {
        self.side_collected
            .iter()
            .filter(|(id, _)| id == tag.id())
            .filter_map(|(_, any)| any.downcast_ref::<Collected<X>>())
            .flat_map(|c| c.borrow().clone())
            .collect()
    }

    fn initialize_state(&mut self, states: &[OperatorSubtaskState]) -> TaskResult {
        if self.main.is_none() {
            return Err(TaskError::msg("initialize the state before opening the harness"));
        }
        let max_parallelism = self.task.info.max_parallelism;
        let shared = std::env::temp_dir();
        let restore = OperatorRestore::from_states(states, 0, 1, max_parallelism, &shared).map_err(TaskError::msg)?;
        let mut task = TaskRestore::default();
        task.operators.insert(self.info.operator_id.clone(), restore);
        self.task.restore = Some(Arc::new(task));
        Ok(())
    }

    fn snapshot<H: ChainControl + ?Sized>(
        &self,
        chain: &mut H,
        checkpoint_id: CheckpointId,
    ) -> TaskResult<OperatorSubtaskState> {
        let barrier = CheckpointBarrier {
            id: checkpoint_id,
            timestamp: self.clock.now_millis(),
            kind: SnapshotKind::Checkpoint,
            stop: None,
            target: std::env::temp_dir().into(),
            remote: None,
            overtaking: false,
        };
        let mut snapshot = TaskSnapshot::default();
        chain.on_checkpoint(&mut CheckpointEvent::Snapshot { barrier: &barrier, into: &mut snapshot })?;
        let operator = snapshot
            .operators
            .into_iter()
            .find(|(id, _)| *id == self.info.operator_id)
            .map(|(_, s)| s)
            .unwrap_or_default();
        encode_operator_snapshot(self.info.operator_id.clone(), operator, None).map_err(TaskError::msg)
    }

    fn advance_time<H: ChainControl + ?Sized>(&mut self, to: i64, chain: &mut H) -> TaskResult {
        self.clock.set(to);
        let now = self.task.processing_time.current_processing_time();
        while self.task.processing_time.next_wakeup().is_some_and(|at| at <= now) {
            self.task.processing_time.take_due(now);
            chain.on_processing_time(now)?;
        }
        Ok(())
    }
}

fn not_open() -> TaskError {
    TaskError::msg("the harness is not open: call open() first")
}

fn records_of<T: Clone>(elements: &[CollectedElement<T>]) -> Vec<StreamRecord<T>> {
    elements
        .iter()
        .filter_map(|e| match e {
            CollectedElement::Record(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// Drives one operator by hand; `H` is its chain head (see the two aliases below).
pub struct OperatorTestHarness<H: ?Sized, OUT> {
    core: HarnessCore<OUT>,
    kind: Option<NodeKind>,
    head: Option<Box<H>>,
}

/// Drives one one-input operator (a window, a keyed process function, a map...) by hand.
pub type OneInputOperatorTestHarness<IN, OUT> = OperatorTestHarness<dyn Output<IN>, OUT>;

/// Drives one two-input operator (an interval join, a connected process function) by hand.
pub type TwoInputOperatorTestHarness<IN1, IN2, OUT> = OperatorTestHarness<dyn TwoInputHead<IN1, IN2>, OUT>;

impl<H: ChainControl + ?Sized, OUT: Data> OperatorTestHarness<H, OUT> {
    /// Collects side output `tag` (declare before `open`).
    pub fn side_output<X: Data>(&mut self, tag: &OutputTag<X>) -> TaskResult {
        self.core.declare_side_output(tag)
    }

    /// Starts the operator from snapshots of earlier harnesses (call before `open`); keyed
    /// state of all of them is restored (one subtask owns all key groups).
    pub fn initialize_state(&mut self, states: &[OperatorSubtaskState]) -> TaskResult {
        self.core.initialize_state(states)
    }

    fn head(&mut self) -> TaskResult<&mut H> {
        self.head.as_deref_mut().ok_or_else(not_open)
    }

    /// Snapshots the operator's state, as a checkpoint would.
    pub fn snapshot(&mut self, checkpoint_id: CheckpointId) -> TaskResult<OperatorSubtaskState> {
        let head = self.head.as_deref_mut().ok_or_else(not_open)?;
        self.core.snapshot(head, checkpoint_id)
    }

    /// Tells the operator that checkpoint `checkpoint_id` completed.
    pub fn notify_checkpoint_complete(&mut self, checkpoint_id: CheckpointId) -> TaskResult {
        self.head()?.on_checkpoint(&mut CheckpointEvent::Complete(checkpoint_id))
    }

    /// Moves processing time to `time` (never backwards) and fires what is due.
    pub fn set_processing_time(&mut self, time: i64) -> TaskResult {
        let head = self.head.as_deref_mut().ok_or_else(not_open)?;
        self.core.advance_time(time, head)
    }

    /// Closes the operator.
    pub fn close(&mut self) -> TaskResult {
        match self.head.take() {
            Some(mut head) => head.close(),
            None => Ok(()),
        }
    }

    /// Everything emitted on the main output so far, in order, and forgets it.
    pub fn take_output(&mut self) -> Vec<CollectedElement<OUT>> {
        std::mem::take(&mut *self.core.output.borrow_mut())
    }

    /// The records emitted on the main output so far.
    pub fn records(&self) -> Vec<StreamRecord<OUT>> {
        records_of(&self.core.output.borrow())
    }

    /// The values emitted on the main output so far.
    pub fn values(&self) -> Vec<OUT> {
        self.records().into_iter().map(|r| r.value).collect()
    }

    /// The watermarks emitted so far.
    pub fn watermarks(&self) -> Vec<i64> {
        self.core
            .output
            .borrow()
            .iter()
            .filter_map(|e| match e {
                CollectedElement::Watermark(w) => Some(w.0),
                _ => None,
            })
            .collect()
    }

    /// The records emitted on side output `tag` (declared with [`side_output`](Self::side_output)).
    pub fn side_records<X: Data>(&self, tag: &OutputTag<X>) -> Vec<StreamRecord<X>> {
        records_of(&self.core.side_elements(tag))
    }
}

impl<IN: Data, OUT: Data> OneInputOperatorTestHarness<IN, OUT> {
    /// A harness for the one operator `fragment` adds to its input (`key_by` adds none, so
    /// `|s| s.key_by(..).window(..).reduce(..)` tests the window operator).
    pub fn new(fragment: impl FnOnce(DataStream<IN>) -> DataStream<OUT>) -> Result<Self, JobError> {
        Self::with_environment(StreamExecutionEnvironment::create_local_environment(1), fragment)
    }

    /// Like [`new`](Self::new), on a configured environment (its state backend, max
    /// parallelism and runtime mode are used).
    pub fn with_environment(
        env: StreamExecutionEnvironment,
        fragment: impl FnOnce(DataStream<IN>) -> DataStream<OUT>,
    ) -> Result<Self, JobError> {
        let input = env.from_collection(Vec::<IN>::new());
        let out = fragment(input);
        let node = out.inputs.first().map(|r| r.node).unwrap_or(0);
        let (mut core, kind) = HarnessCore::new(&env, node, 1)?;
        if env.state.borrow().runtime_mode == crate::environment::RuntimeExecutionMode::Batch {
            core.task.execution_mode = ExecutionMode::Batch;
        }
        Ok(OperatorTestHarness { core, kind: Some(kind), head: None })
    }

    /// Creates and opens the operator.
    pub fn open(&mut self) -> TaskResult {
        let Some(NodeKind::OneInput(factory)) = self.kind.take() else {
            return Err(TaskError::msg("the harness was opened already"));
        };
        let (main, sides) = self.core.take_outputs()?;
        let head = factory.create(main, sides, self.core.info.clone())?;
        let mut head = *head
            .downcast::<Box<dyn Output<IN>>>()
            .map_err(|_| TaskError::msg("internal error: operator of another input type"))?;
        head.open(&self.core.task)?;
        self.head = Some(head);
        Ok(())
    }

    /// Pushes a record with an event timestamp.
    pub fn process_element(&mut self, value: IN, timestamp: i64) -> TaskResult {
        self.head()?.collect(StreamRecord { value, timestamp })
    }

    /// Pushes a record without a timestamp.
    pub fn process_element_without_timestamp(&mut self, value: IN) -> TaskResult {
        self.head()?.collect(StreamRecord::new(value))
    }

    /// Pushes a watermark.
    pub fn process_watermark(&mut self, timestamp: i64) -> TaskResult {
        self.head()?.emit_watermark(Watermark(timestamp))
    }

    /// Ends the input: the final watermark, then `finish` (bounded jobs flush here).
    pub fn end_input(&mut self) -> TaskResult {
        let head = self.head()?;
        head.emit_watermark(Watermark::MAX)?;
        head.finish()
    }
}

impl<IN1: Data, IN2: Data, OUT: Data> TwoInputOperatorTestHarness<IN1, IN2, OUT> {
    /// A harness for the one operator `fragment` adds to its two inputs.
    pub fn new(fragment: impl FnOnce(DataStream<IN1>, DataStream<IN2>) -> DataStream<OUT>) -> Result<Self, JobError> {
        let env = StreamExecutionEnvironment::create_local_environment(1);
        let first = env.from_collection(Vec::<IN1>::new());
        let second = env.from_collection(Vec::<IN2>::new());
        let out = fragment(first, second);
        let node = out.inputs.first().map(|r| r.node).unwrap_or(0);
        let (core, kind) = HarnessCore::new(&env, node, 2)?;
        Ok(OperatorTestHarness { core, kind: Some(kind), head: None })
    }

    /// Creates and opens the operator.
    pub fn open(&mut self) -> TaskResult {
        let Some(NodeKind::TwoInput(factory)) = self.kind.take() else {
            return Err(TaskError::msg("the harness was opened already"));
        };
        let (main, sides) = self.core.take_outputs()?;
        let head = factory.create_head(main, sides, self.core.info.clone())?;
        let mut head = *head
            .downcast::<Box<dyn TwoInputHead<IN1, IN2>>>()
            .map_err(|_| TaskError::msg("internal error: operator of other input types"))?;
        head.open(&self.core.task)?;
        self.head = Some(head);
        Ok(())
    }

    /// Pushes a record into the first input.
    pub fn process_element1(&mut self, value: IN1, timestamp: i64) -> TaskResult {
        self.head()?.process1(StreamRecord { value, timestamp })
    }

    /// Pushes a record into the second input.
    pub fn process_element2(&mut self, value: IN2, timestamp: i64) -> TaskResult {
        self.head()?.process2(StreamRecord { value, timestamp })
    }

    /// Pushes a watermark into the first input (the operator sees the minimum of both).
    pub fn process_watermark1(&mut self, timestamp: i64) -> TaskResult {
        self.head()?.watermark(1, Watermark(timestamp))
    }

    /// Pushes a watermark into the second input.
    pub fn process_watermark2(&mut self, timestamp: i64) -> TaskResult {
        self.head()?.watermark(2, Watermark(timestamp))
    }

    /// Pushes a watermark into both inputs.
    pub fn process_both_watermarks(&mut self, timestamp: i64) -> TaskResult {
        self.process_watermark1(timestamp)?;
        self.process_watermark2(timestamp)
    }
}
