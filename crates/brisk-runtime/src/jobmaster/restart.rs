//! Restart strategies (Flink's `restart-strategy.*`): whether and when a failed job or
//! region is started again.

use crate::checkpoint::config::{invalid, option};
use brisk_core::{ConfigError, ConfigOption, Configuration};
use std::time::Duration;

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
