//! Windows, triggers, evictors, lateness and timers, driven record by record through the
//! operator test harness (exact outputs, manual processing time) and end to end through jobs.

mod common;

use brisk::prelude::*;
use brisk::testing::OneInputOperatorTestHarness;
use common::temp_dir;
use std::time::Duration;

type Event = (String, i64);
/// `(key, window start, window end, sum)`.
type WindowSum = (String, i64, i64, i64);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn e(key: &str, value: i64) -> Event {
    (key.to_string(), value)
}

fn key_of(e: &Event) -> String {
    e.0.clone()
}

fn ws(key: &str, start: i64, end: i64, sum: i64) -> WindowSum {
    (key.to_string(), start, end, sum)
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Sums each window's values and tags the result with the window (Flink's `WindowFunction`).
fn sum_with_window<A: WindowAssigner<Event, W = TimeWindow>>(
    w: WindowedStream<Event, String, A>,
) -> DataStream<WindowSum> {
    w.apply(|key: &String, window: &TimeWindow, elements: Vec<Event>, out: &mut Collector<'_, WindowSum>| {
        out.collect((key.clone(), window.start, window.end, elements.iter().map(|e| e.1).sum()))
    })
}

type Harness<O> = OneInputOperatorTestHarness<Event, O>;

fn harness<O: Data>(fragment: impl FnOnce(DataStream<Event>) -> DataStream<O>) -> Harness<O> {
    let mut h = OneInputOperatorTestHarness::new(fragment).expect("valid operator");
    h.open().expect("opens");
    h
}

#[test]
fn tumbling_event_time_windows_fire_on_the_watermark_and_drop_late_data() {
    let late = OutputTag::<Event>::new("late");
    let tag = late.clone();
    let mut h = OneInputOperatorTestHarness::new(move |s: DataStream<Event>| {
        sum_with_window(s.key_by(key_of).window(TumblingEventTimeWindows::of(ms(10))).side_output_late_data(&tag))
    })
    .unwrap();
    h.side_output(&late).unwrap();
    h.open().unwrap();
    h.process_element(e("a", 1), 1).unwrap();
    h.process_element(e("b", 10), 3).unwrap();
    h.process_element(e("a", 2), 12).unwrap();
    h.process_element(e("a", 4), 5).unwrap(); // out of order, not late
    h.process_watermark(8).unwrap();
    assert!(h.values().is_empty(), "nothing fires before the watermark passes the window's end");
    h.process_watermark(9).unwrap();
    assert_eq!(sorted(h.values()), vec![ws("a", 0, 10, 5), ws("b", 0, 10, 10)]);
    assert_eq!(h.records().iter().map(|r| r.timestamp).collect::<Vec<_>>(), vec![9, 9], "the window's max timestamp");
    h.process_element(e("a", 100), 7).unwrap(); // late: its window is gone
    h.process_watermark(25).unwrap();
    assert_eq!(sorted(h.values()), vec![ws("a", 0, 10, 5), ws("a", 10, 20, 2), ws("b", 0, 10, 10)]);
    let late_records: Vec<(Event, i64)> = h.side_records(&late).into_iter().map(|r| (r.value, r.timestamp)).collect();
    assert_eq!(late_records, vec![(e("a", 100), 7)]);
    assert_eq!(h.watermarks(), vec![8, 9, 25], "watermarks pass through after the windows they fire");
}

#[test]
fn allowed_lateness_refires_windows_until_cleanup() {
    let late = OutputTag::<Event>::new("late");
    let tag = late.clone();
    let mut h = OneInputOperatorTestHarness::new(move |s: DataStream<Event>| {
        sum_with_window(
            s.key_by(key_of)
                .window(TumblingEventTimeWindows::of(ms(10)))
                .allowed_lateness(ms(5))
                .side_output_late_data(&tag),
        )
    })
    .unwrap();
    h.side_output(&late).unwrap();
    h.open().unwrap();
    h.process_element(e("a", 1), 2).unwrap();
    h.process_watermark(10).unwrap();
    assert_eq!(h.values(), vec![ws("a", 0, 10, 1)]);
    // Late, within the lateness: the window fires again with the element added.
    h.process_element(e("a", 2), 4).unwrap();
    assert_eq!(h.values(), vec![ws("a", 0, 10, 1), ws("a", 0, 10, 3)]);
    h.process_watermark(13).unwrap();
    h.process_element(e("a", 4), 9).unwrap();
    let fired = vec![ws("a", 0, 10, 1), ws("a", 0, 10, 3), ws("a", 0, 10, 7)];
    assert_eq!(h.values(), fired, "a watermark alone does not fire the window again");
    // The watermark passes end + lateness: the window is cleaned up; later data is late.
    h.process_watermark(14).unwrap();
    h.process_element(e("a", 8), 6).unwrap();
    assert_eq!(h.values(), fired);
    assert_eq!(h.side_records(&late).into_iter().map(|r| r.value).collect::<Vec<_>>(), vec![e("a", 8)]);
}

