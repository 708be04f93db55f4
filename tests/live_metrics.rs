//! Live metrics of a running job, its id and its exception history: what the REST API and
//! Prometheus reporters will read.

use brisk::prelude::*;
use brisk::runtime::jobmaster::restart::RestartStrategy;
use brisk::runtime::metrics::task_io::SubtaskMetrics;
use brisk::runtime::metrics::task_io::TaskIoValues;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const RECORDS: i64 = 10_000;

/// The sum of `f` over the subtasks of `vertex`.
fn total(metrics: &[SubtaskMetrics], vertex: usize, f: impl Fn(&TaskIoValues) -> u64) -> u64 {
    metrics.iter().filter(|m| m.vertex == vertex).map(|m| f(&m.values)).sum()
}

#[test]
fn every_subtask_counts_its_records_and_input_watermark() {
    let env = StreamExecutionEnvironment::create_local_environment(2);
    env.from_sequence(1, RECORDS).key_by(|x: &i64| x % 7).map(|x: i64| x + 1).add_sink(DiscardingSink);
    let client = env.execute_async("metrics").unwrap();
    while !client.is_finished() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let metrics = client.metrics();
    let result = client.wait().unwrap();
    let layout: Vec<(usize, &str, usize, usize)> =
        metrics.iter().map(|m| (m.vertex, m.vertex_name.as_str(), m.subtask, m.attempt)).collect();
    assert_eq!(
        layout,
        vec![
            (0, "Source: Sequence Source", 0, 0),
            (0, "Source: Sequence Source", 1, 0),
            (1, "Map -> Sink: Unnamed", 0, 0),
            (1, "Map -> Sink: Unnamed", 1, 0),
        ]
    );
    let n = RECORDS as u64;
    let record_bytes = std::mem::size_of::<brisk::core::StreamRecord<i64>>() as u64;
    assert_eq!(total(&metrics, 0, |v| v.records_in), n, "the sources read every number");
    assert_eq!(total(&metrics, 0, |v| v.records_out), n, "and sent each once");
    assert_eq!(total(&metrics, 0, |v| v.bytes_out), n * record_bytes);
    assert_eq!(total(&metrics, 1, |v| v.records_in), n);
    assert_eq!(total(&metrics, 1, |v| v.bytes_in), n * record_bytes);
    assert_eq!(total(&metrics, 1, |v| v.records_out), 0, "a sink chain sends nothing downstream");
    for m in &metrics {
        let expected = (m.vertex == 1).then_some(i64::MAX);
        assert_eq!(m.values.current_input_watermark, expected, "the final watermark reached {}", m.vertex_name);
    }
    assert_eq!(result.operator("Map").map(|o| o.records_in), Some(n), "the same count as the job's result");
}

static FAILED_ONCE: AtomicBool = AtomicBool::new(false);

#[test]
fn the_exception_history_keeps_every_failure_the_job_recovered_from() {
    let env = StreamExecutionEnvironment::create_local_environment(1);
    env.set_restart_strategy(RestartStrategy::FixedDelay { attempts: 1, delay: Duration::from_millis(1) });
    env.from_sequence(1, 100)
        .map(|x: i64| {
            if x == 50 && !FAILED_ONCE.swap(true, Ordering::SeqCst) {
                panic!("boom at {x}");
            }
            x
        })
        .add_sink(DiscardingSink);
    let client = env.execute_async("failing once").unwrap();
    let id = client.job_id().to_string();
    let result = client.wait().unwrap();
    assert_eq!(result.job_id, id);
    assert!(id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()), "a Flink-style job id: {id}");
    assert_eq!(result.restarts, 1);
    let history: Vec<(&str, &str)> = result.exceptions.iter().map(|e| (e.task.as_str(), e.message.as_str())).collect();
    assert_eq!(history.len(), 1, "{history:?}");
    assert!(history[0].0.starts_with("Source: Sequence Source -> Map"), "{history:?}");
    assert!(history[0].1.contains("boom at 50"), "{history:?}");
    assert!(result.exceptions[0].timestamp_ms > 1_700_000_000_000);
}
