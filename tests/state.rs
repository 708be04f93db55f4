//! Keyed, operator and broadcast state end to end, with each available backend; queryable
//! state of a running job; backend configuration errors.

mod common;

use brisk::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn backends() -> Vec<StateBackendConfig> {
    let mut all = vec![StateBackendConfig::default()];
    if StateBackendConfig::ROCKSDB_AVAILABLE {
        all.push(StateBackendConfig { kind: StateBackendKind::RocksDb, ..StateBackendConfig::default() });
    }
    all
}

/// Per key: running count, distinct values seen, last value, as strings for easy comparison.
#[derive(Clone, Default)]
struct Profile {
    count: Option<ValueState<u64>>,
    history: Option<ListState<i64>>,
    seen: Option<MapState<i64, u32>>,
    max: Option<ReducingState<i64>>,
}

impl RichFunction for Profile {
    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> Result<(), BoxError> {
        self.count = Some(ctx.get_state(&ValueStateDescriptor::new("count"))?);
        self.history = Some(ctx.get_list_state(&ListStateDescriptor::new("history"))?);
        self.seen = Some(ctx.get_map_state(&MapStateDescriptor::new("seen"))?);
        self.max = Some(ctx.get_reducing_state(&ReducingStateDescriptor::new("max", |a: i64, b: i64| a.max(b)))?);
        Ok(())
    }
}

impl RichMapFunction<(String, i64), String> for Profile {
    fn map(&mut self, (key, value): (String, i64)) -> Result<String, BoxError> {
        let (Some(count), Some(history), Some(seen), Some(max)) = (&self.count, &self.history, &self.seen, &self.max)
        else {
            return Err("not opened".into());
        };
        let n = count.value()?.unwrap_or(0) + 1;
        count.update(n)?;
        history.add(value)?;
        let times = seen.get(&value)?.unwrap_or(0) + 1;
        seen.put(value, times)?;
        max.add(value)?;
        Ok(format!("{key}:{n}:{}:{}:{}", history.get()?.len(), seen.entries()?.len(), max.get()?.unwrap_or_default()))
    }
}

#[test]
fn keyed_state_in_rich_functions_matches_a_sequential_model() {
    let input: Vec<(String, i64)> = (0..2000).map(|i| (format!("k{}", i % 17), (i * 7919) % 23)).collect();
    // The model: records of one key arrive in order (one source subtask, then key partitioning).
    let mut model: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut per_key: BTreeMap<String, (u64, Vec<i64>)> = BTreeMap::new();
    for (k, v) in &input {
        let entry = per_key.entry(k.clone()).or_default();
        entry.0 += 1;
        entry.1.push(*v);
        let mut distinct = entry.1.clone();
        distinct.sort();
        distinct.dedup();
        let line = format!("{k}:{}:{}:{}:{}", entry.0, entry.1.len(), distinct.len(), entry.1.iter().max().unwrap());
        model.entry(k.clone()).or_default().push(line);
    }
    for backend in backends() {
        let env = StreamExecutionEnvironment::create_local_environment(3);
        env.set_state_backend(backend.clone());
        let out = env
            .from_collection(input.clone())
            .key_by(|t: &(String, i64)| t.0.clone())
            .rich_map(Profile::default())
            .execute_and_collect("state")
            .unwrap();
        let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in out {
            got.entry(line.split(':').next().unwrap().to_string()).or_default().push(line);
        }
        assert_eq!(got, model, "{backend:?}");
    }
}

#[derive(Clone)]
struct NotKeyed;
impl RichFunction for NotKeyed {
    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> Result<(), BoxError> {
        ctx.get_state(&ValueStateDescriptor::<i64>::new("orphan"))?;
        Ok(())
    }
}
impl RichMapFunction<i64, i64> for NotKeyed {
    fn map(&mut self, v: i64) -> Result<i64, BoxError> {
        Ok(v)
    }
}

#[test]
fn keyed_state_outside_a_keyed_stream_is_a_clear_error() {
    let env = StreamExecutionEnvironment::create_local_environment(1);
    env.from_sequence(1, 3).rich_map(NotKeyed).name("plain map").print();
    let err = env.execute("not keyed").unwrap_err().to_string();
    assert!(err.contains("plain map") && err.contains("'orphan'") && err.contains("KeyedStream"), "{err}");
}

