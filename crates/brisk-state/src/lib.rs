//! Brisk's state: keyed state (value, list, map, reducing, aggregating) with time-to-live,
//! operator list and broadcast state, the heap and RocksDB backends behind one trait, and the
//! canonical snapshot format, organised by key group so state can be restored at any
//! parallelism and moved between backends.
#![deny(missing_docs)]

pub mod backend;
pub mod codec;
pub mod descriptor;
pub mod error;
pub mod handles;
pub mod heap;
pub mod operator_state;
pub mod registry;
#[cfg(feature = "rocksdb")]
pub mod rocksdb;
pub mod snapshot;
pub mod timers;
pub mod ttl;

pub use backend::{
    BackendContext, KeyedStateBackend, KeyedStore, SnapshotWriter, StateBackendConfig, StateBackendKind, StateId,
    StateStore,
};
pub use descriptor::{
    AggregateFunction, AggregatingStateDescriptor, ListStateDescriptor, MapStateDescriptor, ReducingStateDescriptor,
    StateKind, ValueStateDescriptor,
};
pub use error::{StateError, StateResult};
pub use handles::{AggregatingState, ListState, MapState, ReducingState, ValueState};
pub use operator_state::{Distribution, OperatorStateBackend, OperatorStateSnapshot, redistribute};
pub use registry::Registered;
pub use snapshot::{KeyedStateHandle, KeyedStateSnapshot, RocksDbFiles, read_rocksdb_files};
pub use timers::{TimeDomain, Timer, TimerQueue};
pub use ttl::{StateTtlConfig, StateVisibility, TtlUpdateType};
