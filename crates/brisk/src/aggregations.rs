//! The field aggregations of Flink (`sum`, `min`, `max`, `min_by`, `max_by`) as reduce
//! functions over a field accessor, shared by keyed streams and windows.

use std::ops::Add;

/// Sums a field; other fields come from the first record.
pub fn sum<T, V, F>(field: F) -> impl FnMut(T, T) -> T + Clone + Send + 'static
where
    V: Add<Output = V> + Clone,
    F: for<'a> Fn(&'a mut T) -> &'a mut V + Clone + Send + 'static,
{
    move |mut acc, mut next| {
        let total = field(&mut acc).clone() + field(&mut next).clone();
        *field(&mut acc) = total;
        acc
    }
}

/// The minimum of a field; other fields come from the first record.
pub fn min<T, V, F>(field: F) -> impl FnMut(T, T) -> T + Clone + Send + 'static
where
    V: PartialOrd + Clone,
    F: for<'a> Fn(&'a mut T) -> &'a mut V + Clone + Send + 'static,
{
    move |mut acc, mut next| {
        if *field(&mut next) < *field(&mut acc) {
            *field(&mut acc) = field(&mut next).clone();
        }
        acc
    }
}

/// The maximum of a field; other fields come from the first record.
pub fn max<T, V, F>(field: F) -> impl FnMut(T, T) -> T + Clone + Send + 'static
where
    V: PartialOrd + Clone,
    F: for<'a> Fn(&'a mut T) -> &'a mut V + Clone + Send + 'static,
{
    move |mut acc, mut next| {
        if *field(&mut next) > *field(&mut acc) {
            *field(&mut acc) = field(&mut next).clone();
        }
        acc
    }
}

/// The record with the smallest field; the earliest wins ties.
pub fn min_by<T, V, F>(field: F) -> impl FnMut(T, T) -> T + Clone + Send + 'static
where
    V: PartialOrd,
    F: for<'a> Fn(&'a mut T) -> &'a mut V + Clone + Send + 'static,
{
    move |mut acc, mut next| if *field(&mut next) < *field(&mut acc) { next } else { acc }
}

/// The record with the largest field; the earliest wins ties.
pub fn max_by<T, V, F>(field: F) -> impl FnMut(T, T) -> T + Clone + Send + 'static
where
    V: PartialOrd,
    F: for<'a> Fn(&'a mut T) -> &'a mut V + Clone + Send + 'static,
{
    move |mut acc, mut next| if *field(&mut next) > *field(&mut acc) { next } else { acc }
}
