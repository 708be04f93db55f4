//! Bounded in-process channels between subtasks, and the waker a task sleeps on.
//!
//! A channel connects one producing subtask with one consuming subtask and carries
//! [`Message`]s: buffers of records and events, in order. Its capacity is counted in
//! messages; a producer that finds it full waits, which is how backpressure travels
//! upstream. Every channel into a task, and the task's mailbox, wake the same
//! [`TaskWaker`], so a task waits for "anything" with one call.

use crate::checkpoint::CheckpointBarrier;
use crate::error::{TaskError, lock};
use brisk_core::{StreamRecord, Watermark, WatermarkStatus};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// What travels over a channel.
#[derive(Debug)]
pub enum Message<T> {
    /// A buffer of records.
    Records(Vec<StreamRecord<T>>),
    /// The producer's watermark advanced.
    Watermark(Watermark),
    /// The producer became idle or active.
    WatermarkStatus(WatermarkStatus),
    /// The producer has emitted everything it ever will.
    EndOfInput,
    /// Everything before it belongs to the checkpoint.
    Barrier(CheckpointBarrier),
    /// A barrier that overtook the `overtaken` messages behind it, which were sent before it.
    OvertakingBarrier {
        /// The barrier.
        barrier: CheckpointBarrier,
        /// Messages after it in the channel that belong before it.
        overtaken: usize,
    },
}

/// Wakes a sleeping task when input, mail or a source's data arrives.
#[derive(Debug, Default)]
pub struct TaskWaker {
    signalled: Mutex<bool>,
    cond: Condvar,
}

impl TaskWaker {
    /// A new waker, shareable with producers.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Wakes the task, or makes its next wait return at once.
    pub fn wake(&self) {
        let mut signalled = lock(&self.signalled);
        if !*signalled {
            *signalled = true;
            self.cond.notify_one();
        }
    }

    /// Sleeps until woken or until `deadline`.
    pub fn wait_until(&self, deadline: Option<Instant>) {
        let mut signalled = lock(&self.signalled);
        while !*signalled {
            let timeout = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => break,
                },
                // A safety net: cancellation also wakes tasks, but never sleep forever.
                None => Duration::from_millis(500),
            };
            signalled = self.cond.wait_timeout(signalled, timeout).unwrap_or_else(std::sync::PoisonError::into_inner).0;
            if deadline.is_none() {
                break;
            }
        }
        *signalled = false;
    }
}

/// Set when the job is cancelled or failing: every task stops at its next check.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether cancelled.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

struct State<T> {
    queue: VecDeque<Message<T>>,
    /// Emptied record buffers on their way back to the producer (Flink's buffer pool): reused
    /// instead of freed and reallocated.
    free_buffers: Vec<Vec<StreamRecord<T>>>,
    sender_alive: bool,
    receiver_alive: bool,
}

/// What the consuming end of a channel did, as told to an observer (see
/// [`ChannelSender::observe_receiver`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiverEvent {
    /// The consumer took a message; `priority` when it was an overtaking barrier.
    Took {
        /// Whether the message was an [`Message::OvertakingBarrier`].
        priority: bool,
    },
    /// The consumer dropped its end.
    Dropped,
}

type Observer = Box<dyn Fn(ReceiverEvent) + Send + Sync>;

struct Shared<T> {
    state: Mutex<State<T>>,
    space: Condvar,
    capacity: usize,
    consumer: Arc<TaskWaker>,
    /// Set by the network stack on the channels it feeds: consumed messages become credit.
    observer: OnceLock<Observer>,
    /// Why the consumer closed the channel, when it was not simply gone (its producer reports
    /// this instead of a disconnection).
    closed_because: OnceLock<String>,
}

impl<T> Shared<T> {
    fn notify_observer(&self, event: ReceiverEvent) {
        if let Some(observer) = self.observer.get() {
            observer(event);
        }
    }
}

/// Creates a channel holding at most `capacity` messages whose consumer sleeps on `consumer`.
pub fn channel<T>(capacity: usize, consumer: Arc<TaskWaker>) -> (ChannelSender<T>, ChannelReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::with_capacity(capacity),
            free_buffers: Vec::new(),
            sender_alive: true,
            receiver_alive: true,
        }),
        space: Condvar::new(),
        capacity: capacity.max(1),
        consumer,
        observer: OnceLock::new(),
        closed_because: OnceLock::new(),
    });
    (ChannelSender { shared: shared.clone() }, ChannelReceiver { shared })
}

