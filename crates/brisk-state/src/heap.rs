//! The heap state backend (Flink's `HashMapStateBackend`): typed values in hash maps, one map
//! per key group and state, keyed by the encoded key and namespace. Maps sit behind `Arc`s, so
//! a snapshot only clones pointers; the first write to a key group after a snapshot copies that
//! group's map (copy-on-write), and the snapshot is encoded off the task thread.

use crate::backend::{BackendContext, KeyedStore, SnapshotWriter, StateId};
use crate::codec;
use crate::descriptor::StateKind;
use crate::error::{StateError, StateResult};
use crate::snapshot::{KeyedStateSnapshot, StateEntry, StateMeta};
use crate::ttl::{StateTtlConfig, StateVisibility, TtlUpdateType};
use brisk_core::hash::StableHasher;
use brisk_core::{Data, Key};
use std::any::Any;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

/// A hash map with the fast deterministic hasher.
pub(crate) type FastMap<K, V> = hashbrown::HashMap<K, V, BuildHasherDefault<StableHasher>>;

/// A value with the time it was last written (or read), for time-to-live.
#[derive(Clone, Debug)]
pub(crate) struct Timestamped<V> {
    value: V,
    ts: i64,
}

/// Time-to-live settings with the current time, for expiry checks.
pub(crate) struct TtlCheck {
    pub config: StateTtlConfig,
    pub now: i64,
}

impl TtlCheck {
    fn expired(&self, ts: i64) -> bool {
        self.config.is_expired(ts, self.now)
    }
}

/// How a stored value turns into canonical entries and back.
pub(crate) trait Stored: Clone + Send + Sync + 'static {
    /// Appends the canonical entries of one key; `ttl_on` keeps timestamps and `drop_expired`
    /// leaves out what has expired.
    fn encode(
        &self,
        key: &[u8],
        state: u32,
        ttl_on: bool,
        drop_expired: Option<&TtlCheck>,
        out: &mut Vec<StateEntry>,
    ) -> Result<(), String>;
    /// Adds one canonical entry to what is stored for its key.
    fn decode_into(slot: Option<Self>, entry: &StateEntry, ttl: bool) -> Result<Self, String>;
    /// Drops expired parts; true when nothing is left.
    fn purge(&mut self, check: &TtlCheck) -> bool;
}

fn value_bytes<V: Data>(value: &V, ts: i64, ttl: bool) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    if ttl {
        codec::put_timestamp(ts, &mut out);
    }
    codec::encode_into(value, &mut out)?;
    Ok(out)
}

fn decode_value<V: Data>(bytes: &[u8], ttl: bool) -> Result<Timestamped<V>, String> {
    let (ts, rest) = if ttl { codec::take_timestamp(bytes)? } else { (i64::MIN, bytes) };
    Ok(Timestamped { value: codec::decode(rest)?, ts })
}

fn no_user_key(entry: &StateEntry) -> Result<(), String> {
    if entry.user_key.is_empty() { Ok(()) } else { Err("a map entry where a value or list was expected".into()) }
}

impl<V: Data> Stored for Timestamped<V> {
    fn encode(
        &self,
        key: &[u8],
        state: u32,
        ttl_on: bool,
        drop_expired: Option<&TtlCheck>,
        out: &mut Vec<StateEntry>,
    ) -> Result<(), String> {
        if !drop_expired.is_some_and(|t| t.expired(self.ts)) {
            out.push(StateEntry {
                state,
                key: key.to_vec(),
                user_key: Vec::new(),
                value: value_bytes(&self.value, self.ts, ttl_on)?,
            });
        }
        Ok(())
    }

    fn decode_into(_: Option<Self>, entry: &StateEntry, ttl: bool) -> Result<Self, String> {
        no_user_key(entry)?;
        decode_value(&entry.value, ttl)
    }

    fn purge(&mut self, check: &TtlCheck) -> bool {
        check.expired(self.ts)
    }
}

