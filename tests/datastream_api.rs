//! Behaviour of the DataStream API across crates: operators, partitioning, side outputs, rich
//! functions, accumulators, sources, sinks, failures and job validation.

mod common;

use brisk::TaskError;
use brisk::prelude::*;
use brisk::runtime::metrics::AccumulatorValue;
use common::{read_sorted_lines, temp_dir};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

fn env(parallelism: usize) -> StreamExecutionEnvironment {
    StreamExecutionEnvironment::create_local_environment(parallelism)
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn map_filter_flat_map_keep_every_record_once() {
    let e = env(3);
    let out = e
        .from_sequence(1, 1000)
        .map(|x| x * 2)
        .filter(|x| x % 3 != 0)
        .flat_map(|x: i64, out: &mut Collector<'_, i64>| {
            out.collect(x);
            out.collect(-x);
        })
        .execute_and_collect("ops")
        .unwrap();
    let expected: Vec<i64> = (1..=1000).map(|x| x * 2).filter(|x| x % 3 != 0).flat_map(|x| [x, -x]).collect();
    assert_eq!(sorted(out), sorted(expected));
}

#[test]
fn from_collection_keeps_order_and_is_not_parallel() {
    let e = env(4);
    let values: Vec<String> = (0..3000).map(|i| format!("v{i}")).collect();
    assert_eq!(e.from_collection(values.clone()).execute_and_collect("order").unwrap(), values);
    let e = env(1);
    e.from_collection(vec![1, 2]).set_parallelism(2).print();
    let err = e.execute("bad").unwrap_err().to_string();
    assert!(err.contains("not parallel") && err.contains("Collection Source"), "{err}");
}

#[test]
fn aggregations_follow_flink_semantics() {
    type Row = (String, i32, i32);
    let data = [("a", 3, 10), ("b", 5, 1), ("a", 1, 20), ("a", 7, 30), ("b", 5, 2), ("a", 1, 40)];
    let run = |f: &dyn Fn(&KeyedStream<Row, String>) -> DataStream<Row>| {
        let e = env(2);
        e.set_runtime_mode(RuntimeExecutionMode::Batch);
        let keyed = e
            .from_collection(data.iter().map(|(k, a, b)| (k.to_string(), *a, *b)).collect())
            .key_by(|t: &(String, i32, i32)| t.0.clone());
        sorted(f(&keyed).execute_and_collect("agg").unwrap())
    };
    let t = |k: &str, a, b| (k.to_string(), a, b);
    assert_eq!(run(&|k| k.sum(|t| &mut t.1)), vec![t("a", 12, 10), t("b", 10, 1)]);
    assert_eq!(
        run(&|k| k.min(|t| &mut t.1)),
        vec![t("a", 1, 10), t("b", 5, 1)],
        "min keeps the first record's other fields"
    );
    assert_eq!(run(&|k| k.max(|t| &mut t.1)), vec![t("a", 7, 10), t("b", 5, 1)]);
    assert_eq!(
        run(&|k| k.min_by(|t| &mut t.1)),
        vec![t("a", 1, 20), t("b", 5, 1)],
        "min_by keeps the first minimal record"
    );
    assert_eq!(run(&|k| k.max_by(|t| &mut t.1)), vec![t("a", 7, 30), t("b", 5, 1)]);
}

#[test]
fn streaming_reduce_emits_running_values_in_order() {
    let e = env(2);
    let out = e
        .from_collection(vec![("x".to_string(), 1), ("y".into(), 10), ("x".into(), 2), ("x".into(), 3)])
        .key_by(|t: &(String, i32)| t.0.clone())
        .reduce(|a, b| (a.0, a.1 + b.1))
        .execute_and_collect("running")
        .unwrap();
    let of = |key: &str| out.iter().filter(|t| t.0 == key).map(|t| t.1).collect::<Vec<i32>>();
    assert_eq!(of("x"), vec![1, 3, 6]);
    assert_eq!(of("y"), vec![10]);
}

