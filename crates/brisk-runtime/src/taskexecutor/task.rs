//! Subtasks: one thread each, running a mailbox-style loop that reads input, fires
//! processing-time wakeups and flushes output buffers, with no locks around operator state.

use crate::checkpoint::SnapshotLocation;
use crate::checkpoint::barrier::{BarrierAction, BarrierHandler};
use crate::checkpoint::restore::encode_operator_snapshot;
use crate::checkpoint::storage::{
    CheckpointStorage, SHARED_DIR, SharedFile, StorageError, encode_task_state, shared_file_checksums, write_atomically,
};
use crate::checkpoint::{
    CheckpointBarrier, CheckpointConfig, CheckpointId, FINAL_CHECKPOINT, SnapshotKind, TaskAcknowledgement, TaskEvent,
    TaskSnapshot, TaskStateFile,
};
use crate::error::{TaskError, TaskResult};
use crate::failure::{FailureInjector, InjectionPoint};
use crate::metrics::TaskReport;
use crate::metrics::task_io::TaskIoMetrics;
use crate::network::input_gate::{GateEvent, InputGate};
use crate::source::{SourceHead, SourceStatus};
use crate::taskexecutor::chain::TwoInputHead;
use crate::taskexecutor::context::TaskContext;
use crate::taskexecutor::mailbox::Mail;
use crate::taskexecutor::output::{ChainControl, CheckpointEvent, Output};
use brisk_core::{Data, StreamRecord, Watermark};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one step of a task's input processing found.
#[derive(Debug)]
pub enum InputStatus {
    /// Something was processed; more may be available.
    More,
    /// Nothing to do before the given instant (or until woken).
    Nothing(Option<Instant>),
    /// All input is processed.
    End,
    /// The barriers of a checkpoint are through: take the snapshot.
    Checkpoint {
        /// The checkpoint.
        barrier: CheckpointBarrier,
        /// Time the barriers took to align.
        alignment: Duration,
        /// Whether in-flight records still follow ([`InputStatus::InFlightComplete`]).
        unaligned: bool,
    },
    /// The in-flight records of an unaligned snapshot are complete.
    InFlightComplete(CheckpointId, InFlight),
}

/// Encoded records per input (1 or 2) that were in flight at an unaligned snapshot.
pub type InFlight = Vec<(usize, Vec<Vec<u8>>)>;

/// The input side of a task: sources, one or two network inputs.
pub trait StreamTask {
    /// The operator chain.
    fn chain(&mut self) -> &mut dyn ChainControl;
    /// Processes the next unit of input (a buffer, an event, a source poll).
    fn process_input(&mut self) -> TaskResult<InputStatus>;
    /// Prepares barrier handling on the network inputs.
    fn init_checkpointing(&mut self, _config: &CheckpointConfig) {}
    /// Lets the network inputs count into the task's live metrics.
    fn attach_metrics(&mut self, _metrics: &Arc<TaskIoMetrics>) {}
    /// Processes the records that were in flight when the restored checkpoint was taken.
    fn replay_in_flight(&mut self, _in_flight: &InFlight) -> TaskResult {
        Ok(())
    }
    /// Stop-with-savepoint without draining: the job ends after the savepoint, but event time
    /// must not advance (the ending inputs would otherwise fire every window), so the
    /// resumed job continues exactly where the savepoint left off.
    fn suspend_event_time(&mut self) {}
}

/// What a task with network inputs counts into its live metrics.
struct InputMetrics {
    metrics: Option<Arc<TaskIoMetrics>>,
    /// The combined watermark of each input.
    watermarks: [i64; 2],
}

impl Default for InputMetrics {
    fn default() -> Self {
        InputMetrics { metrics: None, watermarks: [i64::MIN; 2] }
    }
}

impl InputMetrics {
    #[inline]
    fn records<T>(&self, records: &[StreamRecord<T>]) {
        if let Some(m) = &self.metrics {
            m.add_in(records.len() as u64, std::mem::size_of_val(records) as u64);
        }
    }

