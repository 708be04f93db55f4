//! Operators linked into a chain: each link runs one operator and passes control calls on.

use crate::error::TaskResult;
use crate::failure::FailureInjector;
use crate::metrics::{MetricGroup, OperatorReport};
use crate::taskexecutor::context::{OperatorContext, OperatorInfo, TaskContext};
use crate::taskexecutor::operator::{OneInputStreamOperator, StreamOperator, TwoInputStreamOperator};
use crate::taskexecutor::output::{ChainControl, CheckpointEvent, OperatorOutput, Output, StateQuery};
use brisk_core::{StreamRecord, Watermark, WatermarkStatus};
use std::cell::RefCell;
use std::marker::PhantomData;

thread_local! {
    static PANICKED_OPERATOR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Notes the innermost operator a panic unwinds through, so the task error can name it.
/// Armed around each call into an operator; forgotten (never dropped) when the call returns,
/// so the normal path costs nothing.
struct PanicGuard<'a>(&'a str);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            PANICKED_OPERATOR.with(|p| {
                let mut p = p.borrow_mut();
                if p.is_none() {
                    *p = Some(self.0.to_string());
                }
            });
        }
    }
}

/// Calls into operator `name`, attributing errors and panics to it.
#[inline]
pub(crate) fn call_operator<R>(name: &str, f: impl FnOnce() -> TaskResult<R>) -> TaskResult<R> {
    let guard = PanicGuard(name);
    let result = f();
    std::mem::forget(guard);
    result.map_err(|e| e.in_operator(name))
}

/// The operator a panic on this thread unwound through first, if any.
pub fn take_panicked_operator() -> Option<String> {
    PANICKED_OPERATOR.with(|p| p.borrow_mut().take())
}

/// Counts and identity shared by all links.
pub(crate) struct LinkState {
    pub info: OperatorInfo,
    pub metrics: MetricGroup,
    pub records_in: u64,
    pub failures: FailureInjector,
}

impl LinkState {
    pub fn new(info: OperatorInfo) -> Self {
        LinkState { info, metrics: MetricGroup::default(), records_in: 0, failures: FailureInjector::default() }
    }

    pub fn report<OUT>(&self, out: &OperatorOutput<OUT>, into: &mut Vec<OperatorReport>) {
        into.push(OperatorReport {
            node_id: self.info.node_id,
            records_in: self.records_in,
            records_out: out.records_out(),
            counters: self.metrics.snapshot(),
        });
        out.report(into);
    }
}

/// Lets operator `op` handle a checkpoint event, attributing errors to it.
pub(crate) fn operator_checkpoint(
    info: &OperatorInfo,
    op: &mut dyn StreamOperator,
    event: &mut CheckpointEvent<'_>,
) -> TaskResult {
    call_operator(&info.name, || match event {
        CheckpointEvent::Snapshot { barrier, into } => {
            let snapshot = op.snapshot_state(barrier)?;
            if !snapshot.is_empty() {
                into.operators.push((info.operator_id.clone(), snapshot));
            }
            Ok(())
        }
        CheckpointEvent::Barrier(_) => Ok(()),
        CheckpointEvent::Complete(id) => op.notify_checkpoint_complete(*id),
        CheckpointEvent::Aborted(id) => op.notify_checkpoint_aborted(*id),
    })
}

/// A one-input operator and everything downstream of it.
pub struct OneInputLink<IN, OUT, OP> {
    op: OP,
    out: OperatorOutput<OUT>,
    state: LinkState,
    _in: PhantomData<fn(IN)>,
}

impl<IN, OUT, OP: OneInputStreamOperator<IN, OUT>> OneInputLink<IN, OUT, OP> {
    /// Links `op` to its output.
    pub fn new(op: OP, out: OperatorOutput<OUT>, info: OperatorInfo) -> Self {
        OneInputLink { op, out, state: LinkState::new(info), _in: PhantomData }
    }
}

impl<IN, OUT, OP: OneInputStreamOperator<IN, OUT>> Output<IN> for OneInputLink<IN, OUT, OP> {
    #[inline]
    fn collect(&mut self, record: StreamRecord<IN>) -> TaskResult {
        self.state.records_in += 1;
        let (op, out, failures) = (&mut self.op, &mut self.out, &self.state.failures);
        call_operator(&self.state.info.name, || {
            failures.on_record()?;
            op.process_element(record, out)
        })
    }

    fn emit_watermark(&mut self, watermark: Watermark) -> TaskResult {
        let (op, out) = (&mut self.op, &mut self.out);
        call_operator(&self.state.info.name, || op.process_watermark(watermark, out))
    }

    fn emit_watermark_status(&mut self, status: WatermarkStatus) -> TaskResult {
        self.out.emit_watermark_status(status)
    }
}

impl<IN, OUT, OP: OneInputStreamOperator<IN, OUT>> ChainControl for OneInputLink<IN, OUT, OP> {
    fn open(&mut self, task: &TaskContext) -> TaskResult {
        self.out.open(task)?;
        self.state.failures = task.failures.clone();
        let mut ctx = OperatorContext { task, operator: &self.state.info, metrics: &self.state.metrics };
        let op = &mut self.op;
        call_operator(&self.state.info.name, || op.open(&mut ctx))
    }

    fn finish(&mut self) -> TaskResult {
        let (op, out) = (&mut self.op, &mut self.out);
        call_operator(&self.state.info.name, || op.finish(out))?;
        self.out.finish()
    }

    fn close(&mut self) -> TaskResult {
        let op = &mut self.op;
        let mine = call_operator(&self.state.info.name, || op.close());
        let downstream = self.out.close();
        mine.and(downstream)
    }

    fn flush(&mut self) -> TaskResult {
        self.out.flush()
    }