#[derive(Clone)]
struct SplitEvens {
    odd: OutputTag<String>,
}

impl RichFunction for SplitEvens {}

impl ProcessFunction<i64, i64> for SplitEvens {
    fn process_element(
        &mut self,
        value: i64,
        ctx: &mut ProcessContext<'_, i64>,
        out: &mut Collector<'_, i64>,
    ) -> Result<(), BoxError> {
        if value % 2 == 0 {
            out.collect(value);
        } else {
            ctx.output(&self.odd, format!("odd {value}"));
        }
        Ok(())
    }
}

#[test]
fn side_outputs_carry_typed_records() {
    let e = env(2);
    let odd = OutputTag::<String>::new("odd");
    let main = e.from_sequence(1, 10).process(SplitEvens { odd: odd.clone() });
    let odds = main.get_side_output(&odd).collect_async();
    let evens = main.collect_async();
    e.execute("side outputs").unwrap();
    assert_eq!(sorted(evens.take()), vec![2, 4, 6, 8, 10]);
    assert_eq!(sorted(odds.take()), vec!["odd 1", "odd 3", "odd 5", "odd 7", "odd 9"]);
}

#[test]
fn side_output_with_two_types_is_a_build_error() {
    let e = env(1);
    let s = e.from_sequence(1, 3);
    s.get_side_output(&OutputTag::<String>::new("t")).print();
    s.get_side_output(&OutputTag::<i64>::new("t")).print();
    let err = e.execute("clash").unwrap_err().to_string();
    assert!(err.contains("side output 't'"), "{err}");
}

#[derive(Clone, Default)]
struct Enrich {
    rates: BTreeMap<String, i64>,
}

impl RichFunction for Enrich {}

impl CoProcessFunction<(String, i64), (String, i64), String> for Enrich {
    fn process_element1(
        &mut self,
        order: (String, i64),
        _: &mut ProcessContext<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), BoxError> {
        let rate = self.rates.get(&order.0).copied().unwrap_or(0);
        out.collect(format!("{}:{}", order.0, order.1 * rate));
        Ok(())
    }
    fn process_element2(
        &mut self,
        rate: (String, i64),
        _: &mut ProcessContext<'_, String>,
        _: &mut Collector<'_, String>,
    ) -> Result<(), BoxError> {
        self.rates.insert(rate.0, rate.1);
        Ok(())
    }
}

#[test]
fn connected_streams_share_operator_state() {
    let e = env(2);
    let rates = e.from_collection(vec![("eur".to_string(), 2i64), ("usd".to_string(), 3)]);
    let got = e
        .from_collection(vec![("eur".to_string(), 10i64)])
        .connect(&rates)
        .key_by(|o: &(String, i64)| o.0.clone(), |r: &(String, i64)| r.0.clone())
        .process(Enrich::default())
        .execute_and_collect("enrich")
        .unwrap();
    // The order between the two inputs is not defined: the rate may or may not have arrived.
    assert!(got == vec!["eur:20".to_string()] || got == vec!["eur:0".to_string()], "{got:?}");
    let e = env(2);
    let mapped = e
        .from_collection(vec![1, 2])
        .connect(&e.from_collection(vec!["a".to_string()]))
        .map(|x: i32| x.to_string(), |s: String| s);
    assert_eq!(sorted(mapped.execute_and_collect("co-map").unwrap()), vec!["1", "2", "a"]);
}

#[derive(Clone, Default)]
struct TagWithSubtask {
    index: usize,
}

impl RichFunction for TagWithSubtask {
    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> Result<(), BoxError> {
        self.index = ctx.index_of_this_subtask();
        assert_eq!(ctx.number_of_parallel_subtasks(), 4);
        Ok(())
    }
}

impl RichMapFunction<i64, (usize, i64)> for TagWithSubtask {
    fn map(&mut self, value: i64) -> Result<(usize, i64), BoxError> {
        Ok((self.index, value))
    }
}

