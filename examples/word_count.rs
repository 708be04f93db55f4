//! WordCount: counts words in text files, or in a built-in text when no input is given.
//!
//! `cargo run --release --example word_count -- [--input PATH]... [--output PATH]
//! [--parallelism N] [--execution-mode streaming|batch] [--state-backend hashmap|rocksdb]`

use brisk_examples::cli;
use brisk_examples::word_count::{WordCountSink, word_count};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Counts words like Apache Flink's WordCount example: lower-cased, split on non-word
/// characters. Prints `(word,count)` lines, or writes `word,count` lines with --output.
#[derive(Parser, Debug)]
#[command(name = "word_count", version)]
struct Args {
    /// Input file or directory (repeatable); without it, a built-in text is counted.
    #[arg(long)]
    input: Vec<PathBuf>,
    /// Output file (a directory of part files at parallelism > 1); without it, results are printed.
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    common: cli::CommonArgs,
    /// Drop the results instead of printing them (for benchmarks).
    #[arg(long, conflicts_with = "output")]
    discard: bool,
}

fn run(args: Args) -> anyhow::Result<()> {
    let env = args.common.environment()?;
    let sink = match (args.output, args.discard) {
        (Some(path), _) => WordCountSink::File(path),
        (None, true) => WordCountSink::Discard,
        (None, false) => WordCountSink::Print,
    };
    word_count(&env, &args.input, &sink);
    let result = env.execute("WordCount")?;
    tracing::info!(runtime_ms = result.net_runtime().as_millis() as u64, "WordCount finished");
    Ok(())
}

fn main() -> ExitCode {
    cli::init_logging();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
