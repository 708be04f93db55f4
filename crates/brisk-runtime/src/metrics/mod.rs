//! Operator metrics (records in/out, user counters) and accumulators.

pub mod task_io;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// A user counter; cheap to clone, readable from outside the task while it runs.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    #[inline]
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The user metrics of one operator subtask (Flink's `MetricGroup`).
#[derive(Clone, Debug, Default)]
pub struct MetricGroup {
    counters: Rc<RefCell<Vec<(String, Counter)>>>,
}

impl MetricGroup {
    /// The counter called `name`, created on first use.
    pub fn counter(&self, name: &str) -> Counter {
        let mut counters = self.counters.borrow_mut();
        if let Some((_, c)) = counters.iter().find(|(n, _)| n == name) {
            return c.clone();
        }
        let c = Counter::default();
        counters.push((name.to_string(), c.clone()));
        c
    }

    /// Current values of all counters.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        self.counters.borrow().iter().map(|(n, c)| (n.clone(), c.get())).collect()
    }
}

/// What one operator subtask reports when its task ends.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct OperatorReport {
    /// The operator's node in the stream graph.
    pub node_id: usize,
    /// Records the operator received.
    pub records_in: u64,
    /// Records the operator emitted (main and side outputs).
    pub records_out: u64,
    /// User counters.
    pub counters: Vec<(String, u64)>,
}

/// A merged accumulator result.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum AccumulatorValue {
    /// A sum of integers (Flink's `IntCounter`/`LongCounter`).
    LongSum(i64),
    /// A sum of floats (`DoubleCounter`).
    DoubleSum(f64),
    /// A maximum (`LongMaximum`).
    LongMax(i64),
    /// A minimum (`LongMinimum`).
    LongMin(i64),
    /// Counts per value (`Histogram`).
    Histogram(BTreeMap<i64, u64>),
}

impl AccumulatorValue {
    /// Merges the value of another subtask; values of different kinds keep the first.
    pub fn merge(&mut self, other: &AccumulatorValue) {
        match (self, other) {
            (AccumulatorValue::LongSum(a), AccumulatorValue::LongSum(b)) => *a += b,
            (AccumulatorValue::DoubleSum(a), AccumulatorValue::DoubleSum(b)) => *a += b,
            (AccumulatorValue::LongMax(a), AccumulatorValue::LongMax(b)) => *a = (*a).max(*b),
            (AccumulatorValue::LongMin(a), AccumulatorValue::LongMin(b)) => *a = (*a).min(*b),
            (AccumulatorValue::Histogram(a), AccumulatorValue::Histogram(b)) => {
                for (k, v) in b {
                    *a.entry(*k).or_default() += v;
                }
            }
            _ => {}
        }
    }

    /// The integer value of sums, maxima and minima.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            AccumulatorValue::LongSum(v) | AccumulatorValue::LongMax(v) | AccumulatorValue::LongMin(v) => Some(*v),
            _ => None,
        }
    }

    /// The float value of a float sum.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AccumulatorValue::DoubleSum(v) => Some(*v),
            _ => None,
        }
    }
}

impl fmt::Display for AccumulatorValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccumulatorValue::LongSum(v) | AccumulatorValue::LongMax(v) | AccumulatorValue::LongMin(v) => {
                write!(f, "{v}")
            }
            AccumulatorValue::DoubleSum(v) => write!(f, "{v}"),
            AccumulatorValue::Histogram(h) => write!(f, "{h:?}"),
        }
    }
}

/// An accumulator a user function updates; merged over all subtasks when the job ends.
/// Updates take `&self` (atomics inside), so a handle can live in a function's fields.
pub trait Accumulator: Send + Sync + 'static {
    /// The current local value.
    fn value(&self) -> AccumulatorValue;
}

/// Sums integers (Flink's `LongCounter`).
#[derive(Debug, Default)]
pub struct LongCounter(AtomicI64);

impl LongCounter {
    /// Adds `v`.
    pub fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    /// The local value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Accumulator for LongCounter {
    fn value(&self) -> AccumulatorValue {
        AccumulatorValue::LongSum(self.get())
    }
}

/// Keeps the maximum (Flink's `LongMaximum`).
#[derive(Debug)]
pub struct LongMaximum(AtomicI64);

impl Default for LongMaximum {
    fn default() -> Self {
        LongMaximum(AtomicI64::new(i64::MIN))
    }
}

