//! The RocksDB state backend (Flink's `EmbeddedRocksDBStateBackend`): serialized state in an
//! embedded RocksDB on local disk, a column family per state, keys laid out as
//! `[key group: u16][length][key + namespace][map user key]`: a key group is a contiguous
//! range, and the length lets a snapshot split off the user key without knowing any types.
//! Block cache and write buffers share one memory budget; the write-ahead log is off because
//! checkpoints, not the log, make state durable. Snapshots start from RocksDB's native
//! checkpoints (hard links), which the checkpoint layer can upload incrementally.

use crate::backend::{BackendContext, KeyedStore, SnapshotWriter, StateBackendConfig, StateId};
use crate::codec;
use crate::descriptor::StateKind;
use crate::error::{StateError, StateResult};
use crate::snapshot::{KeyedStateHandle, KeyedStateSnapshot, RocksDbFiles, StateEntry, StateMeta};
use crate::ttl::{StateTtlConfig, StateVisibility, TtlUpdateType};
use brisk_core::{Data, Key};
use rocksdb::compaction_filter::{CompactionFilter, Decision};
use rocksdb::compaction_filter_factory::{CompactionFilterContext, CompactionFilterFactory};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, MergeOperands,
    Options, WriteBatch, WriteBufferManager, WriteOptions,
};
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

static INSTANCE: AtomicU64 = AtomicU64::new(0);

/// Column families are `state:<name>` so no state can clash with RocksDB's `default`.
fn cf_name(state: &str) -> String {
    format!("state:{state}")
}

/// The merge operator of every column family: list state appends by concatenation.
fn concat_merge(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut out = existing.map(<[u8]>::to_vec).unwrap_or_default();
    for operand in operands.iter() {
        out.extend_from_slice(operand);
    }
    Some(out)
}

/// Creates the compaction filters that drop expired values of a state with time-to-live.
struct TtlFilterFactory {
    ttl: FilterTtl,
    clock: Arc<dyn brisk_core::Clock>,
}

impl CompactionFilterFactory for TtlFilterFactory {
    type Filter = TtlFilter;

    fn create(&mut self, _: CompactionFilterContext) -> TtlFilter {
        let ttl_ms = self.ttl.read().map(|t| *t).unwrap_or(None);
        TtlFilter { ttl_ms, now: self.clock.now_millis() }
    }

    fn name(&self) -> &CStr {
        c"brisk-ttl-factory"
    }
}

/// Drops values whose time-to-live timestamp is older than the state's TTL.
struct TtlFilter {
    ttl_ms: Option<i64>,
    now: i64,
}

impl CompactionFilter for TtlFilter {
    fn filter(&mut self, _level: u32, _key: &[u8], value: &[u8]) -> Decision {
        match (self.ttl_ms, codec::take_timestamp(value)) {
            (Some(ttl), Ok((ts, _))) if ts.saturating_add(ttl) <= self.now => Decision::Remove,
            _ => Decision::Keep,
        }
    }

    fn name(&self) -> &CStr {
        c"brisk-ttl"
    }
}

/// Time-to-live of a column family as its compaction filter sees it (set when the state is
/// registered, which may be after the column family was created by a restore).
type FilterTtl = Arc<RwLock<Option<i64>>>;

struct RocksState {
    meta: StateMeta,
    ttl: Option<StateTtlConfig>,
    filter_ttl: FilterTtl,
}

/// Keyed state in an embedded RocksDB.
pub struct RocksDbKeyedStateBackend {
    ctx: BackendContext,
    db: Option<DB>,
    dir: PathBuf,
    states: Vec<RocksState>,
    cf_options: Options,
    write_options: WriteOptions,
    key: Vec<u8>,
    value: Vec<u8>,
    uploaded: Uploaded,
    _cache: Cache,
    _write_buffers: WriteBufferManager,
}

