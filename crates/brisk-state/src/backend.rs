//! The keyed state backend: one trait both stores implement, the backend that wraps the chosen
//! store with the current key, and how a job chooses it (`state.backend`).

use crate::codec;
use crate::descriptor::StateKind;
use crate::error::{StateError, StateResult};
use crate::heap::HeapKeyedStateBackend;
use crate::snapshot::{KeyedStateHandle, KeyedStateSnapshot, TimerEntry};
use crate::timers::{TimeDomain, Timer, TimerQueue};
use crate::ttl::StateTtlConfig;
use brisk_core::key_group::assign_to_key_group;
use brisk_core::{Clock, ConfigOption, Configuration, Data, Key, KeyGroupRange};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// A registered state of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StateId(pub usize);

/// Where a backend runs: its operator, key groups and clock.
#[derive(Clone)]
pub struct BackendContext {
    /// The operator's name (for error messages).
    pub operator: String,
    /// The operator's stable id (names RocksDB's directory).
    pub operator_id: String,
    /// The subtask.
    pub subtask_index: usize,
    /// The key groups the subtask owns.
    pub key_group_range: KeyGroupRange,
    /// Number of key groups of the job.
    pub max_parallelism: usize,
    /// Processing time, for time-to-live.
    pub clock: Arc<dyn Clock>,
}

/// The encoding half of a snapshot, run off the task thread.
pub trait SnapshotWriter: Send {
    /// Produces the canonical snapshot.
    fn write(self: Box<Self>) -> StateResult<KeyedStateSnapshot>;
    /// Stores the snapshot incrementally where the backend can (RocksDB: only files not
    /// stored before go to `shared`); other backends write the canonical snapshot.
    fn write_incremental(self: Box<Self>, _shared: &std::path::Path) -> StateResult<KeyedStateHandle> {
        self.write().map(KeyedStateHandle::Canonical)
    }
}

/// What a keyed state store does. `key` is the encoded key followed by the encoded
/// namespace (nothing for user state, the window for window state), `kg` its key group.
pub trait KeyedStore {
    /// `hashmap` or `rocksdb`.
    fn backend_name(&self) -> &'static str;
    /// Registers (or re-binds after a restore) a state holding one value per key.
    fn register_value<V: Data>(
        &mut self,
        name: &str,
        kind: StateKind,
        ttl: Option<&StateTtlConfig>,
    ) -> StateResult<StateId>;
    /// Registers a list state.
    fn register_list<V: Data>(&mut self, name: &str, ttl: Option<&StateTtlConfig>) -> StateResult<StateId>;
    /// Registers a map state.
    fn register_map<UK: Key, UV: Data>(&mut self, name: &str, ttl: Option<&StateTtlConfig>) -> StateResult<StateId>;
    /// The value, if any.
    fn value_get<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8]) -> StateResult<Option<V>>;
    /// Sets the value.
    fn value_put<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8], value: V) -> StateResult;
    /// Read-modify-write: `f` gets the old value and returns the new one (`None` removes it).
    fn value_update<V: Data, R>(
        &mut self,
        id: StateId,
        kg: usize,
        key: &[u8],
        f: impl FnOnce(Option<V>) -> (Option<V>, R),
    ) -> StateResult<R>;
    /// The list's elements (empty when there is none).
    fn list_get<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8]) -> StateResult<Vec<V>>;
    /// Appends elements.
    fn list_add<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8], values: Vec<V>) -> StateResult;
    /// Replaces the list (an empty list removes it).
    fn list_update<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8], values: Vec<V>) -> StateResult;
    /// One map entry.
    fn map_get<UK: Key, UV: Data>(
        &mut self,
        id: StateId,
        kg: usize,
        key: &[u8],
        user_key: &UK,
    ) -> StateResult<Option<UV>>;
    /// Sets a map entry.
    fn map_put<UK: Key, UV: Data>(
        &mut self,
        id: StateId,
        kg: usize,
        key: &[u8],
        user_key: UK,
        value: UV,
    ) -> StateResult;
    /// Removes a map entry.
    fn map_remove<UK: Key, UV: Data>(&mut self, id: StateId, kg: usize, key: &[u8], user_key: &UK) -> StateResult;
    /// All entries of the map.
    fn map_entries<UK: Key, UV: Data>(&mut self, id: StateId, kg: usize, key: &[u8]) -> StateResult<Vec<(UK, UV)>>;
    /// Removes whatever the state holds for the key.
    fn remove(&mut self, id: StateId, kg: usize, key: &[u8]) -> StateResult;
    /// Every key (encoded, with namespace) and value of a value-like state in key group `kg`
    /// (one group at a time keeps memory bounded when state is larger than memory).
    fn value_entries<V: Data>(&mut self, id: StateId, kg: usize) -> StateResult<Vec<(Vec<u8>, V)>>;
    /// Starts a snapshot; the returned writer encodes it (possibly on another thread).
    fn snapshot(&mut self) -> StateResult<Box<dyn SnapshotWriter>>;
    /// Loads a canonical snapshot (entries outside this subtask's key groups are skipped).
    fn restore(&mut self, snapshot: KeyedStateSnapshot) -> StateResult;
    /// The encoded value of a value-like state for `key` (queryable state).
    fn query(&mut self, state: &str, kg: usize, key: &[u8]) -> StateResult<Option<Vec<u8>>>;
    /// Names of the states the backend holds.
    fn state_names(&self) -> Vec<String>;
}

