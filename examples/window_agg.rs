//! Windowed aggregation: per key, the sum and count of values per event-time window.
//!
//! `cargo run --release --example window_agg -- --input PATH [--output PATH] [--parallelism N]
//! [--window 10s] [--slide 5s] [--out-of-orderness 2s] [--allowed-lateness 0s]
//! [--state-backend hashmap|rocksdb] [--checkpoint-interval 1s] [--checkpoint-dir PATH]
//! [--checkpointing-mode exactly-once|at-least-once] [--unaligned] [--savepoint-dir PATH]
//! [--from-savepoint PATH] [--inject-failures K] [--source-rate N]`

use anyhow::Context;
use brisk_examples::cli;
use brisk_examples::window_agg::{WindowAggJob, WindowAggSink, late_path};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reads `key,timestamp_ms,value` CSV lines, assigns event time with bounded
/// out-of-orderness, and writes `key,window_start_ms,window_end_ms,sum,count` per key and
/// tumbling (or, with --slide, sliding) event-time window. Events too late for their window go
/// to `late.csv` next to the output (to stderr without --output).
#[derive(Parser, Debug)]
#[command(name = "window_agg", version)]
struct Args {
    /// Input file or directory of `key,timestamp_ms,value` lines (repeatable).
    #[arg(long, required = true)]
    input: Vec<PathBuf>,
    /// Output file (a directory of part files at parallelism > 1); without it, results are printed.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Window size (e.g. 10s, 500ms, 1min).
    #[arg(long, default_value = "10s", value_parser = duration)]
    window: Duration,
    /// Sliding windows that start every SLIDE (default: tumbling windows).
    #[arg(long, value_parser = duration)]
    slide: Option<Duration>,
    /// How far events may arrive out of timestamp order.
    #[arg(long, default_value = "2s", value_parser = duration)]
    out_of_orderness: Duration,
    /// How long a window keeps accepting late events after it fired.
    #[arg(long, default_value = "0s", value_parser = duration)]
    allowed_lateness: Duration,
    #[command(flatten)]
    common: cli::CommonArgs,
    /// Drop the results instead of writing them (for benchmarks).
    #[arg(long, conflicts_with = "output")]
    discard: bool,
}

fn duration(text: &str) -> Result<Duration, String> {
    brisk::core::time::parse_duration(text).map_err(|e| e.to_string())
}

fn run(args: Args) -> anyhow::Result<()> {
    let env = args.common.environment()?;
    let checkpoints = &args.common.checkpoints;
    let sink = match (&args.output, args.discard) {
        (Some(path), _) if checkpoints.enabled() => WindowAggSink::ExactlyOnceFile(path.clone()),
        (Some(path), _) => WindowAggSink::File(path.clone()),
        (None, true) => WindowAggSink::Discard,
        (None, false) => WindowAggSink::Print,
    };
    let job = WindowAggJob {
        inputs: args.input,
        window: args.window,
        slide: args.slide,
        out_of_orderness: args.out_of_orderness,
        allowed_lateness: args.allowed_lateness,
        sink,
        source_rate: checkpoints.source_rate,
    };
    job.declare(&env);
    // Records through the operators: about two per event, an event per 23 bytes.
    let failures = checkpoints.failure_injector(cli::input_bytes(&job.inputs) / 11);
    env.set_failure_injector(failures.clone());
    let result = cli::execute(&env, "WindowAgg", checkpoints, &failures).context("the window job failed")?;
    tracing::info!(runtime_ms = result.net_runtime().as_millis() as u64, "WindowAgg finished");
    if let Some(output) = &args.output {
        tracing::info!(results = %output.display(), late = %late_path(output).display(), "results written");
    }
    Ok(())
}

fn main() -> ExitCode {
    cli::main(run)
}
