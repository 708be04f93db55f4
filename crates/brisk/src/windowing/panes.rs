//! In-memory window contents for the common case: event-time windows that do not merge, with
//! the default trigger and an incremental function (reduce or aggregate), on the heap state
//! backend. Windows are kept in time order, each with a hash map from key to accumulator, so a
//! record costs one hash lookup and a watermark fires whole windows at once, without a timer
//! per key and window. The logical state is the same as the generic operator's: one
//! accumulator per key and window, fired when the watermark passes the window's end and
//! dropped once it passes the end plus the allowed lateness.

use super::contents::{FireContext, run};
use super::functions::ProcessWindowFunction;
use super::window::Window;
use crate::functions::RichFunction;
use brisk_core::{Data, Key};
use brisk_runtime::taskexecutor::time::ProcessingTimeService;
use brisk_runtime::{OperatorOutput, TaskError, TaskResult};
use brisk_state::AggregateFunction;
use hashbrown::HashMap;
use std::cmp::Ordering;
use std::collections::VecDeque;
use std::sync::Arc;

/// How an incremental window function folds elements into an accumulator.
pub(crate) trait Accumulate<T>: Send {
    /// The accumulator.
    type Acc: Data;
    /// The result.
    type Out;
    /// The accumulator of a window's first element.
    fn first(&self, value: T) -> Self::Acc;
    /// Folds one more element in.
    fn add(&mut self, acc: &mut Self::Acc, value: T);
    /// The window's result.
    fn result(&self, acc: &Self::Acc) -> Self::Out;
}

/// A reduce function as an accumulator.
pub(crate) struct ReduceAccumulate<F>(pub F);

impl<T: Data, F: FnMut(T, T) -> T + Send> Accumulate<T> for ReduceAccumulate<F> {
    type Acc = T;
    type Out = T;

    fn first(&self, value: T) -> T {
        value
    }
    #[inline]
    fn add(&mut self, acc: &mut T, value: T) {
        *acc = (self.0)(acc.clone(), value);
    }
    fn result(&self, acc: &T) -> T {
        acc.clone()
    }
}

/// An aggregate function as an accumulator.
pub(crate) struct AggregateAccumulate<T, ACC, R>(pub Arc<dyn AggregateFunction<T, ACC, R>>);

impl<T: 'static, ACC: Data, R: 'static> Accumulate<T> for AggregateAccumulate<T, ACC, R> {
    type Acc = ACC;
    type Out = R;

    fn first(&self, value: T) -> ACC {
        self.0.add(value, self.0.create_accumulator())
    }
    #[inline]
    fn add(&mut self, acc: &mut ACC, value: T) {
        *acc = self.0.add(value, acc.clone());
    }
    fn result(&self, acc: &ACC) -> R {
        self.0.get_result(acc)
    }
}

/// The contents of one window: an accumulator per key, and whether it fired already.
struct Pane<K, ACC> {
    fired: bool,
    keys: HashMap<K, ACC>,
}

/// Window contents kept in memory, in window order; see the module docs.
pub(crate) trait WindowPanes<T, K, W, O>: Send {
    /// The user function, for `open`/`close`.
    fn function(&mut self) -> &mut dyn RichFunction;
    /// Adds `value` of `key` to `window`; if the window fired already (a late element within
    /// the allowed lateness), fires it again for this key at once, as Flink's event-time
    /// trigger does.
    fn add(&mut self, window: W, key: &K, value: T, fire: Fire<'_>, out: &mut OperatorOutput<O>) -> TaskResult;
    /// Fires the windows whose end the watermark passed and drops those past their cleanup
    /// time (`lateness` after their end).
    fn advance(
        &mut self,
        watermark: i64,
        lateness: i64,
        time: &ProcessingTimeService,
        out: &mut OperatorOutput<O>,
    ) -> TaskResult;
    /// The panes, encoded for a checkpoint.
    fn snapshot(&self) -> TaskResult<Vec<u8>>;
    /// Adds the panes of snapshots, keeping the keys `keep` accepts (this subtask's).
    fn restore(&mut self, snapshots: &[Vec<u8>], keep: &dyn Fn(&K) -> bool) -> TaskResult;
    /// Whether no window is open.
    fn is_empty(&self) -> bool;
}

/// A pane as stored in a checkpoint: window, whether it fired, accumulators by key.
type StoredPane<K, W, ACC> = (W, bool, Vec<(K, ACC)>);

/// When a window fires: the operator's watermark and clock.
#[derive(Clone, Copy)]
pub(crate) struct Fire<'a> {
    pub watermark: i64,
    pub time: &'a ProcessingTimeService,
}