#[test]
fn results_are_identical_with_either_backend() {
    let run = |backend: &StateBackendConfig, mode| {
        let env = StreamExecutionEnvironment::create_local_environment(2);
        env.set_state_backend(backend.clone()).set_runtime_mode(mode);
        let mut out = env
            // One source subtask: each key's records arrive in one order, so running sums match.
            .from_collection((1..=5000i64).map(|x| (format!("key-{}", x % 101), x)).collect::<Vec<_>>())
            .key_by_field(|t: &(String, i64)| &t.0)
            .sum(|t: &mut (String, i64)| &mut t.1)
            .execute_and_collect("sum")
            .unwrap();
        out.sort();
        out
    };
    for mode in [RuntimeExecutionMode::Streaming, RuntimeExecutionMode::Batch] {
        let results: Vec<_> = backends().iter().map(|b| run(b, mode)).collect();
        assert!(results.windows(2).all(|w| w[0] == w[1]), "{mode:?}");
        assert_eq!(results[0].len(), if mode == RuntimeExecutionMode::Batch { 101 } else { 5000 });
    }
}

#[derive(Clone, Default)]
struct Buffering {
    buffer: Vec<i64>,
    state: Option<ListState<i64>>,
    restored: Option<bool>,
}

impl RichFunction for Buffering {
    fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext<'_>) -> Result<(), BoxError> {
        let state = ctx.get_list_state(&ListStateDescriptor::new("buffer"))?;
        self.buffer = state.get()?;
        self.restored = Some(ctx.is_restored());
        self.state = Some(state);
        Ok(())
    }

    fn snapshot_state(&mut self, _: &FunctionSnapshotContext) -> Result<(), BoxError> {
        if let Some(state) = &self.state {
            state.update(self.buffer.clone())?;
        }
        Ok(())
    }
}

impl RichMapFunction<i64, String> for Buffering {
    fn map(&mut self, v: i64) -> Result<String, BoxError> {
        self.buffer.push(v);
        Ok(format!("{v}:{}:{:?}", self.buffer.len(), self.restored))
    }
}

#[test]
fn checkpointed_functions_initialize_operator_state() {
    let env = StreamExecutionEnvironment::create_local_environment(1);
    let out = env.from_sequence(1, 3).rich_map(Buffering::default()).execute_and_collect("buffering").unwrap();
    assert_eq!(out, vec!["1:1:Some(false)", "2:2:Some(false)", "3:3:Some(false)"]);
}

#[derive(Clone)]
struct ApplyRules;
impl RichFunction for ApplyRules {}

impl BroadcastProcessFunction<(String, i64), (String, i64), String, String, i64> for ApplyRules {
    fn process_element(
        &mut self,
        (key, value): (String, i64),
        ctx: &mut ReadOnlyBroadcastContext<'_, String, String, i64>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), BoxError> {
        let factor = ctx.get(&key)?;
        out.collect(format!("E {key} {value} {factor:?}"));
        Ok(())
    }

    fn process_broadcast_element(
        &mut self,
        (key, factor): (String, i64),
        ctx: &mut BroadcastContext<'_, String, String, i64>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), BoxError> {
        ctx.broadcast_state().put(key.clone(), factor)?;
        out.collect(format!("B {key} {}", ctx.broadcast_state().entries()?.len()));
        Ok(())
    }
}

#[test]
fn broadcast_state_reaches_every_subtask() {
    for keyed in [false, true] {
        let env = StreamExecutionEnvironment::create_local_environment(3);
        let rules = env
            .from_collection(vec![("a".to_string(), 2i64), ("b".to_string(), 3)])
            .broadcast_with(MapStateDescriptor::<String, i64>::new("rules"));
        let elements = env
            .from_collection((0..30).map(|i| (if i % 2 == 0 { "a" } else { "c" }.to_string(), i)).collect::<Vec<_>>());
        let connected = if keyed {
            elements.key_by(|t: &(String, i64)| t.0.clone()).connect_broadcast(&rules)
        } else {
            elements.connect_broadcast(&rules)
        };
        let out = connected.process(ApplyRules).execute_and_collect("broadcast").unwrap();
        let broadcast_lines = out.iter().filter(|l| l.starts_with("B ")).count();
        assert_eq!(broadcast_lines, 2 * 3, "every subtask sees every rule (keyed: {keyed})");
        let elements_out: Vec<&String> = out.iter().filter(|l| l.starts_with("E ")).collect();
        assert_eq!(elements_out.len(), 30);
        assert!(elements_out.iter().filter(|l| l.starts_with("E c")).all(|l| l.ends_with("None")), "no rule for c");
        assert!(
            elements_out.iter().filter(|l| l.starts_with("E a")).all(|l| l.ends_with("None") || l.ends_with("Some(2)"))
        );
    }
}

