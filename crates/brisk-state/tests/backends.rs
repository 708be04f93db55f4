//! One behaviour suite for every keyed state backend: each state kind, time-to-live, snapshots
//! restored at another parallelism and into the other backend, type changes, queries.

use brisk_core::{Clock, KeyGroupRange, ManualClock};
use brisk_state::handles::{
    keyed_aggregating_state, keyed_list_state, keyed_map_state, keyed_reducing_state, keyed_value_state,
};
use brisk_state::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const MAX_PARALLELISM: usize = 16;

/// The backends built in: RocksDB only with the `rocksdb` feature, decided at compile time so
/// that no case ever reports RocksDB while using the heap.
fn backends() -> Vec<StateBackendConfig> {
    vec![
        StateBackendConfig::default(),
        #[cfg(feature = "rocksdb")]
        StateBackendConfig { kind: StateBackendKind::RocksDb, ..StateBackendConfig::default() },
    ]
}

fn backend_with_clock(
    config: &StateBackendConfig,
    range: KeyGroupRange,
    clock: Arc<dyn Clock>,
) -> Registered<KeyedStateBackend> {
    let ctx = BackendContext {
        operator: "test-op".into(),
        operator_id: "0123456789abcdef".into(),
        subtask_index: range.start,
        key_group_range: range,
        max_parallelism: MAX_PARALLELISM,
        clock,
    };
    Registered::new(KeyedStateBackend::create(config, ctx).unwrap())
}

fn backend(config: &StateBackendConfig) -> Registered<KeyedStateBackend> {
    backend_with_clock(config, KeyGroupRange::new(0, MAX_PARALLELISM - 1), ManualClock::new(0))
}

fn set_key(b: &Registered<KeyedStateBackend>, key: &str) {
    b.with("key", |b| b.set_current_key(&key.to_string())).unwrap();
}

fn snapshot(b: &Registered<KeyedStateBackend>) -> KeyedStateSnapshot {
    b.with("snapshot", |b| b.snapshot()).unwrap().write().unwrap()
}

#[derive(Clone, Copy)]
struct Average;

impl AggregateFunction<i64, (i64, i64), f64> for Average {
    fn create_accumulator(&self) -> (i64, i64) {
        (0, 0)
    }
    fn add(&self, value: i64, acc: (i64, i64)) -> (i64, i64) {
        (acc.0 + value, acc.1 + 1)
    }
    fn get_result(&self, acc: &(i64, i64)) -> f64 {
        acc.0 as f64 / acc.1 as f64
    }
    fn merge(&self, a: (i64, i64), b: (i64, i64)) -> (i64, i64) {
        (a.0 + b.0, a.1 + b.1)
    }
}

#[test]
fn every_state_kind_is_per_key() {
    for config in backends() {
        let b = backend(&config);
        let value = keyed_value_state(&b, &ValueStateDescriptor::<i64>::new("value")).unwrap();
        let list = keyed_list_state(&b, &ListStateDescriptor::<String>::new("list")).unwrap();
        let map = keyed_map_state(&b, &MapStateDescriptor::<String, u32>::new("map")).unwrap();
        let reducing =
            keyed_reducing_state(&b, &ReducingStateDescriptor::new("max", |a: i64, b: i64| a.max(b))).unwrap();
        let avg = keyed_aggregating_state(&b, &AggregatingStateDescriptor::new("avg", Average)).unwrap();

        set_key(&b, "alice");
        assert_eq!(value.value().unwrap(), None);
        value.update(7).unwrap();
        list.add("a".into()).unwrap();
        list.add_all(vec!["b".into(), "c".into()]).unwrap();
        map.put("x".into(), 1).unwrap();
        map.put("y".into(), 2).unwrap();
        map.remove(&"x".to_string()).unwrap();
        for v in [3, 9, 4] {
            reducing.add(v).unwrap();
            avg.add(v).unwrap();
        }

        set_key(&b, "bob");
        assert_eq!(value.value().unwrap(), None, "{config:?}: keys are isolated");
        assert!(list.get().unwrap().is_empty());
        assert!(map.is_empty().unwrap());
        assert_eq!(reducing.get().unwrap(), None);
        value.update(1).unwrap();

        set_key(&b, "alice");
        assert_eq!(value.value().unwrap(), Some(7));
        assert_eq!(list.get().unwrap(), vec!["a", "b", "c"]);
        assert_eq!(map.entries().unwrap(), vec![("y".to_string(), 2)]);
        assert!(map.contains(&"y".to_string()).unwrap() && !map.contains(&"x".to_string()).unwrap());
        assert_eq!(reducing.get().unwrap(), Some(9));
        assert_eq!(avg.get().unwrap(), Some(16.0 / 3.0));
        list.update(vec!["z".into()]).unwrap();
        assert_eq!(list.get().unwrap(), vec!["z"]);
        for clear in [value.clear(), list.clear(), map.clear(), reducing.clear(), avg.clear()] {
            clear.unwrap();
        }
        assert_eq!((value.value().unwrap(), list.get().unwrap().len(), map.is_empty().unwrap()), (None, 0, true));
        set_key(&b, "bob");
        assert_eq!(value.value().unwrap(), Some(1), "{config:?}: clearing one key leaves others");
    }
}

