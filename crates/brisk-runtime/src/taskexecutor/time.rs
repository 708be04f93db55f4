//! Processing time: the clock a task reads and the wakeups its operators ask for.

pub use brisk_core::clock::{Clock, ManualClock, SystemClock};
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::sync::Arc;

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