/// The producing end of a channel.
pub struct ChannelSender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> ChannelSender<T> {
    /// Appends a message, waiting while the channel is full (backpressure). Fails when the
    /// consumer is gone or the job is cancelled.
    pub fn send(&self, message: Message<T>, cancel: &CancelToken) -> Result<Duration, TaskError> {
        let mut state = lock(&self.shared.state);
        // The clock is read only when the channel is full: backpressure is measured, the fast
        // path pays nothing.
        let full_since = (state.queue.len() >= self.shared.capacity).then(Instant::now);
        while state.queue.len() >= self.shared.capacity && state.receiver_alive {
            if cancel.is_cancelled() {
                return Err(TaskError::Cancelled);
            }
            state = self
                .shared
                .space
                .wait_timeout(state, Duration::from_millis(100))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        self.append(state, message)?;
        Ok(full_since.map_or(Duration::ZERO, |t| t.elapsed()))
    }

    /// The error of a send to a consumer that is gone: the reason it closed the channel with,
    /// else a disconnection (a consequence of the consumer's own failure).
    fn consumer_gone(&self) -> TaskError {
        match self.shared.closed_because.get() {
            Some(reason) => TaskError::msg(reason.clone()),
            None => TaskError::Disconnected("the downstream task is gone".into()),
        }
    }

    /// Appends `message` under the held lock and wakes a consumer that found nothing.
    fn append(&self, mut state: MutexGuard<'_, State<T>>, message: Message<T>) -> Result<(), TaskError> {
        if !state.receiver_alive {
            return Err(self.consumer_gone());
        }
        let was_empty = state.queue.is_empty();
        state.queue.push_back(message);
        drop(state);
        if was_empty {
            self.shared.consumer.wake();
        }
        Ok(())
    }

    /// Puts `barrier` at the head of the queue, ahead of everything waiting there and of the
    /// `unflushed` buffers the producer sends right after it; never waits for space.
    pub fn send_overtaking(&self, barrier: CheckpointBarrier, unflushed: usize) -> Result<(), TaskError> {
        let mut state = lock(&self.shared.state);
        if !state.receiver_alive {
            return Err(self.consumer_gone());
        }
        let overtaken = state.queue.len() + unflushed;
        state.queue.push_front(Message::OvertakingBarrier { barrier, overtaken });
        drop(state);
        self.shared.consumer.wake();
        Ok(())
    }

    /// An empty record buffer with room for `records`: a recycled one when available.
    pub fn take_buffer(&self, records: usize) -> Vec<StreamRecord<T>> {
        match lock(&self.shared.state).free_buffers.pop() {
            Some(buffer) => buffer,
            None => Vec::with_capacity(records),
        }
    }

    /// Number of messages waiting in the channel.
    pub fn queued(&self) -> usize {
        lock(&self.shared.state).queue.len()
    }

    /// Appends a message without waiting for space: for a producer whose own flow control (the
    /// network's credit) already bounds what the consumer holds, and which must never block.
    /// Fails when the consumer is gone.
    pub fn send_credited(&self, message: Message<T>) -> Result<(), TaskError> {
        self.append(lock(&self.shared.state), message)
    }

    /// Calls `observer` (on the consumer's thread, outside the channel's lock) whenever the
    /// consumer takes a message or drops its end; false if the channel already has an observer.
    pub fn observe_receiver(&self, observer: impl Fn(ReceiverEvent) + Send + Sync + 'static) -> bool {
        self.shared.observer.set(Box::new(observer)).is_ok()
    }
}

impl<T> Drop for ChannelSender<T> {
    fn drop(&mut self) {
        lock(&self.shared.state).sender_alive = false;
        self.shared.consumer.wake();
    }
}

/// What a non-blocking receive found.
#[derive(Debug)]
pub enum TryRecv<T> {
    /// The next message.
    Message(Message<T>),
    /// Nothing yet.
    Empty,
    /// Nothing, and the producer is gone.
    Disconnected,
}

/// The consuming end of a channel.
pub struct ChannelReceiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> ChannelReceiver<T> {
    /// Takes the next message without waiting.
    pub fn try_recv(&self) -> TryRecv<T> {
        let mut state = lock(&self.shared.state);
        let was_full = state.queue.len() >= self.shared.capacity;
        match state.queue.pop_front() {
            Some(message) => {
                drop(state);
                if was_full {
                    self.shared.space.notify_one();
                }
                let priority = matches!(message, Message::OvertakingBarrier { .. });
                self.shared.notify_observer(ReceiverEvent::Took { priority });
                TryRecv::Message(message)
            }
            None if !state.sender_alive => TryRecv::Disconnected,
            None => TryRecv::Empty,
        }
    }