#[test]
fn sliding_windows_put_each_element_in_every_overlapping_window() {
    let mut h = harness(|s| sum_with_window(s.key_by(key_of).window(SlidingEventTimeWindows::of(ms(10), ms(5)))));
    h.process_element(e("k", 1), 3).unwrap();
    h.process_element(e("k", 10), 7).unwrap();
    h.process_element(e("k", 100), 12).unwrap();
    h.end_input().unwrap();
    assert_eq!(
        sorted(h.values()),
        vec![ws("k", -5, 5, 1), ws("k", 0, 10, 11), ws("k", 5, 15, 110), ws("k", 10, 20, 100)]
    );
}

#[test]
fn session_windows_merge_when_a_late_element_bridges_them() {
    let mut h = harness(|s| sum_with_window(s.key_by(key_of).window(EventTimeSessionWindows::with_gap(ms(10)))));
    h.process_element(e("a", 1), 0).unwrap();
    h.process_element(e("a", 2), 5).unwrap(); // [0, 15)
    h.process_element(e("a", 4), 30).unwrap(); // [30, 40)
    h.process_element(e("b", 8), 20).unwrap(); // another key: its own session
    h.process_watermark(13).unwrap();
    assert!(h.values().is_empty());
    h.process_element(e("a", 16), 20).unwrap(); // [20, 30) touches [30, 40)
    h.process_element(e("a", 32), 12).unwrap(); // [12, 22) bridges everything: [0, 40)
    h.process_watermark(100).unwrap();
    assert_eq!(sorted(h.values()), vec![ws("a", 0, 40, 55), ws("b", 20, 30, 8)]);
}

#[test]
fn dynamic_session_gaps_come_from_the_element() {
    let mut h = harness(|s| {
        sum_with_window(s.key_by(key_of).window(EventTimeSessionWindows::with_dynamic_gap(|e: &Event| ms(e.1 as u64))))
    });
    h.process_element(e("a", 5), 0).unwrap(); // [0, 5)
    h.process_element(e("a", 20), 10).unwrap(); // [10, 30): a gap after the first
    h.process_element(e("a", 3), 28).unwrap(); // [28, 31) joins the second
    h.end_input().unwrap();
    assert_eq!(sorted(h.values()), vec![ws("a", 0, 5, 5), ws("a", 10, 31, 23)]);
}

#[derive(Clone)]
struct SumCount;

impl AggregateFunction<Event, (i64, u64), (i64, u64)> for SumCount {
    fn create_accumulator(&self) -> (i64, u64) {
        (0, 0)
    }
    fn add(&self, value: Event, acc: (i64, u64)) -> (i64, u64) {
        (acc.0 + value.1, acc.1 + 1)
    }
    fn get_result(&self, acc: &(i64, u64)) -> (i64, u64) {
        *acc
    }
    fn merge(&self, a: (i64, u64), b: (i64, u64)) -> (i64, u64) {
        (a.0 + b.0, a.1 + b.1)
    }
}

#[derive(Clone)]
struct Label;

impl RichFunction for Label {}

impl ProcessWindowFunction<(i64, u64), String, String, TimeWindow> for Label {
    fn process(
        &mut self,
        key: &String,
        ctx: &mut ProcessWindowContext<'_, TimeWindow, String>,
        elements: Vec<(i64, u64)>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), BoxError> {
        for (sum, count) in elements {
            let w = ctx.window();
            out.collect(format!(
                "{key}@[{},{}) sum={sum} count={count} wm={}",
                w.start,
                w.end,
                ctx.current_watermark()
            ));
        }
        Ok(())
    }
}

