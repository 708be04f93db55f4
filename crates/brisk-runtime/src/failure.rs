//! Failure injection for recovery tests and the examples' `--inject-failures`: planned
//! failures fire once each, at a count of processed records, as an error or a panic in a user
//! function's place or inside snapshotting. The plan belongs to the job, not to an attempt, so
//! a restarted job does not fail at the same point again. After a failure fired, the next one
//! waits until the job master restarted the failed tasks, so each planned failure costs
//! exactly one restart (two due close together would otherwise fail one attempt twice).

use crate::error::{TaskError, TaskResult, lock};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Where a planned failure strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectionPoint {
    /// While an operator processes a record (as a failing user function would).
    Record,
    /// In the synchronous part of a snapshot.
    SyncSnapshot,
    /// In the asynchronous part of a snapshot (the checkpoint is declined).
    AsyncSnapshot,
}

/// One planned failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedFailure {
    /// Fires once this many records have been processed by the job (over all attempts).
    pub after_records: u64,
    /// Where.
    pub point: InjectionPoint,
    /// Panic instead of returning an error (records only).
    pub panic: bool,
}

struct Plan {
    records: AtomicU64,
    next_threshold: AtomicU64,
    remaining: Mutex<Vec<PlannedFailure>>,
    /// Cleared when a failure fires, set again when the failed tasks were restarted.
    armed: AtomicBool,
    /// The failures that fired, in order, so tests can prove each planned one did.
    fired: Mutex<Vec<PlannedFailure>>,
}

/// The failure plan of a job; the default injects nothing and costs one branch per record.
#[derive(Clone, Default)]
pub struct FailureInjector(Option<Arc<Plan>>);

impl std::fmt::Debug for FailureInjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FailureInjector({} fired)", self.fired())
    }
}

impl FailureInjector {
    /// Injects the planned failures in order of their record counts.
    pub fn new(mut plan: Vec<PlannedFailure>) -> Self {
        if plan.is_empty() {
            return FailureInjector(None);
        }
        plan.sort_by_key(|p| std::cmp::Reverse(p.after_records));
        let next = plan.last().map(|p| p.after_records).unwrap_or(u64::MAX);
        FailureInjector(Some(Arc::new(Plan {
            records: AtomicU64::new(0),
            next_threshold: AtomicU64::new(next),
            remaining: Mutex::new(plan),
            armed: AtomicBool::new(true),
            fired: Mutex::new(Vec::new()),
        })))
    }