fn per_subtask_counts(stream: DataStream<i64>) -> BTreeMap<usize, usize> {
    let tagged = stream.rich_map(TagWithSubtask::default()).set_parallelism(4);
    let mut counts = BTreeMap::new();
    for (subtask, _) in tagged.execute_and_collect("partitioning").unwrap() {
        *counts.entry(subtask).or_insert(0) += 1;
    }
    counts
}

#[test]
fn partitioners_route_records_as_flink_does() {
    let e = env(2);
    assert_eq!(
        per_subtask_counts(e.from_sequence(1, 400).rebalance()),
        BTreeMap::from([(0, 100), (1, 100), (2, 100), (3, 100)])
    );
    let e = env(2);
    assert_eq!(
        per_subtask_counts(e.from_sequence(1, 10).broadcast()),
        BTreeMap::from([(0, 10), (1, 10), (2, 10), (3, 10)])
    );
    let e = env(2);
    assert_eq!(per_subtask_counts(e.from_sequence(1, 10).global()), BTreeMap::from([(0, 10)]));
    let e = env(2);
    assert_eq!(
        per_subtask_counts(e.from_sequence(1, 40).partition_custom(|k: &i64, n| (*k as usize) % n, |x| *x)),
        BTreeMap::from([(0, 10), (1, 10), (2, 10), (3, 10)])
    );
    let e = env(2);
    // Rescale from 2 to 4: each source subtask feeds its own two consumers, evenly.
    assert_eq!(
        per_subtask_counts(e.from_sequence(1, 400).rescale()),
        BTreeMap::from([(0, 100), (1, 100), (2, 100), (3, 100)])
    );
    let e = env(2);
    let shuffled = per_subtask_counts(e.from_sequence(1, 4000).shuffle());
    assert_eq!(shuffled.values().sum::<usize>(), 4000);
    assert!(shuffled.values().all(|&c| c > 800), "shuffle spreads records: {shuffled:?}");
}

#[test]
fn forward_across_different_parallelism_is_rejected() {
    let e = env(2);
    e.from_sequence(1, 10).forward().map(|x| x).set_parallelism(3).print();
    let err = e.execute("forward").unwrap_err().to_string();
    assert!(err.contains("forward partitioning does not allow a change of parallelism"), "{err}");
}

#[test]
fn job_validation_errors_are_clear() {
    let e = env(1);
    e.from_sequence(1, 2).map(|x| x).set_parallelism(0).print();
    assert!(e.execute("p0").unwrap_err().to_string().contains("parallelism must be at least 1"));
    let e = env(1);
    assert!(e.execute("empty").unwrap_err().to_string().contains("no operators defined"));
    let e = env(1);
    e.from_sequence(1, 2).union(&e.from_sequence(3, 4)).name("u").print();
    assert!(e.execute("union name").unwrap_err().to_string().contains("union"));
    let e = env(1);
    e.set_runtime_mode(RuntimeExecutionMode::Batch);
    e.from_source(DataGeneratorSource::unbounded(|i| i), WatermarkStrategy::no_watermarks(), "gen").print();
    assert!(e.execute("unbounded batch").unwrap_err().to_string().contains("BATCH"));
}

#[derive(Clone)]
struct Explode;
impl RichFunction for Explode {}
impl RichMapFunction<i64, i64> for Explode {
    fn map(&mut self, value: i64) -> Result<i64, BoxError> {
        if value == 500 { Err(format!("cannot handle record {value}").into()) } else { Ok(value) }
    }
}

#[test]
fn a_failing_user_function_fails_the_job_naming_the_operator() {
    let e = env(2);
    e.from_sequence(1, 1000).rich_map(Explode).name("exploder").print();
    let err = e.execute("failing").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("operator 'exploder' failed: cannot handle record 500"), "{msg}");
    assert!(matches!(err.task_error(), Some(TaskError::Operator { operator, .. }) if operator == "exploder"));
}

