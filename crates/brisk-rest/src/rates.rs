//! Per-second rates of counters (Flink's `...PerSecond` meters), from successive readings.

use brisk_runtime::metrics::task_io::SubtaskMetrics;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The shortest span a rate is measured over: readings closer together keep the last rate.
const MIN_SPAN: Duration = Duration::from_millis(900);

/// Readings not renewed for this long are dropped (subtasks of earlier attempts and of
/// ended jobs).
const FORGET_AFTER: Duration = Duration::from_secs(300);

/// The last reading and rates of each counter set, by key.
#[derive(Default)]
pub(crate) struct Rates {
    last: HashMap<String, Reading>,
    /// When stale readings were last dropped.
    pruned: Option<Instant>,
}

struct Reading {
    at: Instant,
    values: Vec<u64>,
    rates: Vec<f64>,
}

impl Rates {
    /// The per-second rates of `values` (counters that only grow) of `key` since its previous
    /// reading; zeros on the first one. A counter that went back (a restarted task) restarts
    /// its rate.
    pub fn per_second(&mut self, key: String, values: &[u64], now: Instant) -> Vec<f64> {
        if self.pruned.is_none_or(|at| now.saturating_duration_since(at) >= FORGET_AFTER) {
            self.last.retain(|_, r| now.saturating_duration_since(r.at) < FORGET_AFTER);
            self.pruned = Some(now);
        }
        match self.last.get_mut(&key) {
            Some(last) if last.values.len() == values.len() => {
                let span = now.saturating_duration_since(last.at);
                if span >= MIN_SPAN {
                    let seconds = span.as_secs_f64();
                    last.rates = values
                        .iter()
                        .zip(&last.values)
                        .map(|(now, before)| now.saturating_sub(*before) as f64 / seconds)
                        .collect();
                    last.values = values.to_vec();
                    last.at = now;
                }
                last.rates.clone()
            }
            _ => {
                let rates = vec![0.0; values.len()];
                self.last.insert(key, Reading { at: now, values: values.to_vec(), rates: rates.clone() });
                rates
            }
        }
    }
}

impl Rates {
    /// Records in and out and back-pressured milliseconds per second of one subtask of job
    /// `job_id` (Flink's `numRecordsInPerSecond`, `numRecordsOutPerSecond`,
    /// `backPressuredTimeMsPerSecond`).
    pub fn of_subtask(&mut self, job_id: &str, m: &SubtaskMetrics, now: Instant) -> [f64; 3] {
        let key = format!("{job_id}/{}/{}/{}", m.vertex, m.subtask, m.attempt);
        let v = &m.values;
        let rates = self.per_second(key, &[v.records_in, v.records_out, v.back_pressured_ms], now);
        [rates[0], rates[1], rates[2]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_measured_over_at_least_the_minimum_span() {
        let mut rates = Rates::default();
        let start = Instant::now();
        assert_eq!(rates.per_second("t".into(), &[100, 0], start), vec![0.0, 0.0]);
        // Too soon: the last rates stay.
        assert_eq!(rates.per_second("t".into(), &[150, 0], start + Duration::from_millis(100)), vec![0.0, 0.0]);
        assert_eq!(rates.per_second("t".into(), &[300, 500], start + Duration::from_secs(2)), vec![100.0, 250.0]);
        assert_eq!(rates.per_second("t".into(), &[300, 500], start + Duration::from_millis(2500)), vec![100.0, 250.0]);
        // A restarted task's counters start again from zero.
        assert_eq!(rates.per_second("t".into(), &[10, 0], start + Duration::from_secs(3)), vec![0.0, 0.0]);
        assert_eq!(rates.per_second("other".into(), &[7], start), vec![0.0]);
        assert_eq!(rates.last.len(), 2);
        // Counters not read for long are forgotten: a later reading starts over.
        let later = start + FORGET_AFTER + Duration::from_secs(3);
        assert_eq!(rates.per_second("t".into(), &[1000, 1000], later), vec![0.0, 0.0]);
        assert_eq!(rates.last.len(), 1);
    }
}
