//! The windowed aggregation job (the window benchmark): `key,timestamp_ms,value` events →
//! event time with bounded out-of-orderness → per key, sum and count per tumbling (or
//! sliding) event-time window → `key,window_start_ms,window_end_ms,sum,count` lines.

use brisk::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One input event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The key.
    pub key: CompactString,
    /// Event time, epoch milliseconds.
    pub timestamp: i64,
    /// The value summed per window.
    pub value: i64,
}

impl TextFormat for Event {
    fn write_text(&self, out: &mut String) {
        self.write_csv(out);
    }
    fn write_csv(&self, out: &mut String) {
        (&self.key, self.timestamp, self.value).write_csv(out);
    }
}

/// Parses a `key,timestamp_ms,value` line; the error says which field is wrong and why.
pub fn parse_event(line: &str) -> Result<Event, String> {
    let mut fields = line.splitn(4, ',');
    let (Some(key), Some(ts), Some(value), None) = (fields.next(), fields.next(), fields.next(), fields.next()) else {
        return Err(format!("expected 3 fields 'key,timestamp_ms,value', found {}: '{line}'", line.split(',').count()));
    };
    if key.is_empty() {
        return Err(format!("the key is empty: '{line}'"));
    }
    let timestamp = parse_i64(ts)
        .ok_or_else(|| format!("timestamp '{ts}' of key '{key}' is not a whole number of milliseconds"))?;
    let value =
        parse_i64(value).ok_or_else(|| format!("value '{value}' of key '{key}' is not a whole 64-bit number"))?;
    Ok(Event { key: CompactString::from(key), timestamp, value })
}

/// A decimal `i64` with optional sign and surrounding spaces; `None` if it is not one or
/// overflows. Faster than `str::parse` on the benchmark's short numbers.
fn parse_i64(text: &str) -> Option<i64> {
    let bytes = text.trim_ascii().as_bytes();
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, bytes),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n.checked_mul(10)?.checked_sub(i64::from(d))?;
    }
    if negative { Some(n) } else { n.checked_neg() }
}

/// One window's result.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WindowResult {
    /// The key.
    pub key: CompactString,
    /// First millisecond of the window.
    pub window_start: i64,
    /// First millisecond after the window.
    pub window_end: i64,
    /// Sum of the values.
    pub sum: i64,
    /// Number of events.
    pub count: u64,
}

impl TextFormat for WindowResult {
    fn write_text(&self, out: &mut String) {
        self.write_csv(out);
    }
    fn write_csv(&self, out: &mut String) {
        (&self.key, self.window_start, self.window_end, self.sum, self.count).write_csv(out);
    }
}

/// Sum and count of a window, kept incrementally.
#[derive(Clone, Copy, Debug, Default)]
pub struct SumCount;

impl AggregateFunction<Event, (i64, u64), (i64, u64)> for SumCount {
    fn create_accumulator(&self) -> (i64, u64) {
        (0, 0)
    }
    fn add(&self, event: Event, (sum, count): (i64, u64)) -> (i64, u64) {
        (sum.wrapping_add(event.value), count + 1)
    }
    fn get_result(&self, acc: &(i64, u64)) -> (i64, u64) {
        *acc
    }
    fn merge(&self, a: (i64, u64), b: (i64, u64)) -> (i64, u64) {
        (a.0.wrapping_add(b.0), a.1 + b.1)
    }
}

/// Where results (and late events) go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowAggSink {
    /// Results on stdout, late events on stderr.
    Print,
    /// Results as CSV at the path (a file, or a directory of part files at parallelism > 1);
    /// late events in `late.csv` next to it.
    File(PathBuf),
    /// Through the exactly-once file sink: results in part files of directory PATH, late
    /// events in part files of directory `late.csv` next to it, committed at checkpoints.
    ExactlyOnceFile(PathBuf),
    /// Nowhere (benchmarks).
    Discard,
}

/// The job's parameters.
#[derive(Clone, Debug)]
pub struct WindowAggJob {
    /// Input files or directories.
    pub inputs: Vec<PathBuf>,
    /// Window size.
    pub window: Duration,
    /// Sliding windows with this slide; `None` for tumbling windows.
    pub slide: Option<Duration>,
    /// Bound of the events' disorder (the watermark trails the highest timestamp by it).
    pub out_of_orderness: Duration,
    /// How long windows accept late events after the watermark passed them.
    pub allowed_lateness: Duration,
    /// Where results go.
    pub sink: WindowAggSink,
    /// Throttle the events to this many per second (`--source-rate`).
    pub source_rate: Option<f64>,
}

/// Where late events are written for results written to `output`.
pub fn late_path(output: &Path) -> PathBuf {
    output.parent().map(|p| p.join("late.csv")).unwrap_or_else(|| PathBuf::from("late.csv"))
}