#[test]
fn a_panicking_user_function_fails_only_its_job() {
    let e = env(2);
    e.from_sequence(1, 1000)
        .map(|x| {
            if x == 700 {
                panic!("boom at {x}");
            }
            x
        })
        .name("panicky")
        .key_by(|x| x % 3)
        .reduce(|a, b| a + b)
        .add_sink(DiscardingSink);
    let msg = e.execute("panicking").unwrap_err().to_string();
    assert!(msg.contains("operator 'panicky' panicked: boom at 700"), "{msg}");
    // The process lives on and runs the next job.
    let e = env(2);
    assert_eq!(sorted(e.from_sequence(1, 3).execute_and_collect("after").unwrap()), vec![1, 2, 3]);
}

#[derive(Clone)]
struct CountingMap {
    counter: Option<brisk::runtime::metrics::AccumulatorHandle<LongCounter>>,
    max: Option<brisk::runtime::metrics::AccumulatorHandle<LongMaximum>>,
}

impl RichFunction for CountingMap {
    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> Result<(), BoxError> {
        self.counter = Some(ctx.add_accumulator("records", LongCounter::default()));
        self.max = Some(ctx.add_accumulator("max", LongMaximum::default()));
        ctx.metric_group().counter("seen");
        Ok(())
    }
}

impl RichMapFunction<i64, i64> for CountingMap {
    fn map(&mut self, value: i64) -> Result<i64, BoxError> {
        if let (Some(c), Some(m)) = (&self.counter, &self.max) {
            c.add(1);
            m.add(value);
        }
        Ok(value)
    }
}

#[test]
fn accumulators_and_metrics_reach_the_job_result() {
    let e = env(3);
    e.from_sequence(1, 999)
        .rich_map(CountingMap { counter: None, max: None })
        .name("counting")
        .filter(|x| x % 2 == 0)
        .name("evens")
        .add_sink(DiscardingSink);
    let result = e.execute("metrics").unwrap();
    assert_eq!(result.accumulator("records"), Some(&AccumulatorValue::LongSum(999)));
    assert_eq!(result.accumulator("max"), Some(&AccumulatorValue::LongMax(999)));
    let counting = result.operator("counting").unwrap();
    assert_eq!((counting.records_in, counting.records_out, counting.parallelism), (999, 999, 3));
    assert_eq!(counting.counters.get("seen"), Some(&0));
    let evens = result.operator("evens").unwrap();
    assert_eq!((evens.records_in, evens.records_out), (999, 499));
}

#[test]
fn chaining_options_do_not_change_results() {
    let run = |configure: &dyn Fn(&StreamExecutionEnvironment, DataStream<i64>) -> DataStream<i64>| {
        let e = env(2);
        let s = e.from_sequence(1, 5000);
        sorted(configure(&e, s).execute_and_collect("chains").unwrap())
    };
    let base = run(&|_, s| s.map(|x| x + 1).filter(|x| x % 7 != 0));
    assert_eq!(base.len(), 5000 - 5001 / 7 + 1 - 1);
    assert_eq!(
        run(&|e, s| {
            e.disable_operator_chaining();
            s.map(|x| x + 1).filter(|x| x % 7 != 0)
        }),
        base
    );
    assert_eq!(run(&|_, s| s.map(|x| x + 1).disable_chaining().filter(|x| x % 7 != 0)), base);
    assert_eq!(run(&|_, s| s.map(|x| x + 1).filter(|x| x % 7 != 0).start_new_chain()), base);
    assert_eq!(run(&|_, s| s.map(|x| x + 1).slot_sharing_group("other").filter(|x| x % 7 != 0)), base);
    assert_eq!(
        run(&|e, s| {
            e.set_buffer_timeout(Duration::ZERO);
            s.map(|x| x + 1).filter(|x| x % 7 != 0)
        }),
        base
    );
    assert_eq!(
        run(&|e, s| {
            e.disable_buffer_timeout();
            s.map(|x| x + 1).filter(|x| x % 7 != 0)
        }),
        base
    );
}

