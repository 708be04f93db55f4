//! Watermark strategies and keyed process functions with timers, driven through the operator
//! test harness with a manual processing-time clock, and watermark propagation in jobs.

use brisk::prelude::*;
use brisk::runtime::taskexecutor::output::CollectedElement;
use brisk::testing::OneInputOperatorTestHarness;
use std::time::Duration;

type Event = (String, i64);

fn e(key: &str, value: i64) -> Event {
    (key.to_string(), value)
}

/// `v` in ascending order.
fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Watermarks and status changes emitted so far, without the records.
fn marks(elements: Vec<CollectedElement<Event>>) -> Vec<String> {
    elements
        .into_iter()
        .filter_map(|el| match el {
            CollectedElement::Record(_) => None,
            CollectedElement::Watermark(w) => Some(format!("wm {}", w.0)),
            CollectedElement::Status(s) => Some(format!("{s:?}")),
        })
        .collect()
}

#[test]
fn bounded_out_of_orderness_emits_periodically_and_never_goes_back() {
    let strategy = WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(5))
        .with_timestamp_assigner(|e: &Event, _| e.1);
    let mut h =
        OneInputOperatorTestHarness::new(move |s: DataStream<Event>| s.assign_timestamps_and_watermarks(strategy))
            .unwrap();
    h.open().unwrap();
    h.process_element_without_timestamp(e("a", 10)).unwrap();
    h.process_element_without_timestamp(e("a", 20)).unwrap();
    h.process_element_without_timestamp(e("a", 15)).unwrap();
    assert_eq!(
        h.records().iter().map(|r| r.timestamp).collect::<Vec<_>>(),
        vec![10, 20, 15],
        "the assigner sets timestamps"
    );
    assert!(marks(h.take_output()).is_empty(), "watermarks are periodic, not per record");
    h.set_processing_time(199).unwrap();
    assert!(marks(h.take_output()).is_empty());
    h.set_processing_time(200).unwrap();
    assert_eq!(marks(h.take_output()), vec!["wm 14"], "max timestamp - bound - 1, at the 200 ms auto interval");
    h.process_element_without_timestamp(e("a", 12)).unwrap();
    h.set_processing_time(400).unwrap();
    assert!(marks(h.take_output()).is_empty(), "an unchanged watermark is not repeated, and it never goes back");
    h.process_element_without_timestamp(e("a", 40)).unwrap();
    h.set_processing_time(600).unwrap();
    assert_eq!(marks(h.take_output()), vec!["wm 34"]);
    h.end_input().unwrap();
    assert_eq!(marks(h.take_output()), vec![format!("wm {}", i64::MAX)], "the end of input emits the final watermark");
}

#[test]
fn monotonous_timestamps_and_idleness() {
    let strategy = WatermarkStrategy::for_monotonous_timestamps()
        .with_timestamp_assigner(|e: &Event, _| e.1)
        .with_idleness(Duration::from_millis(500));
    let mut h =
        OneInputOperatorTestHarness::new(move |s: DataStream<Event>| s.assign_timestamps_and_watermarks(strategy))
            .unwrap();
    h.open().unwrap();
    h.process_element_without_timestamp(e("a", 7)).unwrap();
    h.set_processing_time(200).unwrap();
    assert_eq!(marks(h.take_output()), vec!["wm 6"]);
    h.set_processing_time(800).unwrap();
    assert_eq!(marks(h.take_output()), vec![format!("{:?}", WatermarkStatus::Idle)], "no events for 500 ms: idle");
    h.process_element_without_timestamp(e("a", 9)).unwrap();
    h.set_processing_time(1000).unwrap();
    assert_eq!(marks(h.take_output()), vec![format!("{:?}", WatermarkStatus::Active), "wm 8".to_string()]);
}

/// Emits a watermark right after each record whose value is negative (a punctuated generator).
struct Punctuated;

impl WatermarkGenerator<Event> for Punctuated {
    fn on_event(&mut self, event: &Event, timestamp: i64, output: &mut WatermarkOutput) {
        if event.1 < 0 {
            output.emit_watermark(Watermark(timestamp));
        }
    }
    fn on_periodic_emit(&mut self, _: &mut WatermarkOutput) {}
}

#[test]
fn custom_generators_emit_on_events() {
    let strategy = WatermarkStrategy::for_generator(|| Punctuated);
    let mut h =
        OneInputOperatorTestHarness::new(move |s: DataStream<Event>| s.assign_timestamps_and_watermarks(strategy))
            .unwrap();
    h.open().unwrap();
    h.process_element(e("a", 1), 100).unwrap();
    h.process_element(e("a", -1), 150).unwrap();
    h.process_element(e("a", 3), 160).unwrap();
    assert_eq!(marks(h.take_output()), vec!["wm 150"], "the record's existing timestamp is kept");
}

/// Per key: counts records, emits the count when the event-time timer at `timestamp + 10`
/// fires, and a processing-time timeout that is cancelled by the next record.
#[derive(Clone, Default)]
struct CountWithTimeout {
    count: Option<ValueState<i64>>,
    timeout: Option<ValueState<i64>>,
}

const TIMEOUTS: &str = "timeouts";

impl RichFunction for CountWithTimeout {
    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> Result<(), BoxError> {
        self.count = Some(ctx.get_state(&ValueStateDescriptor::new("count"))?);
        self.timeout = Some(ctx.get_state(&ValueStateDescriptor::new("timeout"))?);
        Ok(())
    }
}