impl Drop for RocksDbKeyedStateBackend {
    fn drop(&mut self) {
        // Close the database before deleting its files.
        self.db.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// This process's pid and start time (ns): distinguishes its files from other runs'.
fn process_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!("{}-{nanos:x}", std::process::id())
    })
}

impl RocksDbKeyedStateBackend {
    /// Opens a fresh database in a new directory under the configured local directory.
    pub fn open(config: &StateBackendConfig, ctx: BackendContext) -> StateResult<Self> {
        let base = config.rocksdb_local_dir.clone().unwrap_or_else(std::env::temp_dir);
        let short_id: String = ctx.operator_id.chars().take(8).collect();
        // The name also prefixes the SST files an incremental checkpoint shares: unique across
        // processes (a restarted container often has the same pid), not only within one.
        let dir = base.join(format!(
            "brisk-rocksdb-{}-{short_id}-{}-{}",
            process_token(),
            ctx.subtask_index,
            INSTANCE.fetch_add(1, Ordering::Relaxed)
        ));
        let storage = |message: String| StateError::Storage { operator: ctx.operator.clone(), message };
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| storage(format!("cannot create {}: {e}", dir.display())))?;

        let budget = config.rocksdb_memory_bytes.max(8 << 20);
        let cache = Cache::new_lru_cache(budget);
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(budget / 2, false, cache.clone());
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_bloom_filter(10.0, false);
        let mut cf_options = Options::default();
        cf_options.set_block_based_table_factory(&table);
        cf_options.set_write_buffer_size((budget / 8).clamp(1 << 20, 64 << 20));
        cf_options.set_max_write_buffer_number(2);
        // Most reads of window and reduce state miss (a key's first element in a window): a
        // bloom filter over whole keys in the memtable answers them without a skip-list search.
        cf_options.set_memtable_whole_key_filtering(true);
        cf_options.set_memtable_prefix_bloom_ratio(0.1);
        cf_options.set_merge_operator_associative("brisk-list-append", concat_merge);
        let mut db_options = cf_options.clone();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        db_options.set_max_background_jobs(2);
        db_options.set_write_buffer_manager(&write_buffers);
        let db = DB::open(&db_options, &dir)
            .map_err(|e| storage(format!("cannot open RocksDB in {}: {e}", dir.display())))?;
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        Ok(RocksDbKeyedStateBackend {
            ctx,
            db: Some(db),
            dir,
            states: Vec::new(),
            cf_options,
            write_options,
            key: Vec::new(),
            value: Vec::new(),
            uploaded: Uploaded::default(),
            _cache: cache,
            _write_buffers: write_buffers,
        })
    }

    /// The directory of the live database.
    pub fn directory(&self) -> &Path {
        &self.dir
    }

    fn storage(&self, e: impl std::fmt::Display) -> StateError {
        StateError::Storage { operator: self.ctx.operator.clone(), message: e.to_string() }
    }

    fn decode_error(&self, id: StateId, reason: String) -> StateError {
        let state = self.states.get(id.0).map_or_else(|| format!("#{}", id.0), |s| s.meta.name.clone());
        StateError::Deserialize { state, operator: self.ctx.operator.clone(), reason }
    }

    fn db(&self) -> StateResult<&DB> {
        self.db.as_ref().ok_or_else(|| self.storage("the database is closed"))
    }

    fn cf(&self, id: StateId) -> StateResult<&ColumnFamily> {
        let state = self.states.get(id.0).ok_or_else(|| self.storage(format!("unknown state id {}", id.0)))?;
        self.db()?
            .cf_handle(&cf_name(&state.meta.name))
            .ok_or_else(|| self.storage(format!("column family of state '{}' is missing", state.meta.name)))
    }

    /// Creates the column family of a state unless it exists; its compaction filter reads the
    /// state's time-to-live from `filter_ttl` (lists are left alone: each element has its own
    /// timestamp, and reads skip expired ones).
    fn ensure_cf(&mut self, name: &str, kind: StateKind, filter_ttl: &FilterTtl) -> StateResult {
        let cf = cf_name(name);
        if self.db()?.cf_handle(&cf).is_some() {
            return Ok(());
        }
        let mut options = self.cf_options.clone();
        if kind != StateKind::List {
            // A factory, not a filter: RocksDB holds factories by shared pointer, while a plain
            // filter is a raw pointer it may outlive.
            options.set_compaction_filter_factory(TtlFilterFactory {
                ttl: filter_ttl.clone(),
                clock: self.ctx.clock.clone(),
            });
        }
        let db = self
            .db
            .as_mut()
            .ok_or_else(|| StateError::Storage { operator: self.ctx.operator.clone(), message: "closed".into() })?;
        db.create_cf(&cf, &options)
            .map_err(|e| StateError::Storage { operator: self.ctx.operator.clone(), message: e.to_string() })
    }

    fn register(&mut self, meta: StateMeta, ttl: Option<&StateTtlConfig>) -> StateResult<StateId> {
        let index = match self.states.iter().position(|s| s.meta.name == meta.name) {
            Some(index) => {
                let existing = &self.states[index];
                let incompatible = existing.meta.kind.storage() != meta.kind.storage()
                    || existing.meta.value_type != meta.value_type
                    || existing.meta.ttl != ttl.is_some();
                if incompatible {
                    let describe = |m: &StateMeta, ttl: bool| {
                        format!("{:?} state of {}{}", m.kind, m.value_type, if ttl { " with TTL" } else { "" })
                    };
                    return Err(StateError::Incompatible {
                        state: meta.name.clone(),
                        operator: self.ctx.operator.clone(),
                        existing: describe(&existing.meta, existing.meta.ttl),
                        requested: describe(&meta, ttl.is_some()),
                    });
                }
                index
            }
            None => {
                let filter_ttl: FilterTtl = Arc::default();
                self.ensure_cf(&meta.name, meta.kind, &filter_ttl)?;
                self.states.push(RocksState { meta: StateMeta { ttl: ttl.is_some(), ..meta }, ttl: None, filter_ttl });
                self.states.len() - 1
            }
        };
        let state = &mut self.states[index];
        state.ttl = ttl.cloned();
        let filter =
            ttl.filter(|t| t.rocksdb_compaction_filter).map(|t| i64::try_from(t.ttl.as_millis()).unwrap_or(i64::MAX));
        if let Ok(mut slot) = state.filter_ttl.write() {
            *slot = filter;
        }
        Ok(StateId(index))
    }

    /// Builds `[kg][length][key]` into the key buffer.
    fn build_key(&mut self, kg: usize, key: &[u8]) -> StateResult {
        self.key.clear();
        self.key.extend_from_slice(&(kg as u16).to_be_bytes());
        codec::encode_into(&(key.len() as u32), &mut self.key).map_err(|e| self.storage(e))?;
        self.key.extend_from_slice(key);
        Ok(())
    }

    fn ttl_now(&self, id: StateId) -> Option<(StateTtlConfig, i64)> {
        self.states[id.0].ttl.clone().map(|t| (t, self.ctx.clock.now_millis()))
    }

    /// Encodes `[ts if ttl][value]` into the value buffer.
    fn build_value<V: Data>(&mut self, id: StateId, value: &V) -> StateResult {
        self.value.clear();
        if let Some((_, now)) = self.ttl_now(id) {
            codec::put_timestamp(now, &mut self.value);
        }
        codec::encode_into(value, &mut self.value).map_err(|e| self.storage(e))
    }

    /// Decodes a stored value; `None` when it expired and must not be seen.
    fn decode_stored<V: Data>(&self, id: StateId, bytes: &[u8]) -> StateResult<(Option<V>, bool)> {
        let ttl = self.ttl_now(id);
        let (ts, rest) = match ttl {
            Some(_) => codec::take_timestamp(bytes).map_err(|e| self.decode_error(id, e))?,
            None => (i64::MIN, bytes),
        };
        if let Some((config, now)) = &ttl
            && config.is_expired(ts, *now)
            && config.visibility == StateVisibility::NeverReturnExpired
        {
            return Ok((None, true));
        }
        let value = codec::decode::<V>(rest).map_err(|e| self.decode_error(id, e))?;
        let touch = ttl.is_some_and(|(c, _)| c.update_type == TtlUpdateType::OnReadAndWrite);
        Ok((Some(value), touch))
    }

    fn put_raw(&self, id: StateId, key: &[u8], value: &[u8]) -> StateResult {
        self.db()?.put_cf_opt(self.cf(id)?, key, value, &self.write_options).map_err(|e| self.storage(e))
    }

    fn delete_raw(&self, id: StateId, key: &[u8]) -> StateResult {
        self.db()?.delete_cf_opt(self.cf(id)?, key, &self.write_options).map_err(|e| self.storage(e))
    }

    fn get_raw(&self, id: StateId, key: &[u8]) -> StateResult<Option<Vec<u8>>> {
        Ok(self.db()?.get_pinned_cf(self.cf(id)?, key).map_err(|e| self.storage(e))?.map(|v| v.to_vec()))
    }

    /// Every stored `(key, value)` starting with `prefix`.
    fn scan_prefix(&self, id: StateId, prefix: &[u8]) -> StateResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self.db()?.iterator_cf(self.cf(id)?, IteratorMode::From(prefix, Direction::Forward)) {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// A native RocksDB checkpoint of the current state in `dir` (hard-linked SST files).
    pub fn native_checkpoint(&self, dir: &Path) -> StateResult {
        let db = self.db()?;
        rocksdb::checkpoint::Checkpoint::new(db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(|e| self.storage(format!("cannot create a checkpoint in {}: {e}", dir.display())))
    }
}

/// The smallest key greater than every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

impl KeyedStore for RocksDbKeyedStateBackend {
    fn backend_name(&self) -> &'static str {
        "rocksdb"
    }

    fn register_value<V: Data>(
        &mut self,
        name: &str,
        kind: StateKind,
        ttl: Option<&StateTtlConfig>,
    ) -> StateResult<StateId> {
        self.register(StateMeta::of::<V>(name, kind), ttl)
    }

    fn register_list<V: Data>(&mut self, name: &str, ttl: Option<&StateTtlConfig>) -> StateResult<StateId> {
        self.register(StateMeta::of::<V>(name, StateKind::List), ttl)
    }

    fn register_map<UK: Key, UV: Data>(&mut self, name: &str, ttl: Option<&StateTtlConfig>) -> StateResult<StateId> {
        self.register(StateMeta::of::<(UK, UV)>(name, StateKind::Map), ttl)
    }

    fn value_get<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8]) -> StateResult<Option<V>> {
        self.build_key(kg, key)?;
        let key_bytes = std::mem::take(&mut self.key);
        let result = (|| {
            let Some(bytes) = self.get_raw(id, &key_bytes)? else { return Ok(None) };
            let (value, touch) = self.decode_stored::<V>(id, &bytes)?;
            match &value {
                None => self.delete_raw(id, &key_bytes)?,
                Some(v) if touch => {
                    self.build_value(id, v)?;
                    self.put_raw(id, &key_bytes, &self.value)?;
                }
                Some(_) => {}
            }
            Ok(value)
        })();
        self.key = key_bytes;
        result
    }

    fn value_put<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8], value: V) -> StateResult {
        self.build_key(kg, key)?;
        self.build_value(id, &value)?;
        self.put_raw(id, &self.key, &self.value)
    }

    fn value_update<V: Data, R>(
        &mut self,
        id: StateId,
        kg: usize,
        key: &[u8],
        f: impl FnOnce(Option<V>) -> (Option<V>, R),
    ) -> StateResult<R> {
        self.build_key(kg, key)?;
        let old = match self.get_raw(id, &self.key)? {
            Some(bytes) => self.decode_stored::<V>(id, &bytes)?.0,
            None => None,
        };
        let (new, result) = f(old);
        match new {
            Some(value) => {
                self.build_value(id, &value)?;
                self.put_raw(id, &self.key, &self.value)?;
            }
            None => self.delete_raw(id, &self.key)?,
        }
        Ok(result)
    }

    fn list_get<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8]) -> StateResult<Vec<V>> {
        self.build_key(kg, key)?;
        let Some(bytes) = self.get_raw(id, &self.key)? else { return Ok(Vec::new()) };
        let ttl = self.ttl_now(id);
        let elements = codec::list_elements(&bytes, ttl.is_some()).map_err(|e| self.decode_error(id, e))?;
        let mut out = Vec::with_capacity(elements.len());
        for (ts, element) in elements {
            if let (Some((config, now)), Some(ts)) = (&ttl, ts)
                && config.is_expired(ts, *now)
                && config.visibility == StateVisibility::NeverReturnExpired
            {
                continue;
            }
            out.push(codec::decode::<V>(element).map_err(|e| self.decode_error(id, e))?);
        }
        Ok(out)
    }

    fn list_add<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8], values: Vec<V>) -> StateResult {
        self.build_key(kg, key)?;
        let ts = self.ttl_now(id).map(|(_, now)| now);
        let mut operand = Vec::new();
        for value in &values {
            let bytes = codec::encode(value).map_err(|e| self.storage(e))?;
            codec::put_list_element(&bytes, ts, &mut operand).map_err(|e| self.storage(e))?;
        }
        self.db()?.merge_cf_opt(self.cf(id)?, &self.key, operand, &self.write_options).map_err(|e| self.storage(e))
    }

    fn list_update<V: Data>(&mut self, id: StateId, kg: usize, key: &[u8], values: Vec<V>) -> StateResult {
        self.build_key(kg, key)?;
        if values.is_empty() {
            return self.delete_raw(id, &self.key);
        }
        let ts = self.ttl_now(id).map(|(_, now)| now);
        self.value.clear();
        for value in &values {
            let bytes = codec::encode(value).map_err(|e| self.storage(e))?;
            codec::put_list_element(&bytes, ts, &mut self.value).map_err(|e| self.storage(e))?;
        }
        self.put_raw(id, &self.key, &self.value)
    }

    fn map_get<UK: Key, UV: Data>(
        &mut self,
        id: StateId,
        kg: usize,
        key: &[u8],
        user_key: &UK,
    ) -> StateResult<Option<UV>> {
        self.build_key(kg, key)?;
        codec::encode_into(user_key, &mut self.key).map_err(|e| self.storage(e))?;
        let Some(bytes) = self.get_raw(id, &self.key)? else { return Ok(None) };
        let (value, touch) = self.decode_stored::<UV>(id, &bytes)?;
        if let (Some(v), true) = (&value, touch) {
            self.build_value(id, v)?;
            self.put_raw(id, &self.key, &self.value)?;
        }
        Ok(value)
    }

    fn map_put<UK: Key, UV: Data>(
        &mut self,
        id: StateId,
        kg: usize,
        key: &[u8],
        user_key: UK,
        value: UV,
    ) -> StateResult {
        self.build_key(kg, key)?;
        codec::encode_into(&user_key, &mut self.key).map_err(|e| self.storage(e))?;
        self.build_value(id, &value)?;
        self.put_raw(id, &self.key, &self.value)
    }

    fn map_remove<UK: Key, UV: Data>(&mut self, id: StateId, kg: usize, key: &[u8], user_key: &UK) -> StateResult {
        self.build_key(kg, key)?;
        codec::encode_into(user_key, &mut self.key).map_err(|e| self.storage(e))?;
        self.delete_raw(id, &self.key)
    }

    fn map_entries<UK: Key, UV: Data>(&mut self, id: StateId, kg: usize, key: &[u8]) -> StateResult<Vec<(UK, UV)>> {
        self.build_key(kg, key)?;
        let prefix = self.key.clone();
        let mut out = Vec::new();
        for (k, v) in self.scan_prefix(id, &prefix)? {
            let user_key = codec::decode::<UK>(&k[prefix.len()..]).map_err(|e| self.decode_error(id, e))?;
            if let (Some(value), _) = self.decode_stored::<UV>(id, &v)? {
                out.push((user_key, value));
            }
        }
        Ok(out)
    }

    fn remove(&mut self, id: StateId, kg: usize, key: &[u8]) -> StateResult {
        self.build_key(kg, key)?;
        if self.states.get(id.0).is_some_and(|s| s.meta.kind == StateKind::Map) {
            let end = prefix_end(&self.key);
            return self
                .db()?
                .delete_range_cf_opt(self.cf(id)?, &self.key, &end, &self.write_options)
                .map_err(|e| self.storage(e));
        }
        self.delete_raw(id, &self.key)
    }

    fn value_entries<V: Data>(&mut self, id: StateId, kg: usize) -> StateResult<Vec<(Vec<u8>, V)>> {
        let mut out = Vec::new();
        for (key, value) in self.scan_prefix(id, &(kg as u16).to_be_bytes())? {
            let (len, rest) =
                codec::decode_prefix::<u32>(key.get(2..).unwrap_or_default()).map_err(|e| self.decode_error(id, e))?;
            let key = rest
                .get(..len as usize)
                .ok_or_else(|| self.decode_error(id, "key shorter than its length".into()))?
                .to_vec();
            if let (Some(value), _) = self.decode_stored::<V>(id, &value)? {
                out.push((key, value));
            }
        }
        Ok(out)
    }

    fn snapshot(&mut self) -> StateResult<Box<dyn SnapshotWriter>> {
        let dir = self.dir.with_extension(format!("snapshot-{}", INSTANCE.fetch_add(1, Ordering::Relaxed)));
        self.native_checkpoint(&dir)?;
        let now = self.ctx.clock.now_millis();
        Ok(Box::new(RocksSnapshotWriter {
            dir,
            operator: self.ctx.operator.clone(),
            states: self
                .states
                .iter()
                .map(|s| (s.meta.clone(), s.ttl.clone().filter(|t| t.cleanup_full_snapshot).map(|t| (t, now))))
                .collect(),
            max_parallelism: self.ctx.max_parallelism,
            range: self.ctx.key_group_range,
            uploaded: self.uploaded.clone(),
            instance: self.dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(),
        }))
    }

    fn restore(&mut self, snapshot: KeyedStateSnapshot) -> StateResult {
        let mut batch = WriteBatch::default();
        let mut ids = Vec::with_capacity(snapshot.states.len());
        for meta in &snapshot.states {
            let id = match self.states.iter().position(|s| s.meta.name == meta.name) {
                Some(i) => i,
                None => {
                    let filter_ttl: FilterTtl = Arc::default();
                    self.ensure_cf(&meta.name, meta.kind, &filter_ttl)?;
                    self.states.push(RocksState { meta: meta.clone(), ttl: None, filter_ttl });
                    self.states.len() - 1
                }
            };
            ids.push(StateId(id));
        }
        for group in &snapshot.key_groups {
            if !self.ctx.key_group_range.contains(group.key_group as usize) {
                continue;
            }
            for entry in &group.entries {
                let id = *ids.get(entry.state as usize).ok_or_else(|| StateError::Snapshot {
                    what: format!("restore of operator '{}'", self.ctx.operator),
                    reason: format!("entry refers to unknown state {}", entry.state),
                })?;
                self.build_key(group.key_group as usize, &entry.key)?;
                let mut key = self.key.clone();
                key.extend_from_slice(&entry.user_key);
                batch.put_cf(self.cf(id)?, key, &entry.value);
            }
        }
        self.db()?.write_opt(batch, &self.write_options).map_err(|e| self.storage(e))
    }

    fn query(&mut self, state: &str, kg: usize, key: &[u8]) -> StateResult<Option<Vec<u8>>> {
        let Some(index) =
            self.states.iter().position(|s| s.meta.name == state && s.meta.kind.storage() == StateKind::Value)
        else {
            return Ok(None);
        };
        let id = StateId(index);
        self.build_key(kg, key)?;
        let Some(bytes) = self.get_raw(id, &self.key)? else { return Ok(None) };
        let Some((config, now)) = self.ttl_now(id) else { return Ok(Some(bytes)) };
        let (ts, rest) = codec::take_timestamp(&bytes).map_err(|e| self.decode_error(id, e))?;
        let hidden = config.is_expired(ts, now) && config.visibility == StateVisibility::NeverReturnExpired;
        Ok((!hidden).then(|| rest.to_vec()))
    }

    fn state_names(&self) -> Vec<String> {
        self.states.iter().map(|s| s.meta.name.clone()).collect()
    }
}

