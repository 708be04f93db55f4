//! The network side of a task: writing records into buffers per consumer channel, and
//! reading them back from all input channels.

use crate::channel::{CancelToken, ChannelReceiver, ChannelSender, Message, TryRecv};
use crate::checkpoint::CheckpointBarrier;
use crate::context::TaskContext;
use crate::error::{TaskError, TaskResult};
use crate::metrics::OperatorReport;
use crate::output::{ChainControl, CheckpointEvent, Output};
use crate::partitioner::{Partitioner, Target};
use brisk_core::{StreamRecord, Watermark, WatermarkStatus};
use tracing::debug;

/// Writes a stream into the channels of the consuming subtasks (Flink's `RecordWriter`):
/// records are batched per channel and a buffer is sent when full, before any event, on
/// flush (buffer timeout or idle task) and at the end.
pub struct RecordWriterOutput<T> {
    channels: Vec<ChannelSender<T>>,
    buffers: Vec<Vec<StreamRecord<T>>>,
    partitioner: Partitioner<T>,
    buffer_records: usize,
    cancel: CancelToken,
}

impl<T: Clone> RecordWriterOutput<T> {
    /// A writer to `channels`, `buffer_records` records per buffer.
    pub fn new(
        channels: Vec<ChannelSender<T>>,
        partitioner: Partitioner<T>,
        buffer_records: usize,
        cancel: CancelToken,
    ) -> Self {
        let buffer_records = buffer_records.max(1);
        let buffers = channels.iter().map(|_| Vec::new()).collect();
        RecordWriterOutput { channels, buffers, partitioner, buffer_records, cancel }
    }

    #[inline]
    fn push(&mut self, channel: usize, record: StreamRecord<T>) -> TaskResult {
        let buffer = &mut self.buffers[channel];
        if buffer.capacity() == 0 {
            *buffer = self.channels[channel].take_buffer(self.buffer_records);
        }
        buffer.push(record);
        if buffer.len() >= self.buffer_records {
            self.send_buffer(channel)?;
        }
        Ok(())
    }

    fn send_buffer(&mut self, channel: usize) -> TaskResult {
        let records = std::mem::take(&mut self.buffers[channel]);
        if records.is_empty() {
            return Ok(());
        }
        self.channels[channel].send(Message::Records(records), &self.cancel)
    }

    fn flush_all(&mut self) -> TaskResult {
        (0..self.channels.len()).try_for_each(|c| self.send_buffer(c))
    }

    fn broadcast_event(&mut self, event: impl Fn() -> Message<T>) -> TaskResult {
        self.flush_all()?;
        for channel in &self.channels {
            channel.send(event(), &self.cancel)?;
        }
        Ok(())
    }
}

impl<T: Clone> Output<T> for RecordWriterOutput<T> {
    #[inline]
    fn collect(&mut self, record: StreamRecord<T>) -> TaskResult {
        match self.partitioner.select(&record.value, self.channels.len())? {
            Target::One(channel) => self.push(channel, record),
            Target::All => {
                let last = self.channels.len().saturating_sub(1);
                for channel in 0..last {
                    self.push(channel, record.clone())?;
                }
                self.push(last, record)
            }
        }
    }

    fn emit_watermark(&mut self, watermark: Watermark) -> TaskResult {
        self.broadcast_event(|| Message::Watermark(watermark))
    }

    fn emit_watermark_status(&mut self, status: WatermarkStatus) -> TaskResult {
        self.broadcast_event(|| Message::WatermarkStatus(status))
    }
}

