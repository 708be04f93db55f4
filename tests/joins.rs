//! Window joins, co-groups and interval joins: exact results in jobs and through the two-input
//! operator test harness, and a property test of interval joins against a nested loop.

use brisk::prelude::*;
use brisk::testing::TwoInputOperatorTestHarness;
use proptest::prelude::*;
use std::time::Duration;

/// `(key, value, timestamp)`.
type Row = (String, i64, i64);

fn rows(data: &[(&str, i64, i64)]) -> Vec<Row> {
    data.iter().map(|(k, v, t)| (k.to_string(), *v, *t)).collect()
}

fn timestamped(env: &StreamExecutionEnvironment, data: &[(&str, i64, i64)]) -> DataStream<Row> {
    env.from_collection(rows(data)).assign_timestamps_and_watermarks(
        WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|r: &Row, _| r.2),
    )
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn window_join_pairs_equal_keys_of_the_same_window() {
    let env = StreamExecutionEnvironment::create_local_environment(2);
    let orders = timestamped(&env, &[("a", 1, 1), ("b", 2, 3), ("a", 3, 12), ("c", 4, 5)]);
    let payments = timestamped(&env, &[("a", 10, 2), ("a", 20, 8), ("b", 30, 11), ("a", 40, 15), ("c", 50, 9)]);
    let out = orders
        .join(&payments)
        .where_(|o: &Row| o.0.clone())
        .equal_to(|p: &Row| p.0.clone())
        .window(TumblingEventTimeWindows::of(Duration::from_millis(10)))
        .apply(|o: Row, p: Row| format!("{}:{}+{}", o.0, o.1, p.1))
        .execute_and_collect("window join")
        .unwrap();
    // b's order (window 0) and payment (window 10) do not meet.
    assert_eq!(sorted(out), vec!["a:1+10", "a:1+20", "a:3+40", "c:4+50"]);
}

#[test]
fn co_group_sees_both_sides_even_when_one_is_empty() {
    let env = StreamExecutionEnvironment::create_local_environment(3);
    let left = timestamped(&env, &[("a", 1, 1), ("a", 2, 2), ("b", 3, 3)]);
    let right = timestamped(&env, &[("a", 10, 4), ("c", 20, 5)]);
    let out = left
        .co_group(&right)
        .where_(|r: &Row| r.0.clone())
        .equal_to(|r: &Row| r.0.clone())
        .window(TumblingEventTimeWindows::of(Duration::from_millis(100)))
        .apply(|l: Vec<Row>, r: Vec<Row>, out: &mut Collector<'_, String>| {
            let key = l.first().or(r.first()).map(|x| x.0.clone()).unwrap_or_default();
            let sum = |v: &[Row]| v.iter().map(|x| x.1).sum::<i64>();
            out.collect(format!("{key}: {} left (sum {}), {} right (sum {})", l.len(), sum(&l), r.len(), sum(&r)))
        })
        .execute_and_collect("co-group")
        .unwrap();
    assert_eq!(
        sorted(out),
        vec![
            "a: 2 left (sum 3), 1 right (sum 10)",
            "b: 1 left (sum 3), 0 right (sum 0)",
            "c: 0 left (sum 0), 1 right (sum 20)"
        ]
    );
}

