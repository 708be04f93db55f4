//! The consuming side of an exchange: reading all input channels of one logical input.

use crate::checkpoint::CheckpointBarrier;
use crate::error::{TaskError, TaskResult};
use crate::network::channel::{ChannelReceiver, Message, TryRecv};
use crate::network::watermark_valve::{ValveOutput, WatermarkValve};
use brisk_core::{StreamRecord, Watermark, WatermarkStatus};
use tracing::debug;

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
    use crate::checkpoint::SnapshotKind;
    use crate::network::channel::{CancelToken, TaskWaker, channel};
    use crate::network::partitioner::Partitioner;
    use crate::network::record_writer::RecordWriterOutput;
    use crate::taskexecutor::output::{ChainControl, CheckpointEvent, Output};

    fn barrier(overtaking: bool) -> CheckpointBarrier {
        CheckpointBarrier {
            id: 1,
            timestamp: 0,
            kind: SnapshotKind::Checkpoint,
            stop: None,
            target: std::path::Path::new("/tmp").into(),
            remote: None,
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
}
