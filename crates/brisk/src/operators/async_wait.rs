//! The operator of asynchronous I/O (`AsyncDataStream`): a queue of calls in flight, with the
//! watermarks between them, emitted in order or as they complete.

use super::{FunctionStores, close_function};
use crate::async_io::{AsyncFunction, Completion, ResultFuture};
use brisk_core::{NonRecoverableError, StreamRecord, Watermark};
use brisk_runtime::checkpoint::{CheckpointBarrier, CheckpointId, OperatorSnapshot};
use brisk_runtime::network::channel::TaskWaker;
use brisk_runtime::taskexecutor::time::ProcessingTimeService;
use brisk_runtime::{OneInputStreamOperator, OperatorContext, OperatorOutput, StreamOperator, TaskError, TaskResult};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// How often completions are looked for while calls are in flight (their threads wake the
/// task, which looks at its timers).
const POLL: Duration = Duration::from_millis(2);

/// A call in flight.
struct Call<I, O> {
    input: I,
    timestamp: i64,
    /// Processing time at which it times out.
    deadline: i64,
    timed_out: bool,
    slot: Arc<Completion<O>>,
}

enum Entry<I, O> {
    Call(Call<I, O>),
    Watermark(Watermark),
}

/// Runs an [`AsyncFunction`] with at most `capacity` calls in flight.
pub struct AsyncWaitOperator<F, I, O> {
    f: F,
    timeout: Duration,
    capacity: usize,
    ordered: bool,
    queue: VecDeque<Entry<I, O>>,
    calls: usize,
    stores: Option<FunctionStores>,
    time: Option<ProcessingTimeService>,
    waker: Option<Arc<TaskWaker>>,
    _types: PhantomData<fn(I, O)>,
}

impl<F, I, O> AsyncWaitOperator<F, I, O> {
    /// Calls `f` per record, each call allowed `timeout`.
    pub fn new(f: F, timeout: Duration, capacity: usize, ordered: bool) -> Self {
        AsyncWaitOperator {
            f,
            timeout,
            capacity,
            ordered,
            queue: VecDeque::new(),
            calls: 0,
            stores: None,
            time: None,
            waker: None,
            _types: PhantomData,
        }
    }
}

impl<F: AsyncFunction<I, O>, I: Clone + Serialize + DeserializeOwned, O> AsyncWaitOperator<F, I, O> {
    fn now(&self) -> i64 {
        self.time.as_ref().map_or(0, ProcessingTimeService::current_processing_time)
    }

    /// Starts the call for `input`.
    fn invoke(&mut self, input: I, timestamp: i64) -> TaskResult {
        let waker = self.waker.clone().ok_or_else(|| TaskError::msg("async I/O used before open"))?;
        let slot = Completion::new(waker);
        let deadline = self.now() + self.timeout.as_millis() as i64;
        self.f.async_invoke(input.clone(), ResultFuture::new(slot.clone())).map_err(TaskError::User)?;
        self.queue.push_back(Entry::Call(Call { input, timestamp, deadline, timed_out: false, slot }));
        self.calls += 1;
        self.wake_later();
        Ok(())
    }

    /// Looks again soon, while calls are in flight.
    fn wake_later(&self) {
        if let Some(time) = &self.time {
            time.register_wakeup(self.now() + POLL.as_millis() as i64);
        }
    }

    /// Emits the results of `call`, or fails with its error.
    fn emit(call: &Call<I, O>, out: &mut OperatorOutput<O>) -> TaskResult {
        match call.slot.take() {
            Some(Ok(results)) => {
                for value in results {
                    out.collect(StreamRecord { value, timestamp: call.timestamp })?;
                }
                Ok(())
            }
            Some(Err(error)) => Err(TaskError::User(format!("an asynchronous call failed: {error}").into())),
            None => Ok(()),
        }
    }

