//! Operator metrics (records in/out, user counters) and accumulators.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
#[derive(Clone, Debug, Default)]
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
#[derive(Clone, Debug, PartialEq)]
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
pub trait Accumulator: 'static {
    /// The current local value.
    fn value(&self) -> AccumulatorValue;
}

macro_rules! scalar_accumulator {
    ($(#[$doc:meta])* $name:ident, $t:ty, $init:expr, $variant:ident, |$a:ident, $b:ident| $combine:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name($t);
        impl Default for $name {
            fn default() -> Self { $name($init) }
        }
        impl $name {
            /// Adds a value.
            pub fn add(&mut self, v: $t) {
                let $a = self.0;
                let $b = v;
                self.0 = $combine;
            }
            /// The local value.
            pub fn get(&self) -> $t { self.0 }
        }
        impl Accumulator for $name {
            fn value(&self) -> AccumulatorValue { AccumulatorValue::$variant(self.0) }
        }
    };
}

scalar_accumulator!(
    /// Sums integers.
    LongCounter, i64, 0, LongSum, |a, b| a + b);
scalar_accumulator!(
    /// Sums floats.
    DoubleCounter, f64, 0.0, DoubleSum, |a, b| a + b);
scalar_accumulator!(
    /// Keeps the maximum.
    LongMaximum, i64, i64::MIN, LongMax, |a, b| a.max(b));
scalar_accumulator!(
    /// Keeps the minimum.
    LongMinimum, i64, i64::MAX, LongMin, |a, b| a.min(b));

/// Counts occurrences of integer values.
#[derive(Clone, Debug, Default)]
pub struct Histogram(BTreeMap<i64, u64>);

impl Histogram {
    /// Counts one occurrence of `v`.
    pub fn add(&mut self, v: i64) {
        *self.0.entry(v).or_default() += 1;
    }
}

impl Accumulator for Histogram {
    fn value(&self) -> AccumulatorValue {
        AccumulatorValue::Histogram(self.0.clone())
    }
}

/// A shared handle to an accumulator registered with the task.
pub type AccumulatorHandle<A> = Rc<RefCell<A>>;

/// The accumulators of one task, by name.
#[derive(Clone, Default)]
pub struct AccumulatorRegistry {
    entries: Rc<RefCell<Vec<(String, Rc<RefCell<dyn Accumulator>>)>>>,
}

impl AccumulatorRegistry {
    /// Registers an accumulator under `name` and returns the handle to update it; a second
    /// registration under the same name in the same task returns a new, separately merged one.
    pub fn add<A: Accumulator>(&self, name: &str, accumulator: A) -> AccumulatorHandle<A> {
        let handle = Rc::new(RefCell::new(accumulator));
        self.entries.borrow_mut().push((name.to_string(), handle.clone()));
        handle
    }

    /// The local values, merged by name.
    pub fn values(&self) -> Vec<(String, AccumulatorValue)> {
        let mut merged: Vec<(String, AccumulatorValue)> = Vec::new();
        for (name, acc) in self.entries.borrow().iter() {
            let value = acc.borrow().value();
            match merged.iter_mut().find(|(n, _)| n == name) {
                Some((_, existing)) => existing.merge(&value),
                None => merged.push((name.clone(), value)),
            }
        }
        merged
    }
}

/// What a task reports when it ends.
#[derive(Clone, Debug, Default)]
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
        a.borrow_mut().add(2);
        b.borrow_mut().add(3);
        let m = reg.add("max", LongMaximum::default());
        m.borrow_mut().add(7);
        m.borrow_mut().add(4);
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