/// A store snapshot plus the timers, written together.
struct WithTimers {
    store: Box<dyn SnapshotWriter>,
    timers: Vec<(usize, TimerEntry)>,
}

impl SnapshotWriter for WithTimers {
    fn write(self: Box<Self>) -> StateResult<KeyedStateSnapshot> {
        let mut snapshot = self.store.write()?;
        add_timers(&mut snapshot, self.timers);
        Ok(snapshot)
    }

    fn write_incremental(self: Box<Self>, shared: &std::path::Path) -> StateResult<KeyedStateHandle> {
        Ok(match self.store.write_incremental(shared)? {
            KeyedStateHandle::Canonical(mut snapshot) => {
                add_timers(&mut snapshot, self.timers);
                KeyedStateHandle::Canonical(snapshot)
            }
            KeyedStateHandle::Files(mut files) => {
                files.timers = self.timers.into_iter().map(|(kg, t)| (kg as u32, t)).collect();
                KeyedStateHandle::Files(files)
            }
        })
    }
}

/// Adds timers to a canonical snapshot, by key group.
pub(crate) fn add_timers(snapshot: &mut KeyedStateSnapshot, timers: impl IntoIterator<Item = (usize, TimerEntry)>) {
    for (key_group, timer) in timers {
        snapshot.key_group_mut(key_group).timers.push(timer);
    }
    snapshot.key_groups.sort_by_key(|g| g.key_group);
}

/// Which backend keeps keyed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateBackendKind {
    /// In memory (Flink's `hashmap`).
    HashMap,
    /// In an embedded RocksDB on local disk.
    RocksDb,
}

/// The job's state backend choice and its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateBackendConfig {
    /// The backend.
    pub kind: StateBackendKind,
    /// RocksDB's local working directory (default: the system temp directory).
    pub rocksdb_local_dir: Option<PathBuf>,
    /// Memory RocksDB may use per keyed operator subtask: block cache and write buffers share it.
    pub rocksdb_memory_bytes: usize,
}

/// `state.backend`: `hashmap` or `rocksdb`.
pub const STATE_BACKEND: ConfigOption<&str> =
    ConfigOption { key: "state.backend", default: "hashmap", description: "Keyed state backend: hashmap or rocksdb." };
/// `state.backend.rocksdb.localdir`: RocksDB's working directory.
pub const ROCKSDB_LOCAL_DIR: ConfigOption<&str> = ConfigOption {
    key: "state.backend.rocksdb.localdir",
    default: "",
    description: "Directory for RocksDB's files (default: the system temp directory).",
};
/// `state.backend.rocksdb.memory.fixed-per-slot`: RocksDB's memory budget.
pub const ROCKSDB_MEMORY: ConfigOption<&str> = ConfigOption {
    key: "state.backend.rocksdb.memory.fixed-per-slot",
    default: "256mb",
    description: "Memory for RocksDB's block cache and write buffers per keyed operator subtask.",
};