#[test]
fn window_joins_work_with_sliding_and_session_windows() {
    let env = StreamExecutionEnvironment::create_local_environment(1);
    let left = timestamped(&env, &[("k", 1, 0), ("k", 2, 30)]);
    let right = timestamped(&env, &[("k", 10, 4), ("k", 20, 22)]);
    let out = left
        .join(&right)
        .where_(|r: &Row| r.0.clone())
        .equal_to(|r: &Row| r.0.clone())
        .window(EventTimeSessionWindows::with_gap(Duration::from_millis(10)))
        .apply(|l: Row, r: Row| (l.1, r.1))
        .execute_and_collect("session join")
        .unwrap();
    // Sessions: [0, 14) holds 1 and 10; 22 and 30 form [22, 40).
    assert_eq!(sorted(out), vec![(1, 10), (2, 20)]);

    let env = StreamExecutionEnvironment::create_local_environment(1);
    let left = timestamped(&env, &[("k", 1, 4)]);
    let right = timestamped(&env, &[("k", 10, 6), ("k", 20, 12)]);
    let out = left
        .join(&right)
        .where_(|r: &Row| r.0.clone())
        .equal_to(|r: &Row| r.0.clone())
        .window(SlidingEventTimeWindows::of(Duration::from_millis(10), Duration::from_millis(5)))
        .flat_apply(|l: Row, r: Row, out: &mut Collector<'_, (i64, i64)>| out.collect((l.1, r.1)))
        .execute_and_collect("sliding join")
        .unwrap();
    // Windows [0,10) and [-5,5) hold 4; 6 shares [0,10) with it, 12 shares none.
    assert_eq!(out, vec![(1, 10)]);
}

type JoinHarness = TwoInputOperatorTestHarness<Row, Row, (i64, i64, i64)>;

fn interval_harness(lower: i64, upper: i64, late: Option<&OutputTag<Row>>) -> JoinHarness {
    let tag = late.cloned();
    let mut h = TwoInputOperatorTestHarness::new(move |a: DataStream<Row>, b: DataStream<Row>| {
        let mut joined =
            a.key_by(|r: &Row| r.0.clone()).interval_join(&b.key_by(|r: &Row| r.0.clone())).between(lower, upper);
        if let Some(tag) = &tag {
            joined = joined.side_output_left_late_data(tag);
        }
        joined.process(PairWithTimestamp)
    })
    .unwrap();
    if let Some(tag) = late {
        h.side_output(tag).unwrap();
    }
    h.open().unwrap();
    h
}

/// Emits `(left value, right value, result timestamp)`.
#[derive(Clone)]
struct PairWithTimestamp;

impl RichFunction for PairWithTimestamp {}

impl ProcessJoinFunction<Row, Row, (i64, i64, i64)> for PairWithTimestamp {
    fn process_element(
        &mut self,
        left: Row,
        right: Row,
        ctx: &mut ProcessJoinContext<'_, (i64, i64, i64)>,
        out: &mut Collector<'_, (i64, i64, i64)>,
    ) -> Result<(), BoxError> {
        assert_eq!((ctx.left_timestamp(), ctx.right_timestamp()), (left.2, right.2));
        out.collect((left.1, right.1, ctx.timestamp()));
        Ok(())
    }
}

#[test]
fn interval_join_matches_within_bounds_in_either_arrival_order() {
    let mut h = interval_harness(-2, 3, None);
    h.process_element1(("a".into(), 1, 10), 10).unwrap();
    h.process_element2(("a".into(), 100, 8), 8).unwrap(); // 10 - 2: inclusive lower bound
    h.process_element2(("a".into(), 200, 13), 13).unwrap(); // 10 + 3: inclusive upper bound
    h.process_element2(("a".into(), 300, 14), 14).unwrap(); // outside
    h.process_element2(("b".into(), 400, 10), 10).unwrap(); // other key
    h.process_element2(("a".into(), 500, 7), 7).unwrap(); // outside
    h.process_element1(("a".into(), 2, 12), 12).unwrap(); // arrives after its partners
    assert_eq!(sorted(h.values()), vec![(1, 100, 10), (1, 200, 13), (2, 200, 13), (2, 300, 14)]);
    assert_eq!(
        sorted(h.records().iter().map(|r| r.timestamp).collect()),
        vec![10, 13, 13, 14],
        "results carry the later timestamp"
    );

    let mut h = TwoInputOperatorTestHarness::new(|a: DataStream<Row>, b: DataStream<Row>| {
        a.key_by(|r: &Row| r.0.clone())
            .interval_join(&b.key_by(|r: &Row| r.0.clone()))
            .between(-2, 3)
            .lower_bound_exclusive()
            .upper_bound_exclusive()
            .join(|l: Row, r: Row| (l.1, r.1, r.2))
    })
    .unwrap();
    h.open().unwrap();
    h.process_element1(("a".into(), 1, 10), 10).unwrap();
    for (v, t) in [(100, 8), (200, 9), (300, 12), (400, 13)] {
        h.process_element2(("a".into(), v, t), t).unwrap();
    }
    assert_eq!(h.values(), vec![(1, 200, 9), (1, 300, 12)], "8 and 13 are the excluded bounds");
}

#[test]
fn interval_join_drops_late_records_and_cleans_up_buffers() {
    let late = OutputTag::<Row>::new("late-left");
    let mut h = interval_harness(0, 5, Some(&late));
    h.process_element1(("a".into(), 1, 10), 10).unwrap();
    h.process_both_watermarks(20).unwrap();
    h.process_element1(("a".into(), 2, 19), 19).unwrap(); // behind the watermark: late
    h.process_element2(("a".into(), 100, 20), 20).unwrap(); // 10's buffer is gone (cleanup at 15)
    assert!(h.values().is_empty());
    assert_eq!(h.side_records(&late).into_iter().map(|r| r.value.1).collect::<Vec<_>>(), vec![2]);
    h.process_element1(("a".into(), 3, 20), 20).unwrap();
    assert_eq!(h.values(), vec![(3, 100, 20)], "the right element is still buffered");
}

#[test]
fn interval_join_rejects_inverted_bounds() {
    let result = TwoInputOperatorTestHarness::new(|a: DataStream<Row>, b: DataStream<Row>| {
        a.key_by(|r: &Row| r.0.clone())
            .interval_join(&b.key_by(|r: &Row| r.0.clone()))
            .between(5, -5)
            .join(|l: Row, r: Row| (l.1, r.1, 0))
    });
    let err = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("lower bound 5 ms must not be greater than the upper bound -5 ms"), "{err}");
}