/// The side output of events too late for their windows.
pub fn late_tag() -> OutputTag<Event> {
    OutputTag::new("late-events")
}

impl WindowAggJob {
    /// Declares the job on `env`.
    pub fn declare(&self, env: &StreamExecutionEnvironment) {
        self.declare_with(env, TagWindow);
    }

    /// Declares the job with another window function (benchmarks wrap [`TagWindow`]).
    pub fn declare_with<P>(&self, env: &StreamExecutionEnvironment, process: P)
    where
        P: ProcessWindowFunction<(i64, u64), WindowResult, CompactString, TimeWindow>,
    {
        let strategy = WatermarkStrategy::for_bounded_out_of_orderness(self.out_of_orderness)
            .with_timestamp_assigner(|e: &Event, _| e.timestamp);
        let events = env
            .from_source(FileSource::for_record_format(self.inputs.clone(), parse_event), strategy, "events")
            .uid("events");
        let events = match self.source_rate {
            Some(rate) => events.rich_map(crate::cli::Throttle::new(rate)).name("throttle").uid("throttle"),
            None => events,
        };
        let keyed = events.key_by_field(|e: &Event| &e.key);
        let results = match self.slide {
            None => self.aggregate(keyed.window(TumblingEventTimeWindows::of(self.window)), process),
            Some(slide) => self.aggregate(keyed.window(SlidingEventTimeWindows::of(self.window, slide)), process),
        };
        let late = results.get_side_output(&late_tag());
        match &self.sink {
            WindowAggSink::Print => {
                results.print().name("print");
                late.print_to_err().name("print-late");
            }
            WindowAggSink::File(path) => {
                results.write_as_csv(path).name("results");
                late.write_as_csv(late_path(path)).set_parallelism(1).name("late-events");
            }
            WindowAggSink::ExactlyOnceFile(path) => {
                results.add_sink(FileSink::csv(path)).name("results").uid("results");
                late.add_sink(FileSink::csv(late_path(path))).set_parallelism(1).name("late-events").uid("late-events");
            }
            WindowAggSink::Discard => {
                results.add_sink(DiscardingSink).name("discard");
                late.add_sink(DiscardingSink).name("discard-late");
            }
        }
    }

    fn aggregate<A, P>(&self, windowed: WindowedStream<Event, CompactString, A>, process: P) -> DataStream<WindowResult>
    where
        A: WindowAssigner<Event, W = TimeWindow>,
        P: ProcessWindowFunction<(i64, u64), WindowResult, CompactString, TimeWindow>,
    {
        windowed
            .allowed_lateness(self.allowed_lateness)
            .side_output_late_data(&late_tag())
            .aggregate_with(SumCount, process)
            .name("window-sum-count")
            .uid("window-sum-count")
    }
}

/// Turns a window's sum and count into its [`WindowResult`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TagWindow;

impl RichFunction for TagWindow {}

impl ProcessWindowFunction<(i64, u64), WindowResult, CompactString, TimeWindow> for TagWindow {
    fn process(
        &mut self,
        key: &CompactString,
        ctx: &mut ProcessWindowContext<'_, TimeWindow, WindowResult>,
        results: Vec<(i64, u64)>,
        out: &mut Collector<'_, WindowResult>,
    ) -> Result<(), BoxError> {
        let w = ctx.window();
        for (sum, count) in results {
            out.collect(WindowResult { key: key.clone(), window_start: w.start, window_end: w.end, sum, count });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_and_errors_say_what_is_wrong() {
        assert_eq!(
            parse_event("k1,1700000000123,42"),
            Ok(Event { key: "k1".into(), timestamp: 1_700_000_000_123, value: 42 })
        );
        assert_eq!(parse_event("k,-5, 7").map(|e| (e.timestamp, e.value)), Ok((-5, 7)));
        assert!(parse_event("k,1").unwrap_err().contains("expected 3 fields"));
        assert!(parse_event("k,1,2,3").unwrap_err().contains("found 4"));
        assert!(parse_event(",1,2").unwrap_err().contains("key is empty"));
        assert!(parse_event("k,soon,2").unwrap_err().contains("timestamp 'soon' of key 'k'"));
        assert!(
            parse_event("k,1,9999999999999999999999")
                .unwrap_err()
                .contains("value '9999999999999999999999' of key 'k'")
        );
        assert_eq!(parse_i64("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64("9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64("9223372036854775808"), None);
        assert_eq!((parse_i64("-"), parse_i64(""), parse_i64("1x"), parse_i64(" +12 ")), (None, None, None, Some(12)));
    }

    #[test]
    fn late_events_go_next_to_the_output() {
        assert_eq!(late_path(Path::new("/out/results.csv")), PathBuf::from("/out/late.csv"));
        assert_eq!(late_path(Path::new("results")), PathBuf::from("late.csv"));
    }
}