    /// Input `input` (1 or 2) of `inputs` reached `watermark`; the task's input watermark is
    /// the smaller of its inputs'.
    fn watermark(&mut self, input: usize, inputs: usize, watermark: Watermark) {
        self.watermarks[input - 1] = watermark.0;
        let combined = self.watermarks[..inputs].iter().copied().min().unwrap_or(i64::MIN);
        if let Some(m) = &self.metrics
            && combined != i64::MIN
        {
            m.set_input_watermark(combined);
        }
    }
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

/// Barrier handling and in-flight recording over a task's network inputs.
#[derive(Default)]
struct Barriers {
    handler: Option<BarrierHandler>,
    /// Statuses produced by one event beyond the first.
    queued: VecDeque<InputStatus>,
    /// In-flight records being recorded, per input.
    recording: [Vec<Vec<u8>>; 2],
}

impl Barriers {
    fn init(&mut self, channels: usize, config: &CheckpointConfig) {
        self.handler = Some(BarrierHandler::new(channels, config));
    }

    #[inline]
    fn is_recording(&self, channel: usize) -> bool {
        self.handler.as_ref().is_some_and(|h| h.is_recording(channel))
    }

    /// Turns handler actions into statuses; `block` holds back a channel of the right gate.
    fn apply(&mut self, actions: Vec<BarrierAction>, mut block: impl FnMut(Option<usize>)) -> InputStatus {
        for action in actions {
            let status = match action {
                BarrierAction::Wait => continue,
                BarrierAction::Block(channel) => {
                    block(Some(channel));
                    continue;
                }
                BarrierAction::Snapshot { barrier, alignment, unaligned } => {
                    block(None);
                    InputStatus::Checkpoint { barrier, alignment, unaligned }
                }
                BarrierAction::InFlightComplete(id) => {
                    let records =
                        self.recording.iter_mut().enumerate().map(|(i, r)| (i + 1, std::mem::take(r))).collect();
                    InputStatus::InFlightComplete(id, records)
                }
            };
            self.queued.push_back(status);
        }
        self.queued.pop_front().unwrap_or(InputStatus::More)
    }

    fn on_barrier(
        &mut self,
        channel: usize,
        barrier: CheckpointBarrier,
        ahead: bool,
        block: impl FnMut(Option<usize>),
    ) -> InputStatus {
        let actions = match &mut self.handler {
            Some(h) if ahead => h.on_barrier_ahead(channel, barrier),
            Some(h) => h.on_barrier(channel, barrier),
            None => Vec::new(),
        };
        self.apply(actions, block)
    }

    fn on_barrier_passed(&mut self, channel: usize, block: impl FnMut(Option<usize>)) -> InputStatus {
        let actions = match &mut self.handler {
            Some(h) => h.on_barrier_passed(channel),
            None => Vec::new(),
        };
        self.apply(actions, block)
    }

    fn on_channel_end(&mut self, channel: usize, block: impl FnMut(Option<usize>)) -> InputStatus {
        let actions = match &mut self.handler {
            Some(h) => h.on_end_of_input(channel),
            None => Vec::new(),
        };
        self.apply(actions, block)
    }

    /// A queued status, or the result of an alignment timeout.
    fn next_status(&mut self, block: impl FnMut(Option<usize>)) -> Option<InputStatus> {
        if let Some(status) = self.queued.pop_front() {
            return Some(status);
        }
        let actions = match &mut self.handler {
            Some(h) if h.is_aligning() => h.poll_timeout(),
            _ => return None,
        };
        (!actions.is_empty()).then(|| self.apply(actions, block))
    }