/// The [`WindowPanes`] of an accumulator `A` and window function `P`.
pub(crate) struct Panes<K, W, ACC, A, P> {
    /// Open windows in time order; few at a time (size / slide, plus the out-of-order and
    /// lateness spans), so a search from the newest end finds a window in a step or two.
    panes: VecDeque<(W, Pane<K, ACC>)>,
    /// Keys of the last window dropped: new windows start with room for as many.
    capacity_hint: usize,
    accumulate: A,
    process: P,
}

impl<K, W, ACC, A, P> Panes<K, W, ACC, A, P> {
    pub fn new(accumulate: A, process: P) -> Self {
        Panes { panes: VecDeque::new(), capacity_hint: 0, accumulate, process }
    }
}

/// The pane of `window` in `panes`, created in order (with room for `capacity` keys) if new.
#[inline]
fn pane_of<'a, K: Key, W: Window, ACC>(
    panes: &'a mut VecDeque<(W, Pane<K, ACC>)>,
    capacity: usize,
    window: &W,
) -> &'a mut Pane<K, ACC> {
    let mut at = panes.len();
    while at > 0 {
        match panes[at - 1].0.cmp(window) {
            Ordering::Equal => return &mut panes[at - 1].1,
            Ordering::Less => break,
            Ordering::Greater => at -= 1,
        }
    }
    panes.insert(at, (window.clone(), Pane { fired: false, keys: HashMap::with_capacity(capacity) }));
    &mut panes[at].1
}

impl<T, K, W, O, A, P> WindowPanes<T, K, W, O> for Panes<K, W, A::Acc, A, P>
where
    T: Data,
    K: Key,
    W: Window,
    A: Accumulate<T>,
    A::Out: 'static,
    P: ProcessWindowFunction<A::Out, O, K, W>,
{
    fn function(&mut self) -> &mut dyn RichFunction {
        &mut self.process
    }

    #[inline]
    fn add(&mut self, window: W, key: &K, value: T, fire: Fire<'_>, out: &mut OperatorOutput<O>) -> TaskResult {
        let pane = pane_of(&mut self.panes, self.capacity_hint, &window);
        let acc = match pane.keys.get_mut(key) {
            Some(acc) => {
                self.accumulate.add(acc, value);
                acc
            }
            None => pane.keys.entry(key.clone()).or_insert(self.accumulate.first(value)),
        };
        if !pane.fired {
            return Ok(());
        }
        let result = self.accumulate.result(acc);
        let ctx = FireContext { key, window: &window, watermark: fire.watermark, time: fire.time };
        run(&mut self.process, &ctx, vec![result], out)
    }

    fn advance(
        &mut self,
        watermark: i64,
        lateness: i64,
        time: &ProcessingTimeService,
        out: &mut OperatorOutput<O>,
    ) -> TaskResult {
        for (window, pane) in &mut self.panes {
            if window.max_timestamp() > watermark {
                break;
            }
            if !pane.fired {
                pane.fired = true;
                for (key, acc) in &pane.keys {
                    let result = self.accumulate.result(acc);
                    let ctx = FireContext { key, window, watermark, time };
                    run(&mut self.process, &ctx, vec![result], out)?;
                }
            }
        }
        self.drop_expired(watermark, lateness);
        Ok(())
    }

    fn snapshot(&self) -> TaskResult<Vec<u8>> {
        let stored: Vec<StoredPane<&K, &W, &A::Acc>> =
            self.panes.iter().map(|(w, p)| (w, p.fired, p.keys.iter().collect())).collect();
        brisk_state::codec::encode(&stored).map_err(|e| TaskError::msg(format!("cannot encode window contents: {e}")))
    }

    fn restore(&mut self, snapshots: &[Vec<u8>], keep: &dyn Fn(&K) -> bool) -> TaskResult {
        for bytes in snapshots {
            let stored: Vec<StoredPane<K, W, A::Acc>> = brisk_state::codec::decode(bytes)
                .map_err(|e| TaskError::msg(format!("restored window contents do not decode: {e}")))?;
            for (window, fired, keys) in stored {
                let pane = pane_of(&mut self.panes, 0, &window);
                pane.fired |= fired;
                pane.keys.extend(keys.into_iter().filter(|(k, _)| keep(k)));
            }
        }
        self.panes.retain(|(_, p)| !p.keys.is_empty());
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.panes.is_empty()
    }
}

impl<K, W: Window, ACC, A, P> Panes<K, W, ACC, A, P> {
    fn drop_expired(&mut self, watermark: i64, lateness: i64) {
        while let Some((window, pane)) = self.panes.front() {
            if window.max_timestamp().saturating_add(lateness) > watermark {
                break;
            }
            self.capacity_hint = pane.keys.len();
            self.panes.pop_front();
        }
    }
}
