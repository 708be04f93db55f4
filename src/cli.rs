//! Command-line plumbing shared by the example jobs: logging and the environment from flags.

use anyhow::{Context, bail};
use brisk::prelude::*;
use std::io::IsTerminal;
use std::path::Path;

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

/// An environment from an optional YAML config file, overridden by flags.
pub fn environment(
    config: Option<&Path>,
    parallelism: Option<usize>,
    mode: Option<&str>,
) -> anyhow::Result<StreamExecutionEnvironment> {
    let mut configuration = match config {
        Some(path) => Configuration::from_yaml_file(path)?,
        None => Configuration::new(),
    };
    if let Some(p) = parallelism {
        if p == 0 {
            bail!("invalid --parallelism 0: the parallelism must be at least 1");
        }
        configuration.set(brisk::options::PARALLELISM.key, p);
    }
    if let Some(mode) = mode {
        mode.parse::<RuntimeExecutionMode>().map_err(anyhow::Error::msg).context("invalid --execution-mode")?;
        configuration.set(brisk::options::RUNTIME_MODE.key, mode);
    }
    Ok(StreamExecutionEnvironment::from_configuration(&configuration)?)
}
