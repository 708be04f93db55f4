//! Checkpointing and restart configuration, with Flink's option keys and meanings.

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

/// How the job restarts after a failure (Flink's restart strategies).
#[derive(Clone, Debug, PartialEq)]
pub enum RestartStrategy {
    /// Fail the job at the first failure.
    None,
    /// Up to `attempts` restarts, `delay` apart.
    FixedDelay {
        /// Restarts allowed.
        attempts: u32,
        /// Wait before each restart.
        delay: Duration,
    },
    /// Restarts with a delay growing by `multiplier` up to `max_backoff`; the delay resets after
    /// `reset_after` without failures.
    ExponentialDelay {
        /// First delay.
        initial_backoff: Duration,
        /// Largest delay.
        max_backoff: Duration,
        /// Growth per failure.
        multiplier: f64,
        /// A failure-free stretch this long resets the delay.
        reset_after: Duration,
        /// Restarts allowed in total.
        attempts: u32,
    },
    /// Fails once more than `max_failures` happened within `interval`.
    FailureRate {
        /// Failures allowed per interval.
        max_failures: u32,
        /// The measuring interval.
        interval: Duration,
        /// Wait before each restart.
        delay: Duration,
    },
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
        }
    }
}

macro_rules! option {
    ($name:ident, $ty:ty, $key:literal, $default:expr, $doc:literal) => {
        #[doc = $doc]
        pub const $name: ConfigOption<$ty> = ConfigOption { key: $key, default: $default, description: $doc };
    };
}

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
option!(RESTART_STRATEGY, &str, "restart-strategy.type", "", "none, fixed-delay, exponential-delay or failure-rate.");
option!(FIXED_DELAY_ATTEMPTS, u32, "restart-strategy.fixed-delay.attempts", 1, "Restarts of the fixed-delay strategy.");
option!(
    FIXED_DELAY,
    Duration,
    "restart-strategy.fixed-delay.delay",
    Duration::from_secs(1),
    "Delay of the fixed-delay strategy."
);
option!(
    EXP_INITIAL,
    Duration,
    "restart-strategy.exponential-delay.initial-backoff",
    Duration::from_millis(100),
    "First delay of the exponential-delay strategy."
);
option!(EXP_MAX, Duration, "restart-strategy.exponential-delay.max-backoff", Duration::from_secs(60), "Largest delay.");
option!(
    EXP_MULTIPLIER,
    f64,
    "restart-strategy.exponential-delay.backoff-multiplier",
    2.0,
    "Growth of the delay per failure."
);
option!(
    EXP_RESET,
    Duration,
    "restart-strategy.exponential-delay.reset-backoff-threshold",
    Duration::from_secs(3600),
    "A failure-free stretch this long resets the delay."
);
option!(
    EXP_ATTEMPTS,
    u32,
    "restart-strategy.exponential-delay.attempts-before-reset-backoff",
    u32::MAX,
    "Restarts allowed."
);
option!(
    RATE_MAX,
    u32,
    "restart-strategy.failure-rate.max-failures-per-interval",
    1,
    "Failures allowed per interval (failure-rate)."
);
option!(
    RATE_INTERVAL,
    Duration,
    "restart-strategy.failure-rate.failure-rate-interval",
    Duration::from_secs(60),
    "The failure-rate interval."
);
option!(
    RATE_DELAY,
    Duration,
    "restart-strategy.failure-rate.delay",
    Duration::from_secs(1),
    "Delay of the failure-rate strategy."
);

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
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
        })
    }

    /// Whether checkpoints are taken.
    pub fn is_enabled(&self) -> bool {
        self.interval.is_some()
    }
}