#[test]
fn execution_plan_shows_chains_and_exchanges() {
    let e = env(2);
    e.from_sequence(1, 2).map(|x| x).name("m").key_by(|x| *x).reduce(|a, b| a + b).name("r").print().name("p");
    let plan = e.get_execution_plan().unwrap();
    assert!(plan.contains("Source: Sequence Source -> m (parallelism 2"), "{plan}");
    assert!(plan.contains("r -> Sink: p (parallelism 2"), "{plan}");
    assert!(plan.contains("[0] -> [1] HASH"), "{plan}");
}

#[test]
fn data_generator_is_complete_and_rate_limited() {
    let e = env(3);
    let all = e
        .from_source(DataGeneratorSource::new(|i| i * 10, 10_000), WatermarkStrategy::no_watermarks(), "gen")
        .execute_and_collect("gen")
        .unwrap();
    assert_eq!(sorted(all), (0..10_000).map(|i| i * 10).collect::<Vec<u64>>());
    let e = env(2);
    let started = Instant::now();
    let limited = e
        .from_source(
            DataGeneratorSource::new(|i| i, 300).with_rate_limit(1000.0),
            WatermarkStrategy::no_watermarks(),
            "slow gen",
        )
        .execute_and_collect("rate")
        .unwrap();
    assert_eq!(sorted(limited), (0..300).collect::<Vec<u64>>());
    // 300 records at 1000/s cannot take less than ~0.3 s; a loose lower bound, never an upper one.
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[test]
fn file_sinks_write_text_and_csv() {
    let dir = temp_dir("file-sinks");
    let e = env(1);
    let rows = e.from_collection(vec![("a,b".to_string(), 1i64), ("plain".to_string(), 2)]);
    rows.write_as_text(dir.join("out.txt"));
    rows.write_as_csv(dir.join("out.csv"));
    e.execute("files").unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("out.txt")).unwrap(), "(a,b,1)\n(plain,2)\n");
    assert_eq!(std::fs::read_to_string(dir.join("out.csv")).unwrap(), "\"a,b\",1\nplain,2\n");
    let e = env(3);
    e.from_sequence(1, 30).write_as_text(dir.join("parts"));
    e.execute("parts").unwrap();
    let parts: Vec<String> = sorted(
        std::fs::read_dir(dir.join("parts")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect(),
    );
    assert_eq!(parts, vec!["part-0-0", "part-1-0", "part-2-0"]);
    assert_eq!(read_sorted_lines(&dir.join("parts")), sorted((1..=30).map(|i| i.to_string()).collect::<Vec<_>>()));
}

#[test]
fn socket_text_stream_reads_until_the_server_closes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"hello world\r\nsecond line\nno newline at end").unwrap();
    });
    let e = env(2);
    let lines = e.socket_text_stream("127.0.0.1", port).execute_and_collect("socket").unwrap();
    server.join().unwrap();
    assert_eq!(lines, vec!["hello world", "second line", "no newline at end"]);

    let e = env(1);
    e.socket_text_stream("127.0.0.1", 1).print();
    let err = e.execute("refused").unwrap_err().to_string();
    assert!(err.contains("cannot connect to 127.0.0.1:1"), "{err}");
}