#[test]
fn state_without_a_key_is_a_clear_error() {
    for config in backends() {
        let b = backend(&config);
        let value = keyed_value_state(&b, &ValueStateDescriptor::<i64>::new("count")).unwrap();
        let err = value.value().unwrap_err().to_string();
        assert!(err.contains("'count'") && err.contains("KeyedStream"), "{err}");
        let moved = std::thread::spawn(move || value.value().unwrap_err().to_string()).join().unwrap();
        assert!(moved.contains("outside the task"), "{moved}");
    }
}

#[test]
fn time_to_live_expires_and_refreshes() {
    for config in backends() {
        let clock = ManualClock::new(1_000);
        let b = backend_with_clock(&config, KeyGroupRange::new(0, MAX_PARALLELISM - 1), clock.clone());
        let ttl = StateTtlConfig::new_builder(Duration::from_millis(100)).build();
        let on_read = StateTtlConfig::new_builder(Duration::from_millis(100))
            .set_update_type(TtlUpdateType::OnReadAndWrite)
            .build();
        let visible = StateTtlConfig::new_builder(Duration::from_millis(100))
            .set_state_visibility(StateVisibility::ReturnExpiredIfNotCleanedUp)
            .build();
        let plain =
            keyed_value_state(&b, &ValueStateDescriptor::<i64>::new("plain").enable_time_to_live(ttl.clone())).unwrap();
        let refreshed =
            keyed_value_state(&b, &ValueStateDescriptor::<i64>::new("refreshed").enable_time_to_live(on_read)).unwrap();
        let stale =
            keyed_value_state(&b, &ValueStateDescriptor::<i64>::new("stale").enable_time_to_live(visible)).unwrap();
        let list =
            keyed_list_state(&b, &ListStateDescriptor::<i64>::new("list").enable_time_to_live(ttl.clone())).unwrap();
        let map = keyed_map_state(&b, &MapStateDescriptor::<String, i64>::new("map").enable_time_to_live(ttl)).unwrap();
        set_key(&b, "k");
        plain.update(1).unwrap();
        refreshed.update(2).unwrap();
        stale.update(3).unwrap();
        list.add(1).unwrap();
        map.put("old".into(), 1).unwrap();
        clock.advance(60);
        assert_eq!(refreshed.value().unwrap(), Some(2), "a read restarts the clock");
        list.add(2).unwrap();
        map.put("new".into(), 2).unwrap();
        clock.advance(60);
        assert_eq!(plain.value().unwrap(), None, "{config:?}: expired after 100 ms");
        assert_eq!(refreshed.value().unwrap(), Some(2), "read 60 ms ago");
        assert_eq!(stale.value().unwrap(), Some(3), "expired but visible until cleaned up");
        assert_eq!(list.get().unwrap(), vec![2], "{config:?}: list elements expire one by one");
        assert_eq!(map.entries().unwrap(), vec![("new".to_string(), 2)], "{config:?}: map entries expire one by one");
        clock.advance(200);
        assert_eq!(refreshed.value().unwrap(), None);
        assert!(list.get().unwrap().is_empty());
    }
}