    /// Emits what may go now: completed calls (the oldest first when ordered; any before the
    /// next watermark when not) and watermarks with no call before them.
    fn drain(&mut self, out: &mut OperatorOutput<O>) -> TaskResult {
        loop {
            if !self.ordered {
                let barrier =
                    self.queue.iter().position(|e| matches!(e, Entry::Watermark(_))).unwrap_or(self.queue.len());
                let mut index = 0;
                let mut end = barrier;
                while index < end {
                    let done = matches!(&self.queue[index], Entry::Call(call) if call.slot.is_done());
                    if done {
                        if let Some(Entry::Call(call)) = self.queue.remove(index) {
                            self.calls -= 1;
                            Self::emit(&call, out)?;
                        }
                        end -= 1;
                    } else {
                        index += 1;
                    }
                }
            }
            match self.queue.front() {
                Some(Entry::Watermark(watermark)) => {
                    let watermark = *watermark;
                    self.queue.pop_front();
                    out.emit_watermark(watermark)?;
                }
                Some(Entry::Call(call)) if call.slot.is_done() => {
                    if let Some(Entry::Call(call)) = self.queue.pop_front() {
                        self.calls -= 1;
                        Self::emit(&call, out)?;
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Hands the calls past their deadline to the function's `timeout`.
    fn expire(&mut self) -> TaskResult {
        let now = self.now();
        for entry in &mut self.queue {
            if let Entry::Call(call) = entry
                && !call.timed_out
                && call.deadline <= now
                && !call.slot.is_done()
            {
                call.timed_out = true;
                self.f.timeout(call.input.clone(), ResultFuture::new(call.slot.clone())).map_err(TaskError::User)?;
            }
        }
        Ok(())
    }

    /// Waits until the calls in flight number at most `limit`.
    fn wait_for(&mut self, limit: usize, out: &mut OperatorOutput<O>) -> TaskResult {
        self.drain(out)?;
        while self.calls > limit {
            std::thread::sleep(Duration::from_millis(1));
            self.expire()?;
            self.drain(out)?;
        }
        Ok(())
    }
}

impl<F: AsyncFunction<I, O>, I: Clone + Serialize + DeserializeOwned, O> StreamOperator for AsyncWaitOperator<F, I, O> {
    fn open(&mut self, ctx: &mut OperatorContext<'_>) -> TaskResult {
        self.stores = Some(FunctionStores::open(&mut self.f, ctx, false)?);
        self.time = Some(ctx.task.processing_time.clone());
        self.waker = Some(ctx.task.waker.clone());
        // Calls in flight at the checkpoint are made again; each old subtask's go to one new one.
        let (subtask, parallelism) = (ctx.task.info.subtask_index, ctx.task.info.parallelism.max(1));
        let restored: Vec<Vec<u8>> = ctx.restored().map(|r| r.raw.clone()).unwrap_or_default();
        for (old, bytes) in restored.iter().enumerate().filter(|(old, _)| old % parallelism == subtask) {
            let calls: Vec<(I, i64)> = brisk_state::codec::decode(bytes).map_err(|e| {
                TaskError::User(Box::new(NonRecoverableError::new(format!(
                    "the calls in flight of async I/O subtask {old} in the checkpoint cannot be read: {e}"
                ))))
            })?;
            for (input, timestamp) in calls {
                self.invoke(input, timestamp)?;
            }
        }
        Ok(())
    }

    fn close(&mut self) -> TaskResult {
        close_function(&mut self.f)
    }

    fn snapshot_state(&mut self, barrier: &CheckpointBarrier) -> TaskResult<OperatorSnapshot> {
        let mut snapshot = FunctionStores::snapshot(self.stores.as_ref(), &mut self.f, barrier)?;
        // Calls whose results were not emitted yet, completed or not: their records are
        // before the barrier, so they are made again after a restore.
        let calls: Vec<(&I, i64)> = self
            .queue
            .iter()
            .filter_map(|e| match e {
                Entry::Call(call) => Some((&call.input, call.timestamp)),
                Entry::Watermark(_) => None,
            })
            .collect();
        let raw = brisk_state::codec::encode(&calls)
            .map_err(|e| TaskError::msg(format!("cannot store the calls in flight: {e}")))?;
        snapshot.raw = Some(raw);
        Ok(snapshot)
    }

    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> TaskResult {
        crate::functions::RichFunction::notify_checkpoint_complete(&mut self.f, id).map_err(TaskError::User)
    }
}

impl<F: AsyncFunction<I, O>, I: Clone + Serialize + DeserializeOwned, O> OneInputStreamOperator<I, O>
    for AsyncWaitOperator<F, I, O>
{
    fn process_element(&mut self, record: StreamRecord<I>, out: &mut OperatorOutput<O>) -> TaskResult {
        self.wait_for(self.capacity - 1, out)?;
        self.invoke(record.value, record.timestamp)?;
        self.drain(out)
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut OperatorOutput<O>) -> TaskResult {
        self.queue.push_back(Entry::Watermark(watermark));
        self.drain(out)
    }

    fn finish(&mut self, out: &mut OperatorOutput<O>) -> TaskResult {
        self.wait_for(0, out)
    }

    fn on_processing_time(&mut self, _now: i64, out: &mut OperatorOutput<O>) -> TaskResult {
        self.expire()?;
        self.drain(out)?;
        if self.calls > 0 {
            self.wake_later();
        }
        Ok(())
    }
}
