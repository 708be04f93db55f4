//! Checkpointing configuration, with Flink's option keys and meanings.

use super::SnapshotLocation;
use brisk_core::{ConfigError, ConfigOption, Configuration};
use std::time::Duration;

/// Exactly-once aligns barriers; at-least-once does not (records after a barrier may be in the
/// snapshot and replayed after a failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointingMode {
    /// Aligned (or unaligned) barriers: every record affects state exactly once.
    ExactlyOnce,
    /// No alignment: lower latency, duplicates possible after recovery.
    AtLeastOnce,
}

impl std::str::FromStr for CheckpointingMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "exactly-once" => Ok(CheckpointingMode::ExactlyOnce),
            "at-least-once" => Ok(CheckpointingMode::AtLeastOnce),
            other => Err(format!("unknown checkpointing mode '{other}': expected exactly-once or at-least-once")),
        }
    }
}

/// What happens to retained checkpoints when the job is cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExternalizedCheckpointRetention {
    /// Checkpoints are deleted when the job is cancelled (they stay after a failure).
    DeleteOnCancellation,
    /// Checkpoints stay, so the job can be resumed from them (`--from-savepoint`).
    RetainOnCancellation,
}

/// Checkpointing of a job (Flink's `CheckpointConfig`).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointConfig {
    /// Interval between checkpoints; `None` disables checkpointing.
    pub interval: Option<Duration>,
    /// Exactly-once or at-least-once.
    pub mode: CheckpointingMode,
    /// Barriers overtake in-flight data, which is stored with the checkpoint.
    pub unaligned: bool,
    /// With `unaligned`: start aligned and switch to unaligned after this long; zero switches
    /// at once.
    pub aligned_checkpoint_timeout: Duration,
    /// A checkpoint not complete after this long is aborted.
    pub timeout: Duration,
    /// Least time between the end of one checkpoint and the start of the next.
    pub min_pause: Duration,
    /// Checkpoints in progress at once.
    pub max_concurrent: usize,
    /// Failed checkpoints tolerated in a row before the job fails.
    pub tolerable_failures: u32,
    /// What cancelling does to retained checkpoints.
    pub retention: ExternalizedCheckpointRetention,
    /// Where checkpoints are written (a local directory, `file://` or `s3://` URL).
    pub directory: Option<SnapshotLocation>,
    /// Completed checkpoints kept; older ones are deleted.
    pub retained: usize,
    /// RocksDB uploads only SST files that earlier checkpoints did not have.
    pub incremental: bool,
    /// What restarts after a task failure.
    pub failover: FailoverStrategy,
    /// Checkpoints whose details the statistics keep (the REST API's history); counts and
    /// summaries cover all of them.
    pub history_size: usize,
}

/// What restarts after a task failure (Flink's `jobmanager.execution.failover-strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailoverStrategy {
    /// Only the failed task's pipelined region: the tasks connected to it by channels. Other
    /// regions keep running. A job whose exchanges are all pointwise (forward) has a region
    /// per subtask; any all-to-all exchange (key_by, rebalance, ...) makes one region.
    Region,
    /// Every task of the job.
    Full,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval: None,
            mode: CheckpointingMode::ExactlyOnce,
            unaligned: false,
            aligned_checkpoint_timeout: Duration::ZERO,
            timeout: Duration::from_secs(600),
            min_pause: Duration::ZERO,
            max_concurrent: 1,
            tolerable_failures: 0,
            retention: ExternalizedCheckpointRetention::DeleteOnCancellation,
            directory: None,
            retained: 1,
            incremental: false,
            failover: FailoverStrategy::Region,
            history_size: HISTORY_SIZE.default,
        }
    }
}

macro_rules! option {
    ($name:ident, $ty:ty, $key:literal, $default:expr, $doc:literal) => {
        #[doc = $doc]
        pub const $name: ConfigOption<$ty> = ConfigOption { key: $key, default: $default, description: $doc };
    };
}
pub(crate) use option;