/// Reads a native checkpoint back into the canonical format, off the task thread.
struct RocksSnapshotWriter {
    dir: PathBuf,
    operator: String,
    states: Vec<(StateMeta, Option<(StateTtlConfig, i64)>)>,
    max_parallelism: usize,
    range: brisk_core::KeyGroupRange,
    /// SST files already stored under `shared/` by earlier checkpoints: local name → shared
    /// name. SST files never change, so each is stored once.
    uploaded: Uploaded,
    /// Prefix of this database's shared file names (SST names repeat across databases).
    instance: String,
}

/// SST files of a database already in shared checkpoint storage.
type Uploaded = Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>;

/// Hard-links `from` to `to` (same file system), else copies it.
fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(_) => std::fs::copy(from, to).map(drop),
    }
}

/// Materializes incremental RocksDB files in a scratch directory and reads them back in the
/// canonical format (restoring, possibly at another parallelism or into the heap backend).
pub(crate) fn read_files(files: &RocksDbFiles, shared: &Path, scratch: &Path) -> StateResult<KeyedStateSnapshot> {
    let dir =
        scratch.join(format!("brisk-restore-{}-{}", std::process::id(), INSTANCE.fetch_add(1, Ordering::Relaxed)));
    let storage = |e: String| StateError::Storage { operator: "restore".into(), message: e };
    std::fs::create_dir_all(&dir).map_err(|e| storage(format!("cannot create {}: {e}", dir.display())))?;
    for (local, stored) in &files.shared {
        link_or_copy(&shared.join(stored), &dir.join(local)).map_err(|e| {
            storage(format!("checkpoint file {} is missing or unreadable: {e}", shared.join(stored).display()))
        })?;
    }
    for (name, bytes) in &files.private {
        std::fs::write(dir.join(name), bytes)
            .map_err(|e| storage(format!("cannot write {}: {e}", dir.join(name).display())))?;
    }
    let reader = RocksSnapshotWriter {
        dir,
        operator: "restore".into(),
        states: files.states.iter().map(|m| (m.clone(), None)).collect(),
        max_parallelism: files.max_parallelism,
        range: files.key_group_range,
        uploaded: Uploaded::default(),
        instance: String::new(),
    };
    let mut snapshot = Box::new(reader).write()?;
    crate::backend::add_timers(&mut snapshot, files.timers.iter().map(|(kg, t)| (*kg as usize, t.clone())));
    Ok(snapshot)
}