impl<T: Clone> ChainControl for RecordWriterOutput<T> {
    fn open(&mut self, _: &TaskContext) -> TaskResult {
        Ok(())
    }
    fn finish(&mut self) -> TaskResult {
        self.broadcast_event(|| Message::EndOfInput)
    }
    fn close(&mut self) -> TaskResult {
        Ok(())
    }
    fn flush(&mut self) -> TaskResult {
        self.flush_all()
    }
    fn on_processing_time(&mut self, _: i64) -> TaskResult {
        Ok(())
    }
    fn report(&self, _: &mut Vec<OperatorReport>) {}
    fn on_checkpoint(&mut self, event: &mut CheckpointEvent<'_>) -> TaskResult {
        match event {
            CheckpointEvent::Barrier(barrier) if barrier.overtaking => {
                // Every channel gets its barrier before any flush can wait for space.
                for (sender, buffer) in self.channels.iter().zip(&self.buffers) {
                    sender.send_overtaking((*barrier).clone(), usize::from(!buffer.is_empty()))?;
                }
                self.flush_all()
            }
            CheckpointEvent::Barrier(barrier) => self.broadcast_event(|| Message::Barrier((*barrier).clone())),
            _ => Ok(()),
        }
    }
}

/// Combines the watermarks of a task's input channels (Flink's `StatusWatermarkValve`): the
/// output is the minimum over active channels, emitted only when it advances; when every
/// channel is idle the output turns idle.
#[derive(Debug)]
pub struct WatermarkValve {
    watermarks: Vec<i64>,
    idle: Vec<bool>,
    last_emitted: i64,
    output_idle: bool,
}

/// What the valve says after an input change.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ValveOutput {
    /// A new combined watermark.
    pub watermark: Option<Watermark>,
    /// A change of the combined status.
    pub status: Option<WatermarkStatus>,
}

impl WatermarkValve {
    /// A valve over `channels` inputs, all active at the minimum watermark.
    pub fn new(channels: usize) -> Self {
        WatermarkValve {
            watermarks: vec![i64::MIN; channels],
            idle: vec![false; channels],
            last_emitted: i64::MIN,
            output_idle: false,
        }
    }

    /// Channel `channel` reached `watermark` (watermarks never go back per channel).
    pub fn input_watermark(&mut self, channel: usize, watermark: Watermark) -> ValveOutput {
        let slot = &mut self.watermarks[channel];
        if watermark.0 <= *slot {
            return ValveOutput::default();
        }
        *slot = watermark.0;
        let mut out = ValveOutput::default();
        if self.idle[channel] {
            // A watermark from an idle channel makes it active again.
            self.idle[channel] = false;
            if self.output_idle {
                self.output_idle = false;
                out.status = Some(WatermarkStatus::Active);
            }
        }
        out.watermark = self.advance();
        out
    }

    /// Channel `channel` became idle or active.
    pub fn input_status(&mut self, channel: usize, status: WatermarkStatus) -> ValveOutput {
        let idle = status == WatermarkStatus::Idle;
        if self.idle[channel] == idle {
            return ValveOutput::default();
        }
        self.idle[channel] = idle;
        let mut out = ValveOutput::default();
        let all_idle = self.idle.iter().all(|&i| i);
        if all_idle != self.output_idle {
            self.output_idle = all_idle;
            out.status = Some(status);
        }
        if !all_idle {
            // Excluding an idle channel may release the others' watermark.
            out.watermark = self.advance();
        }
        out
    }

    fn advance(&mut self) -> Option<Watermark> {
        let min = self.watermarks.iter().zip(&self.idle).filter(|(_, idle)| !**idle).map(|(w, _)| *w).min()?;
        if min > self.last_emitted {
            self.last_emitted = min;
            Some(Watermark(min))
        } else {
            None
        }
    }
}

/// What an input gate produced.
#[derive(Debug)]
pub enum GateEvent<T> {
    /// A buffer of records from a channel; hand it back with [`InputGate::recycle`].
    Records(Vec<StreamRecord<T>>, usize),
    /// The combined watermark advanced.
    Watermark(Watermark),
    /// The combined status changed.
    Status(WatermarkStatus),
    /// A checkpoint barrier from a channel; `ahead` when it overtook messages of the channel
    /// that belong before it (a [`GateEvent::BarrierPassed`] follows them).
    Barrier {
        /// The barrier.
        barrier: CheckpointBarrier,
        /// The channel.
        channel: usize,
        /// Whether messages sent before it are still to come.
        ahead: bool,
    },
    /// The last message sent before an overtaking barrier of the channel was read.
    BarrierPassed(usize),
    /// A channel ended (it no longer holds back barrier alignment).
    ChannelEnded(usize),
    /// A message was consumed that changes nothing downstream.
    Progress,
    /// No channel has anything now.
    Nothing,
    /// Every channel has ended.
    Finished,
}