    /// `count` failures at seeded pseudo-random record counts below `expected_records`,
    /// alternating errors, panics and snapshot failures.
    pub fn seeded(count: usize, seed: u64, expected_records: u64) -> Self {
        let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            brisk_core::hash::fmix64(state)
        };
        let span = expected_records.max(10);
        let plan = (0..count)
            .map(|i| PlannedFailure {
                after_records: span / 10 + next() % (span * 8 / 10),
                point: match i % 4 {
                    3 => InjectionPoint::SyncSnapshot,
                    _ => InjectionPoint::Record,
                },
                panic: i % 4 == 1,
            })
            .collect();
        Self::new(plan)
    }

    /// Number of failures fired so far.
    pub fn fired(&self) -> u64 {
        self.0.as_ref().map(|p| lock(&p.fired).len() as u64).unwrap_or(0)
    }

    /// The failures fired so far, in the order they fired.
    pub fn fired_failures(&self) -> Vec<PlannedFailure> {
        self.0.as_ref().map(|p| lock(&p.fired).clone()).unwrap_or_default()
    }

    /// How many failures fired at `point` (a panic or an error alike).
    pub fn fired_at(&self, point: InjectionPoint) -> usize {
        self.fired_failures().iter().filter(|f| f.point == point).count()
    }

    /// Lets the next planned failure fire: called by the job master when it restarts tasks
    /// (or, with checkpoints, when one completes).
    pub fn arm(&self) {
        if let Some(plan) = &self.0 {
            plan.armed.store(true, Ordering::Release);
        }
    }

    /// Holds the next planned failure back until [`arm`](Self::arm).
    pub fn disarm(&self) {
        if let Some(plan) = &self.0 {
            plan.armed.store(false, Ordering::Release);
        }
    }

    /// Counts a processed record and fails if a record failure is due.
    #[inline]
    pub fn on_record(&self) -> TaskResult {
        let Some(plan) = &self.0 else { return Ok(()) };
        let n = plan.records.fetch_add(1, Ordering::Relaxed) + 1;
        if n < plan.next_threshold.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.fire(InjectionPoint::Record)
    }

    /// Fails if a failure at `point` is due.
    pub fn maybe_fail(&self, point: InjectionPoint) -> TaskResult {
        match &self.0 {
            Some(plan) if plan.records.load(Ordering::Relaxed) >= plan.next_threshold.load(Ordering::Relaxed) => {
                self.fire(point)
            }
            _ => Ok(()),
        }
    }

    fn fire(&self, point: InjectionPoint) -> TaskResult {
        let Some(plan) = &self.0 else { return Ok(()) };
        if !plan.armed.load(Ordering::Acquire) {
            return Ok(());
        }
        let due = {
            let mut remaining = lock(&plan.remaining);
            match remaining.last() {
                Some(p)
                    if p.point == point
                        && plan.records.load(Ordering::Relaxed) >= p.after_records
                        && plan.armed.swap(false, Ordering::AcqRel) =>
                {
                    let p = remaining.pop();
                    let next = remaining.last().map(|p| p.after_records).unwrap_or(u64::MAX);
                    plan.next_threshold.store(next, Ordering::Relaxed);
                    p
                }
                _ => None,
            }
        };
        let Some(failure) = due else { return Ok(()) };
        let n = {
            let mut fired = lock(&plan.fired);
            fired.push(failure.clone());
            fired.len()
        };
        let message = format!("injected failure {n} ({:?}) after {} records", failure.point, failure.after_records);
        if failure.panic {
            panic!("{message}");
        }
        Err(TaskError::msg(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_failures_fire_once_in_order() {
        let injector = FailureInjector::new(vec![
            PlannedFailure { after_records: 5, point: InjectionPoint::Record, panic: false },
            PlannedFailure { after_records: 3, point: InjectionPoint::SyncSnapshot, panic: false },
        ]);
        for _ in 0..3 {
            injector.on_record().unwrap();
        }
        assert!(injector.maybe_fail(InjectionPoint::AsyncSnapshot).is_ok(), "another point");
        assert!(
            injector.maybe_fail(InjectionPoint::SyncSnapshot).unwrap_err().to_string().contains("injected failure 1")
        );
        injector.on_record().unwrap();
        assert!(injector.on_record().is_ok(), "due, but not armed again since the last failure");
        injector.arm();
        assert!(injector.maybe_fail(InjectionPoint::SyncSnapshot).is_ok(), "fires once");
        assert!(injector.on_record().is_err());
        assert!((0..100).all(|_| injector.on_record().is_ok()));
        assert_eq!(injector.fired(), 2);
        assert_eq!(injector.fired_at(InjectionPoint::SyncSnapshot), 1);
        assert_eq!(injector.fired_at(InjectionPoint::Record), 1);
        assert_eq!(injector.fired_at(InjectionPoint::AsyncSnapshot), 0);
        assert!(FailureInjector::default().on_record().is_ok());
    }

    #[test]
    fn seeded_plans_are_reproducible() {
        let a = FailureInjector::seeded(3, 42, 1000);
        let b = FailureInjector::seeded(3, 42, 1000);
        let plan = |i: &FailureInjector| i.0.as_ref().map(|p| lock(&p.remaining).clone()).unwrap_or_default();
        assert_eq!(plan(&a), plan(&b));
        assert!(plan(&a).iter().all(|p| (100..900).contains(&p.after_records)));
    }
}
