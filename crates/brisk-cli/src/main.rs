//! `brisk`: Brisk's command line (Flink's `flink` CLI).

mod info;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Brisk's command line.
#[derive(Parser)]
#[command(name = "brisk", version, about = "Brisk's command line: inspect and run Brisk jobs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints the job graph and execution plan of a job artifact without running it.
    Info {
        /// Print the plan as JSON (the format the JobManager reads).
        #[arg(long)]
        json: bool,
        /// The job's artifact: a program that declares a job with Brisk's API.
        artifact: PathBuf,
        /// Arguments for the program.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info { json, artifact, args } => info::run(&artifact, &args, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