impl Drop for RocksSnapshotWriter {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl SnapshotWriter for RocksSnapshotWriter {
    fn write_incremental(self: Box<Self>, shared: &Path) -> StateResult<KeyedStateHandle> {
        let storage = |e: String| StateError::Storage { operator: self.operator.clone(), message: e };
        std::fs::create_dir_all(shared).map_err(|e| storage(format!("cannot create {}: {e}", shared.display())))?;
        let mut files = RocksDbFiles {
            shared: Vec::new(),
            private: Vec::new(),
            states: self.states.iter().map(|(m, _)| m.clone()).collect(),
            max_parallelism: self.max_parallelism,
            key_group_range: self.range,
            timers: Vec::new(),
        };
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| storage(format!("cannot list {}: {e}", self.dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| storage(e.to_string()))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with(".sst") {
                let mut uploaded = self.uploaded.lock().map_err(|_| storage("upload registry poisoned".into()))?;
                let stored = match uploaded.get(&name) {
                    Some(stored) => stored.clone(),
                    None => {
                        let stored = format!("{}-{name}", self.instance);
                        link_or_copy(&entry.path(), &shared.join(&stored))
                            .map_err(|e| storage(format!("cannot store {}: {e}", entry.path().display())))?;
                        uploaded.insert(name.clone(), stored.clone());
                        stored
                    }
                };
                files.shared.push((name, stored));
            } else {
                let bytes = std::fs::read(entry.path())
                    .map_err(|e| storage(format!("cannot read {}: {e}", entry.path().display())))?;
                files.private.push((name, bytes));
            }
        }
        Ok(KeyedStateHandle::Files(files))
    }

