//! Processing time: the clock a task reads and the wakeups its operators ask for.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of processing time in epoch milliseconds.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now_millis(&self) -> i64;
}

/// The machine's wall clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

/// A clock that only moves when told to: processing-time behaviour is tested with it, never
/// with sleeps.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock at `start` milliseconds.
    pub fn new(start: i64) -> Arc<Self> {
        Arc::new(ManualClock(AtomicI64::new(start)))
    }

    /// Moves the clock to `millis` (never backwards).
    pub fn set(&self, millis: i64) {
        self.0.fetch_max(millis, Ordering::AcqRel);
    }

    /// Moves the clock forward.
    pub fn advance(&self, millis: i64) {
        self.0.fetch_add(millis, Ordering::AcqRel);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.0.load(Ordering::Acquire)
    }
}

struct Inner {
    clock: Arc<dyn Clock>,
    wakeups: BinaryHeap<Reverse<i64>>,
}

/// Per-task processing-time service: operators read the time and ask to be called
/// (`on_processing_time`) once it reaches a given instant; the task sleeps until the earliest.
#[derive(Clone)]
pub struct ProcessingTimeService {
    inner: Rc<RefCell<Inner>>,
}

impl ProcessingTimeService {
    /// A service reading `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        ProcessingTimeService { inner: Rc::new(RefCell::new(Inner { clock, wakeups: BinaryHeap::new() })) }
    }

    /// The current processing time in epoch milliseconds.
    pub fn current_processing_time(&self) -> i64 {
        self.inner.borrow().clock.now_millis()
    }

    /// Asks for an `on_processing_time` call once the time reaches `at`.
    pub fn register_wakeup(&self, at: i64) {
        self.inner.borrow_mut().wakeups.push(Reverse(at));
    }

    /// The earliest requested wakeup.
    pub fn next_wakeup(&self) -> Option<i64> {
        self.inner.borrow().wakeups.peek().map(|r| r.0)
    }

    /// Removes the wakeups due at `now`; true if there were any.
    pub fn take_due(&self, now: i64) -> bool {
        let mut inner = self.inner.borrow_mut();
        let mut any = false;
        while inner.wakeups.peek().is_some_and(|r| r.0 <= now) {
            inner.wakeups.pop();
            any = true;
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakeups_come_due_in_order() {
        let clock = ManualClock::new(100);
        let svc = ProcessingTimeService::new(clock.clone());
        svc.register_wakeup(150);
        svc.register_wakeup(120);
        assert_eq!(svc.next_wakeup(), Some(120));
        assert!(!svc.take_due(svc.current_processing_time()));
        clock.advance(30);
        assert!(svc.take_due(svc.current_processing_time()));
        assert_eq!(svc.next_wakeup(), Some(150));
        clock.set(10);
        assert_eq!(svc.current_processing_time(), 130, "a manual clock never goes back");
    }
}