#[test]
fn aggregate_with_process_window_function_sees_the_window_and_merges_sessions() {
    let mut h =
        harness(|s| s.key_by(key_of).window(TumblingEventTimeWindows::of(ms(10))).aggregate_with(SumCount, Label));
    for (v, t) in [(1, 1), (2, 2), (3, 11)] {
        h.process_element(e("x", v), t).unwrap();
    }
    h.process_watermark(20).unwrap();
    assert_eq!(h.values(), vec!["x@[0,10) sum=3 count=2 wm=20", "x@[10,20) sum=3 count=1 wm=20"]);

    let mut h = harness(|s| s.key_by(key_of).window(EventTimeSessionWindows::with_gap(ms(5))).aggregate(SumCount));
    for (v, t) in [(1, 0), (2, 10), (4, 5)] {
        h.process_element(e("x", v), t).unwrap();
    }
    h.end_input().unwrap();
    assert_eq!(h.values(), vec![(7, 3)], "accumulators of merged sessions are merged");
}

#[test]
fn reduce_and_field_aggregations_per_window() {
    let mut h =
        harness(|s| s.key_by(key_of).window(TumblingEventTimeWindows::of(ms(10))).reduce(|a, b| (a.0, a.1.max(b.1))));
    for (v, t) in [(3, 1), (9, 2), (4, 3), (1, 15)] {
        h.process_element(e("m", v), t).unwrap();
    }
    h.end_input().unwrap();
    assert_eq!(h.values(), vec![e("m", 9), e("m", 1)]);
    let mut h =
        harness(|s| s.key_by(key_of).window(TumblingEventTimeWindows::of(ms(10))).sum(|e: &mut Event| &mut e.1));
    for (v, t) in [(3, 1), (9, 2), (1, 15)] {
        h.process_element(e("m", v), t).unwrap();
    }
    h.end_input().unwrap();
    assert_eq!(h.values(), vec![e("m", 12), e("m", 1)]);
}

#[test]
fn count_windows_tumble_and_slide() {
    let mut h = harness(|s| s.key_by(key_of).count_window(3).sum(|e: &mut Event| &mut e.1));
    for v in 1..=7 {
        h.process_element_without_timestamp(e("c", v)).unwrap();
    }
    h.end_input().unwrap();
    assert_eq!(h.values(), vec![e("c", 6), e("c", 15)], "the incomplete window of 7 never fires");

    let mut h = harness(|s| s.key_by(key_of).count_window_sliding(3, 2).sum(|e: &mut Event| &mut e.1));
    for v in 1..=7 {
        h.process_element_without_timestamp(e("c", v)).unwrap();
    }
    assert_eq!(h.values(), vec![e("c", 3), e("c", 9), e("c", 15)], "the last 3 elements every 2");
}

#[test]
fn count_trigger_fires_early_and_purging_trigger_clears() {
    let mut h = harness(|s| {
        sum_with_window(s.key_by(key_of).window(TumblingEventTimeWindows::of(ms(100))).trigger(CountTrigger::of(2)))
    });
    for v in [1, 2, 4, 8, 16] {
        h.process_element(e("t", v), v).unwrap();
    }
    h.end_input().unwrap();
    assert_eq!(
        h.values(),
        vec![ws("t", 0, 100, 3), ws("t", 0, 100, 15)],
        "count triggers replace the event-time firing"
    );

    let mut h = harness(|s| {
        sum_with_window(
            s.key_by(key_of)
                .window(TumblingEventTimeWindows::of(ms(100)))
                .trigger(PurgingTrigger::of(CountTrigger::of(2))),
        )
    });
    for v in [1, 2, 4, 8, 16] {
        h.process_element(e("t", v), v).unwrap();
    }
    h.end_input().unwrap();
    assert_eq!(h.values(), vec![ws("t", 0, 100, 3), ws("t", 0, 100, 12)]);
}