impl KeyedProcessFunction<String, Event, String> for CountWithTimeout {
    fn process_element(
        &mut self,
        value: Event,
        ctx: &mut KeyedProcessContext<'_, String, String>,
        _: &mut Collector<'_, String>,
    ) -> Result<(), BoxError> {
        let (Some(count), Some(timeout)) = (&self.count, &self.timeout) else { return Err("not opened".into()) };
        count.update(count.value()?.unwrap_or(0) + value.1)?;
        let ts = ctx.timestamp().ok_or("no timestamp")?;
        let timers = ctx.timer_service();
        timers.register_event_time_timer(ts + 10)?;
        if let Some(old) = timeout.value()? {
            timers.delete_processing_time_timer(old)?;
        }
        let at = timers.current_processing_time() + 100;
        timers.register_processing_time_timer(at)?;
        timeout.update(at)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut KeyedProcessContext<'_, String, String>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), BoxError> {
        let (Some(count), Some(timeout)) = (&self.count, &self.timeout) else { return Err("not opened".into()) };
        let key = ctx.get_current_key().clone();
        match ctx.time_domain() {
            Some(TimeDomain::EventTime) => {
                let wm = ctx.timer_service().current_watermark();
                out.collect(format!("{key} count={} at {timestamp} (wm {wm})", count.value()?.unwrap_or(0)))
            }
            _ => {
                timeout.clear()?;
                ctx.output(&OutputTag::<String>::new(TIMEOUTS), format!("{key} timed out at {timestamp}"));
            }
        }
        Ok(())
    }
}

#[test]
fn keyed_process_function_timers_fire_per_key_once_per_time() {
    let timeouts = OutputTag::<String>::new(TIMEOUTS);
    let mut h = OneInputOperatorTestHarness::new(|s: DataStream<Event>| {
        s.key_by(|e: &Event| e.0.clone()).process(CountWithTimeout::default())
    })
    .unwrap();
    h.side_output(&timeouts).unwrap();
    h.open().unwrap();
    h.process_element(e("a", 1), 5).unwrap();
    h.process_element(e("b", 10), 5).unwrap();
    h.process_element(e("a", 2), 5).unwrap(); // same timer (15) registered twice: fires once
    h.process_element(e("a", 4), 20).unwrap();
    h.process_watermark(14).unwrap();
    assert!(h.values().is_empty());
    h.process_watermark(15).unwrap();
    let fired_at_15 = h.values();
    // Timers of one time fire in no defined order across keys.
    assert_eq!(sorted(fired_at_15.clone()), vec!["a count=7 at 15 (wm 15)", "b count=10 at 15 (wm 15)"]);
    h.process_watermark(100).unwrap();
    let fired = [fired_at_15, vec!["a count=7 at 30 (wm 100)".to_string()]].concat();
    assert_eq!(h.values(), fired, "each timer fires once");
    assert_eq!(
        h.records().iter().map(|r| r.timestamp).collect::<Vec<_>>(),
        vec![15, 15, 30],
        "timer output carries the timer's time"
    );

    // Processing-time timeouts: the later registration of "a" replaced its earlier one.
    let timed_out = |h: &OneInputOperatorTestHarness<Event, String>| -> Vec<String> {
        h.side_records(&timeouts).into_iter().map(|r| r.value).collect()
    };
    h.set_processing_time(99).unwrap();
    assert!(timed_out(&h).is_empty());
    h.set_processing_time(100).unwrap();
    let timed_out_at_100 = timed_out(&h);
    assert_eq!(sorted(timed_out_at_100.clone()), vec!["a timed out at 100", "b timed out at 100"]);
    h.process_element(e("a", 1), 200).unwrap();
    h.set_processing_time(150).unwrap();
    h.process_element(e("a", 1), 201).unwrap(); // moves a's timeout from 200 to 250
    h.set_processing_time(249).unwrap();
    assert_eq!(timed_out(&h), timed_out_at_100, "the timeout at 200 was deleted");
    h.set_processing_time(250).unwrap();
    assert_eq!(timed_out(&h), [timed_out_at_100, vec!["a timed out at 250".to_string()]].concat());
    assert_eq!(h.values(), fired, "no event-time timer fires without a watermark");
}

#[test]
fn operator_watermark_is_the_minimum_over_inputs_and_flushes_windows_at_the_end() {
    // Two parallel sources with very different timestamps: the window operator may only fire
    // a window once both inputs passed it, and the end of input fires the rest.
    let env = StreamExecutionEnvironment::create_local_environment(2);
    let fast: Vec<Event> = (0..50).map(|i| e("k", i * 100)).collect();
    let slow: Vec<Event> = (0..50).map(|i| e("k", i)).collect();
    let strategy = WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|e: &Event, _| e.1);
    let a = env.from_collection(fast).assign_timestamps_and_watermarks(strategy.clone());
    let b = env.from_collection(slow).assign_timestamps_and_watermarks(strategy);
    let out = a
        .union(&b)
        .key_by(|e: &Event| e.0.clone())
        .window(TumblingEventTimeWindows::of(Duration::from_millis(1000)))
        .apply(|_: &String, w: &TimeWindow, els: Vec<Event>, out: &mut Collector<'_, (i64, usize)>| {
            out.collect((w.start, els.len()))
        })
        .execute_and_collect("min watermark")
        .unwrap();
    let mut expected: Vec<(i64, usize)> = (0..5).map(|w| (w * 1000, 10)).collect();
    expected[0].1 += 50;
    assert_eq!(out, expected, "every record in its window, none dropped as late");
}