impl RestartStrategy {
    /// The configured strategy; unset means exponential delay with checkpointing (Flink's
    /// default, with a 100 ms first delay since a restart here costs milliseconds), else none.
    pub fn from_configuration(config: &Configuration, checkpointing: bool) -> Result<Self, ConfigError> {
        let kind = config.get_raw(RESTART_STRATEGY.key).unwrap_or("").trim().to_ascii_lowercase();
        let exponential = || -> Result<Self, ConfigError> {
            Ok(RestartStrategy::ExponentialDelay {
                initial_backoff: config.get(&EXP_INITIAL)?,
                max_backoff: config.get(&EXP_MAX)?,
                multiplier: config.get(&EXP_MULTIPLIER)?,
                reset_after: config.get(&EXP_RESET)?,
                attempts: config.get(&EXP_ATTEMPTS)?,
            })
        };
        match kind.as_str() {
            "" if checkpointing => exponential(),
            "" | "none" | "off" | "disable" => Ok(RestartStrategy::None),
            "fixed-delay" | "fixeddelay" => Ok(RestartStrategy::FixedDelay {
                attempts: config.get(&FIXED_DELAY_ATTEMPTS)?,
                delay: config.get(&FIXED_DELAY)?,
            }),
            "exponential-delay" | "exponentialdelay" => exponential(),
            "failure-rate" | "failurerate" => Ok(RestartStrategy::FailureRate {
                max_failures: config.get(&RATE_MAX)?,
                interval: config.get(&RATE_INTERVAL)?,
                delay: config.get(&RATE_DELAY)?,
            }),
            other => Err(invalid(
                RESTART_STRATEGY.key,
                other,
                "expected none, fixed-delay, exponential-delay or failure-rate",
            )),
        }
    }
}

/// Decides whether and when a failed job restarts.
#[derive(Debug)]
pub struct RestartTracker {
    strategy: RestartStrategy,
    restarts: u32,
    failures: Vec<std::time::Instant>,
    backoff: Option<Duration>,
    last_failure: Option<std::time::Instant>,
}

impl RestartTracker {
    /// A tracker for `strategy`.
    pub fn new(strategy: RestartStrategy) -> Self {
        RestartTracker { strategy, restarts: 0, failures: Vec::new(), backoff: None, last_failure: None }
    }

    /// Records a failure now; the delay before restarting, or `None` to fail the job.
    pub fn on_failure(&mut self) -> Option<Duration> {
        let now = std::time::Instant::now();
        let since_last = self.last_failure.map(|t| now.duration_since(t));
        self.last_failure = Some(now);
        match &self.strategy {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay { attempts, delay } => {
                self.restarts += 1;
                (self.restarts <= *attempts).then_some(*delay)
            }
            RestartStrategy::ExponentialDelay { initial_backoff, max_backoff, multiplier, reset_after, attempts } => {
                if since_last.is_some_and(|d| d >= *reset_after) {
                    self.backoff = None;
                    self.restarts = 0;
                }
                self.restarts += 1;
                if self.restarts > *attempts {
                    return None;
                }
                let next = match self.backoff {
                    None => *initial_backoff,
                    Some(b) => b.mul_f64(multiplier.max(1.0)).min(*max_backoff),
                };
                self.backoff = Some(next);
                Some(next)
            }
            RestartStrategy::FailureRate { max_failures, interval, delay } => {
                self.failures.retain(|t| now.duration_since(*t) < *interval);
                self.failures.push(now);
                (self.failures.len() as u32 <= *max_failures).then_some(*delay)
            }
        }
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

    #[test]
    fn restart_strategies_follow_their_rules() {
        let mut fixed =
            RestartTracker::new(RestartStrategy::FixedDelay { attempts: 2, delay: Duration::from_millis(5) });
        assert_eq!(
            (fixed.on_failure(), fixed.on_failure(), fixed.on_failure()),
            (Some(Duration::from_millis(5)), Some(Duration::from_millis(5)), None)
        );
        let mut exp = RestartTracker::new(RestartStrategy::ExponentialDelay {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(25),
            multiplier: 2.0,
            reset_after: Duration::from_secs(3600),
            attempts: 10,
        });
        let delays: Vec<_> = (0..4).filter_map(|_| exp.on_failure()).map(|d| d.as_millis()).collect();
        assert_eq!(delays, vec![10, 20, 25, 25]);
        let mut rate = RestartTracker::new(RestartStrategy::FailureRate {
            max_failures: 2,
            interval: Duration::from_secs(60),
            delay: Duration::ZERO,
        });
        assert_eq!(
            (rate.on_failure().is_some(), rate.on_failure().is_some(), rate.on_failure().is_some()),
            (true, true, false)
        );
        assert_eq!(RestartTracker::new(RestartStrategy::None).on_failure(), None);
        assert_eq!(RestartStrategy::from_configuration(&Configuration::new(), false).unwrap(), RestartStrategy::None);
        assert!(matches!(
            RestartStrategy::from_configuration(&Configuration::new(), true).unwrap(),
            RestartStrategy::ExponentialDelay { .. }
        ));
    }
}