#[test]
fn continuous_event_time_trigger_fires_periodically_within_the_window() {
    let mut h = harness(|s| {
        sum_with_window(
            s.key_by(key_of)
                .window(TumblingEventTimeWindows::of(ms(100)))
                .trigger(ContinuousEventTimeTrigger::of(ms(20))),
        )
    });
    h.process_element(e("c", 1), 5).unwrap();
    h.process_watermark(19).unwrap();
    assert!(h.values().is_empty(), "the first firing is at the next multiple of the interval, 20");
    h.process_watermark(20).unwrap();
    assert_eq!(h.values(), vec![ws("c", 0, 100, 1)]);
    h.process_element(e("c", 2), 30).unwrap();
    h.process_watermark(40).unwrap();
    assert_eq!(h.values(), vec![ws("c", 0, 100, 1), ws("c", 0, 100, 3)]);
    h.process_watermark(99).unwrap();
    assert_eq!(
        h.values(),
        vec![ws("c", 0, 100, 1), ws("c", 0, 100, 3), ws("c", 0, 100, 3), ws("c", 0, 100, 3), ws("c", 0, 100, 3)],
        "fires again at 60, 80 and once at the window's end, 99"
    );
}

/// Fires a window when an element with a negative value arrives (a user-defined trigger).
#[derive(Clone)]
struct FireOnNegative;

impl Trigger<Event, TimeWindow> for FireOnNegative {
    fn on_element(
        &mut self,
        element: &Event,
        _: i64,
        _: &TimeWindow,
        ctx: &mut TriggerContext<'_>,
    ) -> Result<TriggerResult, BoxError> {
        let seen = ctx.get_state::<u32>("seen")?.unwrap_or(0) + 1;
        ctx.set_state("seen", seen)?;
        Ok(if element.1 < 0 && seen >= 2 { TriggerResult::FireAndPurge } else { TriggerResult::Continue })
    }
    fn on_event_time(&mut self, _: i64, _: &TimeWindow, _: &mut TriggerContext<'_>) -> Result<TriggerResult, BoxError> {
        Ok(TriggerResult::Continue)
    }
    fn on_processing_time(
        &mut self,
        _: i64,
        _: &TimeWindow,
        _: &mut TriggerContext<'_>,
    ) -> Result<TriggerResult, BoxError> {
        Ok(TriggerResult::Continue)
    }
    fn clear(&mut self, _: &TimeWindow, ctx: &mut TriggerContext<'_>) -> Result<(), BoxError> {
        Ok(ctx.clear_state::<u32>("seen")?)
    }
    fn box_clone(&self) -> Box<dyn Trigger<Event, TimeWindow>> {
        Box::new(self.clone())
    }
}

#[test]
fn custom_triggers_keep_their_state_per_window() {
    let mut h = harness(|s| {
        sum_with_window(s.key_by(key_of).window(TumblingEventTimeWindows::of(ms(10))).trigger(FireOnNegative))
    });
    h.process_element(e("u", -1), 1).unwrap(); // first element of the window: not yet
    h.process_element(e("u", 5), 2).unwrap();
    h.process_element(e("u", -2), 12).unwrap(); // another window, first element
    h.process_element(e("u", -3), 3).unwrap(); // second negative of [0,10)
    assert_eq!(h.values(), vec![ws("u", 0, 10, 1)]);
    h.end_input().unwrap();
    assert_eq!(h.values(), vec![ws("u", 0, 10, 1)], "a custom trigger never fires on time");
}

#[test]
fn evictors_remove_elements_before_the_function() {
    let mut h = harness(|s| {
        sum_with_window(s.key_by(key_of).window(TumblingEventTimeWindows::of(ms(100))).evictor(CountEvictor::of(2)))
    });
    for (v, t) in [(1, 1), (2, 50), (4, 20), (8, 10)] {
        h.process_element(e("v", v), t).unwrap();
    }
    h.end_input().unwrap();
    assert_eq!(h.values(), vec![ws("v", 0, 100, 12)], "keeps the last two elements in arrival order");

    let mut h = harness(|s| {
        sum_with_window(s.key_by(key_of).window(TumblingEventTimeWindows::of(ms(100))).evictor(TimeEvictor::of(ms(30))))
    });
    for (v, t) in [(1, 1), (2, 50), (4, 20), (8, 79)] {
        h.process_element(e("v", v), t).unwrap();
    }
    h.end_input().unwrap();
    assert_eq!(h.values(), vec![ws("v", 0, 100, 10)], "keeps elements within 30 ms of the newest (79)");

    let mut h = harness(|s| {
        sum_with_window(
            s.key_by(key_of)
                .window(TumblingEventTimeWindows::of(ms(100)))
                .evictor(DeltaEvictor::of(5.0, |a: &Event, b: &Event| (a.1 - b.1).abs() as f64)),
        )
    });
    for (v, t) in [(1, 1), (7, 2), (9, 3), (10, 4)] {
        h.process_element(e("v", v), t).unwrap();
    }
    h.end_input().unwrap();
    assert_eq!(h.values(), vec![ws("v", 0, 100, 26)], "drops elements 5 or more away from the last (10)");

    let mut h = harness(|s| {
        s.key_by(key_of)
            .window(TumblingEventTimeWindows::of(ms(100)))
            .evictor(CountEvictor::of(1))
            .reduce(|a, b| (a.0, a.1 + b.1))
    });
    for (v, t) in [(1, 1), (2, 2), (4, 3)] {
        h.process_element(e("v", v), t).unwrap();
    }
    h.end_input().unwrap();
    assert_eq!(h.values(), vec![e("v", 4)], "with an evictor, reduce runs over the kept elements");
}

