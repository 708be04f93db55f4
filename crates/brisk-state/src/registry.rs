//! The task-thread registry behind state handles.
//!
//! A user function keeps its state handles in its fields, and functions are `Send` (each
//! subtask gets a copy), so handles cannot hold the backend itself. They hold an id instead;
//! the backend is registered with the thread that runs the task and looked up on each access:
//! no locks, and a handle used on another thread gets a clear error instead of a data race.

use crate::error::{StateError, StateResult};
use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    static SLOTS: RefCell<Vec<(u64, Box<dyn Any>)>> = const { RefCell::new(Vec::new()) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The id of a registered object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegistryId(u64);

/// An object owned by the current thread's registry for as long as this guard lives; it is
/// not `Send`, since the object lives on this thread.
pub struct Registered<T: 'static> {
    id: RegistryId,
    _thread_bound: PhantomData<*const T>,
}

impl<T: 'static> Registered<T> {
    /// Registers `value` with the current thread.
    pub fn new(value: T) -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        SLOTS.with(|slots| slots.borrow_mut().push((id, Box::new(value))));
        Registered { id: RegistryId(id), _thread_bound: PhantomData }
    }

    /// The id handles use.
    pub fn id(&self) -> RegistryId {
        self.id
    }

    /// Runs `f` on the object.
    pub fn with<R>(&self, what: &str, f: impl FnOnce(&mut T) -> StateResult<R>) -> StateResult<R> {
        with(self.id, what, f)
    }
}

impl<T: 'static> Drop for Registered<T> {
    fn drop(&mut self) {
        let removed = SLOTS.with(|slots| match slots.try_borrow_mut() {
            Ok(mut slots) => slots.iter().position(|(id, _)| *id == self.id.0).map(|i| slots.swap_remove(i)),
            Err(_) => None,
        });
        // Dropped outside the borrow: the object's own drop may touch the registry.
        drop(removed);
    }
}

/// Runs `f` on the object registered under `id` on this thread; `what` names the state in
/// errors.
#[inline]
pub fn with<T: 'static, R>(id: RegistryId, what: &str, f: impl FnOnce(&mut T) -> StateResult<R>) -> StateResult<R> {
    SLOTS.with(|slots| {
        let mut slots = slots.try_borrow_mut().map_err(|_| StateError::Reentrant(what.to_string()))?;
        let object = slots
            .iter_mut()
            .find(|(slot, _)| *slot == id.0)
            .and_then(|(_, object)| object.downcast_mut::<T>())
            .ok_or_else(|| StateError::NotInTask(what.to_string()))?;
        f(object)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_live_as_long_as_their_guard_and_only_on_their_thread() {
        let guard = Registered::new(41u32);
        let id = guard.id();
        assert_eq!(
            with::<u32, _>(id, "x", |v| {
                *v += 1;
                Ok(*v)
            })
            .unwrap(),
            42
        );
        let other = std::thread::spawn(move || with::<u32, u32>(id, "x", |v| Ok(*v)).is_err()).join().unwrap();
        assert!(other, "another thread does not see the object");
        assert!(matches!(with::<String, ()>(id, "x", |_| Ok(())), Err(StateError::NotInTask(_))), "wrong type");
        let nested = with::<u32, _>(id, "outer", |_| Ok(with::<u32, ()>(id, "inner", |_| Ok(())).is_err())).unwrap();
        assert!(nested, "re-entrant use is an error, not a panic");
        drop(guard);
        assert!(with::<u32, ()>(id, "x", |_| Ok(())).is_err());
    }
}