#[test]
fn queryable_state_reads_a_running_job() {
    for backend in backends() {
        let env = StreamExecutionEnvironment::create_local_environment(2);
        env.set_state_backend(backend.clone());
        let processed = Arc::new(AtomicU64::new(0));
        let p = processed.clone();
        env.from_source(
            DataGeneratorSource::unbounded(|i| (i % 10, 1i64)).with_rate_limit(20_000.0),
            WatermarkStrategy::no_watermarks(),
            "numbers",
        )
        .key_by(|t: &(u64, i64)| t.0)
        .sum(|t: &mut (u64, i64)| &mut t.1)
        .for_each(move |_| {
            p.fetch_add(1, Ordering::Relaxed);
        });
        let client = env.execute_async("queryable").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut value = None;
        while Instant::now() < deadline {
            value = client.query_state::<u64, (u64, i64)>("reduce", &3).unwrap();
            if value.is_some_and(|(_, count)| count >= 10) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (key, count) = value.unwrap_or_else(|| panic!("{backend:?}: no state for key 3"));
        assert_eq!(key, 3);
        assert!(count >= 10 && count as u64 <= processed.load(Ordering::Relaxed) + 10, "{backend:?}: count {count}");
        assert_eq!(client.query_state::<u64, (u64, i64)>("reduce", &12345).unwrap(), None, "absent key");
        assert_eq!(client.query_state::<u64, (u64, i64)>("no-such-state", &3).unwrap(), None);
        client.cancel();
        assert!(client.wait().is_err());
    }
}

#[test]
fn state_backend_configuration_errors_are_clear() {
    let bad = Configuration::from_yaml_str("state.backend: filesystem").unwrap();
    let err = StreamExecutionEnvironment::from_configuration(&bad).err().unwrap().to_string();
    assert!(err.contains("unknown state backend 'filesystem'") && err.contains("hashmap"), "{err}");
    let rocks = Configuration::from_yaml_str("state.backend: rocksdb").unwrap();
    let result = StreamExecutionEnvironment::from_configuration(&rocks);
    if StateBackendConfig::ROCKSDB_AVAILABLE {
        assert_eq!(result.ok().map(|env| env.get_state_backend().kind), Some(StateBackendKind::RocksDb));
    } else {
        let err = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("--features rocksdb"), "{err}");
    }
}

/// RocksDB keeps working when its state is several times larger than its memory budget:
/// 1 M keys with 64-byte values (about 80 MB of state) under a 32 MB cap for the job. The same
/// test runs the example, 20 M keys under 256 MB, with `BRISK_LARGE_STATE_KEYS=20000000
/// BRISK_LARGE_STATE_MEMORY=128mb` (see BENCHMARKS.md for that run).
#[cfg(feature = "rocksdb")]
#[test]
fn rocksdb_state_larger_than_memory_completes_correctly() {
    let keys: i64 = std::env::var("BRISK_LARGE_STATE_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let memory = std::env::var("BRISK_LARGE_STATE_MEMORY").unwrap_or_else(|_| "16mb".into());
    let dir = common::temp_dir("rocksdb-large");
    let mut config = Configuration::new();
    config.set("parallelism.default", 2);
    config.set("execution.runtime-mode", "batch");
    config.set("state.backend", "rocksdb");
    config.set("state.backend.rocksdb.localdir", dir.display());
    // Per keyed subtask: two of them share the job's cap.
    config.set("state.backend.rocksdb.memory.fixed-per-slot", memory);
    let env = StreamExecutionEnvironment::from_configuration(&config).unwrap();
    let (count, sum, payload_ok) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (c, s, p) = (count.clone(), sum.clone(), payload_ok.clone());
    // A value that barely compresses, derived from the key so it can be checked.
    let payload = |key: i64| -> String {
        (0..4).map(|i| format!("{:016x}", brisk::core::hash::fmix64(key as u64 * 4 + i))).collect()
    };
    // Every key twice: the second record must find the first in RocksDB.
    env.from_sequence(0, 2 * keys - 1)
        .map(move |x| (x % keys, 1i64, payload(x % keys)))
        .key_by_field(|t: &(i64, i64, String)| &t.0)
        .sum(|t: &mut (i64, i64, String)| &mut t.1)
        .for_each(move |(key, n, value)| {
            c.fetch_add(1, Ordering::Relaxed);
            s.fetch_add(n as u64, Ordering::Relaxed);
            if value == payload(key) {
                p.fetch_add(1, Ordering::Relaxed);
            }
        });
    env.execute("large state").unwrap();
    assert_eq!(count.load(Ordering::Relaxed), keys as u64, "one final value per key");
    assert_eq!(sum.load(Ordering::Relaxed), 2 * keys as u64, "every key counted twice");
    assert_eq!(payload_ok.load(Ordering::Relaxed), keys as u64, "values read back intact");
}
