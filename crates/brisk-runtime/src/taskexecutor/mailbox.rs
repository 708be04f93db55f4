//! A task's mailbox: control messages handled on the task thread between input records, so
//! operator state is only ever touched by that thread (Flink's mailbox model).

use crate::checkpoint::{CheckpointBarrier, CheckpointId};
use crate::error::lock;
use crate::network::channel::TaskWaker;
use crate::taskexecutor::output::StateQuery;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

/// A request to a task.
pub enum Mail {
    /// Look up the value of keyed state for a key (queryable state).
    QueryState {
        /// The state, the key, and how to answer.
        query: StateQuery,
        /// Where the answer goes: `Ok(None)` when this task has no such state or value.
        reply: Sender<Result<Option<Vec<u8>>, String>>,
    },
    /// Take a checkpoint now (sent to source tasks by the coordinator).
    TriggerCheckpoint(CheckpointBarrier),
    /// A checkpoint completed (or the job finished: `FINAL_CHECKPOINT`).
    CheckpointComplete(CheckpointId),
    /// A checkpoint was abandoned.
    CheckpointAborted(CheckpointId),
}

/// The mailbox of one task; cheap to check when empty.
#[derive(Clone)]
pub struct Mailbox {
    queue: Arc<Mutex<VecDeque<Mail>>>,
    pending: Arc<AtomicBool>,
    waker: Arc<TaskWaker>,
}

impl Mailbox {
    /// A mailbox that wakes the task on `waker`.
    pub fn new(waker: Arc<TaskWaker>) -> Self {
        Mailbox { queue: Arc::default(), pending: Arc::default(), waker }
    }

    /// Puts a mail in and wakes the task.
    pub fn send(&self, mail: Mail) {
        lock(&self.queue).push_back(mail);
        self.pending.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Whether mail is waiting (one atomic load): long-running work on the task thread, such
    /// as a source reader's poll, returns early so that a checkpoint trigger is not held up.
    #[inline]
    pub fn has_mail(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Takes all waiting mail (one atomic load when there is none).
    #[inline]
    pub fn drain(&self) -> Vec<Mail> {
        if !self.pending.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut queue = lock(&self.queue);
        self.pending.store(false, Ordering::Release);
        queue.drain(..).collect()
    }
}