    fn write(self: Box<Self>) -> StateResult<KeyedStateSnapshot> {
        let storage = |e: String| StateError::Storage { operator: self.operator.clone(), message: e };
        let cfs: Vec<String> = self.states.iter().map(|(m, _)| cf_name(&m.name)).collect();
        // List state may still hold unmerged appends: every column family needs the operator.
        let with_merge = || {
            let mut options = Options::default();
            options.set_merge_operator_associative("brisk-list-append", concat_merge);
            options
        };
        let descriptors: Vec<ColumnFamilyDescriptor> =
            cfs.iter().map(|name| ColumnFamilyDescriptor::new(name, with_merge())).collect();
        let db = DB::open_cf_descriptors_read_only(&with_merge(), &self.dir, descriptors, false)
            .map_err(|e| storage(e.to_string()))?;
        let mut out = KeyedStateSnapshot::new("rocksdb", self.max_parallelism, self.range);
        for (meta, drop_expired) in &self.states {
            let index = out.state_index(meta);
            let cf = db
                .cf_handle(&cf_name(&meta.name))
                .ok_or_else(|| storage(format!("column family of '{}' missing", meta.name)))?;
            for item in db.iterator_cf(cf, IteratorMode::Start) {
                let (key, value) = item.map_err(|e| storage(e.to_string()))?;
                if key.len() < 2 {
                    continue;
                }
                let kg = usize::from(u16::from_be_bytes([key[0], key[1]]));
                if let Some((config, now)) = drop_expired
                    && meta.kind != StateKind::List
                    && codec::take_timestamp(&value).is_ok_and(|(ts, _)| config.is_expired(ts, *now))
                {
                    continue;
                }
                let (len, rest) = codec::decode_prefix::<u32>(&key[2..])
                    .map_err(|e| storage(format!("state '{}': bad key: {e}", meta.name)))?;
                let len = len as usize;
                if rest.len() < len {
                    return Err(storage(format!("state '{}': key shorter than its length", meta.name)));
                }
                let entry = StateEntry {
                    state: index,
                    key: rest[..len].to_vec(),
                    user_key: rest[len..].to_vec(),
                    value: value.to_vec(),
                };
                out.key_group_mut(kg).entries.push(entry);
            }
        }
        out.key_groups.sort_by_key(|g| g.key_group);
        Ok(out)
    }
}