    fn on_processing_time(&mut self, now: i64) -> TaskResult {
        let (op, out) = (&mut self.op, &mut self.out);
        call_operator(&self.state.info.name, || op.on_processing_time(now, out))?;
        self.out.on_processing_time(now)
    }

    fn report(&self, into: &mut Vec<OperatorReport>) {
        self.state.report(&self.out, into);
    }

    fn query_state(&mut self, query: &StateQuery) -> Option<Result<Option<Vec<u8>>, String>> {
        self.op.query_state(query).or_else(|| self.out.query_state(query))
    }

    fn on_checkpoint(&mut self, event: &mut CheckpointEvent<'_>) -> TaskResult {
        operator_checkpoint(&self.state.info, &mut self.op, event)?;
        self.out.on_checkpoint(event)
    }
}

/// The head of a two-input task.
pub trait TwoInputHead<IN1, IN2>: ChainControl {
    /// A record of input 1.
    fn process1(&mut self, record: StreamRecord<IN1>) -> TaskResult;
    /// A record of input 2.
    fn process2(&mut self, record: StreamRecord<IN2>) -> TaskResult;
    /// Input `input` (1 or 2) reached watermark `watermark`.
    fn watermark(&mut self, input: usize, watermark: Watermark) -> TaskResult;
    /// Input `input` (1 or 2) ended.
    fn end_input(&mut self, input: usize) -> TaskResult;
}

/// A two-input operator and everything downstream of it; combines the inputs' watermarks.
pub struct TwoInputLink<IN1, IN2, OUT, OP> {
    op: OP,
    out: OperatorOutput<OUT>,
    state: LinkState,
    input_watermarks: [i64; 2],
    combined_watermark: i64,
    _in: PhantomData<fn(IN1, IN2)>,
}

impl<IN1, IN2, OUT, OP: TwoInputStreamOperator<IN1, IN2, OUT>> TwoInputLink<IN1, IN2, OUT, OP> {
    /// Links `op` to its output.
    pub fn new(op: OP, out: OperatorOutput<OUT>, info: OperatorInfo) -> Self {
        TwoInputLink {
            op,
            out,
            state: LinkState::new(info),
            input_watermarks: [i64::MIN; 2],
            combined_watermark: i64::MIN,
            _in: PhantomData,
        }
    }
}

impl<IN1, IN2, OUT, OP: TwoInputStreamOperator<IN1, IN2, OUT>> TwoInputHead<IN1, IN2>
    for TwoInputLink<IN1, IN2, OUT, OP>
{
    #[inline]
    fn process1(&mut self, record: StreamRecord<IN1>) -> TaskResult {
        self.state.records_in += 1;
        let (op, out, failures) = (&mut self.op, &mut self.out, &self.state.failures);
        call_operator(&self.state.info.name, || {
            failures.on_record()?;
            op.process_element1(record, out)
        })
    }

    #[inline]
    fn process2(&mut self, record: StreamRecord<IN2>) -> TaskResult {
        self.state.records_in += 1;
        let (op, out, failures) = (&mut self.op, &mut self.out, &self.state.failures);
        call_operator(&self.state.info.name, || {
            failures.on_record()?;
            op.process_element2(record, out)
        })
    }

    fn watermark(&mut self, input: usize, watermark: Watermark) -> TaskResult {
        let slot = &mut self.input_watermarks[input.clamp(1, 2) - 1];
        *slot = (*slot).max(watermark.0);
        let combined = self.input_watermarks[0].min(self.input_watermarks[1]);
        if combined > self.combined_watermark {
            self.combined_watermark = combined;
            let (op, out) = (&mut self.op, &mut self.out);
            call_operator(&self.state.info.name, || op.process_watermark(Watermark(combined), out))?;
        }
        Ok(())
    }

    fn end_input(&mut self, input: usize) -> TaskResult {
        let (op, out) = (&mut self.op, &mut self.out);
        call_operator(&self.state.info.name, || op.end_input(input, out))
    }
}

impl<IN1, IN2, OUT, OP: TwoInputStreamOperator<IN1, IN2, OUT>> ChainControl for TwoInputLink<IN1, IN2, OUT, OP> {
    fn open(&mut self, task: &TaskContext) -> TaskResult {
        self.out.open(task)?;
        self.state.failures = task.failures.clone();
        let mut ctx = OperatorContext { task, operator: &self.state.info, metrics: &self.state.metrics };
        let op = &mut self.op;
        call_operator(&self.state.info.name, || op.open(&mut ctx))
    }

    fn finish(&mut self) -> TaskResult {
        let (op, out) = (&mut self.op, &mut self.out);
        call_operator(&self.state.info.name, || op.finish(out))?;
        self.out.finish()
    }

    fn close(&mut self) -> TaskResult {
        let op = &mut self.op;
        let mine = call_operator(&self.state.info.name, || op.close());
        let downstream = self.out.close();
        mine.and(downstream)
    }

    fn flush(&mut self) -> TaskResult {
        self.out.flush()
    }

    fn on_processing_time(&mut self, now: i64) -> TaskResult {
        let (op, out) = (&mut self.op, &mut self.out);
        call_operator(&self.state.info.name, || op.on_processing_time(now, out))?;
        self.out.on_processing_time(now)
    }

    fn report(&self, into: &mut Vec<OperatorReport>) {
        self.state.report(&self.out, into);
    }

    fn query_state(&mut self, query: &StateQuery) -> Option<Result<Option<Vec<u8>>, String>> {
        self.op.query_state(query).or_else(|| self.out.query_state(query))
    }

    fn on_checkpoint(&mut self, event: &mut CheckpointEvent<'_>) -> TaskResult {
        operator_checkpoint(&self.state.info, &mut self.op, event)?;
        self.out.on_checkpoint(event)
    }
}