/// The elements of a list state.
#[derive(Clone, Debug)]
pub(crate) struct ListValue<V>(Vec<Timestamped<V>>);

impl<V: Data> Stored for ListValue<V> {
    fn encode(
        &self,
        key: &[u8],
        state: u32,
        ttl_on: bool,
        drop_expired: Option<&TtlCheck>,
        out: &mut Vec<StateEntry>,
    ) -> Result<(), String> {
        let mut value = Vec::new();
        for element in self.0.iter().filter(|e| !drop_expired.is_some_and(|t| t.expired(e.ts))) {
            let bytes = codec::encode(&element.value)?;
            codec::put_list_element(&bytes, ttl_on.then_some(element.ts), &mut value)?;
        }
        if !value.is_empty() {
            out.push(StateEntry { state, key: key.to_vec(), user_key: Vec::new(), value });
        }
        Ok(())
    }

    fn decode_into(slot: Option<Self>, entry: &StateEntry, ttl: bool) -> Result<Self, String> {
        no_user_key(entry)?;
        let mut list = slot.unwrap_or(ListValue(Vec::new()));
        for (ts, bytes) in codec::list_elements(&entry.value, ttl)? {
            list.0.push(Timestamped { value: codec::decode(bytes)?, ts: ts.unwrap_or(i64::MIN) });
        }
        Ok(list)
    }

    fn purge(&mut self, check: &TtlCheck) -> bool {
        self.0.retain(|e| !check.expired(e.ts));
        self.0.is_empty()
    }
}

/// The entries of a map state.
#[derive(Clone, Debug)]
pub(crate) struct MapValue<UK, UV>(FastMap<UK, Timestamped<UV>>);

impl<UK: Key, UV: Data> Stored for MapValue<UK, UV> {
    fn encode(
        &self,
        key: &[u8],
        state: u32,
        ttl_on: bool,
        drop_expired: Option<&TtlCheck>,
        out: &mut Vec<StateEntry>,
    ) -> Result<(), String> {
        for (uk, uv) in self.0.iter().filter(|(_, v)| !drop_expired.is_some_and(|t| t.expired(v.ts))) {
            out.push(StateEntry {
                state,
                key: key.to_vec(),
                user_key: codec::encode(uk)?,
                value: value_bytes(&uv.value, uv.ts, ttl_on)?,
            });
        }
        Ok(())
    }

    fn decode_into(slot: Option<Self>, entry: &StateEntry, ttl: bool) -> Result<Self, String> {
        let mut map = slot.unwrap_or_else(|| MapValue(FastMap::default()));
        map.0.insert(codec::decode(&entry.user_key)?, decode_value(&entry.value, ttl)?);
        Ok(map)
    }

    fn purge(&mut self, check: &TtlCheck) -> bool {
        self.0.retain(|_, v| !check.expired(v.ts));
        self.0.is_empty()
    }
}

type Group<S> = Arc<FastMap<Box<[u8]>, S>>;

/// One state's maps, one per key group of the subtask.
#[derive(Clone)]
pub(crate) struct Table<S> {
    first_key_group: usize,
    groups: Vec<Group<S>>,
}

impl<S: Stored> Table<S> {
    fn new(ctx: &BackendContext) -> Self {
        Table {
            first_key_group: ctx.key_group_range.start,
            groups: (0..ctx.key_group_range.len()).map(|_| Arc::default()).collect(),
        }
    }

    #[inline]
    fn group(&self, kg: usize) -> &FastMap<Box<[u8]>, S> {
        &self.groups[kg - self.first_key_group]
    }

    #[inline]
    fn group_mut(&mut self, kg: usize) -> &mut FastMap<Box<[u8]>, S> {
        Arc::make_mut(&mut self.groups[kg - self.first_key_group])
    }

    #[inline]
    fn get(&self, kg: usize, key: &[u8]) -> Option<&S> {
        self.group(kg).get(key)
    }