option!(
    INTERVAL,
    Duration,
    "execution.checkpointing.interval",
    Duration::ZERO,
    "Interval between checkpoints; 0 disables them."
);
option!(MODE, &str, "execution.checkpointing.mode", "exactly-once", "exactly-once or at-least-once.");
option!(
    UNALIGNED,
    bool,
    "execution.checkpointing.unaligned.enabled",
    false,
    "Whether barriers overtake in-flight data."
);
option!(
    ALIGNED_TIMEOUT,
    Duration,
    "execution.checkpointing.aligned-checkpoint-timeout",
    Duration::ZERO,
    "With unaligned checkpoints: how long to try aligning first."
);
option!(
    TIMEOUT,
    Duration,
    "execution.checkpointing.timeout",
    Duration::from_secs(600),
    "Checkpoints not complete after this are aborted."
);
option!(MIN_PAUSE, Duration, "execution.checkpointing.min-pause", Duration::ZERO, "Least time between checkpoints.");
option!(
    MAX_CONCURRENT,
    usize,
    "execution.checkpointing.max-concurrent-checkpoints",
    1,
    "Checkpoints in progress at once."
);
option!(
    TOLERABLE_FAILURES,
    u32,
    "execution.checkpointing.tolerable-failed-checkpoints",
    0,
    "Failed checkpoints in a row before the job fails."
);
option!(
    RETENTION,
    &str,
    "execution.checkpointing.externalized-checkpoint-retention",
    "DELETE_ON_CANCELLATION",
    "DELETE_ON_CANCELLATION or RETAIN_ON_CANCELLATION."
);
option!(
    DIRECTORY,
    &str,
    "execution.checkpointing.dir",
    "",
    "Where checkpoints are written (state.checkpoints.dir also works)."
);
option!(RETAINED, usize, "execution.checkpointing.num-retained", 1, "Completed checkpoints kept.");
option!(INCREMENTAL, bool, "execution.checkpointing.incremental", false, "Incremental RocksDB checkpoints.");
option!(
    FAILOVER,
    &str,
    "jobmanager.execution.failover-strategy",
    "region",
    "region (restart only the failed task's pipelined region) or full."
);
option!(
    HISTORY_SIZE,
    usize,
    "web.checkpoints.history",
    10,
    "Checkpoints whose details the statistics and the REST API keep."
);
pub(crate) fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue { key: key.into(), value: value.into(), reason: reason.into() }
}

/// The value of a directory option: a plain path, a `file://` or an `s3://` URL.
pub fn parse_directory(key: &str, text: &str) -> Result<SnapshotLocation, ConfigError> {
    SnapshotLocation::parse(text).map_err(|reason| invalid(key, text, reason))
}