#[test]
fn processing_time_windows_follow_the_manual_clock() {
    let mut h = harness(|s| sum_with_window(s.key_by(key_of).window(TumblingProcessingTimeWindows::of(ms(10)))));
    h.set_processing_time(3).unwrap();
    h.process_element_without_timestamp(e("p", 1)).unwrap();
    h.process_element_without_timestamp(e("q", 2)).unwrap();
    h.set_processing_time(7).unwrap();
    h.process_element_without_timestamp(e("p", 4)).unwrap();
    h.set_processing_time(8).unwrap();
    assert!(h.values().is_empty());
    h.set_processing_time(9).unwrap();
    assert_eq!(sorted(h.values()), vec![ws("p", 0, 10, 5), ws("q", 0, 10, 2)], "fires at the window's max timestamp");
    h.set_processing_time(10).unwrap();
    h.process_element_without_timestamp(e("p", 8)).unwrap();
    h.set_processing_time(35).unwrap();
    assert_eq!(sorted(h.values()), vec![ws("p", 0, 10, 5), ws("p", 10, 20, 8), ws("q", 0, 10, 2)]);

    let mut h =
        harness(|s| sum_with_window(s.key_by(key_of).window(TumblingProcessingTimeWindows::of(ms(10)).with_offset(3))));
    h.set_processing_time(1).unwrap();
    h.process_element_without_timestamp(e("o", 1)).unwrap();
    h.set_processing_time(2).unwrap();
    assert_eq!(h.values(), vec![ws("o", -7, 3, 1)], "offsets shift the window boundaries");

    let mut h = harness(|s| sum_with_window(s.key_by(key_of).window(ProcessingTimeSessionWindows::with_gap(ms(5)))));
    h.process_element_without_timestamp(e("s", 1)).unwrap();
    h.set_processing_time(3).unwrap();
    h.process_element_without_timestamp(e("s", 2)).unwrap();
    h.set_processing_time(6).unwrap();
    assert!(h.values().is_empty(), "the session was extended to 8");
    h.set_processing_time(7).unwrap();
    assert_eq!(h.values(), vec![ws("s", 0, 8, 3)]);
}

#[test]
fn continuous_processing_time_trigger_fires_on_the_clock() {
    let mut h = harness(|s| {
        sum_with_window(
            s.key_by(key_of)
                .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
                .trigger(ContinuousProcessingTimeTrigger::of(ms(5))),
        )
    });
    h.process_element(e("g", 1), 1).unwrap();
    h.set_processing_time(4).unwrap();
    assert!(h.values().is_empty());
    h.set_processing_time(5).unwrap();
    h.process_element(e("g", 2), 2).unwrap();
    h.set_processing_time(12).unwrap();
    assert_eq!(h.values(), vec![ws("g", 0, 1000, 1), ws("g", 0, 1000, 3)]);
}

