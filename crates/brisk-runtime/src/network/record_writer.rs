//! The producing side of an exchange: records batched into buffers per consumer channel.

use crate::error::TaskResult;
use crate::metrics::task_io::TaskIoMetrics;
use crate::network::channel::{CancelToken, ChannelSender, Message};
use crate::network::partitioner::{Partitioner, Target};
use crate::taskexecutor::context::TaskContext;
use crate::taskexecutor::output::{ChainControl, CheckpointEvent, Output};
use brisk_core::{StreamRecord, Watermark, WatermarkStatus};
use std::sync::Arc;
use std::time::Duration;

/// Writes a stream into the channels of the consuming subtasks (Flink's `RecordWriter`):
/// records are batched per channel and a buffer is sent when full, before any event, on
/// flush (buffer timeout or idle task) and at the end.
pub struct RecordWriterOutput<T> {
    channels: Vec<ChannelSender<T>>,
    buffers: Vec<Vec<StreamRecord<T>>>,
    partitioner: Partitioner<T>,
    buffer_records: usize,
    cancel: CancelToken,
    /// The task's live metrics, once opened in a task.
    metrics: Option<Arc<TaskIoMetrics>>,
    /// Records collected since the metrics were last updated (a broadcast record counts once).
    unpublished: u64,
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
        RecordWriterOutput { channels, buffers, partitioner, buffer_records, cancel, metrics: None, unpublished: 0 }
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
        if let Some(metrics) = &self.metrics {
            let bytes = records.len() * std::mem::size_of::<StreamRecord<T>>();
            metrics.add_out(std::mem::take(&mut self.unpublished), bytes as u64);
        }
        let waited = self.channels[channel].send(Message::Records(records), &self.cancel)?;
        self.backpressured(waited);
        Ok(())
    }

    /// Counts time spent waiting for room in a full channel (Flink's backpressured time).
    fn backpressured(&self, waited: Duration) {
        if let Some(metrics) = &self.metrics
            && !waited.is_zero()
        {
            metrics.add_back_pressured(waited);
        }
    }

    fn flush_all(&mut self) -> TaskResult {
        (0..self.channels.len()).try_for_each(|c| self.send_buffer(c))
    }

    fn broadcast_event(&mut self, event: impl Fn() -> Message<T>) -> TaskResult {
        self.flush_all()?;
        for channel in &self.channels {
            let waited = channel.send(event(), &self.cancel)?;
            self.backpressured(waited);
        }
        Ok(())
    }
}

impl<T: Clone> Output<T> for RecordWriterOutput<T> {
    #[inline]
    fn collect(&mut self, record: StreamRecord<T>) -> TaskResult {
        self.unpublished += 1;
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
    fn open(&mut self, task: &TaskContext) -> TaskResult {
        self.metrics = Some(task.metrics.clone());
        Ok(())
    }
    fn finish(&mut self) -> TaskResult {
        self.broadcast_event(|| Message::EndOfInput)
    }
    fn flush(&mut self) -> TaskResult {
        self.flush_all()
    }
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