impl Default for StateBackendConfig {
    fn default() -> Self {
        StateBackendConfig { kind: StateBackendKind::HashMap, rocksdb_local_dir: None, rocksdb_memory_bytes: 256 << 20 }
    }
}

impl StateBackendConfig {
    /// Whether this build includes the RocksDB backend.
    pub const ROCKSDB_AVAILABLE: bool = cfg!(feature = "rocksdb");

    /// Reads `state.backend*` options; unknown backends and RocksDB in a build without it are
    /// errors that say what to do.
    pub fn from_configuration(config: &Configuration) -> StateResult<Self> {
        let mut result = StateBackendConfig::default();
        if let Some(name) = config.get_raw(STATE_BACKEND.key) {
            result.kind = Self::parse_kind(name)?;
        }
        if let Some(dir) = config.get_raw(ROCKSDB_LOCAL_DIR.key).filter(|d| !d.is_empty()) {
            result.rocksdb_local_dir = Some(PathBuf::from(dir));
        }
        if let Some(size) = config.get_raw(ROCKSDB_MEMORY.key) {
            result.rocksdb_memory_bytes = brisk_core::config::parse_memory_size(size)
                .map_err(|e| StateError::Config(format!("invalid value for '{}': {e}", ROCKSDB_MEMORY.key)))?;
        }
        Ok(result)
    }

    /// Parses a backend name.
    pub fn parse_kind(name: &str) -> StateResult<StateBackendKind> {
        match name.trim().to_ascii_lowercase().as_str() {
            "hashmap" | "heap" | "memory" => Ok(StateBackendKind::HashMap),
            "rocksdb" => {
                if Self::ROCKSDB_AVAILABLE {
                    Ok(StateBackendKind::RocksDb)
                } else {
                    Err(StateError::Config(
                        "the RocksDB state backend is not part of this build: rebuild with `--features rocksdb` \
                         (e.g. `cargo run --release --features rocksdb --example window_agg -- --state-backend rocksdb`)"
                            .into(),
                    ))
                }
            }
            other => {
                Err(StateError::Config(format!("unknown state backend '{other}': expected 'hashmap' or 'rocksdb'")))
            }
        }
    }
}

/// The configured store.
pub enum StateStore {
    /// Typed hash maps in memory.
    Heap(HeapKeyedStateBackend),
    /// An embedded RocksDB.
    #[cfg(feature = "rocksdb")]
    RocksDb(Box<crate::rocksdb::RocksDbKeyedStateBackend>),
}

/// Calls the same method on whichever store is configured.
macro_rules! store {
    ($self:expr, $store:ident => $call:expr) => {
        match $self {
            StateStore::Heap($store) => $call,
            #[cfg(feature = "rocksdb")]
            StateStore::RocksDb($store) => $call,
        }
    };
}

