//! Evictors: remove elements from a window before or after its function runs (Flink's
//! `Evictor`s).

use std::sync::Arc;
use std::time::Duration;

/// A window element with its timestamp.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TimestampedValue<T> {
    /// The element.
    pub value: T,
    /// Its timestamp.
    pub timestamp: i64,
}

/// The distance between two elements, for [`DeltaEvictor`].
pub type DeltaFn<T> = Arc<dyn Fn(&T, &T) -> f64 + Send + Sync>;

/// Removes elements from a window's contents (Flink's `Evictor`).
pub trait Evictor<T, W>: Send {
    /// Before the window function runs.
    fn evict_before(&mut self, elements: &mut Vec<TimestampedValue<T>>, window: &W);
    /// After the window function ran.
    fn evict_after(&mut self, elements: &mut Vec<TimestampedValue<T>>, window: &W);
    /// A copy for another subtask.
    fn box_clone(&self) -> Box<dyn Evictor<T, W>>;
}

/// Keeps the last `n` elements (Flink's `CountEvictor`).
#[derive(Clone, Copy, Debug)]
pub struct CountEvictor {
    max_count: usize,
    after: bool,
}

impl CountEvictor {
    /// Keeps `n` elements, evicting before the function runs.
    pub fn of(n: usize) -> Self {
        CountEvictor { max_count: n, after: false }
    }

    /// Keeps `n` elements, evicting before or after the function runs.
    pub fn of_after(n: usize, do_evict_after: bool) -> Self {
        CountEvictor { max_count: n, after: do_evict_after }
    }

    fn evict<T>(&self, elements: &mut Vec<TimestampedValue<T>>) {
        if elements.len() > self.max_count {
            elements.drain(..elements.len() - self.max_count);
        }
    }
}

impl<T, W> Evictor<T, W> for CountEvictor {
    fn evict_before(&mut self, elements: &mut Vec<TimestampedValue<T>>, _: &W) {
        if !self.after {
            self.evict(elements);
        }
    }
    fn evict_after(&mut self, elements: &mut Vec<TimestampedValue<T>>, _: &W) {
        if self.after {
            self.evict(elements);
        }
    }
    fn box_clone(&self) -> Box<dyn Evictor<T, W>> {
        Box::new(*self)
    }
}

/// Keeps elements within `size` of the newest one (Flink's `TimeEvictor`).
#[derive(Clone, Copy, Debug)]
pub struct TimeEvictor {
    window_size: i64,
    after: bool,
}

impl TimeEvictor {
    /// Keeps the last `size` of event time, evicting before the function runs.
    pub fn of(size: Duration) -> Self {
        TimeEvictor { window_size: size.as_millis() as i64, after: false }
    }

    /// Keeps the last `size`, evicting before or after the function runs.
    pub fn of_after(size: Duration, do_evict_after: bool) -> Self {
        TimeEvictor { window_size: size.as_millis() as i64, after: do_evict_after }
    }

    fn evict<T>(&self, elements: &mut Vec<TimestampedValue<T>>) {
        let Some(newest) = elements.iter().map(|e| e.timestamp).max() else { return };
        let cutoff = newest.saturating_sub(self.window_size);
        elements.retain(|e| e.timestamp > cutoff);
    }
}

impl<T, W> Evictor<T, W> for TimeEvictor {
    fn evict_before(&mut self, elements: &mut Vec<TimestampedValue<T>>, _: &W) {
        if !self.after {
            self.evict(elements);
        }
    }
    fn evict_after(&mut self, elements: &mut Vec<TimestampedValue<T>>, _: &W) {
        if self.after {
            self.evict(elements);
        }
    }
    fn box_clone(&self) -> Box<dyn Evictor<T, W>> {
        Box::new(*self)
    }
}

/// Evicts elements whose distance to the newest element reaches a threshold (Flink's
/// `DeltaEvictor`).
pub struct DeltaEvictor<T> {
    threshold: f64,
    delta: DeltaFn<T>,
    after: bool,
}

impl<T> Clone for DeltaEvictor<T> {
    fn clone(&self) -> Self {
        DeltaEvictor { threshold: self.threshold, delta: self.delta.clone(), after: self.after }
    }
}

impl<T> DeltaEvictor<T> {
    /// Evicts before the function runs the elements with `delta(element, newest) >= threshold`.
    pub fn of(threshold: f64, delta: impl Fn(&T, &T) -> f64 + Send + Sync + 'static) -> Self {
        DeltaEvictor { threshold, delta: Arc::new(delta), after: false }
    }

    /// Evicts after the function ran instead.
    pub fn evicting_after(mut self) -> Self {
        self.after = true;
        self
    }

    fn evict(&self, elements: &mut Vec<TimestampedValue<T>>) {
        let Some(last) = elements.pop() else { return };
        elements.retain(|e| (self.delta)(&e.value, &last.value) < self.threshold);
        elements.push(last);
    }
}

impl<T: Send + 'static, W> Evictor<T, W> for DeltaEvictor<T> {
    fn evict_before(&mut self, elements: &mut Vec<TimestampedValue<T>>, _: &W) {
        if !self.after {
            self.evict(elements);
        }
    }
    fn evict_after(&mut self, elements: &mut Vec<TimestampedValue<T>>, _: &W) {
        if self.after {
            self.evict(elements);
        }
    }
    fn box_clone(&self) -> Box<dyn Evictor<T, W>> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: &[(i32, i64)]) -> Vec<TimestampedValue<i32>> {
        v.iter().map(|(value, timestamp)| TimestampedValue { value: *value, timestamp: *timestamp }).collect()
    }

    #[test]
    fn evictors_keep_what_flink_keeps() {
        let mut e = values(&[(1, 10), (2, 20), (3, 30)]);
        Evictor::<i32, ()>::evict_before(&mut CountEvictor::of(2), &mut e, &());
        assert_eq!(e, values(&[(2, 20), (3, 30)]));
        let mut e = values(&[(1, 10), (2, 20), (3, 30)]);
        Evictor::<i32, ()>::evict_before(&mut TimeEvictor::of(Duration::from_millis(15)), &mut e, &());
        assert_eq!(e, values(&[(2, 20), (3, 30)]));
        let mut e = values(&[(1, 10), (10, 20), (9, 30)]);
        Evictor::<i32, ()>::evict_before(
            &mut DeltaEvictor::of(5.0, |a: &i32, b: &i32| (a - b).abs() as f64),
            &mut e,
            &(),
        );
        assert_eq!(e, values(&[(10, 20), (9, 30)]));
    }
}