    /// Mutable access without copying the group when the key is absent.
    #[inline]
    fn get_mut(&mut self, kg: usize, key: &[u8]) -> Option<&mut S> {
        if !self.group(kg).contains_key(key) {
            return None;
        }
        self.group_mut(kg).get_mut(key)
    }

    #[inline]
    fn insert(&mut self, kg: usize, key: &[u8], value: S) {
        self.group_mut(kg).insert(key.into(), value);
    }

    #[inline]
    fn take(&mut self, kg: usize, key: &[u8]) -> Option<S> {
        if !self.group(kg).contains_key(key) {
            return None;
        }
        self.group_mut(kg).remove(key)
    }
}

/// Snapshot-time view of a table: the `Arc`s of its maps, encodable on another thread.
pub(crate) trait TableView: Send {
    fn encode(
        &self,
        state: u32,
        ttl_on: bool,
        drop_expired: Option<&TtlCheck>,
        out: &mut KeyedStateSnapshot,
    ) -> Result<(), String>;
}

struct TableSnapshot<S> {
    first_key_group: usize,
    groups: Vec<Group<S>>,
}

impl<S: Stored> TableView for TableSnapshot<S> {
    fn encode(
        &self,
        state: u32,
        ttl_on: bool,
        drop_expired: Option<&TtlCheck>,
        out: &mut KeyedStateSnapshot,
    ) -> Result<(), String> {
        for (i, group) in self.groups.iter().enumerate().filter(|(_, g)| !g.is_empty()) {
            let mut entries = Vec::new();
            for (key, stored) in group.iter() {
                stored.encode(key, state, ttl_on, drop_expired, &mut entries)?;
            }
            if !entries.is_empty() {
                out.key_group_mut(self.first_key_group + i).entries.extend(entries);
            }
        }
        Ok(())
    }
}

/// A state table with its value type erased, as the backend keeps it.
pub(crate) trait AnyTable: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn view(&self) -> Box<dyn TableView>;
    fn query(&self, kg: usize, key: &[u8], check: Option<&TtlCheck>) -> Result<Option<Vec<u8>>, String>;
    fn purge_key_group(&mut self, index: usize, check: &TtlCheck);
    fn key_groups(&self) -> usize;
    fn remove(&mut self, kg: usize, key: &[u8]);
}

impl<S: Stored> AnyTable for Table<S> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn view(&self) -> Box<dyn TableView> {
        Box::new(TableSnapshot { first_key_group: self.first_key_group, groups: self.groups.clone() })
    }

    fn query(&self, kg: usize, key: &[u8], check: Option<&TtlCheck>) -> Result<Option<Vec<u8>>, String> {
        let Some(stored) = self.get(kg, key) else { return Ok(None) };
        let mut entries = Vec::new();
        // Queries see values as users do: no timestamp prefix, expired values gone.
        let hide = check.filter(|c| c.config.visibility == StateVisibility::NeverReturnExpired);
        stored.encode(key, 0, false, hide, &mut entries)?;
        Ok(entries.into_iter().next().map(|e| e.value))
    }

    fn purge_key_group(&mut self, index: usize, check: &TtlCheck) {
        if let Some(group) = self.groups.get_mut(index)
            && !group.is_empty()
        {
            Arc::make_mut(group).retain(|_, stored| !stored.purge(check));
        }
    }

    fn key_groups(&self) -> usize {
        self.groups.len()
    }

    fn remove(&mut self, kg: usize, key: &[u8]) {
        if self.group(kg).contains_key(key) {
            self.group_mut(kg).remove(key);
        }
    }
}

enum TableSlot {
    /// Registered: typed maps.
    Typed(Box<dyn AnyTable>),
    /// Restored but not yet registered: entries kept as bytes until the types are known.
    Restored(Vec<(usize, StateEntry)>),
}

struct HeapState {
    meta: StateMeta,
    ttl: Option<StateTtlConfig>,
    table: TableSlot,
}