    fn record<T: Data>(&mut self, input: usize, records: &[StreamRecord<T>]) -> TaskResult {
        for r in records {
            let bytes = brisk_state::codec::encode(&(&r.value, r.timestamp))
                .map_err(|e| TaskError::msg(format!("cannot store an in-flight record: {e}")))?;
            self.recording[input - 1].push(bytes);
        }
        Ok(())
    }
}

fn decode_in_flight<T: Data>(bytes: &[u8]) -> TaskResult<StreamRecord<T>> {
    let (value, timestamp): (T, i64) = brisk_state::codec::decode(bytes)
        .map_err(|e| TaskError::msg(format!("a restored in-flight record does not decode: {e}")))?;
    Ok(StreamRecord { value, timestamp })
}

/// A task with one (possibly unioned) network input.
pub struct OneInputStreamTask<IN> {
    gate: InputGate<IN>,
    head: Box<dyn Output<IN>>,
    barriers: Barriers,
    event_time_suspended: bool,
    metrics: InputMetrics,
}

impl<IN> OneInputStreamTask<IN> {
    /// A task reading `gate` into `head`.
    pub fn new(gate: InputGate<IN>, head: Box<dyn Output<IN>>) -> Self {
        OneInputStreamTask {
            gate,
            head,
            barriers: Barriers::default(),
            event_time_suspended: false,
            metrics: InputMetrics::default(),
        }
    }
}

impl<IN: Data> StreamTask for OneInputStreamTask<IN> {
    fn chain(&mut self) -> &mut dyn ChainControl {
        &mut *self.head
    }

    fn init_checkpointing(&mut self, config: &CheckpointConfig) {
        self.barriers.init(self.gate.channel_count(), config);
    }

    fn attach_metrics(&mut self, metrics: &Arc<TaskIoMetrics>) {
        self.metrics.metrics = Some(metrics.clone());
    }

    fn suspend_event_time(&mut self) {
        self.event_time_suspended = true;
    }

    fn replay_in_flight(&mut self, in_flight: &InFlight) -> TaskResult {
        for bytes in in_flight.iter().filter(|(input, _)| *input == 1).flat_map(|(_, records)| records) {
            self.head.collect(decode_in_flight(bytes)?)?;
        }
        Ok(())
    }

