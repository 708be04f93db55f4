//! The operators behind the DataStream API's transformations.

pub(crate) mod async_wait;
mod co;
mod keyed_process;
mod keyed_reduce;
mod map;
mod process;
mod sink;
mod timestamps;

pub use co::{CoFlatMapOperator, CoMapOperator, CoProcessOperator};
pub use keyed_process::KeyedProcessOperator;
pub use keyed_reduce::KeyedReduceOperator;
pub use map::{StreamFilter, StreamFlatMap, StreamMap};
pub use process::ProcessOperator;
pub use sink::SinkOperator;
pub use timestamps::TimestampsAndWatermarksOperator;

use crate::functions::{FunctionInitializationContext, FunctionSnapshotContext, RichFunction, RuntimeContext};
use crate::key_selector::KeySelector;
use brisk_core::Key;
use brisk_runtime::checkpoint::{CheckpointBarrier, OperatorSnapshot};
use brisk_runtime::taskexecutor::output::StateQuery;
use brisk_runtime::{OperatorContext, TaskError, TaskResult};
use brisk_state::{KeyedStateBackend, KeyedStore, OperatorStateBackend, Registered, StateError};
use std::sync::Arc;

/// The checkpoint hooks of an operator whose state is its function's and its stores': the
/// body of `snapshot_state` and `notify_checkpoint_complete` in a `StreamOperator` impl.
macro_rules! checkpoint_hooks {
    ($stores:ident, $f:ident) => {
        fn snapshot_state(
            &mut self,
            barrier: &brisk_runtime::checkpoint::CheckpointBarrier,
        ) -> brisk_runtime::TaskResult<brisk_runtime::checkpoint::OperatorSnapshot> {
            $crate::operators::FunctionStores::snapshot(self.$stores.as_ref(), &mut self.$f, barrier)
        }
        fn notify_checkpoint_complete(
            &mut self,
            id: brisk_runtime::checkpoint::CheckpointId,
        ) -> brisk_runtime::TaskResult {
            $crate::functions::RichFunction::notify_checkpoint_complete(&mut self.$f, id)
                .map_err(brisk_runtime::TaskError::User)
        }
    };
}
pub(crate) use checkpoint_hooks;

/// Turns a state error into a task error (it then names the operator).
pub fn state_error(e: StateError) -> TaskError {
    TaskError::User(Box::new(e))
}

/// Sets the current key of a keyed backend from a record, with the key type erased so
/// operators need not carry it (their state handles do not either).
pub type KeySetter<T> = Arc<dyn Fn(&T, &Registered<KeyedStateBackend>) -> Result<(), StateError> + Send + Sync>;

/// The key setter of a key selector.
pub fn key_setter<T: 'static, K: Key>(selector: KeySelector<T, K>) -> KeySetter<T> {
    Arc::new(move |value: &T, backend: &Registered<KeyedStateBackend>| {
        selector.with_key(value, |key| backend.with("current key", |b| b.set_current_key(key)))
    })
}

/// The state an operator's user function can reach: keyed state on keyed streams, and
/// operator state.
pub struct FunctionStores {
    /// Keyed state, on keyed streams.
    pub keyed: Option<Registered<KeyedStateBackend>>,
    /// Operator (list and broadcast) state.
    pub operator: Registered<OperatorStateBackend>,
}

impl FunctionStores {
    /// Creates the stores without a function (operators whose state is internal).
    pub fn create(ctx: &OperatorContext<'_>, keyed: bool) -> TaskResult<Self> {
        let restored = ctx.restored();
        let keyed = if keyed {
            let mut backend =
                KeyedStateBackend::create(&ctx.task.state_backend, ctx.task.backend_context(ctx.operator))
                    .map_err(state_error)?;
            if let Some(snapshot) = restored.and_then(|r| r.keyed.clone()) {
                backend.restore(snapshot).map_err(state_error)?;
            }
            Some(Registered::new(backend))
        } else {
            None
        };
        let operator = OperatorStateBackend::new(&ctx.operator.name, restored.and_then(|r| r.operator.clone()));
        Ok(FunctionStores { keyed, operator: Registered::new(operator) })
    }

    /// The synchronous part of a snapshot: the function copies what it keeps into operator
    /// state (`snapshot_state`), then keyed and operator state are captured.
    pub fn snapshot(
        stores: Option<&Self>,
        f: &mut dyn RichFunction,
        barrier: &CheckpointBarrier,
    ) -> TaskResult<OperatorSnapshot> {
        let ctx = FunctionSnapshotContext { checkpoint_id: barrier.id, checkpoint_timestamp: barrier.timestamp };
        f.snapshot_state(&ctx).map_err(TaskError::User)?;
        let Some(stores) = stores else { return Ok(OperatorSnapshot::default()) };
        stores.snapshot_state()
    }

    /// Captures keyed and operator state.
    pub fn snapshot_state(&self) -> TaskResult<OperatorSnapshot> {
        let keyed = match &self.keyed {
            Some(backend) => Some(backend.with("snapshot", |b| b.snapshot()).map_err(state_error)?),
            None => None,
        };
        let operator = self.operator.with("snapshot", |b| b.snapshot()).map_err(state_error)?;
        Ok(OperatorSnapshot { keyed, operator: Some(operator), raw: None })
    }

    /// Creates the stores and runs the function's `initialize_state`, then `open`.
    pub fn open(f: &mut dyn RichFunction, ctx: &mut OperatorContext<'_>, keyed: bool) -> TaskResult<Self> {
        let stores = Self::create(ctx, keyed)?;
        {
            let restored = stores.operator.with("restore check", |b| Ok(b.is_restored())).map_err(state_error)?;
            let mut init = FunctionInitializationContext::new(
                RuntimeContext::new(ctx, stores.keyed.as_ref()),
                &stores.operator,
                restored,
            );
            f.initialize_state(&mut init).map_err(TaskError::User)?;
        }
        f.open(&mut RuntimeContext::new(ctx, stores.keyed.as_ref())).map_err(TaskError::User)?;
        Ok(stores)
    }

    /// Sets the current key from a record, when keyed.
    #[inline]
    pub fn set_key<T>(&self, setter: Option<&KeySetter<T>>, value: &T) -> TaskResult {
        match (setter, &self.keyed) {
            (Some(set), Some(backend)) => set(value, backend).map_err(state_error),
            _ => Ok(()),
        }
    }

    /// Answers a state query from the keyed backend.
    pub fn query(&self, query: &StateQuery) -> Option<Result<Option<Vec<u8>>, String>> {
        let backend = self.keyed.as_ref()?;
        let (state, kg, key) = (&query.state, query.key_group, &query.key);
        let answer = backend.with(state, |b| match query.json {
            true => b.query_json(state, kg, key).map(|value| value.map(|v| v.to_string().into_bytes())),
            false => b.store().query(state, kg, key),
        });
        match answer {
            Ok(None) => None,
            Ok(Some(value)) => Some(Ok(Some(value))),
            Err(e) => Some(Err(e.to_string())),
        }
    }
}

/// Closes a rich function.
pub fn close_function(f: &mut dyn RichFunction) -> TaskResult {
    f.close().map_err(TaskError::User)
}