/// Keyed state in typed hash maps.
pub struct HeapKeyedStateBackend {
    ctx: BackendContext,
    states: Vec<HeapState>,
    accesses: u64,
    cleanup_cursor: usize,
}

/// Whether a read sees `ts`; the read restarts the clock under `OnReadAndWrite`.
fn visible(check: &Option<TtlCheck>, ts: &mut i64) -> bool {
    match check {
        None => true,
        Some(c) => {
            if c.expired(*ts) && c.config.visibility == StateVisibility::NeverReturnExpired {
                return false;
            }
            if c.config.update_type == TtlUpdateType::OnReadAndWrite {
                *ts = c.now;
            }
            true
        }
    }
}

fn write_ts(check: &Option<TtlCheck>) -> i64 {
    check.as_ref().map_or(i64::MIN, |c| c.now)
}

impl HeapKeyedStateBackend {
    /// An empty backend for the key groups of `ctx`.
    pub fn new(ctx: BackendContext) -> Self {
        HeapKeyedStateBackend { ctx, states: Vec::new(), accesses: 0, cleanup_cursor: 0 }
    }

    fn register<S: Stored>(&mut self, meta: StateMeta, ttl: Option<&StateTtlConfig>) -> StateResult<StateId> {
        let Some(index) = self.states.iter().position(|s| s.meta.name == meta.name) else {
            let meta = StateMeta { ttl: ttl.is_some(), ..meta };
            self.states.push(HeapState {
                meta,
                ttl: ttl.cloned(),
                table: TableSlot::Typed(Box::new(Table::<S>::new(&self.ctx))),
            });
            return Ok(StateId(self.states.len() - 1));
        };
        let operator = self.ctx.operator.clone();
        let state = &mut self.states[index];
        if state.meta.kind.storage() != meta.kind.storage() || state.meta.value_type != meta.value_type {
            return Err(StateError::Incompatible {
                state: meta.name,
                operator,
                existing: format!("{:?} state of {}", state.meta.kind, state.meta.value_type),
                requested: format!("{:?} state of {}", meta.kind, meta.value_type),
            });
        }
        if let TableSlot::Restored(entries) = &mut state.table {
            let restored_with_ttl = state.meta.ttl;
            let mut table = Table::<S>::new(&self.ctx);
            for (kg, entry) in std::mem::take(entries) {
                let existing = table.take(kg, &entry.key);
                let stored = S::decode_into(existing, &entry, restored_with_ttl).map_err(|reason| {
                    StateError::Deserialize { state: meta.name.clone(), operator: operator.clone(), reason }
                })?;
                table.insert(kg, &entry.key, stored);
            }
            state.table = TableSlot::Typed(Box::new(table));
        }
        state.ttl = ttl.cloned();
        state.meta.ttl = ttl.is_some();
        Ok(StateId(index))
    }

    /// The typed table of a registered state and its expiry check.
    fn table<S: Stored>(&mut self, id: StateId) -> StateResult<(&mut Table<S>, Option<TtlCheck>)> {
        self.maybe_cleanup();
        let clock = &self.ctx.clock;
        let operator = &self.ctx.operator;
        let state =
            self.states.get_mut(id.0).ok_or_else(|| StateError::Config(format!("unknown state id {}", id.0)))?;
        // The clock is read only for state with a time-to-live.
        let check = state.ttl.clone().map(|config| TtlCheck { config, now: clock.now_millis() });
        match &mut state.table {
            TableSlot::Typed(table) => match table.as_any_mut().downcast_mut::<Table<S>>() {
                Some(table) => Ok((table, check)),
                None => Err(StateError::Incompatible {
                    state: state.meta.name.clone(),
                    operator: operator.clone(),
                    existing: format!("{:?} state of {}", state.meta.kind, state.meta.value_type),
                    requested: std::any::type_name::<S>().into(),
                }),
            },
            TableSlot::Restored(_) => {
                Err(StateError::Config(format!("state '{}' is used before it is registered", state.meta.name)))
            }
        }
    }