    fn process_input(&mut self) -> TaskResult<InputStatus> {
        let gate = &mut self.gate;
        if let Some(status) = self.barriers.next_status(|c| block_one(gate, c)) {
            return Ok(status);
        }
        Ok(match self.gate.poll()? {
            GateEvent::Records(mut records, channel) => {
                self.metrics.records(&records);
                if self.barriers.is_recording(channel) {
                    self.barriers.record(1, &records)?;
                }
                for record in records.drain(..) {
                    self.head.collect(record)?;
                }
                self.gate.recycle(channel, records);
                InputStatus::More
            }
            GateEvent::Watermark(w) => {
                self.metrics.watermark(1, 1, w);
                if !self.event_time_suspended {
                    self.head.emit_watermark(w)?;
                }
                InputStatus::More
            }
            GateEvent::Status(s) => {
                self.head.emit_watermark_status(s)?;
                InputStatus::More
            }
            GateEvent::Barrier { barrier, channel, ahead } => {
                let gate = &mut self.gate;
                self.barriers.on_barrier(channel, barrier, ahead, |c| block_one(gate, c))
            }
            GateEvent::BarrierPassed(channel) => {
                let gate = &mut self.gate;
                self.barriers.on_barrier_passed(channel, |c| block_one(gate, c))
            }
            GateEvent::ChannelEnded(channel) => {
                let gate = &mut self.gate;
                self.barriers.on_channel_end(channel, |c| block_one(gate, c))
            }
            GateEvent::Progress => InputStatus::More,
            GateEvent::Nothing => InputStatus::Nothing(None),
            GateEvent::Finished => InputStatus::End,
        })
    }
}

/// A task with two network inputs of different types; barrier alignment spans both (the
/// channels of input 2 are numbered after those of input 1).
pub struct TwoInputStreamTask<IN1, IN2> {
    gate1: InputGate<IN1>,
    gate2: InputGate<IN2>,
    head: Box<dyn TwoInputHead<IN1, IN2>>,
    ended: [bool; 2],
    prefer_second: bool,
    barriers: Barriers,
    event_time_suspended: bool,
    metrics: InputMetrics,
}

impl<IN1, IN2> TwoInputStreamTask<IN1, IN2> {
    /// A task reading both gates into `head`.
    pub fn new(gate1: InputGate<IN1>, gate2: InputGate<IN2>, head: Box<dyn TwoInputHead<IN1, IN2>>) -> Self {
        TwoInputStreamTask {
            gate1,
            gate2,
            head,
            ended: [false; 2],
            prefer_second: false,
            barriers: Barriers::default(),
            event_time_suspended: false,
            metrics: InputMetrics::default(),
        }
    }
}

/// Blocks or releases channel `c` (numbered across both gates) of a two-input task.
/// Holds back channel `c` of the gate for alignment, or releases every channel (`None`).
fn block_one<T>(gate: &mut InputGate<T>, c: Option<usize>) {
    match c {
        Some(c) => gate.set_blocked(c, true),
        None => gate.unblock_all(),
    }
}

fn block_two<A, B>(gate1: &mut InputGate<A>, gate2: &mut InputGate<B>, c: Option<usize>) {
    let n1 = gate1.channel_count();
    match c {
        Some(c) if c < n1 => gate1.set_blocked(c, true),
        Some(c) => gate2.set_blocked(c - n1, true),
        None => {
            gate1.unblock_all();
            gate2.unblock_all();
        }
    }
}

impl<IN1: Data, IN2: Data> TwoInputStreamTask<IN1, IN2> {
    fn poll_input(&mut self, input: usize) -> TaskResult<Option<InputStatus>> {
        if self.ended[input - 1] {
            return Ok(None);
        }
        let offset = if input == 1 { 0 } else { self.gate1.channel_count() };
        macro_rules! handle {
            ($gate:expr, $process:ident) => {
                match $gate.poll()? {
                    GateEvent::Records(mut records, channel) => {
                        self.metrics.records(&records);
                        if self.barriers.is_recording(offset + channel) {
                            self.barriers.record(input, &records)?;
                        }
                        for record in records.drain(..) {
                            self.head.$process(record)?;
                        }
                        $gate.recycle(channel, records);
                        Some(InputStatus::More)
                    }
                    GateEvent::Watermark(w) => {
                        self.metrics.watermark(input, 2, w);
                        if !self.event_time_suspended {
                            self.head.watermark(input, w)?;
                        }
                        Some(InputStatus::More)
                    }
                    GateEvent::Barrier { barrier, channel, ahead } => {
                        let (g1, g2) = (&mut self.gate1, &mut self.gate2);
                        Some(self.barriers.on_barrier(offset + channel, barrier, ahead, |c| block_two(g1, g2, c)))
                    }
                    GateEvent::BarrierPassed(channel) => {
                        let (g1, g2) = (&mut self.gate1, &mut self.gate2);
                        Some(self.barriers.on_barrier_passed(offset + channel, |c| block_two(g1, g2, c)))
                    }
                    GateEvent::ChannelEnded(channel) => {
                        let (g1, g2) = (&mut self.gate1, &mut self.gate2);
                        Some(self.barriers.on_channel_end(offset + channel, |c| block_two(g1, g2, c)))
                    }
                    GateEvent::Status(_) | GateEvent::Progress => Some(InputStatus::More),
                    GateEvent::Nothing => None,
                    GateEvent::Finished => {
                        self.ended[input - 1] = true;
                        self.head.end_input(input)?;
                        // Its channels no longer hold back barrier alignment.
                        let n = if input == 1 { self.gate1.channel_count() } else { self.gate2.channel_count() };
                        let (g1, g2) = (&mut self.gate1, &mut self.gate2);
                        let mut status = InputStatus::More;
                        for c in 0..n {
                            if let s @ InputStatus::Checkpoint { .. } =
                                self.barriers.on_channel_end(offset + c, |c| block_two(g1, g2, c))
                            {
                                status = s;
                            }
                        }
                        Some(status)
                    }
                }
            };
        }
        Ok(if input == 1 { handle!(self.gate1, process1) } else { handle!(self.gate2, process2) })
    }
}

impl<IN1: Data, IN2: Data> StreamTask for TwoInputStreamTask<IN1, IN2> {
    fn chain(&mut self) -> &mut dyn ChainControl {
        &mut *self.head
    }