#[test]
fn window_all_and_count_window_all_run_in_one_subtask() {
    let env = StreamExecutionEnvironment::create_local_environment(3);
    let data: Vec<(Event, i64)> = (0..100).map(|i| (e(&format!("k{}", i % 7), i), i)).collect();
    let out = env
        .from_collection(data)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|r: &(Event, i64), _| r.1),
        )
        .map(|r| r.0)
        .window_all(TumblingEventTimeWindows::of(ms(25)))
        .apply(|_: &(), w: &TimeWindow, els: Vec<Event>, out: &mut Collector<'_, (i64, i64, usize)>| {
            out.collect((w.start, els.iter().map(|e| e.1).sum(), els.len()))
        })
        .execute_and_collect("window all")
        .unwrap();
    let expected: Vec<(i64, i64, usize)> = (0..4).map(|w| (w * 25, (w * 25..w * 25 + 25).sum(), 25)).collect();
    assert_eq!(sorted(out), expected);

    let env = StreamExecutionEnvironment::create_local_environment(2);
    let out = env
        .from_sequence(1, 10)
        .map(|v| e("n", v))
        .count_window_all(4)
        .apply(|_: &(), _: &GlobalWindow, els: Vec<Event>, out: &mut Collector<'_, Vec<i64>>| {
            out.collect(els.iter().map(|e| e.1).collect())
        })
        .execute_and_collect("count all")
        .unwrap();
    // Two parallel producers (the sequence's splits 1..=5 and 6..=10) interleave at random, so
    // which 8 of the 10 numbers fill the windows varies. What is fixed: two full windows, and,
    // in arrival order, each producer's numbers are the start of its split, in order.
    assert_eq!(
        out.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![4, 4],
        "two full windows of 4; the last 2 never fire"
    );
    let (first, second): (Vec<i64>, Vec<i64>) = out.concat().into_iter().partition(|v| *v <= 5);
    assert_eq!(first, (1..=first.len() as i64).collect::<Vec<_>>(), "{out:?}");
    assert_eq!(second, (6..6 + second.len() as i64).collect::<Vec<_>>(), "{out:?}");
}

#[test]
fn invalid_windows_are_rejected_when_the_job_is_built() {
    type Fragment = Box<dyn Fn(DataStream<Event>) -> DataStream<WindowSum>>;
    let cases: Vec<(&str, Fragment)> = vec![
        (
            "tumbling window size must be positive",
            Box::new(|s| sum_with_window(s.key_by(key_of).window(TumblingEventTimeWindows::of(Duration::ZERO)))),
        ),
        (
            "sliding window slide must be positive",
            Box::new(|s| sum_with_window(s.key_by(key_of).window(SlidingEventTimeWindows::of(ms(10), Duration::ZERO)))),
        ),
        (
            "session gap must be positive",
            Box::new(|s| sum_with_window(s.key_by(key_of).window(EventTimeSessionWindows::with_gap(Duration::ZERO)))),
        ),
        (
            "does not fit in 64-bit milliseconds",
            Box::new(|s| {
                sum_with_window(s.key_by(key_of).window(TumblingEventTimeWindows::of(Duration::from_secs(u64::MAX))))
            }),
        ),
        (
            "offset 10 ms must be smaller than the size",
            Box::new(|s| {
                sum_with_window(s.key_by(key_of).window(TumblingEventTimeWindows::of(ms(10)).with_offset(10)))
            }),
        ),
        (
            "cannot be used with merging (session) windows",
            Box::new(|s| {
                sum_with_window(
                    s.key_by(key_of).window(EventTimeSessionWindows::with_gap(ms(5))).trigger(FireOnNegative),
                )
            }),
        ),
    ];
    for (expected, fragment) in cases {
        let err = OneInputOperatorTestHarness::new(&fragment).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(expected), "expected '{expected}' in: {err}");
        let env = StreamExecutionEnvironment::create_local_environment(1);
        fragment(env.from_collection(vec![e("a", 1)])).print();
        let err = env.execute("bad window").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(expected), "expected '{expected}' when executing: {err}");
    }
    let env = StreamExecutionEnvironment::create_local_environment(1);
    env.from_collection(vec![e("a", 1)]).key_by(key_of).count_window(0).sum(|e: &mut Event| &mut e.1).print();
    assert!(env.execute("bad count").unwrap_err().to_string().contains("count_window: the size must be at least 1"));
}

#[test]
fn event_time_windows_without_timestamps_fail_the_task_with_a_clear_error() {
    let env = StreamExecutionEnvironment::create_local_environment(1);
    let stream = env.from_collection(vec![e("a", 1)]).key_by(key_of).window(TumblingEventTimeWindows::of(ms(10)));
    sum_with_window(stream).name("my window").print();
    let err = env.execute("no timestamps").unwrap_err().to_string();
    assert!(err.contains("no timestamp") && err.contains("my window"), "{err}");

    let mut h = harness(|s| sum_with_window(s.key_by(key_of).window(TumblingEventTimeWindows::of(ms(10)))));
    let err = h.process_element(e("a", 1), i64::MAX - 3).unwrap_err().to_string();
    assert!(err.contains("do not fit in 64-bit milliseconds"), "timestamp overflow: {err}");
}