/// All input channels of one logical input of a task, read round-robin (Flink's `InputGate`).
pub struct InputGate<T> {
    channels: Vec<ChannelReceiver<T>>,
    ended: Vec<bool>,
    /// Channels held back for barrier alignment.
    blocked: Vec<bool>,
    /// A channel end to report once its watermark effect was reported.
    pending_end: Option<usize>,
    /// Per channel: messages still to come that were sent before an overtaking barrier.
    overtaken: Vec<usize>,
    /// A channel whose overtaken messages were all read, to report.
    pending_passed: Option<usize>,
    remaining: usize,
    next: usize,
    valve: WatermarkValve,
}

impl<T> InputGate<T> {
    /// A gate over `channels`.
    pub fn new(channels: Vec<ChannelReceiver<T>>) -> Self {
        let n = channels.len();
        InputGate {
            ended: vec![false; n],
            blocked: vec![false; n],
            pending_end: None,
            overtaken: vec![0; n],
            pending_passed: None,
            remaining: n,
            next: 0,
            valve: WatermarkValve::new(n),
            channels,
        }
    }

    /// Number of channels.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Holds back (or releases) a channel for barrier alignment.
    pub fn set_blocked(&mut self, channel: usize, blocked: bool) {
        if let Some(b) = self.blocked.get_mut(channel) {
            *b = blocked;
        }
    }

    /// Releases every channel.
    pub fn unblock_all(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
    }

    /// Whether every channel has ended.
    pub fn is_finished(&self) -> bool {
        self.remaining == 0
    }

    /// Returns an emptied buffer to the channel it came from.
    pub fn recycle(&self, channel: usize, buffer: Vec<StreamRecord<T>>) {
        if let Some(c) = self.channels.get(channel) {
            c.recycle(buffer);
        }
    }

    /// Takes the next message from the next channel that has one.
    pub fn poll(&mut self) -> TaskResult<GateEvent<T>> {
        if let Some(channel) = self.pending_passed.take() {
            return Ok(GateEvent::BarrierPassed(channel));
        }
        if let Some(channel) = self.pending_end.take() {
            return Ok(GateEvent::ChannelEnded(channel));
        }
        if self.remaining == 0 {
            return Ok(GateEvent::Finished);
        }
        let n = self.channels.len();
        for _ in 0..n {
            let i = self.next;
            self.next = if i + 1 == n { 0 } else { i + 1 };
            if self.ended[i] || self.blocked[i] {
                continue;
            }
            let message = self.channels[i].try_recv();
            if let TryRecv::Message(m) = &message
                && !matches!(m, Message::OvertakingBarrier { .. })
                && self.overtaken[i] > 0
            {
                self.overtaken[i] -= 1;
                // At the channel's end it no longer holds back the snapshot anyway.
                if self.overtaken[i] == 0 && !matches!(m, Message::EndOfInput) {
                    self.pending_passed = Some(i);
                }
            }
            match message {
                TryRecv::Message(Message::Records(records)) => return Ok(GateEvent::Records(records, i)),
                TryRecv::Message(Message::Watermark(w)) => {
                    return Ok(Self::valve_event(self.valve.input_watermark(i, w)));
                }
                TryRecv::Message(Message::WatermarkStatus(s)) => {
                    return Ok(Self::valve_event(self.valve.input_status(i, s)));
                }
                TryRecv::Message(Message::Barrier(barrier)) => {
                    return Ok(GateEvent::Barrier { barrier, channel: i, ahead: false });
                }
                TryRecv::Message(Message::OvertakingBarrier { barrier, overtaken }) => {
                    debug!(checkpoint = barrier.id, channel = i, overtaken, "barrier overtook queued messages");
                    self.overtaken[i] = overtaken;
                    return Ok(GateEvent::Barrier { barrier, channel: i, ahead: overtaken > 0 });
                }
                TryRecv::Message(Message::EndOfInput) => {
                    self.ended[i] = true;
                    self.remaining -= 1;
                    // A finished channel no longer holds back the others.
                    let out = self.valve.input_watermark(i, Watermark::MAX);
                    if self.remaining == 0 {
                        return Ok(GateEvent::Finished);
                    }
                    self.pending_end = Some(i);
                    return Ok(Self::valve_event(out));
                }
                TryRecv::Empty => {}
                TryRecv::Disconnected => {
                    return Err(TaskError::Disconnected(format!(
                        "input channel {i} closed before its end of input (the upstream task failed)"
                    )));
                }
            }
        }
        Ok(GateEvent::Nothing)
    }