impl KeyedStore for StateStore {
    fn backend_name(&self) -> &'static str {
        store!(self, s => s.backend_name())
    }
    fn register_value<V: Data>(
        &mut self,
        name: &str,
        kind: StateKind,
        ttl: Option<&StateTtlConfig>,
    ) -> StateResult<StateId> {
        store!(self, s => s.register_value::<V>(name, kind, ttl))
    }
    fn register_list<V: Data>(&mut self, name: &str, ttl: Option<&StateTtlConfig>) -> StateResult<StateId> {
        store!(self, s => s.register_list::<V>(name, ttl))
    }
    fn register_map<UK: Key, UV: Data>(&mut self, name: &str, ttl: Option<&StateTtlConfig>) -> StateResult<StateId> {
        store!(self, s => s.register_map::<UK, UV>(name, ttl))
    }
    #[inline]
    fn value_get<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8]) -> StateResult<Option<V>> {
        store!(self, s => s.value_get(id, kg, key))
    }
    #[inline]
    fn value_put<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8], value: V) -> StateResult {
        store!(self, s => s.value_put(id, kg, key, value))
    }
    #[inline]
    fn value_update<V: Data, R>(
        &mut self,
        id: StateId,
        kg: usize,
        key: &[u8],
        f: impl FnOnce(Option<V>) -> (Option<V>, R),
    ) -> StateResult<R> {
        store!(self, s => s.value_update(id, kg, key, f))
    }
    fn list_get<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8]) -> StateResult<Vec<V>> {
        store!(self, s => s.list_get(id, kg, key))
    }
    fn list_add<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8], values: Vec<V>) -> StateResult {
        store!(self, s => s.list_add(id, kg, key, values))
    }
    fn list_update<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8], values: Vec<V>) -> StateResult {
        store!(self, s => s.list_update(id, kg, key, values))
    }
    fn map_get<UK: Key, UV: Data>(
        &mut self,
        id: StateId,
        kg: usize,
        key: &[u8],
        user_key: &UK,
    ) -> StateResult<Option<UV>> {
        store!(self, s => s.map_get(id, kg, key, user_key))
    }
    fn map_put<UK: Key, UV: Data>(
        &mut self,
        id: StateId,
        kg: usize,
        key: &[u8],
        user_key: UK,
        value: UV,
    ) -> StateResult {
        store!(self, s => s.map_put(id, kg, key, user_key, value))
    }
    fn map_remove<UK: Key, UV: Data>(&mut self, id: StateId, kg: usize, key: &[u8], user_key: &UK) -> StateResult {
        store!(self, s => s.map_remove::<UK, UV>(id, kg, key, user_key))
    }
    fn map_entries<UK: Key, UV: Data>(&mut self, id: StateId, kg: usize, key: &[u8]) -> StateResult<Vec<(UK, UV)>> {
        store!(self, s => s.map_entries(id, kg, key))
    }
    fn remove(&mut self, id: StateId, kg: usize, key: &[u8]) -> StateResult {
        store!(self, s => s.remove(id, kg, key))
    }
    fn value_entries<V: Data>(&mut self, id: StateId, kg: usize) -> StateResult<Vec<(Vec<u8>, V)>> {
        store!(self, s => s.value_entries(id, kg))
    }
    fn snapshot(&mut self) -> StateResult<Box<dyn SnapshotWriter>> {
        store!(self, s => s.snapshot())
    }
    fn restore(&mut self, snapshot: KeyedStateSnapshot) -> StateResult {
        store!(self, s => s.restore(snapshot))
    }
    fn query(&mut self, state: &str, kg: usize, key: &[u8]) -> StateResult<Option<Vec<u8>>> {
        store!(self, s => s.query(state, kg, key))
    }
    fn state_names(&self) -> Vec<String> {
        store!(self, s => s.state_names())
    }
}

/// The keyed state of one operator subtask: the configured store plus the current key (its
/// encoding and key group), which user state handles read (Flink's `KeyedStateBackend`).
/// Keys are stored encoded, so neither the backend nor the handles depend on the key type.
pub struct KeyedStateBackend {
    store: StateStore,
    ctx: BackendContext,
    current_key: Vec<u8>,
    current_key_group: Option<usize>,
    scratch: Vec<u8>,
    /// Timer services by name: event-time and processing-time queues.
    timers: Vec<(String, TimerQueue, TimerQueue)>,
    /// How to show each value-like state's values as JSON, by state name.
    json: HashMap<String, codec::JsonOf>,
}

impl KeyedStateBackend {
    /// Creates the configured backend.
    pub fn create(config: &StateBackendConfig, ctx: BackendContext) -> StateResult<Self> {
        let store = match config.kind {
            StateBackendKind::HashMap => StateStore::Heap(HeapKeyedStateBackend::new(ctx.clone())),
            #[cfg(feature = "rocksdb")]
            StateBackendKind::RocksDb => {
                StateStore::RocksDb(Box::new(crate::rocksdb::RocksDbKeyedStateBackend::open(config, ctx.clone())?))
            }
            #[cfg(not(feature = "rocksdb"))]
            StateBackendKind::RocksDb => {
                StateBackendConfig::parse_kind("rocksdb")?;
                StateStore::Heap(HeapKeyedStateBackend::new(ctx.clone()))
            }
        };
        Ok(KeyedStateBackend {
            store,
            ctx,
            current_key: Vec::new(),
            current_key_group: None,
            scratch: Vec::new(),
            timers: Vec::new(),
            json: HashMap::new(),
        })
    }

