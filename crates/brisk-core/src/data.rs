//! The bounds every record and key type satisfies.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::hash::Hash;

/// A record type that can flow through a stream: each subtask owns its copies (`Clone`), records
/// cross task threads (`Send`) and state snapshots are read while the task goes on (`Sync`), and
/// they can be serialized for the network, in-flight checkpoint data and state (serde), as
/// Flink requires a `TypeSerializer` for every stream type.
pub trait Data: Clone + Send + Sync + Serialize + DeserializeOwned + 'static {}

impl<T: Clone + Send + Sync + Serialize + DeserializeOwned + 'static> Data for T {}

/// A key of a `KeyedStream`: hashed (stably, see [`crate::hash`]) into a key group, compared for
/// equality in state, and printable in error messages.
pub trait Key: Data + Hash + Eq + Debug {}

impl<T: Data + Hash + Eq + Debug> Key for T {}