impl LongMaximum {
    /// Offers `v`.
    pub fn add(&self, v: i64) {
        self.0.fetch_max(v, Ordering::Relaxed);
    }
    /// The local value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Accumulator for LongMaximum {
    fn value(&self) -> AccumulatorValue {
        AccumulatorValue::LongMax(self.get())
    }
}

/// Keeps the minimum (Flink's `LongMinimum`).
#[derive(Debug)]
pub struct LongMinimum(AtomicI64);

impl Default for LongMinimum {
    fn default() -> Self {
        LongMinimum(AtomicI64::new(i64::MAX))
    }
}

impl LongMinimum {
    /// Offers `v`.
    pub fn add(&self, v: i64) {
        self.0.fetch_min(v, Ordering::Relaxed);
    }
    /// The local value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Accumulator for LongMinimum {
    fn value(&self) -> AccumulatorValue {
        AccumulatorValue::LongMin(self.get())
    }
}

/// Sums floats (Flink's `DoubleCounter`).
#[derive(Debug, Default)]
pub struct DoubleCounter(Mutex<f64>);

impl DoubleCounter {
    /// Adds `v`.
    pub fn add(&self, v: f64) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) += v;
    }
    /// The local value.
    pub fn get(&self) -> f64 {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Accumulator for DoubleCounter {
    fn value(&self) -> AccumulatorValue {
        AccumulatorValue::DoubleSum(self.get())
    }
}

/// Counts occurrences of integer values (Flink's `Histogram`).
#[derive(Debug, Default)]
pub struct Histogram(Mutex<BTreeMap<i64, u64>>);

impl Histogram {
    /// Counts one occurrence of `v`.
    pub fn add(&self, v: i64) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner).entry(v).or_default() += 1;
    }
}

impl Accumulator for Histogram {
    fn value(&self) -> AccumulatorValue {
        AccumulatorValue::Histogram(self.0.lock().unwrap_or_else(PoisonError::into_inner).clone())
    }
}

/// A shared handle to an accumulator registered with the task.
pub type AccumulatorHandle<A> = Arc<A>;

type NamedAccumulators = Vec<(String, Arc<dyn Accumulator>)>;

/// The accumulators of one task, by name.
#[derive(Clone, Default)]
pub struct AccumulatorRegistry {
    entries: Rc<RefCell<NamedAccumulators>>,
}

impl AccumulatorRegistry {
    /// Registers an accumulator under `name` and returns the handle to update it; several
    /// registrations under one name are merged.
    pub fn add<A: Accumulator>(&self, name: &str, accumulator: A) -> AccumulatorHandle<A> {
        let handle = Arc::new(accumulator);
        self.entries.borrow_mut().push((name.to_string(), handle.clone()));
        handle
    }

    /// The local values, merged by name.
    pub fn values(&self) -> Vec<(String, AccumulatorValue)> {
        let mut merged: Vec<(String, AccumulatorValue)> = Vec::new();
        for (name, acc) in self.entries.borrow().iter() {
            let value = acc.value();
            match merged.iter_mut().find(|(n, _)| n == name) {
                Some((_, existing)) => existing.merge(&value),
                None => merged.push((name.clone(), value)),
            }
        }
        merged
    }
}

/// What a task reports when it ends.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct TaskReport {
    /// One entry per operator of the chain.
    pub operators: Vec<OperatorReport>,
    /// Accumulator values of the task.
    pub accumulators: Vec<(String, AccumulatorValue)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulators_merge_by_kind() {
        let reg = AccumulatorRegistry::default();
        let a = reg.add("n", LongCounter::default());
        let b = reg.add("n", LongCounter::default());
        a.add(2);
        b.add(3);
        let m = reg.add("max", LongMaximum::default());
        m.add(7);
        m.add(4);
        let values = reg.values();
        assert_eq!(
            values,
            vec![("n".into(), AccumulatorValue::LongSum(5)), ("max".into(), AccumulatorValue::LongMax(7))]
        );
        let mut h = AccumulatorValue::Histogram(BTreeMap::from([(1, 2)]));
        h.merge(&AccumulatorValue::Histogram(BTreeMap::from([(1, 1), (3, 1)])));
        assert_eq!(h, AccumulatorValue::Histogram(BTreeMap::from([(1, 3), (3, 1)])));
    }

    #[test]
    fn counters_are_shared_by_name() {
        let g = MetricGroup::default();
        g.counter("bad").inc();
        g.counter("bad").inc_by(2);
        assert_eq!(g.snapshot(), vec![("bad".to_string(), 3)]);
    }
}