    /// Registers value-like state `name` holding `V`s with the store (see
    /// [`KeyedStore::register_value`]), remembering how to show its values as JSON.
    pub fn register_value<V: Data>(
        &mut self,
        name: &str,
        kind: StateKind,
        ttl: Option<&StateTtlConfig>,
    ) -> StateResult<StateId> {
        let id = self.store.register_value::<V>(name, kind, ttl)?;
        self.json.insert(name.to_string(), codec::to_json::<V>);
        Ok(id)
    }

    /// The value of value-like state `state` for `key` as JSON (queryable state over HTTP);
    /// `None` when this backend has no such state or no value.
    pub fn query_json(&mut self, state: &str, kg: usize, key: &[u8]) -> StateResult<Option<serde_json::Value>> {
        let Some(show) = self.json.get(state).copied() else { return Ok(None) };
        let Some(bytes) = self.store.query(state, kg, key)? else { return Ok(None) };
        show(&bytes).map(Some).map_err(|reason| StateError::Deserialize {
            state: state.to_string(),
            operator: self.ctx.operator.clone(),
            reason,
        })
    }

    /// The backend's context.
    pub fn context(&self) -> &BackendContext {
        &self.ctx
    }

    /// The store.
    #[inline]
    pub fn store(&mut self) -> &mut StateStore {
        &mut self.store
    }

    /// The key group of `key`, checked against the subtask's range.
    #[inline]
    pub fn key_group_of<K: Key>(&self, key: &K) -> StateResult<usize> {
        let kg = assign_to_key_group(key, self.ctx.max_parallelism);
        if self.ctx.key_group_range.contains(kg) {
            Ok(kg)
        } else {
            Err(StateError::Config(format!(
                "key {key:?} belongs to key group {kg}, which operator '{}' subtask {} does not own ({:?}): \
                 is the key selector deterministic?",
                self.ctx.operator, self.ctx.subtask_index, self.ctx.key_group_range
            )))
        }
    }

    /// Sets the key that state handles read and write (Flink's `setCurrentKey`).
    #[inline]
    pub fn set_current_key<K: Key>(&mut self, key: &K) -> StateResult {
        let kg = self.key_group_of(key)?;
        self.current_key.clear();
        codec::encode_into(key, &mut self.current_key).map_err(|e| StateError::Storage {
            operator: self.ctx.operator.clone(),
            message: format!("cannot encode key {key:?}: {e}"),
        })?;
        self.current_key_group = Some(kg);
        Ok(())
    }

    /// Sets an already encoded current key (a timer's).
    pub fn set_current_key_encoded(&mut self, key_group: usize, key: &[u8]) {
        self.current_key.clear();
        self.current_key.extend_from_slice(key);
        self.current_key_group = Some(key_group);
    }

    fn queue(&mut self, service: &str, domain: TimeDomain) -> &mut TimerQueue {
        let index = match self.timers.iter().position(|(name, _, _)| name == service) {
            Some(i) => i,
            None => {
                self.timers.push((service.to_string(), TimerQueue::default(), TimerQueue::default()));
                self.timers.len() - 1
            }
        };
        let (_, event, processing) = &mut self.timers[index];
        match domain {
            TimeDomain::EventTime => event,
            TimeDomain::ProcessingTime => processing,
        }
    }

    /// Registers a timer for the current key and an encoded namespace; false if it existed.
    pub fn register_timer(
        &mut self,
        service: &str,
        domain: TimeDomain,
        timestamp: i64,
        namespace: &[u8],
    ) -> StateResult<bool> {
        let key_group = self.current_key_group.ok_or_else(|| StateError::NoCurrentKey("timer".into()))?;
        let key = std::mem::take(&mut self.current_key);
        let added = self.queue(service, domain).register(timestamp, key_group, &key, namespace);
        self.current_key = key;
        Ok(added)
    }

    /// Deletes a timer of the current key.
    pub fn delete_timer(&mut self, service: &str, domain: TimeDomain, timestamp: i64, namespace: &[u8]) -> StateResult {
        let key_group = self.current_key_group.ok_or_else(|| StateError::NoCurrentKey("timer".into()))?;
        let key = std::mem::take(&mut self.current_key);
        self.queue(service, domain).delete(timestamp, key_group, &key, namespace);
        self.current_key = key;
        Ok(())
    }

