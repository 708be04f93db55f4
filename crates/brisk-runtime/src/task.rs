//! Subtasks: one thread each, running a mailbox-style loop that reads input, fires
//! processing-time wakeups and flushes output buffers, with no locks around operator state.

use crate::chain::TwoInputHead;
use crate::context::TaskContext;
use crate::error::{TaskError, TaskResult};
use crate::mailbox::Mail;
use crate::metrics::TaskReport;
use crate::network::{GateEvent, InputGate};
use crate::output::{ChainControl, Output, StateQuery};
use crate::source::{SourceHead, SourceStatus};
use std::time::{Duration, Instant};

/// What one step of a task's input processing found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputStatus {
    /// Something was processed; more may be available.
    More,
    /// Nothing to do before the given instant (or until woken).
    Nothing(Option<Instant>),
    /// All input is processed.
    End,
}

/// The input side of a task: sources, one or two network inputs.
pub trait StreamTask {
    /// The operator chain.
    fn chain(&mut self) -> &mut dyn ChainControl;
    /// Processes the next unit of input (a buffer, an event, a source poll).
    fn process_input(&mut self) -> TaskResult<InputStatus>;
}

/// A task whose head is a source.
pub struct SourceStreamTask {
    head: Box<dyn SourceHead>,
}

impl SourceStreamTask {
    /// A task polling `head`.
    pub fn new(head: Box<dyn SourceHead>) -> Self {
        SourceStreamTask { head }
    }
}

impl StreamTask for SourceStreamTask {
    fn chain(&mut self) -> &mut dyn ChainControl {
        &mut *self.head
    }

    fn process_input(&mut self) -> TaskResult<InputStatus> {
        Ok(match self.head.poll_next()? {
            SourceStatus::MoreAvailable => InputStatus::More,
            SourceStatus::NothingAvailable(until) => InputStatus::Nothing(until),
            SourceStatus::EndOfInput => InputStatus::End,
        })
    }
}

/// A task with one (possibly unioned) network input.
pub struct OneInputStreamTask<IN> {
    gate: InputGate<IN>,
    head: Box<dyn Output<IN>>,
}

impl<IN> OneInputStreamTask<IN> {
    /// A task reading `gate` into `head`.
    pub fn new(gate: InputGate<IN>, head: Box<dyn Output<IN>>) -> Self {
        OneInputStreamTask { gate, head }
    }
}

impl<IN> StreamTask for OneInputStreamTask<IN> {
    fn chain(&mut self) -> &mut dyn ChainControl {
        &mut *self.head
    }

    fn process_input(&mut self) -> TaskResult<InputStatus> {
        Ok(match self.gate.poll()? {
            GateEvent::Records(mut records, channel) => {
                for record in records.drain(..) {
                    self.head.collect(record)?;
                }
                self.gate.recycle(channel, records);
                InputStatus::More
            }
            GateEvent::Watermark(w) => {
                self.head.emit_watermark(w)?;
                InputStatus::More
            }
            GateEvent::Status(s) => {
                self.head.emit_watermark_status(s)?;
                InputStatus::More
            }
            GateEvent::Progress => InputStatus::More,
            GateEvent::Nothing => InputStatus::Nothing(None),
            GateEvent::Finished => InputStatus::End,
        })
    }
}

/// A task with two network inputs of different types.
pub struct TwoInputStreamTask<IN1, IN2> {
    gate1: InputGate<IN1>,
    gate2: InputGate<IN2>,
    head: Box<dyn TwoInputHead<IN1, IN2>>,
    ended: [bool; 2],
    prefer_second: bool,
}

impl<IN1, IN2> TwoInputStreamTask<IN1, IN2> {
    /// A task reading both gates into `head`.
    pub fn new(gate1: InputGate<IN1>, gate2: InputGate<IN2>, head: Box<dyn TwoInputHead<IN1, IN2>>) -> Self {
        TwoInputStreamTask { gate1, gate2, head, ended: [false; 2], prefer_second: false }
    }

