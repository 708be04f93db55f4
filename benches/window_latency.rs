//! The window benchmark with latency: runs the `window_agg` job (10 s tumbling event-time
//! windows, sum and count, 2 s out-of-orderness) on the shared `events.csv`, and measures how
//! long each window result takes from the watermark that fires it reaching the window
//! operator to the result leaving it for the (chained) sink.
//!
//! `cargo bench --bench window_latency -- [EVENTS_CSV] [PARALLELISM] [hashmap|rocksdb] [WATERMARK_INTERVAL]`

use brisk::prelude::*;
use brisk_examples::window_agg::{TagWindow, WindowAggJob, WindowAggSink, WindowResult};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Wraps [`TagWindow`]; the first result of each watermark marks when the firing began (the
/// operator fires as soon as the watermark arrives), every result's delay is measured from it.
#[derive(Clone)]
struct LatencyRecorder {
    latencies: Arc<Mutex<Vec<u64>>>,
    local: Vec<u64>,
    firing: Option<(i64, Instant)>,
}

impl RichFunction for LatencyRecorder {
    fn close(&mut self) -> Result<(), BoxError> {
        let mut all = self.latencies.lock().map_err(|_| "latency list poisoned")?;
        all.append(&mut self.local);
        Ok(())
    }
}

impl ProcessWindowFunction<(i64, u64), WindowResult, CompactString, TimeWindow> for LatencyRecorder {
    fn process(
        &mut self,
        key: &CompactString,
        ctx: &mut ProcessWindowContext<'_, TimeWindow, WindowResult>,
        results: Vec<(i64, u64)>,
        out: &mut Collector<'_, WindowResult>,
    ) -> Result<(), BoxError> {
        let watermark = ctx.current_watermark();
        let start = match self.firing {
            Some((w, start)) if w == watermark => start,
            _ => {
                let now = Instant::now();
                self.firing = Some((watermark, now));
                now
            }
        };
        TagWindow.process(key, ctx, results, out)?;
        self.local.push(start.elapsed().as_nanos() as u64);
        Ok(())
    }
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Duration::from_nanos(sorted.get(index).copied().unwrap_or(0))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let input = PathBuf::from(args.first().map(String::as_str).unwrap_or("bench-data/events.csv"));
    let parallelism: usize = args.get(1).map(|p| p.parse()).transpose()?.unwrap_or(2);
    let backend = args.get(2).cloned().unwrap_or_else(|| "hashmap".into());
    let interval = brisk::core::time::parse_duration(args.get(3).map(String::as_str).unwrap_or("200ms"))?;
    let mut configuration = Configuration::new();
    configuration.set(brisk::options::STATE_BACKEND_KEY, &backend);
    configuration.set(brisk::options::PARALLELISM.key, parallelism);
    let env = StreamExecutionEnvironment::from_configuration(&configuration)?;
    env.set_auto_watermark_interval(interval);
    let job = WindowAggJob {
        inputs: vec![input],
        window: Duration::from_secs(10),
        slide: None,
        out_of_orderness: Duration::from_secs(2),
        allowed_lateness: Duration::ZERO,
        sink: WindowAggSink::Discard,
        source_rate: None,
    };
    let latencies = Arc::new(Mutex::new(Vec::new()));
    job.declare_with(&env, LatencyRecorder { latencies: latencies.clone(), local: Vec::new(), firing: None });
    let started = Instant::now();
    env.execute("WindowAgg latency")?;
    let elapsed = started.elapsed();
    let mut all = std::mem::take(&mut *latencies.lock().map_err(|_| anyhow::anyhow!("latency list poisoned"))?);
    all.sort_unstable();
    println!(
        "window p={parallelism} {backend} watermarks every {interval:?}: {} results in {:.2} s; result latency after the watermark: p50 {:?}, p99 {:?}, max {:?}",
        all.len(),
        elapsed.as_secs_f64(),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        percentile(&all, 1.0)
    );
    Ok(())
}