    /// The earliest timer of a service.
    pub fn next_timer(&mut self, service: &str, domain: TimeDomain) -> Option<i64> {
        self.queue(service, domain).next_time()
    }

    /// Removes the earliest timer due at `time`, if any.
    pub fn pop_due_timer(&mut self, service: &str, domain: TimeDomain, time: i64) -> Option<Timer> {
        self.queue(service, domain).pop_due(time)
    }

    /// Number of registered timers of a service.
    pub fn timer_count(&mut self, service: &str, domain: TimeDomain) -> usize {
        self.queue(service, domain).len()
    }

    /// Starts a snapshot of state and timers; the writer encodes it (possibly on another thread).
    pub fn snapshot(&mut self) -> StateResult<Box<dyn SnapshotWriter>> {
        let store = self.store.snapshot()?;
        let mut timers = Vec::new();
        for (service, event, processing) in &self.timers {
            for (event_time, queue) in [(true, event), (false, processing)] {
                for t in queue.iter() {
                    let entry = TimerEntry {
                        service: service.clone(),
                        event_time,
                        timestamp: t.timestamp,
                        key: t.key.clone(),
                        namespace: t.namespace.clone(),
                    };
                    timers.push((t.key_group, entry));
                }
            }
        }
        Ok(Box::new(WithTimers { store, timers }))
    }

    /// Restores state and timers from a canonical snapshot (keeping only this subtask's key groups).
    pub fn restore(&mut self, mut snapshot: KeyedStateSnapshot) -> StateResult {
        let range = self.ctx.key_group_range;
        for group in snapshot.key_groups.iter_mut().filter(|g| range.contains(g.key_group as usize)) {
            for entry in std::mem::take(&mut group.timers) {
                let domain = if entry.event_time { TimeDomain::EventTime } else { TimeDomain::ProcessingTime };
                self.queue(&entry.service, domain).register(
                    entry.timestamp,
                    group.key_group as usize,
                    &entry.key,
                    &entry.namespace,
                );
            }
        }
        self.store.restore(snapshot)
    }

    /// The encoded current key and its key group.
    pub fn current_key(&self) -> Option<(usize, &[u8])> {
        self.current_key_group.map(|kg| (kg, self.current_key.as_slice()))
    }

    /// Runs `f` on the store with the current key; `state` names the state in the error when
    /// no key is set.
    #[inline]
    pub fn with_current<R>(
        &mut self,
        state: &str,
        f: impl FnOnce(&mut StateStore, usize, &[u8]) -> StateResult<R>,
    ) -> StateResult<R> {
        let kg = self.current_key_group.ok_or_else(|| StateError::NoCurrentKey(state.to_string()))?;
        f(&mut self.store, kg, &self.current_key)
    }

    /// Runs `f` on the store with the current key followed by an encoded namespace.
    #[inline]
    pub fn with_namespace_bytes<R>(
        &mut self,
        state: &str,
        namespace: &[u8],
        f: impl FnOnce(&mut StateStore, usize, &[u8]) -> StateResult<R>,
    ) -> StateResult<R> {
        let kg = self.current_key_group.ok_or_else(|| StateError::NoCurrentKey(state.to_string()))?;
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.current_key);
        self.scratch.extend_from_slice(namespace);
        f(&mut self.store, kg, &self.scratch)
    }

    /// Runs `f` on the store with the current key followed by `namespace` (window state).
    #[inline]
    pub fn with_namespace<N: Key, R>(
        &mut self,
        state: &str,
        namespace: &N,
        f: impl FnOnce(&mut StateStore, usize, &[u8]) -> StateResult<R>,
    ) -> StateResult<R> {
        let kg = self.current_key_group.ok_or_else(|| StateError::NoCurrentKey(state.to_string()))?;
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.current_key);
        codec::encode_into(namespace, &mut self.scratch).map_err(|e| StateError::Storage {
            operator: self.ctx.operator.clone(),
            message: format!("cannot encode namespace: {e}"),
        })?;
        f(&mut self.store, kg, &self.scratch)
    }
}