    fn poll_input(&mut self, input: usize) -> TaskResult<Option<InputStatus>> {
        if self.ended[input - 1] {
            return Ok(None);
        }
        macro_rules! handle {
            ($gate:expr, $process:ident) => {
                match $gate.poll()? {
                    GateEvent::Records(mut records, channel) => {
                        for record in records.drain(..) {
                            self.head.$process(record)?;
                        }
                        $gate.recycle(channel, records);
                        Some(InputStatus::More)
                    }
                    GateEvent::Watermark(w) => {
                        self.head.watermark(input, w)?;
                        Some(InputStatus::More)
                    }
                    GateEvent::Status(_) | GateEvent::Progress => Some(InputStatus::More),
                    GateEvent::Nothing => None,
                    GateEvent::Finished => {
                        self.ended[input - 1] = true;
                        self.head.end_input(input)?;
                        Some(InputStatus::More)
                    }
                }
            };
        }
        Ok(if input == 1 { handle!(self.gate1, process1) } else { handle!(self.gate2, process2) })
    }
}

impl<IN1, IN2> StreamTask for TwoInputStreamTask<IN1, IN2> {
    fn chain(&mut self) -> &mut dyn ChainControl {
        &mut *self.head
    }

    fn process_input(&mut self) -> TaskResult<InputStatus> {
        if self.ended == [true, true] {
            return Ok(InputStatus::End);
        }
        // Alternate between the inputs so neither starves the other.
        self.prefer_second = !self.prefer_second;
        let order = if self.prefer_second { [2, 1] } else { [1, 2] };
        for input in order {
            if let Some(status) = self.poll_input(input)? {
                return Ok(status);
            }
        }
        Ok(InputStatus::Nothing(None))
    }
}

/// Runs a task to the end of its input, or until it fails or is cancelled; the chain is
/// always closed.
pub fn run_task(
    task: &mut dyn StreamTask,
    ctx: &TaskContext,
    buffer_timeout: Option<Duration>,
) -> TaskResult<TaskReport> {
    let opened = task.chain().open(ctx);
    let result = opened.and_then(|_| main_loop(task, ctx, buffer_timeout));
    let closed = task.chain().close();
    let result = result.and(closed);
    let mut report = TaskReport::default();
    task.chain().report(&mut report.operators);
    report.accumulators = ctx.accumulators.values();
    result.map(|_| report)
}

fn main_loop(task: &mut dyn StreamTask, ctx: &TaskContext, buffer_timeout: Option<Duration>) -> TaskResult {
    let mut last_flush = Instant::now();
    loop {
        if ctx.cancel.is_cancelled() {
            return Err(TaskError::Cancelled);
        }
        fire_due_timers(task, ctx)?;
        for mail in ctx.mailbox.drain() {
            handle_mail(task, mail);
        }
        match task.process_input()? {
            InputStatus::More => {
                if let Some(timeout) = buffer_timeout
                    && last_flush.elapsed() >= timeout
                {
                    task.chain().flush()?;
                    last_flush = Instant::now();
                }
            }
            InputStatus::Nothing(until) => {
                // Nothing to do: send what is buffered before sleeping, so latency stays low.
                task.chain().flush()?;
                last_flush = Instant::now();
                let timer = ctx.processing_time.next_wakeup().map(|at| {
                    let wait = at.saturating_sub(ctx.processing_time.current_processing_time()).max(0);
                    Instant::now() + Duration::from_millis(wait as u64)
                });
                let deadline = match (until, timer) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                ctx.waker.wait_until(deadline);
            }
            InputStatus::End => return task.chain().finish(),
        }
    }
}

fn handle_mail(task: &mut dyn StreamTask, mail: Mail) {
    match mail {
        Mail::QueryState { state, key_group, key, reply } => {
            let answer = task.chain().query_state(&StateQuery { state, key_group, key }).unwrap_or(Ok(None));
            // The client may have given up waiting; that is no error of the task.
            let _ = reply.send(answer);
        }
    }
}

fn fire_due_timers(task: &mut dyn StreamTask, ctx: &TaskContext) -> TaskResult {
    let Some(next) = ctx.processing_time.next_wakeup() else {
        return Ok(());
    };
    let now = ctx.processing_time.current_processing_time();
    if next <= now && ctx.processing_time.take_due(now) {
        task.chain().on_processing_time(now)?;
    }
    Ok(())
}