#[test]
fn full_snapshot_cleanup_drops_expired_values() {
    for config in backends() {
        let clock = ManualClock::new(0);
        let b = backend_with_clock(&config, KeyGroupRange::new(0, MAX_PARALLELISM - 1), clock.clone());
        let ttl = StateTtlConfig::new_builder(Duration::from_millis(10)).cleanup_full_snapshot().build();
        let state =
            keyed_value_state(&b, &ValueStateDescriptor::<i64>::new("v").enable_time_to_live(ttl.clone())).unwrap();
        set_key(&b, "old");
        state.update(1).unwrap();
        clock.advance(20);
        set_key(&b, "fresh");
        state.update(2).unwrap();
        let snap = snapshot(&b);
        let entries: usize = snap.key_groups.iter().map(|g| g.entries.len()).sum();
        assert_eq!(entries, 1, "{config:?}: only the fresh value is written");
        // Restored at time 0, when the old value had not expired yet: had it been written, it
        // would read back.
        let restored = backend_with_clock(&config, KeyGroupRange::new(0, MAX_PARALLELISM - 1), ManualClock::new(0));
        restored.with("restore", |s| s.restore(snap)).unwrap();
        let state =
            keyed_value_state(&restored, &ValueStateDescriptor::<i64>::new("v").enable_time_to_live(ttl)).unwrap();
        set_key(&restored, "old");
        assert_eq!(state.value().unwrap(), None, "{config:?}");
        set_key(&restored, "fresh");
        assert_eq!(state.value().unwrap(), Some(2), "{config:?}");
    }
}

#[test]
fn incremental_cleanup_removes_expired_entries_from_the_heap() {
    let clock = ManualClock::new(0);
    let b =
        backend_with_clock(&StateBackendConfig::default(), KeyGroupRange::new(0, MAX_PARALLELISM - 1), clock.clone());
    let ttl = StateTtlConfig::new_builder(Duration::from_millis(10)).cleanup_incrementally(1, false).build();
    let stale = keyed_value_state(&b, &ValueStateDescriptor::<i64>::new("v").enable_time_to_live(ttl)).unwrap();
    for i in 0..50 {
        set_key(&b, &format!("k{i}"));
        stale.update(i).unwrap();
    }
    clock.advance(20);
    set_key(&b, "reader");
    for _ in 0..(2 * MAX_PARALLELISM) {
        assert_eq!(stale.value().unwrap(), None);
    }
    // Every key group was visited: the expired entries are gone even from the raw snapshot.
    let snap = snapshot(&b);
    assert_eq!(snap.key_groups.iter().map(|g| g.entries.len()).sum::<usize>(), 0);
}

/// Writes each key's value, list and map entries as [`expected_view`] describes them.
fn fill(b: &Registered<KeyedStateBackend>, keys: &[String]) {
    let value = keyed_value_state(b, &ValueStateDescriptor::<i64>::new("count")).unwrap();
    let list = keyed_list_state(b, &ListStateDescriptor::<String>::new("seen")).unwrap();
    let map = keyed_map_state(b, &MapStateDescriptor::<u32, String>::new("tags")).unwrap();
    for key in keys {
        let i = key.rsplit('-').next().and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
        set_key(b, key);
        value.update(i as i64).unwrap();
        list.add_all(vec![format!("{key}-1"), format!("{key}-2")]).unwrap();
        map.put(i as u32, key.to_uppercase()).unwrap();
        map.put(i as u32 + 1000, "x".into()).unwrap();
    }
}

/// Every key's value, list and sorted map entries, read back.
fn read_all(b: &Registered<KeyedStateBackend>, keys: &[String]) -> BTreeMap<String, KeyView> {
    let value = keyed_value_state(b, &ValueStateDescriptor::<i64>::new("count")).unwrap();
    let list = keyed_list_state(b, &ListStateDescriptor::<String>::new("seen")).unwrap();
    let map = keyed_map_state(b, &MapStateDescriptor::<u32, String>::new("tags")).unwrap();
    keys.iter()
        .map(|key| {
            set_key(b, key);
            let mut entries = map.entries().unwrap();
            entries.sort();
            (key.clone(), (value.value().unwrap(), list.get().unwrap(), entries))
        })
        .collect()
}

/// One key's value, list and sorted map entries.
type KeyView = (Option<i64>, Vec<String>, Vec<(u32, String)>);

/// What [`fill`] writes for `key-<i>`, written out independently of any backend.
fn expected_view(i: u32) -> KeyView {
    let key = format!("key-{i}");
    (
        Some(i as i64),
        vec![format!("{key}-1"), format!("{key}-2")],
        vec![(i, format!("KEY-{i}")), (i + 1000, "x".into())],
    )
}

