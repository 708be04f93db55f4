//! `brisk`: Brisk's command line (Flink's `flink` CLI and cluster scripts).

mod cluster;
mod info;
mod jobs;

use clap::{Parser, Subcommand};
use cluster::ConfigArgs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Brisk's command line.
#[derive(Parser)]
#[command(name = "brisk", version, about = "Brisk's command line: run a cluster, inspect and run Brisk jobs")]
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
    /// Runs a JobManager in the foreground (RPC on jobmanager.rpc.port, default 6123).
    Jobmanager {
        #[command(flatten)]
        config: ConfigArgs,
        /// The RPC port (overrides jobmanager.rpc.port; 0 picks a free one).
        #[arg(long, value_name = "PORT")]
        rpc_port: Option<u16>,
    },
    /// Runs a TaskManager in the foreground, offering its slots to a JobManager.
    Taskmanager {
        #[command(flatten)]
        config: ConfigArgs,
        /// The JobManager's RPC address [default: jobmanager.rpc.address:jobmanager.rpc.port].
        #[arg(long, value_name = "HOST:PORT")]
        jobmanager: Option<String>,
        /// Slots to offer (overrides taskmanager.numberOfTaskSlots).
        #[arg(long, value_name = "N")]
        slots: Option<usize>,
    },
    /// Runs a job artifact on the cluster: uploads it and (unless detached) waits for the job.
    Run {
        #[command(flatten)]
        config: ConfigArgs,
        /// The JobManager's RPC address [default: jobmanager.rpc.address:jobmanager.rpc.port].
        #[arg(short = 'm', long, value_name = "HOST:PORT")]
        jobmanager: Option<String>,
        /// Default parallelism of the job (parallelism.default).
        #[arg(short = 'p', long, value_name = "N")]
        parallelism: Option<usize>,
        /// Return once the job is submitted.
        #[arg(short = 'd', long)]
        detached: bool,
        /// Start from this savepoint or retained checkpoint.
        #[arg(short = 's', long, value_name = "PATH")]
        from_savepoint: Option<String>,
        /// The job's artifact: a program that declares a job with Brisk's API.
        artifact: PathBuf,
        /// Arguments for the program.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Lists the cluster's jobs.
    List {
        #[command(flatten)]
        config: ConfigArgs,
        /// The JobManager's RPC address [default: jobmanager.rpc.address:jobmanager.rpc.port].
        #[arg(short = 'm', long, value_name = "HOST:PORT")]
        jobmanager: Option<String>,
        /// Print JSON with Flink's /jobs/overview field names.
        #[arg(long)]
        json: bool,
    },
    /// Cancels a job.
    Cancel {
        #[command(flatten)]
        config: ConfigArgs,
        /// The JobManager's RPC address [default: jobmanager.rpc.address:jobmanager.rpc.port].
        #[arg(short = 'm', long, value_name = "HOST:PORT")]
        jobmanager: Option<String>,
        /// The job's id.
        job_id: String,
    },
    /// Takes a savepoint of a running job.
    Savepoint {
        #[command(flatten)]
        config: ConfigArgs,
        /// The JobManager's RPC address [default: jobmanager.rpc.address:jobmanager.rpc.port].
        #[arg(short = 'm', long, value_name = "HOST:PORT")]
        jobmanager: Option<String>,
        /// The job's id.
        job_id: String,
        /// Where the savepoint goes (a new directory inside it) [default: execution.checkpointing.savepoint-dir].
        directory: Option<String>,
    },
    /// Stops a running job with a savepoint.
    Stop {
        #[command(flatten)]
        config: ConfigArgs,
        /// The JobManager's RPC address [default: jobmanager.rpc.address:jobmanager.rpc.port].
        #[arg(short = 'm', long, value_name = "HOST:PORT")]
        jobmanager: Option<String>,
        /// Where the savepoint goes [default: execution.checkpointing.savepoint-dir].
        #[arg(short = 'p', long, value_name = "DIR")]
        savepoint_path: Option<String>,
        /// Emit the final watermark first, flushing event-time windows and timers.
        #[arg(short = 'd', long)]
        drain: bool,
        /// The job's id.
        job_id: String,
    },
    /// Starts, stops or shows a standalone cluster on this host.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Starts a JobManager and one TaskManager per line of the workers file, in the background.
    Start {
        #[command(flatten)]
        config: ConfigArgs,
        /// Where the pid files and logs go.
        #[arg(long, value_name = "DIR", default_value = "log")]
        log_dir: PathBuf,
        /// How long to wait for every TaskManager to register.
        #[arg(long, value_name = "SECONDS", default_value_t = 30)]
        timeout: u64,
    },
    /// Stops the processes `brisk cluster start` started.
    Stop {
        /// Where `brisk cluster start` put the pid files.
        #[arg(long, value_name = "DIR", default_value = "log")]
        log_dir: PathBuf,
    },
    /// Shows the JobManager and its registered TaskManagers.
    Status {
        #[command(flatten)]
        config: ConfigArgs,
        /// The JobManager's RPC address [default: jobmanager.rpc.address:jobmanager.rpc.port].
        #[arg(long, value_name = "HOST:PORT")]
        jobmanager: Option<String>,
        /// Print JSON with Flink's /overview field names.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    brisk_runtime::logging::init_logging();
    let result = match cli.command {
        Command::Info { json, artifact, args } => info::run(&artifact, &args, json),
        Command::Jobmanager { config, rpc_port } => cluster::jobmanager(&config, rpc_port),
        Command::Taskmanager { config, jobmanager, slots } => cluster::taskmanager(&config, jobmanager, slots),
        Command::Run { config, jobmanager, parallelism, detached, from_savepoint, artifact, args } => {
            jobs::run(jobs::RunOptions {
                config: &config,
                jobmanager,
                parallelism,
                detached,
                from_savepoint,
                artifact: &artifact,
                args: &args,
            })
        }
        Command::List { config, jobmanager, json } => jobs::list(&config, jobmanager, json),
        Command::Cancel { config, jobmanager, job_id } => jobs::cancel(&config, jobmanager, &job_id),
        Command::Savepoint { config, jobmanager, job_id, directory } => {
            jobs::savepoint(&config, jobmanager, &job_id, directory, None)
        }
        Command::Stop { config, jobmanager, savepoint_path, drain, job_id } => {
            jobs::savepoint(&config, jobmanager, &job_id, savepoint_path, Some(drain))
        }
        Command::Cluster { action } => match action {
            ClusterAction::Start { config, log_dir, timeout } => {
                cluster::start(&config, &log_dir, Duration::from_secs(timeout))
            }
            ClusterAction::Stop { log_dir } => cluster::stop(&log_dir),
            ClusterAction::Status { config, jobmanager, json } => cluster::status(&config, jobmanager, json),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