    /// Takes the next message only if it is an overtaking barrier: a forwarder that has no
    /// credit for ordinary messages still lets barriers overtake them.
    pub fn try_recv_priority(&self) -> Option<Message<T>> {
        let mut state = lock(&self.shared.state);
        if !matches!(state.queue.front(), Some(Message::OvertakingBarrier { .. })) {
            return None;
        }
        let was_full = state.queue.len() >= self.shared.capacity;
        let message = state.queue.pop_front();
        drop(state);
        if was_full {
            self.shared.space.notify_one();
        }
        self.shared.notify_observer(ReceiverEvent::Took { priority: true });
        message
    }

    /// Number of messages waiting in the channel.
    pub fn queued(&self) -> usize {
        lock(&self.shared.state).queue.len()
    }
}

impl<T> ChannelReceiver<T> {
    /// Closes the channel because of `reason`, which the producer's next send reports as its
    /// error (e.g. a network output that cannot encode what it was given).
    pub fn close_because(self, reason: String) {
        let _ = self.shared.closed_because.set(reason);
    }

    /// Hands an emptied record buffer back to the producer for reuse.
    pub fn recycle(&self, mut buffer: Vec<StreamRecord<T>>) {
        buffer.clear();
        let mut state = lock(&self.shared.state);
        // Enough for every buffer that can be in flight; more would only hold memory.
        if state.free_buffers.len() <= self.shared.capacity + 1 {
            state.free_buffers.push(buffer);
        }
    }
}

impl<T> Drop for ChannelReceiver<T> {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        state.receiver_alive = false;
        state.queue.clear();
        drop(state);
        self.shared.space.notify_all();
        self.shared.notify_observer(ReceiverEvent::Dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn delivers_in_order_and_reports_disconnect() {
        let waker = TaskWaker::new();
        let (tx, rx) = channel::<u32>(4, waker);
        let cancel = CancelToken::new();
        tx.send(Message::Watermark(Watermark(1)), &cancel).unwrap();
        tx.send(Message::EndOfInput, &cancel).unwrap();
        assert!(matches!(rx.try_recv(), TryRecv::Message(Message::Watermark(Watermark(1)))));
        drop(tx);
        assert!(matches!(rx.try_recv(), TryRecv::Message(Message::EndOfInput)));
        assert!(matches!(rx.try_recv(), TryRecv::Disconnected));
    }

    #[test]
    fn full_channel_blocks_producer_until_consumed() {
        let waker = TaskWaker::new();
        let (tx, rx) = channel::<u32>(2, waker.clone());
        let cancel = CancelToken::new();
        let producer = thread::spawn(move || {
            for i in 0..10 {
                tx.send(Message::Watermark(Watermark(i)), &cancel).unwrap();
                assert!(tx.queued() <= 2);
            }
        });
        let mut got = Vec::new();
        while got.len() < 10 {
            match rx.try_recv() {
                TryRecv::Message(Message::Watermark(w)) => got.push(w.0),
                TryRecv::Message(_) => unreachable!(),
                TryRecv::Empty => waker.wait_until(Some(Instant::now() + Duration::from_millis(50))),
                TryRecv::Disconnected => break,
            }
        }
        producer.join().unwrap();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn an_overtaking_barrier_goes_first_without_waiting_for_space() {
        let (tx, rx) = channel::<u32>(1, TaskWaker::new());
        let cancel = CancelToken::new();
        tx.send(Message::Watermark(Watermark(1)), &cancel).unwrap();
        let barrier = CheckpointBarrier {
            id: 7,
            timestamp: 0,
            kind: crate::checkpoint::SnapshotKind::Checkpoint,
            stop: None,
            target: std::path::Path::new("/tmp").into(),
            remote: None,
            overtaking: true,
        };
        tx.send_overtaking(barrier, 1).unwrap();
        match rx.try_recv() {
            TryRecv::Message(Message::OvertakingBarrier { barrier, overtaken }) => {
                assert_eq!((barrier.id, overtaken), (7, 2), "the queued watermark and one unflushed buffer");
            }
            other => panic!("expected the barrier first, got {other:?}"),
        }
        assert!(matches!(rx.try_recv(), TryRecv::Message(Message::Watermark(Watermark(1)))));
    }

    #[test]
    fn the_observer_hears_of_every_message_taken_and_of_the_drop() {
        let (tx, rx) = channel::<u32>(1, TaskWaker::new());
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        assert!(tx.observe_receiver(move |event| lock(&seen).push(event)));
        assert!(!tx.observe_receiver(|_| {}), "one observer per channel");
        // Credited sends do not wait for space.
        tx.send_credited(Message::Watermark(Watermark(1))).unwrap();
        tx.send_credited(Message::Watermark(Watermark(2))).unwrap();
        assert_eq!(rx.queued(), 2);
        assert!(rx.try_recv_priority().is_none(), "the head is no overtaking barrier");
        tx.send_overtaking(
            CheckpointBarrier {
                id: 1,
                timestamp: 0,
                kind: crate::checkpoint::SnapshotKind::Checkpoint,
                stop: None,
                target: std::path::Path::new("/tmp").into(),
                remote: None,
                overtaking: true,
            },
            0,
        )
        .unwrap();
        assert!(matches!(rx.try_recv_priority(), Some(Message::OvertakingBarrier { overtaken: 2, .. })));
        assert!(matches!(rx.try_recv(), TryRecv::Message(Message::Watermark(Watermark(1)))));
        assert!(matches!(rx.try_recv(), TryRecv::Message(Message::Watermark(Watermark(2)))));
        drop(rx);
        assert!(tx.send_credited(Message::EndOfInput).is_err());
        assert_eq!(
            *lock(&events),
            vec![
                ReceiverEvent::Took { priority: true },
                ReceiverEvent::Took { priority: false },
                ReceiverEvent::Took { priority: false },
                ReceiverEvent::Dropped
            ]
        );
    }

    #[test]
    fn dropped_consumer_unblocks_producer_with_error() {
        let (tx, rx) = channel::<u32>(1, TaskWaker::new());
        let cancel = CancelToken::new();
        tx.send(Message::EndOfInput, &cancel).unwrap();
        let producer = thread::spawn(move || tx.send(Message::EndOfInput, &cancel));
        thread::sleep(Duration::from_millis(20));
        drop(rx);
        assert!(matches!(producer.join().unwrap(), Err(TaskError::Disconnected(_))));
    }

    #[test]
    fn cancellation_unblocks_producer() {
        let (tx, _rx) = channel::<u32>(1, TaskWaker::new());
        let cancel = CancelToken::new();
        tx.send(Message::EndOfInput, &cancel).unwrap();
        let c2 = cancel.clone();
        let producer = thread::spawn(move || tx.send(Message::EndOfInput, &c2));
        cancel.cancel();
        assert!(matches!(producer.join().unwrap(), Err(TaskError::Cancelled)));
    }

    #[test]
    fn a_send_into_a_full_channel_reports_how_long_it_waited() {
        let (tx, rx) = channel::<u32>(1, TaskWaker::new());
        let cancel = CancelToken::new();
        assert_eq!(tx.send(Message::EndOfInput, &cancel).unwrap(), Duration::ZERO, "room: no wait");
        let started = Arc::new(AtomicBool::new(false));
        let flag = started.clone();
        let producer = thread::spawn(move || {
            flag.store(true, Ordering::Release);
            tx.send(Message::EndOfInput, &cancel)
        });
        while !started.load(Ordering::Acquire) {
            thread::yield_now();
        }
        thread::sleep(Duration::from_millis(20));
        assert!(matches!(rx.try_recv(), TryRecv::Message(Message::EndOfInput)));
        let waited = producer.join().unwrap().unwrap();
        assert!(waited > Duration::ZERO, "the blocked send counts its wait: {waited:?}");
    }
}