impl CheckpointConfig {
    /// Reads the checkpointing options of `config`.
    pub fn from_configuration(config: &Configuration) -> Result<Self, ConfigError> {
        let interval = config.get(&INTERVAL)?;
        let mode_text = config.get_raw(MODE.key).unwrap_or(MODE.default);
        let mode = mode_text.parse().map_err(|e| invalid(MODE.key, mode_text, e))?;
        let retention_text = config.get_raw(RETENTION.key).unwrap_or(RETENTION.default);
        let retention = match retention_text.to_ascii_uppercase().replace('-', "_").as_str() {
            "DELETE_ON_CANCELLATION" => ExternalizedCheckpointRetention::DeleteOnCancellation,
            "RETAIN_ON_CANCELLATION" => ExternalizedCheckpointRetention::RetainOnCancellation,
            _ => {
                return Err(invalid(
                    RETENTION.key,
                    retention_text,
                    "expected DELETE_ON_CANCELLATION or RETAIN_ON_CANCELLATION",
                ));
            }
        };
        let dir_key = if config.contains(DIRECTORY.key) { DIRECTORY.key } else { "state.checkpoints.dir" };
        let directory = match config.get_raw(dir_key) {
            Some(text) if !text.is_empty() => Some(parse_directory(dir_key, text)?),
            _ => None,
        };
        let retained = config.get(&RETAINED)?;
        if retained == 0 {
            return Err(invalid(RETAINED.key, "0", "at least one completed checkpoint must be kept"));
        }
        let max_concurrent = config.get(&MAX_CONCURRENT)?;
        if max_concurrent == 0 {
            return Err(invalid(MAX_CONCURRENT.key, "0", "must be at least 1"));
        }
        let failover_text = config.get_raw(FAILOVER.key).unwrap_or(FAILOVER.default);
        let failover = match failover_text.trim().to_ascii_lowercase().as_str() {
            "region" => FailoverStrategy::Region,
            "full" => FailoverStrategy::Full,
            _ => return Err(invalid(FAILOVER.key, failover_text, "expected region or full")),
        };
        Ok(CheckpointConfig {
            interval: (!interval.is_zero()).then_some(interval),
            mode,
            unaligned: config.get(&UNALIGNED)?,
            aligned_checkpoint_timeout: config.get(&ALIGNED_TIMEOUT)?,
            timeout: config.get(&TIMEOUT)?,
            min_pause: config.get(&MIN_PAUSE)?,
            max_concurrent,
            tolerable_failures: config.get(&TOLERABLE_FAILURES)?,
            retention,
            directory,
            retained,
            incremental: config.get(&INCREMENTAL)?,
            failover,
            history_size: config.get(&HISTORY_SIZE)?,
        })
    }

    /// Whether checkpoints are taken.
    pub fn is_enabled(&self) -> bool {
        self.interval.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn config(yaml: &str) -> Configuration {
        Configuration::from_yaml_str(yaml).unwrap()
    }

    #[test]
    fn options_parse_with_flink_keys() {
        let c = CheckpointConfig::from_configuration(&config(
            "execution.checkpointing.interval: 1s\nexecution.checkpointing.mode: at-least-once\nstate.checkpoints.dir: file:///tmp/chk\nexecution.checkpointing.externalized-checkpoint-retention: RETAIN_ON_CANCELLATION",
        ))
        .unwrap();
        assert_eq!(c.interval, Some(Duration::from_secs(1)));
        assert_eq!(c.mode, CheckpointingMode::AtLeastOnce);
        assert_eq!(c.directory, Some(SnapshotLocation::Local(PathBuf::from("/tmp/chk"))));
        assert_eq!(c.retention, ExternalizedCheckpointRetention::RetainOnCancellation);
        assert!(!CheckpointConfig::from_configuration(&Configuration::new()).unwrap().is_enabled());
        let err = CheckpointConfig::from_configuration(&config("execution.checkpointing.mode: twice")).unwrap_err();
        assert!(err.to_string().contains("unknown checkpointing mode 'twice'"), "{err}");
        let c = CheckpointConfig::from_configuration(&config("state.checkpoints.dir: s3://bucket/x")).unwrap();
        assert_eq!(c.directory, Some(SnapshotLocation::ObjectStore("s3://bucket/x".into())));
        assert_eq!(c.failover, FailoverStrategy::Region, "region failover by default, as in Flink");
        let c = CheckpointConfig::from_configuration(&config("jobmanager.execution.failover-strategy: full")).unwrap();
        assert_eq!(c.failover, FailoverStrategy::Full);
        let err =
            CheckpointConfig::from_configuration(&config("jobmanager.execution.failover-strategy: some")).unwrap_err();
        assert!(err.to_string().contains("expected region or full"), "{err}");
        let err = CheckpointConfig::from_configuration(&config("state.checkpoints.dir: hdfs://nn/x")).unwrap_err();
        assert!(err.to_string().contains("'hdfs://' scheme is not supported"), "{err}");
    }
}