#[test]
fn window_state_lives_in_either_backend() {
    for backend in brisk_backends() {
        let env = StreamExecutionEnvironment::create_local_environment(1);
        let dir = temp_dir(&format!("windows-{backend:?}"));
        env.set_state_backend(StateBackendConfig {
            kind: backend.clone(),
            rocksdb_local_dir: Some(dir.clone()),
            ..StateBackendConfig::default()
        });
        let mut h = OneInputOperatorTestHarness::with_environment(env, |s: DataStream<Event>| {
            sum_with_window(
                s.key_by(key_of).window(EventTimeSessionWindows::with_gap(ms(10))).allowed_lateness(ms(100)),
            )
        })
        .unwrap();
        h.open().unwrap();
        for (k, v, t) in [("a", 1, 0), ("b", 2, 3), ("a", 4, 25), ("a", 8, 10)] {
            h.process_element(e(k, v), t).unwrap();
        }
        h.process_watermark(40).unwrap();
        h.process_element(e("a", 16), 18).unwrap(); // late but allowed: bridges both sessions and fires at once
        h.end_input().unwrap();
        h.close().unwrap();
        assert_eq!(
            sorted(h.values()),
            vec![ws("a", 0, 20, 9), ws("a", 0, 35, 29), ws("a", 25, 35, 4), ws("b", 3, 13, 2)],
            "{backend:?}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The backends built in: RocksDB only with the `rocksdb` feature, decided at compile time so
/// that no run ever reports RocksDB while using the heap.
fn brisk_backends() -> Vec<StateBackendKind> {
    vec![
        StateBackendKind::HashMap,
        #[cfg(feature = "rocksdb")]
        StateBackendKind::RocksDb,
    ]
}

#[test]
fn window_state_and_timers_survive_a_snapshot_and_restore() {
    type Fragment = fn(DataStream<Event>) -> DataStream<WindowSum>;
    let fragments: Vec<(&str, Fragment)> = vec![
        ("list contents", |s| sum_with_window(s.key_by(key_of).window(TumblingEventTimeWindows::of(ms(10))))),
        ("in-memory panes", |s| {
            s.key_by(key_of).window(TumblingEventTimeWindows::of(ms(10))).reduce_with(
                |a: Event, b: Event| (a.0, a.1 + b.1),
                brisk::windowing::functions::WindowFn(
                    |k: &String, w: &TimeWindow, r: Vec<Event>, out: &mut Collector<'_, WindowSum>| {
                        r.into_iter().for_each(|e| out.collect((k.clone(), w.start, w.end, e.1)))
                    },
                ),
            )
        }),
        ("sessions", |s| sum_with_window(s.key_by(key_of).window(EventTimeSessionWindows::with_gap(ms(10))))),
    ];
    for backend in brisk_backends() {
        for (name, fragment) in &fragments {
            let env = || {
                let env = StreamExecutionEnvironment::create_local_environment(1);
                env.set_state_backend(StateBackendConfig { kind: backend.clone(), ..StateBackendConfig::default() });
                env
            };
            let mut before = OneInputOperatorTestHarness::with_environment(env(), fragment).unwrap();
            before.open().unwrap();
            for (k, v, t) in [("a", 1, 1), ("b", 2, 3), ("a", 4, 12), ("a", 8, 5)] {
                before.process_element(e(k, v), t).unwrap();
            }
            before.process_watermark(9).unwrap();
            let fired_before = before.values();
            let snapshot = before.snapshot(1).unwrap();
            let mut after = OneInputOperatorTestHarness::with_environment(env(), fragment).unwrap();
            after.initialize_state(&[snapshot]).unwrap();
            after.open().unwrap();
            after.process_element(e("a", 16), 14).unwrap();
            after.end_input().unwrap();
            let mut all = fired_before;
            all.extend(after.values());
            let expected = match *name {
                "sessions" => vec![ws("a", 1, 24, 29), ws("b", 3, 13, 2)],
                _ => vec![ws("a", 0, 10, 9), ws("a", 10, 20, 20), ws("b", 0, 10, 2)],
            };
            assert_eq!(sorted(all), expected, "{name}, {backend:?}");
        }
    }
}
