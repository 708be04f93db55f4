//! Keyed, operator and broadcast state end to end, with each available backend; queryable
//! state of a running job; backend configuration errors.

mod common;

use brisk::prelude::*;
use common::wait_until;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The backends built in: RocksDB only with the `rocksdb` feature, decided at compile time so
/// that no run ever reports RocksDB while using the heap.
fn backends() -> Vec<StateBackendConfig> {
    vec![
        StateBackendConfig::default(),
        #[cfg(feature = "rocksdb")]
        StateBackendConfig { kind: StateBackendKind::RocksDb, ..StateBackendConfig::default() },
    ]
}

/// `v` in ascending order.
fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
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
    let input: Vec<(String, i64)> = (1..=5000i64).map(|x| (format!("key-{}", x % 101), x)).collect();
    // The reference: every running sum per key in input order (streaming), and each key's total
    // (batch), computed sequentially here. One source subtask delivers each key's records in
    // input order, so the streaming job's running sums are exactly these.
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    let running: Vec<(String, i64)> = input
        .iter()
        .map(|(key, x)| {
            let total = totals.entry(key.clone()).or_default();
            *total += x;
            (key.clone(), *total)
        })
        .collect();
    let run = |backend: &StateBackendConfig, mode| {
        let env = StreamExecutionEnvironment::create_local_environment(2);
        env.set_state_backend(backend.clone()).set_runtime_mode(mode);
        let out = env
            .from_collection(input.clone())
            .key_by_field(|t: &(String, i64)| &t.0)
            .sum(|t: &mut (String, i64)| &mut t.1)
            .execute_and_collect("sum")
            .unwrap();
        sorted(out)
    };
    let streaming = sorted(running);
    let batch: Vec<(String, i64)> = totals.into_iter().collect();
    assert_eq!((streaming.len(), batch.len()), (5000, 101));
    for backend in backends() {
        assert_eq!(run(&backend, RuntimeExecutionMode::Streaming), streaming, "{backend:?}");
        assert_eq!(run(&backend, RuntimeExecutionMode::Batch), batch, "{backend:?}");
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

/// Applies broadcast rules (a factor per key) to elements. Counts, for the test's gates, the
/// subtasks that hold all `rules` and the elements processed.
#[derive(Clone)]
struct ApplyRules {
    rules: usize,
    subtasks_with_all_rules: Arc<AtomicUsize>,
    elements_processed: Arc<AtomicUsize>,
}

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
        self.elements_processed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn process_broadcast_element(
        &mut self,
        (key, factor): (String, i64),
        ctx: &mut BroadcastContext<'_, String, String, i64>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), BoxError> {
        ctx.broadcast_state().put(key.clone(), factor)?;
        let rules = ctx.broadcast_state().entries()?.len();
        out.collect(format!("B {key} {rules}"));
        if rules == self.rules {
            self.subtasks_with_all_rules.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[test]
fn broadcast_state_reaches_every_subtask() {
    const PARALLELISM: usize = 3;
    let rules = vec![("a".to_string(), 2i64), ("b".to_string(), 3)];
    let elements: Vec<(String, i64)> = (0..30).map(|i| (if i % 2 == 0 { "a" } else { "c" }.to_string(), i)).collect();
    // The order between the broadcast input and the element input is not defined (as in
    // Flink), so each case holds one input back until the other has fully arrived: then every
    // line of the output is known.
    for keyed in [false, true] {
        for rules_first in [true, false] {
            let function = ApplyRules {
                rules: rules.len(),
                subtasks_with_all_rules: Arc::default(),
                elements_processed: Arc::default(),
            };
            let (ready, processed) = (function.subtasks_with_all_rules.clone(), function.elements_processed.clone());
            let element_count = elements.len();
            let env = StreamExecutionEnvironment::create_local_environment(PARALLELISM);
            // One gate subtask per input keeps each input in its order.
            let rule_stream = env
                .from_collection(rules.clone())
                .map(move |rule| {
                    if !rules_first {
                        wait_until("every element", || processed.load(Ordering::SeqCst) == element_count);
                    }
                    rule
                })
                .set_parallelism(1)
                .broadcast_with(MapStateDescriptor::<String, i64>::new("rules"));
            let element_stream = env
                .from_collection(elements.clone())
                .map(move |element| {
                    if rules_first {
                        wait_until("all rules in every subtask", || ready.load(Ordering::SeqCst) == PARALLELISM);
                    }
                    element
                })
                .set_parallelism(1);
            let connected = if keyed {
                element_stream.key_by(|t: &(String, i64)| t.0.clone()).connect_broadcast(&rule_stream)
            } else {
                element_stream.connect_broadcast(&rule_stream)
            };
            let out = connected.process(function).execute_and_collect("broadcast").unwrap();
            // Every subtask stores every rule, in the rules' order; each element sees its
            // key's factor exactly when the rules came first (there is never a rule for c).
            let mut expected: Vec<String> =
                (0..PARALLELISM).flat_map(|_| ["B a 1".to_string(), "B b 2".to_string()]).collect();
            for (key, value) in &elements {
                let factor = rules.iter().find(|(k, _)| k == key).map(|(_, f)| *f).filter(|_| rules_first);
                expected.push(format!("E {key} {value} {factor:?}"));
            }
            assert_eq!(sorted(out), sorted(expected), "keyed: {keyed}, rules first: {rules_first}");
        }
    }
}

#[test]
fn queryable_state_reads_a_running_job() {
    for backend in backends() {
        let env = StreamExecutionEnvironment::create_local_environment(2);
        env.set_state_backend(backend.clone());
        // Every running count of key 3 the job emitted, in order: one subtask owns the key.
        let emitted: Arc<Mutex<Vec<i64>>> = Arc::default();
        let sink = emitted.clone();
        env.from_source(
            DataGeneratorSource::unbounded(|i| (i % 10, 1i64)).with_rate_limit(20_000.0),
            WatermarkStrategy::no_watermarks(),
            "numbers",
        )
        .key_by(|t: &(u64, i64)| t.0)
        .sum(|t: &mut (u64, i64)| &mut t.1)
        .for_each(move |(key, count)| {
            if key == 3 {
                sink.lock().unwrap().push(count);
            }
        });
        let client = env.execute_async("queryable").unwrap();
        let emitted_so_far = || emitted.lock().unwrap().clone();
        wait_until("key 3 to be counted 10 times", || emitted_so_far().len() >= 10);
        // The job is running, so the value read is not fixed. What is: the operator updates its
        // state before it emits the new value, so the value read is one the job emits (now or
        // soon) and is no older than the last value emitted before the query.
        let before = emitted_so_far().last().copied().unwrap_or_default();
        let value = client.query_state::<u64, (u64, i64)>("reduce", &3).unwrap();
        let (key, count) = value.unwrap_or_else(|| panic!("{backend:?}: no state for key 3"));
        assert_eq!(key, 3);
        wait_until("the value read to be emitted", || emitted_so_far().contains(&count));
        assert!(count >= before, "{backend:?}: read {count}, but {before} was emitted before the query");
        assert_eq!(client.query_state::<u64, (u64, i64)>("reduce", &12345).unwrap(), None, "absent key");
        assert_eq!(client.query_state::<u64, (u64, i64)>("no-such-state", &3).unwrap(), None);
        // The same state for people: the key as text, the value as JSON (REST's lookup).
        let json = client.query_state_json("reduce", "3").unwrap().unwrap_or_else(|| panic!("{backend:?}: no JSON"));
        let (key, count) = (json[0].as_u64(), json[1].as_i64().unwrap_or_default());
        assert_eq!(key, Some(3), "{backend:?}: {json}");
        assert!(count >= before, "{backend:?}: read {count} as JSON, but {before} was emitted before");
        wait_until("the JSON value to be emitted", || emitted_so_far().contains(&count));
        assert_eq!(client.query_state_json("reduce", "12345").unwrap(), None, "absent key");
        let error = client.query_state_json("reduce", "three").unwrap_err().to_string();
        assert!(error.contains("'three' is not a key of type u64"), "{error}");
        client.cancel();
        assert!(client.wait().is_err());
        let emitted = emitted_so_far();
        assert_eq!(emitted, (1..=emitted.len() as i64).collect::<Vec<_>>(), "{backend:?}: key 3's running counts");
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

/// Set in the child process that runs the large-state job on its own.
#[cfg(feature = "rocksdb")]
const LARGE_STATE_CHILD: &str = "BRISK_LARGE_STATE_CHILD";

/// RocksDB keeps working, and within its memory budget, when its state is several times larger
/// than that budget: 1 M keys with 64-byte values (about 80 MB of state) under a 32 MB cap for
/// the job. The same test runs the example, 20 M keys under 256 MB, with
/// `BRISK_LARGE_STATE_KEYS=20000000 BRISK_LARGE_STATE_MEMORY=128mb` (see BENCHMARKS.md for that
/// run).
///
/// Resident memory is per process and the other tests run in threads of this one, so the job
/// runs in a child process: this test binary again, running only this test, which reports its
/// peak resident set size.
#[cfg(feature = "rocksdb")]
#[test]
fn rocksdb_state_larger_than_memory_completes_correctly() {
    let keys: i64 = std::env::var("BRISK_LARGE_STATE_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let memory = std::env::var("BRISK_LARGE_STATE_MEMORY").unwrap_or_else(|_| "16mb".into());
    if std::env::var_os(LARGE_STATE_CHILD).is_some() {
        large_state_job(keys, &memory);
        println!("peak resident: {} KiB", peak_resident_kib());
        return;
    }
    let test = "rocksdb_state_larger_than_memory_completes_correctly";
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--test-threads", "1", "--nocapture"])
        .env(LARGE_STATE_CHILD, "1")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the job's process failed:\n{stdout}\n{stderr}");
    // Anywhere in the output: libtest prints the test's name on the same line.
    let peak_kib: usize = stdout
        .split_once("peak resident: ")
        .and_then(|(_, rest)| rest.split_once(" KiB")?.0.parse().ok())
        .unwrap_or_else(|| panic!("no peak resident size reported:\n{stdout}\n{stderr}"));
    let cap_mib = 2 * brisk::core::config::parse_memory_size(&memory).unwrap() / (1 << 20);
    // RocksDB's budget, half again for what it does not charge to it (table readers, flush
    // and compaction buffers, allocator slack), and 32 MiB for the rest of the process (the
    // binary, the job's threads and network buffers). Measured for this job (1 M keys, dev
    // profile): peak 63 MiB under the 32 MiB cap (bound 80 MiB); 43 MiB under 2 x 8 MiB,
    // 94 MiB under 2 x 32 MiB; uncapped, with all state in memory: 191 MiB with RocksDB at
    // 2 x 1 GiB and 233 MiB with the heap backend, both far above the bound.
    let bound_mib = cap_mib + cap_mib / 2 + 32;
    let peak_mib = peak_kib / 1024;
    println!("peak resident: {peak_mib} MiB under a {cap_mib} MiB cap (bound {bound_mib} MiB)");
    assert!(peak_mib < bound_mib, "peak resident {peak_mib} MiB, bound {bound_mib} MiB for a {cap_mib} MiB cap");
}

/// The peak resident set size of this process (`VmHWM`), in KiB.
#[cfg(feature = "rocksdb")]
fn peak_resident_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/self/status:\n{status}"))
}

/// Writes every one of `keys` keys twice through a keyed sum with RocksDB state capped at
/// `memory` per keyed subtask, and checks every final value.
#[cfg(feature = "rocksdb")]
fn large_state_job(keys: i64, memory: &str) {
    use std::sync::atomic::AtomicU64;
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
    let _ = std::fs::remove_dir_all(dir);
}