    fn init_checkpointing(&mut self, config: &CheckpointConfig) {
        self.barriers.init(self.gate1.channel_count() + self.gate2.channel_count(), config);
    }

    fn attach_metrics(&mut self, metrics: &Arc<TaskIoMetrics>) {
        self.metrics.metrics = Some(metrics.clone());
    }

    fn suspend_event_time(&mut self) {
        self.event_time_suspended = true;
    }

    fn replay_in_flight(&mut self, in_flight: &InFlight) -> TaskResult {
        for (input, records) in in_flight {
            for bytes in records {
                match input {
                    1 => self.head.process1(decode_in_flight(bytes)?)?,
                    _ => self.head.process2(decode_in_flight(bytes)?)?,
                }
            }
        }
        Ok(())
    }

    fn process_input(&mut self) -> TaskResult<InputStatus> {
        let (g1, g2) = (&mut self.gate1, &mut self.gate2);
        if let Some(status) = self.barriers.next_status(|c| block_two(g1, g2, c)) {
            return Ok(status);
        }
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

/// The synchronous part of a snapshot, kept until its in-flight records are complete
/// (unaligned) and then written off the task thread.
struct PendingSnapshot {
    barrier: CheckpointBarrier,
    snapshot: TaskSnapshot,
    alignment: Duration,
    sync: Duration,
}

impl PendingSnapshot {
    /// Encodes and writes the snapshot on another thread, then acknowledges it.
    fn write_async(self, ctx: &TaskContext, in_flight: InFlight, checkpoints: &mut Checkpoints) {
        let events = ctx.events.clone();
        let failure = ctx.failures.clone();
        let metrics = ctx.metrics.clone();
        // Savepoints are self-contained: always the canonical format.
        let incremental = ctx.checkpoint_config.as_ref().is_some_and(|c| c.incremental)
            && self.barrier.kind == SnapshotKind::Checkpoint;
        let started = Instant::now();
        let spawned =
            std::thread::Builder::new().name(format!("checkpoint {} writer", self.barrier.id)).spawn(move || {
                let PendingSnapshot { barrier, snapshot, alignment, sync } = self;
                let id = barrier.id;
                match write_task_state(&barrier, events.task_index, snapshot, in_flight, &failure, incremental) {
                    Ok((file, size, shared)) => {
                        metrics.set_checkpointed_size(size);
                        events.send(TaskEvent::Acknowledge(TaskAcknowledgement {
                            checkpoint: id,
                            task: events.task_index,
                            file,
                            size,
                            shared,
                            alignment,
                            sync,
                            async_part: started.elapsed(),
                        }))
                    }
                    Err(reason) => events.send(TaskEvent::Decline { checkpoint: id, reason }),
                }
            });
        match spawned {
            Ok(writer) => {
                checkpoints.writers.retain(|w| !w.is_finished());
                checkpoints.writers.push(writer);
            }
            Err(e) => ctx
                .events
                .send(TaskEvent::Decline { checkpoint: 0, reason: format!("cannot start a checkpoint writer: {e}") }),
        }
    }
}

/// Encodes every operator's state and writes the task's file; `None` when it has no state.
fn write_task_state(
    barrier: &CheckpointBarrier,
    task: usize,
    snapshot: TaskSnapshot,
    in_flight: InFlight,
    failures: &FailureInjector,
    incremental: bool,
) -> Result<(Option<String>, u64, Vec<SharedFile>), String> {
    // A snapshot in an object store is staged in this process's own directory for it, and
    // uploaded from there by this task.
    let remote = match &barrier.remote {
        Some(url) => SnapshotLocation::parse(url)
            .map_err(|e| StorageError::Unsupported(e.to_string()))
            .and_then(|location| CheckpointStorage::of_snapshot(&location))
            .map_err(|e| e.to_string())?,
        None => None,
    };
    let target = match &remote {
        Some((storage, name)) => storage.local_dir(name),
        None => barrier.target.to_path_buf(),
    };
    let shared_dir = incremental.then(|| target.parent().map(|p| p.join(SHARED_DIR))).flatten();
    let mut file = TaskStateFile { operators: Vec::new(), in_flight };
    for (operator_id, op) in snapshot.operators {
        file.operators.push(encode_operator_snapshot(operator_id, op, shared_dir.as_deref())?);
    }
    let shared: Vec<String> = file
        .operators
        .iter()
        .filter_map(|o| o.keyed_files.as_ref())
        .flat_map(|f| f.shared.iter().map(|(_, s)| s.clone()))
        .collect();
    let shared = match &shared_dir {
        Some(dir) => shared_file_checksums(dir, &shared).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    failures.maybe_fail(InjectionPoint::AsyncSnapshot).map_err(|e| e.to_string())?;
    let written = if file.operators.is_empty() && file.in_flight.iter().all(|(_, r)| r.is_empty()) {
        None
    } else {
        let name = format!("task-{task}");
        let bytes = encode_task_state(&file).map_err(|e| e.to_string())?;
        write_atomically(&target.join(&name), &bytes).map_err(|e| e.to_string())?;
        Some((name, bytes.len() as u64))
    };
    if let Some((storage, name)) = &remote {
        let task_file = written.as_ref().map(|(file, _)| file.as_str());
        storage.upload_task_files(name, task_file, &shared).map_err(|e| e.to_string())?;
    }
    let (file, size) = written.map_or((None, 0), |(file, size)| (Some(file), size));
    Ok((file, size, shared))
}

/// A task's snapshots on their way to storage.
#[derive(Default)]
struct Checkpoints {
    /// Unaligned snapshots waiting for their in-flight records.
    waiting: Vec<PendingSnapshot>,
    /// Threads writing snapshots: a task waits for them however it ends (finished, failed or
    /// cancelled), so no file of a checkpoint appears after the job deleted its checkpoints,
    /// and no writer of a cancelled attempt runs on into the next one.
    writers: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Checkpoints {
    fn drop(&mut self) {
        // A writer that panicked has declined nothing; there is nothing left to tell.
        self.writers.drain(..).for_each(|w| drop(w.join()));
    }
}

/// Takes the synchronous snapshot of the chain, sends the barrier on (unless the task's
/// output has ended), and writes the state off the task thread (for unaligned snapshots once
/// the in-flight records are complete).
fn perform_checkpoint(
    task: &mut dyn StreamTask,
    ctx: &TaskContext,
    barrier: CheckpointBarrier,
    alignment: Duration,
    unaligned: bool,
    checkpoints: &mut Checkpoints,
    output_ended: bool,
) -> TaskResult {
    let started = Instant::now();
    let mut snapshot = TaskSnapshot::default();
    ctx.failures.maybe_fail(InjectionPoint::SyncSnapshot)?;
    task.chain().on_checkpoint(&mut CheckpointEvent::Snapshot { barrier: &barrier, into: &mut snapshot })?;
    if !output_ended {
        task.chain().on_checkpoint(&mut CheckpointEvent::Barrier(&barrier))?;
    }
    let pending = PendingSnapshot { barrier, snapshot, alignment, sync: started.elapsed() };
    if unaligned {
        checkpoints.waiting.push(pending);
    } else {
        pending.write_async(ctx, Vec::new(), checkpoints);
    }
    Ok(())
}

/// Runs a task to the end of its input, or until it fails or is cancelled; the chain is
/// always closed. After its input ends, the task waits for the job to finish (so two-phase
/// commit sinks commit only what every task completed) and commits then.
pub fn run_task(
    task: &mut dyn StreamTask,
    ctx: &TaskContext,
    buffer_timeout: Option<Duration>,
) -> TaskResult<TaskReport> {
    let opened = task.chain().open(ctx);
    let result = opened.and_then(|_| {
        task.attach_metrics(&ctx.metrics);
        if let Some(config) = &ctx.checkpoint_config {
            task.init_checkpointing(config);
        }
        if let Some(restore) = &ctx.restore {
            task.replay_in_flight(&restore.in_flight)?;
        }
        ctx.events.send(TaskEvent::Running(ctx.events.task_index));
        main_loop(task, ctx, buffer_timeout)
    });
    let closed = task.chain().close();
    let result = result.and(closed);
    let mut report = TaskReport::default();
    task.chain().report(&mut report.operators);
    report.accumulators = ctx.accumulators.values();
    result.map(|_| report)
}

fn main_loop(task: &mut dyn StreamTask, ctx: &TaskContext, buffer_timeout: Option<Duration>) -> TaskResult {
    let mut last_flush = Instant::now();
    let mut checkpoints = Checkpoints::default();
    loop {
        if ctx.cancel.is_cancelled() {
            return Err(TaskError::Cancelled);
        }
        fire_due_timers(task, ctx)?;
        for mail in ctx.mailbox.drain() {
            handle_mail(task, ctx, mail, &mut checkpoints)?;
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
            InputStatus::Checkpoint { barrier, alignment, unaligned } => {
                if barrier.stop == Some(false) {
                    task.suspend_event_time();
                }
                perform_checkpoint(task, ctx, barrier, alignment, unaligned, &mut checkpoints, false)?;
            }
            InputStatus::InFlightComplete(id, in_flight) => {
                if let Some(i) = checkpoints.waiting.iter().position(|p| p.barrier.id == id) {
                    checkpoints.waiting.swap_remove(i).write_async(ctx, in_flight, &mut checkpoints);
                }
            }
            InputStatus::End => {
                task.chain().finish()?;
                task.chain().flush()?;
                return wait_for_job_end(task, ctx, checkpoints);
            }
        }
    }
}

/// After the input ended: reports it, then handles mail until the job master says the whole
/// job finished (the final commit) or cancels.
fn wait_for_job_end(task: &mut dyn StreamTask, ctx: &TaskContext, mut checkpoints: Checkpoints) -> TaskResult {
    ctx.events.send(TaskEvent::InputFinished(ctx.events.task_index));
    loop {
        if ctx.cancel.is_cancelled() {
            return Err(TaskError::Cancelled);
        }
        for mail in ctx.mailbox.drain() {
            match mail {
                Mail::CheckpointComplete(id) => {
                    task.chain().on_checkpoint(&mut CheckpointEvent::Complete(id))?;
                    if id == FINAL_CHECKPOINT {
                        return Ok(());
                    }
                }
                Mail::CheckpointAborted(id) => task.chain().on_checkpoint(&mut CheckpointEvent::Aborted(id))?,
                // Finished operators still hold state (e.g. a sink's output awaiting the final
                // commit): checkpoints taken now include it (Flink's checkpoints with finished tasks).
                Mail::TriggerCheckpoint(barrier) => {
                    perform_checkpoint(task, ctx, barrier, Duration::ZERO, false, &mut checkpoints, true)?
                }
                Mail::QueryState { reply, .. } => {
                    let _ = reply.send(Ok(None));
                }
            }
        }
        ctx.waker.wait_until(Some(Instant::now() + Duration::from_millis(50)));
    }
}

fn handle_mail(task: &mut dyn StreamTask, ctx: &TaskContext, mail: Mail, checkpoints: &mut Checkpoints) -> TaskResult {
    match mail {
        Mail::QueryState { query, reply } => {
            let answer = task.chain().query_state(&query).unwrap_or(Ok(None));
            // The client may have given up waiting; that is no error of the task.
            let _ = reply.send(answer);
            Ok(())
        }
        Mail::TriggerCheckpoint(barrier) => {
            perform_checkpoint(task, ctx, barrier, Duration::ZERO, false, checkpoints, false)
        }
        Mail::CheckpointComplete(id) => task.chain().on_checkpoint(&mut CheckpointEvent::Complete(id)),
        Mail::CheckpointAborted(id) => {
            checkpoints.waiting.retain(|p| p.barrier.id != id);
            task.chain().on_checkpoint(&mut CheckpointEvent::Aborted(id))
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