fn interval_join_job(
    left: &[(u8, i64)],
    right: &[(u8, i64)],
    lower: i64,
    upper: i64,
    parallelism: usize,
) -> Vec<(u8, i64, i64)> {
    let env = StreamExecutionEnvironment::create_local_environment(parallelism);
    env.set_auto_watermark_interval(Duration::from_millis(1));
    let strategy =
        WatermarkStrategy::for_bounded_out_of_orderness(Duration::ZERO).with_timestamp_assigner(|r: &(u8, i64), _| r.1);
    let mut l = left.to_vec();
    let mut r = right.to_vec();
    l.sort_by_key(|x| x.1);
    r.sort_by_key(|x| x.1);
    let a = env.from_collection(l).assign_timestamps_and_watermarks(strategy.clone()).key_by(|x: &(u8, i64)| x.0);
    let b = env.from_collection(r).assign_timestamps_and_watermarks(strategy).key_by(|x: &(u8, i64)| x.0);
    let out = a
        .interval_join(&b)
        .between(lower, upper)
        .join(|x: (u8, i64), y: (u8, i64)| (x.0, x.1, y.1))
        .execute_and_collect("interval join");
    sorted(out.expect("job runs"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Interval join over time-ordered inputs equals the nested-loop definition: buffers are
    /// never cleaned up too early, whatever the bounds and parallelism.
    #[test]
    fn interval_join_equals_a_nested_loop(
        left in prop::collection::vec((0u8..4, 0i64..200), 0..60),
        right in prop::collection::vec((0u8..4, 0i64..200), 0..60),
        (lower, upper) in (-30i64..30, 0i64..30).prop_map(|(l, w)| (l, l + w)),
        parallelism in 1usize..=3,
    ) {
        let mut expected = Vec::new();
        for a in &left {
            for b in &right {
                if a.0 == b.0 && a.1 + lower <= b.1 && b.1 <= a.1 + upper {
                    expected.push((a.0, a.1, b.1));
                }
            }
        }
        prop_assert_eq!(interval_join_job(&left, &right, lower, upper, parallelism), sorted(expected));
    }
}
