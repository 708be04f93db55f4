//! WordCount: counts words in text files, or in a built-in text when no input is given.
//!
//! `cargo run --release --example word_count -- [--input PATH]... [--output PATH]
//! [--parallelism N] [--execution-mode streaming|batch] [--state-backend hashmap|rocksdb]
//! [--checkpoint-interval 1s] [--checkpoint-dir PATH] [--checkpointing-mode exactly-once|at-least-once]
//! [--unaligned] [--savepoint-dir PATH] [--from-savepoint PATH] [--inject-failures K] [--source-rate N]`

use brisk_examples::cli;
use brisk_examples::word_count::{DEFAULT_TEXT, WordCountSink, word_count_throttled};
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
    /// Output file (a directory of part files at parallelism > 1, or with checkpoints, written
    /// exactly once); without it, results are printed.
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
    let checkpoints = &args.common.checkpoints;
    let sink = match (args.output, args.discard) {
        (Some(path), _) if checkpoints.enabled() => WordCountSink::ExactlyOnceFile(path),
        (Some(path), _) => WordCountSink::File(path),
        (None, true) => WordCountSink::Discard,
        (None, false) => WordCountSink::Print,
    };
    word_count_throttled(&env, &args.input, &sink, checkpoints.source_rate);
    // Records through the operators: about two per word, a word per six bytes of text.
    let bytes = if args.input.is_empty() {
        DEFAULT_TEXT.iter().map(|l| l.len() as u64).sum()
    } else {
        cli::input_bytes(&args.input)
    };
    let failures = checkpoints.failure_injector(bytes / 3);
    env.set_failure_injector(failures.clone());
    let result = cli::execute(&env, "WordCount", checkpoints, &failures)?;
    tracing::info!(runtime_ms = result.net_runtime().as_millis() as u64, "WordCount finished");
    Ok(())
}

fn main() -> ExitCode {
    cli::main(run)
}