fn owned_keys(range: KeyGroupRange, keys: &[String]) -> Vec<String> {
    keys.iter()
        .filter(|k| range.contains(brisk_core::key_group::assign_to_key_group(*k, MAX_PARALLELISM)))
        .cloned()
        .collect()
}

/// Writes state with parallelism `from` and backend `a`, snapshots, restores at parallelism
/// `to` with backend `b`, and checks that every key reads back what was written.
fn rescale_and_switch(a: &StateBackendConfig, b: &StateBackendConfig, from: usize, to: usize) {
    let keys: Vec<String> = (0..300).map(|i| format!("key-{i}")).collect();
    let expected: BTreeMap<String, KeyView> = (0..300).map(|i| (format!("key-{i}"), expected_view(i))).collect();
    let mut snapshots = Vec::new();
    for i in 0..from {
        let range = KeyGroupRange::for_operator(MAX_PARALLELISM, from, i);
        let subtask = backend_with_clock(a, range, ManualClock::new(0));
        fill(&subtask, &owned_keys(range, &keys));
        // Through the file format, checksum and all.
        let bytes = snapshot(&subtask).to_bytes().unwrap();
        snapshots.push(KeyedStateSnapshot::from_bytes(&bytes, "test").unwrap());
    }
    let mut restored = BTreeMap::new();
    for i in 0..to {
        let range = KeyGroupRange::for_operator(MAX_PARALLELISM, to, i);
        let merged = KeyedStateSnapshot::merge_for_range(&snapshots, range, "any", MAX_PARALLELISM).unwrap();
        let subtask = backend_with_clock(b, range, ManualClock::new(0));
        subtask.with("restore", |s| s.restore(merged)).unwrap();
        restored.extend(read_all(&subtask, &owned_keys(range, &keys)));
    }
    assert_eq!(restored, expected, "{a:?} p{from} -> {b:?} p{to}");
}

#[test]
fn snapshots_restore_at_other_parallelism_and_across_backends() {
    for a in backends() {
        for b in backends() {
            rescale_and_switch(&a, &b, 2, 3);
            rescale_and_switch(&a, &b, 3, 1);
        }
    }
}

#[test]
fn a_changed_state_type_is_a_clear_error() {
    for config in backends() {
        let b = backend(&config);
        fill(&b, &["k".to_string()]);
        let snap = snapshot(&b);
        let restored = backend(&config);
        restored.with("restore", |s| s.restore(snap.clone())).unwrap();
        let result = keyed_value_state(&restored, &ValueStateDescriptor::<String>::new("count")).and_then(|s| {
            set_key(&restored, "k");
            s.value()
        });
        let err = result.unwrap_err().to_string();
        assert!(err.contains("'count'") && err.contains("test-op"), "{config:?}: {err}");
        let list_as_value = keyed_value_state(&restored, &ValueStateDescriptor::<i64>::new("seen"));
        assert!(matches!(list_as_value, Err(StateError::Incompatible { .. })), "{config:?}");
    }
}

#[test]
fn queryable_values_by_key() {
    for config in backends() {
        let b = backend(&config);
        fill(&b, &["q".to_string()]);
        let key = |k: &str| {
            (
                brisk_core::key_group::assign_to_key_group(&k.to_string(), MAX_PARALLELISM),
                codec::encode(&k.to_string()).unwrap(),
            )
        };
        let (kg, q) = key("q");
        let bytes = b.with("query", |s| s.store().query("count", kg, &q)).unwrap().unwrap();
        assert_eq!(codec::decode::<i64>(&bytes).unwrap(), 0);
        let (kg_absent, absent) = key("absent");
        assert_eq!(b.with("query", |s| s.store().query("count", kg_absent, &absent)).unwrap(), None);
        assert_eq!(b.with("query", |s| s.store().query("nope", kg, &q)).unwrap(), None);
    }
}

#[test]
fn keys_outside_the_subtask_range_are_rejected() {
    for config in backends() {
        let range = KeyGroupRange::for_operator(MAX_PARALLELISM, 4, 0);
        let b = backend_with_clock(&config, range, ManualClock::new(0));
        let foreign = (0..100)
            .map(|i| format!("k{i}"))
            .find(|k| !range.contains(brisk_core::key_group::assign_to_key_group(k, MAX_PARALLELISM)))
            .unwrap();
        let err = b.with("key", |b| b.set_current_key(&foreign)).unwrap_err().to_string();
        assert!(err.contains("does not own"), "{err}");
    }
}

use brisk_state::codec;
