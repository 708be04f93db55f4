//! Asynchronous I/O: results in order or as completed (never past a watermark), at most
//! `capacity` calls in flight, timeouts, and calls in flight kept through a failure.

mod common;

use brisk::prelude::*;
use brisk::runtime::jobmaster::restart::RestartStrategy;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A pretend remote service: four threads answer `n → 2n` after a delay that varies with n,
/// so answers come back out of order; never answers for `silent`.
#[derive(Clone)]
struct Doubler {
    requests: Sender<(i64, ResultFuture<i64>)>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
    fallback: bool,
}

impl Doubler {
    fn new(silent: Option<i64>, fallback: bool) -> Doubler {
        let (requests, incoming) = channel::<(i64, ResultFuture<i64>)>();
        let incoming = Arc::new(Mutex::new(incoming));
        let in_flight = Arc::new(AtomicUsize::new(0));
        for _ in 0..4 {
            let (incoming, in_flight) = (incoming.clone(), in_flight.clone());
            std::thread::spawn(move || {
                loop {
                    let Ok((n, result)) = incoming.lock().unwrap().recv() else { return };
                    std::thread::sleep(Duration::from_micros((n % 7) as u64 * 150));
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    if Some(n) != silent {
                        result.complete(vec![n * 2]);
                    }
                }
            });
        }
        Doubler { requests, in_flight, most_in_flight: Arc::new(AtomicUsize::new(0)), fallback }
    }
}

impl RichFunction for Doubler {}

impl AsyncFunction<i64, i64> for Doubler {
    fn async_invoke(&mut self, n: i64, result: ResultFuture<i64>) -> Result<(), BoxError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        self.requests.send((n, result)).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn timeout(&mut self, n: i64, result: ResultFuture<i64>) -> Result<(), BoxError> {
        if self.fallback {
            result.complete(vec![-n]);
        } else {
            result.complete_exceptionally(format!("no answer for {n}"));
        }
        Ok(())
    }
}

#[test]
fn ordered_results_keep_the_input_order_and_calls_stay_within_the_capacity() {
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(1);
    let doubler = Doubler::new(None, false);
    let most = doubler.most_in_flight.clone();
    let numbers = env.from_sequence(0, 1999);
    let doubled = AsyncDataStream::ordered_wait(&numbers, doubler, Duration::from_secs(10), 8);
    assert_eq!(doubled.execute_and_collect("ordered").unwrap(), (0..2000).map(|n| n * 2).collect::<Vec<i64>>());
    let most = most.load(Ordering::SeqCst);
    assert!((2..=8).contains(&most), "{most} calls in flight at most, of a capacity of 8");
}

/// Each record with the watermark it arrived after.
#[derive(Clone)]
struct Lateness;

impl RichFunction for Lateness {}

impl KeyedProcessFunction<u8, i64, (i64, i64, i64)> for Lateness {
    fn process_element(
        &mut self,
        value: i64,
        ctx: &mut KeyedProcessContext<'_, u8, (i64, i64, i64)>,
        out: &mut Collector<'_, (i64, i64, i64)>,
    ) -> Result<(), BoxError> {
        out.collect((value, ctx.timestamp().ok_or("no timestamp")?, ctx.timer_service().current_watermark()));
        Ok(())
    }
}

#[test]
fn unordered_results_come_as_completed_but_never_after_a_later_watermark() {
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(1);
    env.set_auto_watermark_interval(Duration::from_millis(1));
    let strategy = WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|n: &i64, _| *n);
    let numbers =
        env.from_source(DataGeneratorSource::new(|i| i as i64, 3000).with_rate_limit(20_000.0), strategy, "numbers");
    let doubled = AsyncDataStream::unordered_wait(&numbers, Doubler::new(None, false), Duration::from_secs(10), 16);
    let seen = doubled.key_by(|_: &i64| 0u8).process(Lateness).execute_and_collect("unordered").unwrap();
    let mut values: Vec<i64> = seen.iter().map(|s| s.0).collect();
    values.sort_unstable();
    assert_eq!(values, (0..3000).map(|n| n * 2).collect::<Vec<i64>>());
    let late: Vec<_> = seen.iter().filter(|(_, ts, wm)| ts <= wm).collect();
    assert!(late.is_empty(), "results after their watermark: {:?}", &late[..late.len().min(5)]);
}

#[test]
fn a_call_past_its_timeout_gets_the_functions_fallback_or_fails_the_job() {
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(1);
    let numbers = env.from_sequence(0, 99);
    let doubled = AsyncDataStream::ordered_wait(&numbers, Doubler::new(Some(42), true), Duration::from_millis(50), 4);
    let mut expected: Vec<i64> = (0..100).map(|n| n * 2).collect();
    expected[42] = -42;
    assert_eq!(doubled.execute_and_collect("fallback").unwrap(), expected);

    let env = StreamExecutionEnvironment::get_execution_environment();
    let numbers = env.from_sequence(0, 99);
    let doubled =
        AsyncDataStream::unordered_wait(&numbers, Doubler::new(Some(42), false), Duration::from_millis(50), 4);
    let error = doubled.execute_and_collect("timeout").unwrap_err().to_string();
    assert!(error.contains("no answer for 42"), "{error}");
}

#[test]
fn calls_in_flight_at_a_checkpoint_are_made_again_after_a_failure() {
    let dir = common::temp_dir("async-io");
    let env = StreamExecutionEnvironment::get_execution_environment();
    env.set_parallelism(2);
    env.enable_checkpointing(Duration::from_millis(20));
    env.set_restart_strategy(RestartStrategy::FixedDelay { attempts: 3, delay: Duration::from_millis(10) });
    let numbers = env.from_source(
        DataGeneratorSource::new(|i| i as i64, 6000).with_rate_limit(30_000.0),
        WatermarkStrategy::no_watermarks(),
        "numbers",
    );
    AsyncDataStream::unordered_wait(&numbers, Doubler::new(None, false), Duration::from_secs(10), 32)
        .rich_map(common::FailOnce::after(2000))
        .add_sink(FileSink::text(dir.join("out")));
    let result = env.execute("async exactly once").unwrap();
    assert_eq!(result.restarts, 1);
    let mut expected: Vec<String> = (0..6000).map(|n: i64| (n * 2).to_string()).collect();
    expected.sort();
    assert_eq!(common::read_sorted_lines(&dir.join("out")), expected);
}
