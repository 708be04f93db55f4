//! Command-line plumbing shared by the example jobs: logging, and the environment from the
//! flags every job takes.

use anyhow::{Context, bail};
use brisk::prelude::*;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Logs to stderr through `tracing`; `RUST_LOG` overrides the default level (`info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Flags every example job shares, on top of its own.
#[derive(clap::Args, Debug, Default)]
pub struct CommonArgs {
    /// Parallelism of every operator (default: number of CPU cores).
    #[arg(long)]
    pub parallelism: Option<String>,
    /// streaming (a result per record) or batch (final results only).
    #[arg(long, value_name = "streaming|batch")]
    pub execution_mode: Option<String>,
    /// Where keyed state lives: hashmap (memory) or rocksdb (local disk; needs the `rocksdb` feature).
    #[arg(long, value_name = "hashmap|rocksdb")]
    pub state_backend: Option<String>,
    /// Directory for RocksDB's local files (default: the system temp directory).
    #[arg(long, value_name = "PATH")]
    pub state_dir: Option<PathBuf>,
    /// YAML configuration file with Flink-style keys (e.g. parallelism.default); flags win.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl CommonArgs {
    /// The environment these flags describe.
    pub fn environment(&self) -> anyhow::Result<StreamExecutionEnvironment> {
        let mut configuration = match &self.config {
            Some(path) => Configuration::from_yaml_file(path)?,
            None => Configuration::new(),
        };
        if let Some(p) = &self.parallelism {
            let p: usize = p
                .parse()
                .with_context(|| format!("invalid --parallelism '{p}': expected a whole number of at least 1"))?;
            if p == 0 {
                bail!("invalid --parallelism 0: the parallelism must be at least 1");
            }
            configuration.set(brisk::options::PARALLELISM.key, p);
        }
        if let Some(mode) = &self.execution_mode {
            mode.parse::<RuntimeExecutionMode>().map_err(anyhow::Error::msg).context("invalid --execution-mode")?;
            configuration.set(brisk::options::RUNTIME_MODE.key, mode);
        }
        if let Some(backend) = &self.state_backend {
            configuration.set(brisk::options::STATE_BACKEND_KEY, backend);
        }
        if let Some(dir) = &self.state_dir {
            configuration.set(brisk::options::ROCKSDB_LOCAL_DIR_KEY, dir.display());
        }
        Ok(StreamExecutionEnvironment::from_configuration(&configuration)?)
    }
}