    /// Every `cleanup_size` accesses, removes the expired entries of one more key group.
    fn maybe_cleanup(&mut self) {
        self.accesses += 1;
        let accesses = self.accesses;
        let due = |s: &HeapState| {
            s.ttl.as_ref().and_then(|t| t.incremental_cleanup).is_some_and(|n| accesses.is_multiple_of(n as u64))
        };
        if !self.states.iter().any(due) {
            return;
        }
        let now = self.ctx.clock.now_millis();
        self.cleanup_cursor = self.cleanup_cursor.wrapping_add(1);
        let cursor = self.cleanup_cursor;
        for state in self.states.iter_mut().filter(|s| due(s)) {
            if let (TableSlot::Typed(table), Some(config)) = (&mut state.table, state.ttl.clone()) {
                let groups = table.key_groups().max(1);
                table.purge_key_group(cursor % groups, &TtlCheck { config, now });
            }
        }
    }
}

impl KeyedStore for HeapKeyedStateBackend {
    fn backend_name(&self) -> &'static str {
        "hashmap"
    }

    fn register_value<V: Data>(
        &mut self,
        name: &str,
        kind: StateKind,
        ttl: Option<&StateTtlConfig>,
    ) -> StateResult<StateId> {
        self.register::<Timestamped<V>>(StateMeta::of::<V>(name, kind), ttl)
    }

    fn register_list<V: Data>(&mut self, name: &str, ttl: Option<&StateTtlConfig>) -> StateResult<StateId> {
        self.register::<ListValue<V>>(StateMeta::of::<V>(name, StateKind::List), ttl)
    }

    fn register_map<UK: Key, UV: Data>(&mut self, name: &str, ttl: Option<&StateTtlConfig>) -> StateResult<StateId> {
        self.register::<MapValue<UK, UV>>(StateMeta::of::<(UK, UV)>(name, StateKind::Map), ttl)
    }

    #[inline]
    fn value_get<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8]) -> StateResult<Option<V>> {
        let (table, check) = self.table::<Timestamped<V>>(id)?;
        if check.is_none() {
            return Ok(table.get(kg, key).map(|e| e.value.clone()));
        }
        let Some(entry) = table.get_mut(kg, key) else { return Ok(None) };
        if visible(&check, &mut entry.ts) {
            return Ok(Some(entry.value.clone()));
        }
        table.remove(kg, key);
        Ok(None)
    }

    #[inline]
    fn value_put<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8], value: V) -> StateResult {
        let (table, check) = self.table::<Timestamped<V>>(id)?;
        let entry = Timestamped { value, ts: write_ts(&check) };
        match table.get_mut(kg, key) {
            Some(slot) => *slot = entry,
            None => table.insert(kg, key, entry),
        }
        Ok(())
    }

    #[inline]
    fn value_update<V: Data, R>(
        &mut self,
        id: StateId,
        kg: usize,
        key: &[u8],
        f: impl FnOnce(Option<V>) -> (Option<V>, R),
    ) -> StateResult<R> {
        let (table, check) = self.table::<Timestamped<V>>(id)?;
        let ts = write_ts(&check);
        match table.get_mut(kg, key) {
            Some(slot) => {
                // Updated in place: no key copy for keys already present.
                let old = visible(&check, &mut slot.ts).then(|| slot.value.clone());
                let (new, result) = f(old);
                match new {
                    Some(value) => *slot = Timestamped { value, ts },
                    None => table.remove(kg, key),
                }
                Ok(result)
            }
            None => {
                let (new, result) = f(None);
                if let Some(value) = new {
                    table.insert(kg, key, Timestamped { value, ts });
                }
                Ok(result)
            }
        }
    }

    fn list_get<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8]) -> StateResult<Vec<V>> {
        let (table, check) = self.table::<ListValue<V>>(id)?;
        if check.is_none() {
            return Ok(table.get(kg, key).map(|l| l.0.iter().map(|e| e.value.clone()).collect()).unwrap_or_default());
        }
        let Some(list) = table.get_mut(kg, key) else { return Ok(Vec::new()) };
        Ok(list.0.iter_mut().filter_map(|e| visible(&check, &mut e.ts).then(|| e.value.clone())).collect())
    }

    fn list_add<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8], values: Vec<V>) -> StateResult {
        let (table, check) = self.table::<ListValue<V>>(id)?;
        let ts = write_ts(&check);
        let elements = values.into_iter().map(|value| Timestamped { value, ts });
        match table.get_mut(kg, key) {
            Some(list) => list.0.extend(elements),
            None => table.insert(kg, key, ListValue(elements.collect())),
        }
        Ok(())
    }

    fn list_update<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8], values: Vec<V>) -> StateResult {
        let (table, check) = self.table::<ListValue<V>>(id)?;
        let ts = write_ts(&check);
        if values.is_empty() {
            table.remove(kg, key);
        } else {
            table.insert(kg, key, ListValue(values.into_iter().map(|value| Timestamped { value, ts }).collect()));
        }
        Ok(())
    }

    fn map_get<UK: Key, UV: Data>(
        &mut self,
        id: StateId,
        kg: usize,
        key: &[u8],
        user_key: &UK,
    ) -> StateResult<Option<UV>> {
        let (table, check) = self.table::<MapValue<UK, UV>>(id)?;
        if check.is_none() {
            return Ok(table.get(kg, key).and_then(|m| m.0.get(user_key)).map(|e| e.value.clone()));
        }
        let Some(map) = table.get_mut(kg, key) else { return Ok(None) };
        Ok(map.0.get_mut(user_key).and_then(|e| visible(&check, &mut e.ts).then(|| e.value.clone())))
    }

    fn map_put<UK: Key, UV: Data>(
        &mut self,
        id: StateId,
        kg: usize,
        key: &[u8],
        user_key: UK,
        value: UV,
    ) -> StateResult {
        let (table, check) = self.table::<MapValue<UK, UV>>(id)?;
        let entry = Timestamped { value, ts: write_ts(&check) };
        match table.get_mut(kg, key) {
            Some(map) => {
                map.0.insert(user_key, entry);
            }
            None => {
                let mut map = FastMap::default();
                map.insert(user_key, entry);
                table.insert(kg, key, MapValue(map));
            }
        }
        Ok(())
    }

    fn map_remove<UK: Key, UV: Data>(&mut self, id: StateId, kg: usize, key: &[u8], user_key: &UK) -> StateResult {
        let (table, _) = self.table::<MapValue<UK, UV>>(id)?;
        if let Some(map) = table.get_mut(kg, key) {
            map.0.remove(user_key);
            if map.0.is_empty() {
                table.remove(kg, key);
            }
        }
        Ok(())
    }

    fn map_entries<UK: Key, UV: Data>(&mut self, id: StateId, kg: usize, key: &[u8]) -> StateResult<Vec<(UK, UV)>> {
        let (table, check) = self.table::<MapValue<UK, UV>>(id)?;
        let Some(map) = table.get_mut(kg, key) else { return Ok(Vec::new()) };
        Ok(map
            .0
            .iter_mut()
            .filter_map(|(k, e)| visible(&check, &mut e.ts).then(|| (k.clone(), e.value.clone())))
            .collect())
    }

    fn remove(&mut self, id: StateId, kg: usize, key: &[u8]) -> StateResult {
        let state =
            self.states.get_mut(id.0).ok_or_else(|| StateError::Config(format!("unknown state id {}", id.0)))?;
        if let TableSlot::Typed(table) = &mut state.table {
            table.remove(kg, key);
        }
        Ok(())
    }

    fn value_entries<V: Data>(&mut self, id: StateId, kg: usize) -> StateResult<Vec<(Vec<u8>, V)>> {
        let (table, check) = self.table::<Timestamped<V>>(id)?;
        let mut out = Vec::new();
        for (key, entry) in table.group(kg).iter() {
            let mut ts = entry.ts;
            if visible(&check, &mut ts) {
                out.push((key.to_vec(), entry.value.clone()));
            }
        }
        Ok(out)
    }

    fn snapshot(&mut self) -> StateResult<Box<dyn SnapshotWriter>> {
        let now = self.ctx.clock.now_millis();
        let mut base = KeyedStateSnapshot::new("hashmap", self.ctx.max_parallelism, self.ctx.key_group_range);
        let mut views = Vec::new();
        for state in &self.states {
            let index = base.state_index(&state.meta);
            match &state.table {
                TableSlot::Typed(table) => {
                    let drop_expired =
                        state.ttl.clone().filter(|t| t.cleanup_full_snapshot).map(|config| TtlCheck { config, now });
                    views.push((index, table.view(), drop_expired, state.ttl.is_some()));
                }
                // Never accessed since the restore: passed on unchanged.
                TableSlot::Restored(entries) => {
                    for (kg, entry) in entries {
                        base.key_group_mut(*kg).entries.push(StateEntry { state: index, ..entry.clone() });
                    }
                }
            }
        }
        Ok(Box::new(HeapSnapshotWriter { base, views, operator: self.ctx.operator.clone() }))
    }

    fn restore(&mut self, snapshot: KeyedStateSnapshot) -> StateResult {
        for group in snapshot.key_groups {
            let kg = group.key_group as usize;
            if !self.ctx.key_group_range.contains(kg) {
                continue;
            }
            for entry in group.entries {
                let meta = snapshot.states.get(entry.state as usize).ok_or_else(|| StateError::Snapshot {
                    what: format!("restore of operator '{}'", self.ctx.operator),
                    reason: format!("entry refers to unknown state {}", entry.state),
                })?;
                let index = match self.states.iter().position(|s| s.meta.name == meta.name) {
                    Some(i) => i,
                    None => {
                        self.states.push(HeapState {
                            meta: meta.clone(),
                            ttl: None,
                            table: TableSlot::Restored(Vec::new()),
                        });
                        self.states.len() - 1
                    }
                };
                match &mut self.states[index].table {
                    TableSlot::Restored(entries) => entries.push((kg, entry)),
                    TableSlot::Typed(_) => {
                        return Err(StateError::Config(format!(
                            "state '{}' is restored after it was registered",
                            meta.name
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    fn query(&mut self, state: &str, kg: usize, key: &[u8]) -> StateResult<Option<Vec<u8>>> {
        let now = self.ctx.clock.now_millis();
        let Some(s) = self.states.iter().find(|s| s.meta.name == state && s.meta.kind.storage() == StateKind::Value)
        else {
            return Ok(None);
        };
        let TableSlot::Typed(table) = &s.table else { return Ok(None) };
        let check = s.ttl.clone().map(|config| TtlCheck { config, now });
        table.query(kg, key, check.as_ref()).map_err(|reason| StateError::Deserialize {
            state: state.to_string(),
            operator: self.ctx.operator.clone(),
            reason,
        })
    }

    fn state_names(&self) -> Vec<String> {
        self.states.iter().map(|s| s.meta.name.clone()).collect()
    }
}

type View = (u32, Box<dyn TableView>, Option<TtlCheck>, bool);

struct HeapSnapshotWriter {
    base: KeyedStateSnapshot,
    views: Vec<View>,
    operator: String,
}

impl SnapshotWriter for HeapSnapshotWriter {
    fn write(self: Box<Self>) -> StateResult<KeyedStateSnapshot> {
        let HeapSnapshotWriter { mut base, views, operator } = *self;
        for (index, view, drop_expired, ttl_on) in views {
            view.encode(index, ttl_on, drop_expired.as_ref(), &mut base)
                .map_err(|reason| StateError::Snapshot { what: format!("of operator '{operator}'"), reason })?;
        }
        base.key_groups.sort_by_key(|g| g.key_group);
        Ok(base)
    }
}
