//! Property tests against simple sequential models: keyed reduction, union and connect, and
//! bounded memory under backpressure, for random inputs, parallelism and chaining.

use brisk::prelude::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// How a random job is laid out.
#[derive(Clone, Debug)]
struct Layout {
    map_parallelism: usize,
    reduce_parallelism: usize,
    chaining: bool,
    split_map_chain: bool,
    max_parallelism: usize,
}

fn layout() -> impl Strategy<Value = Layout> {
    (1usize..=4, 1usize..=4, any::<bool>(), any::<bool>(), prop_oneof![Just(4usize), Just(128), Just(1000)]).prop_map(
        |(map_parallelism, reduce_parallelism, chaining, split_map_chain, max_parallelism)| Layout {
            map_parallelism,
            reduce_parallelism,
            chaining,
            split_map_chain,
            max_parallelism,
        },
    )
}

fn env_for(layout: &Layout, mode: RuntimeExecutionMode) -> StreamExecutionEnvironment {
    let env = StreamExecutionEnvironment::create_local_environment(layout.map_parallelism);
    env.set_runtime_mode(mode).set_max_parallelism(layout.max_parallelism);
    if !layout.chaining {
        env.disable_operator_chaining();
    }
    env
}

fn keyed_sums(records: &[(u8, i64)], layout: &Layout, mode: RuntimeExecutionMode) -> Vec<(u8, i64)> {
    let env = env_for(layout, mode);
    let mapped = env.from_collection(records.to_vec()).rebalance().map(|(k, v): (u8, i64)| (k, v * 3));
    let mapped =
        if layout.split_map_chain { mapped.filter(|_| true).start_new_chain() } else { mapped.filter(|_| true) };
    mapped
        .key_by(|(k, _): &(u8, i64)| *k)
        .reduce(|(k, a), (_, b)| (k, a + b))
        .set_parallelism(layout.reduce_parallelism)
        .execute_and_collect("keyed sums")
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Streaming: per key, the emitted values are the running sums of that key's values in
    /// some order: as many as inputs, ending at the total, each step adding one input.
    /// Batch: exactly one value per key, the total. Both equal a sequential fold.
    #[test]
    fn keyed_reduce_equals_sequential_fold(records in prop::collection::vec((0u8..12, -1000i64..1000), 0..400), layout in layout()) {
        let mut model: BTreeMap<u8, Vec<i64>> = BTreeMap::new();
        for (k, v) in &records {
            model.entry(*k).or_default().push(v * 3);
        }

        let batch = keyed_sums(&records, &layout, RuntimeExecutionMode::Batch);
        let batch: BTreeMap<u8, i64> = batch.into_iter().collect();
        let totals: BTreeMap<u8, i64> = model.iter().map(|(k, vs)| (*k, vs.iter().sum())).collect();
        prop_assert_eq!(&batch, &totals);

        let streaming = keyed_sums(&records, &layout, RuntimeExecutionMode::Streaming);
        let mut per_key: HashMap<u8, Vec<i64>> = HashMap::new();
        for (k, v) in streaming {
            per_key.entry(k).or_default().push(v);
        }
        prop_assert_eq!(per_key.len(), model.len());
        for (k, inputs) in &model {
            let outputs = &per_key[k];
            prop_assert_eq!(outputs.len(), inputs.len());
            let mut steps: Vec<i64> = outputs.iter().scan(0, |prev, v| { let d = v - *prev; *prev = *v; Some(d) }).collect();
            let mut expected = inputs.clone();
            steps.sort();
            expected.sort();
            prop_assert_eq!(steps, expected);
            prop_assert_eq!(*outputs.last().unwrap(), totals[k]);
        }
    }

    /// A union of streams holds every record of every input exactly once.
    #[test]
    fn union_loses_and_duplicates_nothing(
        a in prop::collection::vec(any::<i32>(), 0..200),
        b in prop::collection::vec(any::<i32>(), 0..200),
        c_len in 0i64..300,
        layout in layout(),
    ) {
        let env = env_for(&layout, RuntimeExecutionMode::Streaming);
        let sa = env.from_collection(a.clone()).map(|x: i32| x as i64);
        let sb = env.from_collection(b.clone()).rebalance().map(|x: i32| x as i64).set_parallelism(layout.reduce_parallelism);
        let sc = env.from_sequence(1, c_len).map(|x| x + (1i64 << 40));
        let mut got = sa.union(&sb).union(&sc).shuffle().filter(|_| true).execute_and_collect("union").unwrap();
        let mut expected: Vec<i64> = a.iter().chain(&b).map(|x| *x as i64).chain((1..=c_len).map(|x| x + (1i64 << 40))).collect();
        got.sort();
        expected.sort();
        prop_assert_eq!(got, expected);
    }

    /// Connected streams deliver every record of both inputs exactly once, to the right side.
    #[test]
    fn connect_loses_and_duplicates_nothing(
        left in prop::collection::vec(any::<u16>(), 0..200),
        right in prop::collection::vec("[a-z]{0,6}", 0..200),
        layout in layout(),
        keyed in any::<bool>(),
    ) {
        let env = env_for(&layout, RuntimeExecutionMode::Streaming);
        let l = env.from_collection(left.clone());
        let r = env.from_collection(right.clone()).rebalance().map(|s: String| s).set_parallelism(layout.reduce_parallelism);
        let connected = if keyed {
            l.connect(&r).key_by(|x: &u16| (*x % 7) as usize, |s: &String| s.len())
        } else {
            l.connect(&r)
        };
        let mut got = connected
            .flat_map(
                |x: u16, out: &mut Collector<'_, String>| out.collect(format!("L{x}")),
                |s: String, out: &mut Collector<'_, String>| out.collect(format!("R{s}")),
            )
            .execute_and_collect("connect")
            .unwrap();
        let mut expected: Vec<String> = left.iter().map(|x| format!("L{x}")).chain(right.iter().map(|s| format!("R{s}"))).collect();
        got.sort();
        expected.sort();
        prop_assert_eq!(got, expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// A fast source feeding a slow sink stays at most a few buffers ahead: backpressure
    /// bounds the records in flight by the channel capacity, never by the input size.
    #[test]
    fn backpressure_bounds_records_in_flight(parallelism in 1usize..=3, buffers_per_channel in 1usize..=4, chained_map in any::<bool>()) {
        const RECORDS: i64 = 60_000;
        let emitted = Arc::new(AtomicU64::new(0));
        let consumed = Arc::new(AtomicU64::new(0));
        let max_ahead = Arc::new(AtomicI64::new(0));

        let mut config = Configuration::new();
        config.set("taskmanager.memory.segment-size", "1kb");
        config.set("taskmanager.network.memory.buffers-per-channel", buffers_per_channel);
        config.set("parallelism.default", parallelism);
        let env = StreamExecutionEnvironment::from_configuration(&config).unwrap();
        let e = emitted.clone();
        let counted = env.from_sequence(1, RECORDS).map(move |x| {
            e.fetch_add(1, Ordering::Relaxed);
            x
        });
        let counted = if chained_map { counted } else { counted.disable_chaining() };
        let (c, e, m) = (consumed.clone(), emitted.clone(), max_ahead.clone());
        counted.rebalance().for_each(move |_| {
            let done = c.fetch_add(1, Ordering::Relaxed) + 1;
            let ahead = e.load(Ordering::Relaxed) as i64 - done as i64;
            m.fetch_max(ahead, Ordering::Relaxed);
            if done % 64 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }).set_parallelism(1);
        env.execute("backpressure").unwrap();

        prop_assert_eq!(consumed.load(Ordering::Relaxed), RECORDS as u64);
        // Per producer: its full channels, one buffer being sent, one being filled, and one
        // source poll; plus any chained-map hop (another channel's worth).
        let records_per_buffer = 1024 / std::mem::size_of::<brisk::core::StreamRecord<i64>>();
        let per_producer = (buffers_per_channel + 2) * records_per_buffer * 2 + 1024;
        let bound = (parallelism * per_producer) as i64;
        let ahead = max_ahead.load(Ordering::Relaxed);
        prop_assert!(ahead <= bound, "source ran {} records ahead, bound {}", ahead, bound);
        prop_assert!(bound < RECORDS / 2, "the bound must be far below the input size to mean anything");
    }
}

/// A window kind and its parameters (ms), for the event-time window property.
#[derive(Clone, Copy, Debug)]
enum WindowKind {
    Tumbling(i64),
    Sliding(i64, i64),
    Session(i64),
}

/// `(key, window start, window end, sum, count)`.
type WindowRow = (u8, i64, i64, i64, u64);

fn window_kind() -> impl Strategy<Value = WindowKind> {
    prop_oneof![
        (1i64..60).prop_map(WindowKind::Tumbling),
        (1i64..8, 1i64..40).prop_map(|(n, slide)| WindowKind::Sliding(slide * n, slide)),
        (1i64..30).prop_map(WindowKind::Session),
    ]
}

/// The state backends built in: RocksDB only with the `rocksdb` feature, decided at compile
/// time so that no case reports RocksDB while running on the heap.
fn backend_kind() -> impl Strategy<Value = StateBackendKind> {
    prop::sample::select(vec![
        StateBackendKind::HashMap,
        #[cfg(feature = "rocksdb")]
        StateBackendKind::RocksDb,
    ])
}

/// Events with timestamps at most `bound` behind the highest timestamp before them.
fn disordered_events(bound: i64) -> impl Strategy<Value = Vec<(u8, i64, i64)>> {
    prop::collection::vec((0u8..6, 0i64..=bound, 0i64..4, -50i64..50), 0..300).prop_map(move |raw| {
        let mut base = 0;
        raw.into_iter()
            .map(|(key, jitter, step, value)| {
                base += step;
                (key, base + jitter, value)
            })
            .collect()
    })
}

/// The sequential model: sort each key's events by time and cut them into windows.
fn reference_windows(events: &[(u8, i64, i64)], kind: WindowKind) -> Vec<WindowRow> {
    let mut per_key: BTreeMap<u8, Vec<(i64, i64)>> = BTreeMap::new();
    for &(k, ts, v) in events {
        per_key.entry(k).or_default().push((ts, v));
    }
    let mut windows: BTreeMap<(u8, i64, i64), (i64, u64)> = BTreeMap::new();
    for (k, mut list) in per_key {
        list.sort();
        let mut add = |start: i64, end: i64, v: i64| {
            let w = windows.entry((k, start, end)).or_default();
            w.0 += v;
            w.1 += 1;
        };
        match kind {
            WindowKind::Tumbling(size) => {
                list.iter().for_each(|&(ts, v)| add(ts - ts.rem_euclid(size), ts - ts.rem_euclid(size) + size, v))
            }
            WindowKind::Sliding(size, slide) => {
                for &(ts, v) in &list {
                    let mut start = ts - ts.rem_euclid(slide);
                    while start > ts - size {
                        add(start, start + size, v);
                        start -= slide;
                    }
                }
            }
            WindowKind::Session(gap) => {
                let mut session: Option<(i64, i64, Vec<i64>)> = None;
                for &(ts, v) in &list {
                    session = match session {
                        Some((start, end, mut values)) if ts <= end => {
                            values.push(v);
                            Some((start, end.max(ts + gap), values))
                        }
                        Some((start, end, values)) => {
                            values.iter().for_each(|&v| add(start, end, v));
                            Some((ts, ts + gap, vec![v]))
                        }
                        None => Some((ts, ts + gap, vec![v])),
                    };
                }
                if let Some((start, end, values)) = session {
                    values.iter().for_each(|&v| add(start, end, v));
                }
            }
        }
    }
    windows.into_iter().map(|((k, s, e), (sum, count))| (k, s, e, sum, count)).collect()
}

#[derive(Clone)]
struct SumCount;

impl AggregateFunction<(u8, i64, i64), (i64, u64), (i64, u64)> for SumCount {
    fn create_accumulator(&self) -> (i64, u64) {
        (0, 0)
    }
    fn add(&self, value: (u8, i64, i64), acc: (i64, u64)) -> (i64, u64) {
        (acc.0 + value.2, acc.1 + 1)
    }
    fn get_result(&self, acc: &(i64, u64)) -> (i64, u64) {
        *acc
    }
    fn merge(&self, a: (i64, u64), b: (i64, u64)) -> (i64, u64) {
        (a.0 + b.0, a.1 + b.1)
    }
}

fn windowed_job(
    events: &[(u8, i64, i64)],
    kind: WindowKind,
    bound: i64,
    parallelism: usize,
    incremental: bool,
    backend: StateBackendKind,
) -> Vec<WindowRow> {
    let env = StreamExecutionEnvironment::create_local_environment(parallelism);
    // Heap state keeps incremental windows in memory panes; RocksDB takes the generic path.
    env.set_state_backend(StateBackendConfig { kind: backend, ..StateBackendConfig::default() });
    env.set_auto_watermark_interval(Duration::from_millis(1));
    let strategy = WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(bound as u64))
        .with_timestamp_assigner(|e: &(u8, i64, i64), _| e.1);
    let keyed = env
        .from_collection(events.to_vec())
        .rebalance()
        .assign_timestamps_and_watermarks(strategy)
        .key_by(|e: &(u8, i64, i64)| e.0);
    fn finish<A: WindowAssigner<(u8, i64, i64), W = TimeWindow>>(
        w: WindowedStream<(u8, i64, i64), u8, A>,
        incremental: bool,
    ) -> DataStream<WindowRow> {
        if incremental {
            w.aggregate_with(
                SumCount,
                brisk::windowing::functions::WindowFn(
                    |k: &u8, w: &TimeWindow, r: Vec<(i64, u64)>, out: &mut Collector<'_, WindowRow>| {
                        r.into_iter().for_each(|(sum, count)| out.collect((*k, w.start, w.end, sum, count)))
                    },
                ),
            )
        } else {
            w.apply(|k: &u8, w: &TimeWindow, els: Vec<(u8, i64, i64)>, out: &mut Collector<'_, WindowRow>| {
                out.collect((*k, w.start, w.end, els.iter().map(|e| e.2).sum(), els.len() as u64))
            })
        }
    }
    let ms = |n: i64| Duration::from_millis(n as u64);
    let out = match kind {
        WindowKind::Tumbling(size) => finish(keyed.window(TumblingEventTimeWindows::of(ms(size))), incremental),
        WindowKind::Sliding(size, slide) => {
            finish(keyed.window(SlidingEventTimeWindows::of(ms(size), ms(slide))), incremental)
        }
        WindowKind::Session(gap) => finish(keyed.window(EventTimeSessionWindows::with_gap(ms(gap))), incremental),
    };
    let mut rows = out.execute_and_collect("windows").expect("job runs");
    rows.sort();
    rows
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Event-time windows over disordered events (within the watermark bound) equal the
    /// sequential model that sorts by time, whatever the parallelism and window function.
    #[test]
    fn event_time_windows_equal_a_sorted_sequential_model(
        (bound, events) in (0i64..20).prop_flat_map(|bound| (Just(bound), disordered_events(bound))),
        kind in window_kind(),
        parallelism in 1usize..=4,
        incremental in any::<bool>(),
        backend in backend_kind(),
    ) {
        let expected = reference_windows(&events, kind);
        prop_assert_eq!(windowed_job(&events, kind, bound, parallelism, incremental, backend), expected);
    }
}