    fn valve_event(out: ValveOutput) -> GateEvent<T> {
        match (out.watermark, out.status) {
            (Some(w), _) => GateEvent::Watermark(w),
            (None, Some(s)) => GateEvent::Status(s),
            (None, None) => GateEvent::Progress,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{TaskWaker, channel};
    use crate::checkpoint::SnapshotKind;

    fn barrier(overtaking: bool) -> CheckpointBarrier {
        CheckpointBarrier {
            id: 1,
            timestamp: 0,
            kind: SnapshotKind::Checkpoint,
            stop: None,
            target: std::path::Path::new("/tmp").into(),
            overtaking,
        }
    }

    #[test]
    fn an_overtaking_barrier_is_read_before_the_records_sent_ahead_of_it() {
        let (tx, rx) = channel::<u32>(8, TaskWaker::new());
        let mut writer = RecordWriterOutput::new(vec![tx], Partitioner::Forward, 2, CancelToken::new());
        for value in 0..5 {
            writer.collect(StreamRecord { value, timestamp: 0 }).unwrap();
        }
        // Two buffers wait in the channel and one record is not flushed yet: the barrier goes
        // ahead of all three.
        writer.on_checkpoint(&mut CheckpointEvent::Barrier(&barrier(true))).unwrap();
        writer.collect(StreamRecord { value: 5, timestamp: 0 }).unwrap();
        writer.finish().unwrap();
        let mut gate = InputGate::new(vec![rx]);
        let mut events = Vec::new();
        loop {
            match gate.poll().unwrap() {
                GateEvent::Barrier { ahead, .. } => events.push(format!("barrier ahead={ahead}")),
                GateEvent::Records(records, channel) => {
                    events.push(format!("{:?}", records.iter().map(|r| r.value).collect::<Vec<_>>()));
                    gate.recycle(channel, records);
                }
                GateEvent::BarrierPassed(_) => events.push("passed".into()),
                GateEvent::Finished => break,
                _ => {}
            }
        }
        assert_eq!(events, vec!["barrier ahead=true", "[0, 1]", "[2, 3]", "[4]", "passed", "[5]"]);
    }

    #[test]
    fn valve_emits_minimum_of_active_channels_once() {
        let mut v = WatermarkValve::new(2);
        assert_eq!(v.input_watermark(0, Watermark(10)).watermark, None);
        assert_eq!(v.input_watermark(1, Watermark(5)).watermark, Some(Watermark(5)));
        assert_eq!(v.input_watermark(1, Watermark(3)).watermark, None, "never backwards");
        assert_eq!(v.input_watermark(1, Watermark(20)).watermark, Some(Watermark(10)));
    }

    #[test]
    fn idle_channels_do_not_hold_back() {
        let mut v = WatermarkValve::new(2);
        v.input_watermark(0, Watermark(10));
        let out = v.input_status(1, WatermarkStatus::Idle);
        assert_eq!(out.watermark, Some(Watermark(10)));
        assert_eq!(out.status, None, "one channel is still active");
        let out = v.input_status(0, WatermarkStatus::Idle);
        assert_eq!(out.status, Some(WatermarkStatus::Idle));
        let out = v.input_watermark(1, Watermark(30));
        assert_eq!(out.status, Some(WatermarkStatus::Active));
        assert_eq!(out.watermark, Some(Watermark(30)));
    }
}