#[test]
fn monitored_directory_picks_up_new_files_until_cancelled() {
    let dir = temp_dir("monitor");
    std::fs::write(dir.join("first.txt"), "one\ntwo\n").unwrap();
    let e = env(2);
    let lines = e
        .from_source(
            FileSource::for_paths([dir.clone()]).monitor_continuously(Duration::from_millis(20)),
            WatermarkStrategy::no_watermarks(),
            "watched",
        )
        .collect_async();
    let client = e.execute_async("monitor").unwrap();
    let wait_for = |n: usize, seen: &mut Vec<String>| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.len() < n && Instant::now() < deadline {
            seen.extend(lines.take());
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let mut seen = Vec::new();
    wait_for(2, &mut seen);
    // Writers stage under a hidden name and rename, so half-written files are never read.
    std::fs::write(dir.join(".second.tmp"), "three\n").unwrap();
    std::fs::rename(dir.join(".second.tmp"), dir.join("second.txt")).unwrap();
    wait_for(3, &mut seen);
    assert!(!client.is_finished(), "a monitoring source never ends by itself");
    client.cancel();
    assert!(matches!(client.wait(), Err(JobError::Cancelled(_))));
    assert_eq!(sorted(seen), vec!["one", "three", "two"]);
}

#[test]
fn automatic_mode_runs_bounded_jobs_as_batch() {
    let e = env(2);
    e.set_runtime_mode(RuntimeExecutionMode::Automatic);
    let out = e.from_sequence(1, 100).key_by(|x| x % 2).reduce(|a, b| a + b).execute_and_collect("auto").unwrap();
    assert_eq!(sorted(out), vec![2500, 2550], "one final value per key");
}

#[test]
fn configuration_file_sets_the_environment() {
    let dir = temp_dir("config");
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        "parallelism:\n  default: 3\nexecution:\n  runtime-mode: batch\npipeline.max-parallelism: 64\n",
    )
    .unwrap();
    let e = StreamExecutionEnvironment::from_configuration(&Configuration::from_yaml_file(&path).unwrap()).unwrap();
    assert_eq!(e.get_parallelism(), 3);
    let out = e.from_sequence(1, 10).key_by(|x| x % 2).reduce(|a, b| a + b).execute_and_collect("conf").unwrap();
    assert_eq!(sorted(out), vec![25, 30]);
    let bad = Configuration::from_yaml_str("execution.runtime-mode: sometimes").unwrap();
    let err = StreamExecutionEnvironment::from_configuration(&bad).err().unwrap().to_string();
    assert!(err.contains("execution.runtime-mode") && err.contains("sometimes"), "{err}");
}

#[test]
fn reduce_may_change_the_key_field() {
    // Flink keeps state under the input's key; a reduce result whose own key differs is still
    // that key's result (here: the running sum of odd numbers is even after two of them).
    let e = env(3);
    e.set_runtime_mode(RuntimeExecutionMode::Batch);
    let out = e.from_sequence(1, 10).key_by(|x| x % 2).reduce(|a, b| a + b).execute_and_collect("rekey").unwrap();
    assert_eq!(sorted(out), vec![25, 30], "batch: one final value per key, whatever the order");

    // Streaming emits every running value. One source subtask fixes each key's order (three
    // would interleave their ranges at random), so every value is known: the odd key's 1, 1+3,
    // 1+3+5, ... and the even key's 2, 2+4, ...
    let e = env(3);
    e.set_runtime_mode(RuntimeExecutionMode::Streaming);
    let out = e
        .from_sequence(1, 10)
        .set_parallelism(1)
        .key_by(|x| x % 2)
        .reduce(|a, b| a + b)
        .execute_and_collect("rekey")
        .unwrap();
    assert_eq!(sorted(out), vec![1, 2, 4, 6, 9, 12, 16, 20, 25, 30], "streaming: every running value");
}

#[test]
fn slot_sharing_groups_need_enough_slots() {
    let mut config = Configuration::new();
    config.set("taskmanager.numberOfTaskSlots", 3);
    config.set("parallelism.default", 2);
    let e = StreamExecutionEnvironment::from_configuration(&config).unwrap();
    e.from_sequence(1, 10).map(|x| x).slot_sharing_group("isolated").add_sink(DiscardingSink);
    let err = e.execute("slots").unwrap_err().to_string();
    assert!(
        err.contains("needs 4 task slots") && err.contains("2 for group 'isolated'") && err.contains("has 3"),
        "{err}"
    );
    let e = StreamExecutionEnvironment::from_configuration(&config).unwrap();
    e.from_sequence(1, 10).map(|x| x).add_sink(DiscardingSink);
    e.execute("fits").unwrap();
}
