//! How a keyed stream finds the key of a record.

use std::sync::Arc;

/// Extracts the key of a record (Flink's `KeySelector`): either computed into a new value, or
/// borrowed from a field of the record, which hashes and looks up keys without copying them.
pub enum KeySelector<T, K> {
    /// A computed key (`key_by`).
    Computed(Arc<dyn Fn(&T) -> K + Send + Sync>),
    /// A borrowed field (`key_by_field`).
    Field(Arc<dyn for<'a> Fn(&'a T) -> &'a K + Send + Sync>),
}

impl<T, K> Clone for KeySelector<T, K> {
    fn clone(&self) -> Self {
        match self {
            KeySelector::Computed(f) => KeySelector::Computed(f.clone()),
            KeySelector::Field(f) => KeySelector::Field(f.clone()),
        }
    }
}

impl<T, K: Clone> KeySelector<T, K> {
    /// Calls `f` with the key of `value`, borrowing it where the selector allows.
    #[inline]
    pub fn with_key<R>(&self, value: &T, f: impl FnOnce(&K) -> R) -> R {
        match self {
            KeySelector::Computed(select) => f(&select(value)),
            KeySelector::Field(select) => f(select(value)),
        }
    }

    /// The key of `value` as an owned value.
    #[inline]
    pub fn get_key(&self, value: &T) -> K {
        match self {
            KeySelector::Computed(select) => select(value),
            KeySelector::Field(select) => select(value).clone(),
        }
    }
}
