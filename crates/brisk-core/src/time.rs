//! Durations written the way Flink's configuration writes them: `200ms`, `10s`, `1 min`, `2h`.

use std::time::Duration;
use thiserror::Error;

/// A duration that could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid duration '{input}': {reason} (expected e.g. 200ms, 10s, 5min, 1h, 2d)")]
pub struct DurationParseError {
    /// The text that was given.
    pub input: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

/// Parses `<number>[ ]<unit>` with units ms, s, min/m, h, d (and their long names); a bare
/// number is milliseconds, as in Flink.
pub fn parse_duration(input: &str) -> Result<Duration, DurationParseError> {
    let err = |reason| DurationParseError { input: input.to_string(), reason };
    let text = input.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(err(if text.starts_with('-') { "negative durations are not allowed" } else { "missing number" }));
    }
    let amount: u64 = digits.parse().map_err(|_| err("number too large"))?;
    let millis_per_unit: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => return Err(err("unknown unit")),
    };
    let millis = amount.checked_mul(millis_per_unit).ok_or_else(|| err("duration too large"))?;
    Ok(Duration::from_millis(millis))
}

/// Formats a duration with the largest unit that divides it exactly (`1500ms`, `10s`, `5min`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [("d", 86_400_000u128), ("h", 3_600_000), ("min", 60_000), ("s", 1_000)] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flink_style_durations() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10 s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5min"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1500"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_bad_durations_with_reason() {
        assert_eq!(parse_duration("ten seconds").unwrap_err().reason, "missing number");
        assert_eq!(parse_duration("-1s").unwrap_err().reason, "negative durations are not allowed");
        assert_eq!(parse_duration("10 parsecs").unwrap_err().reason, "unknown unit");
        let msg = parse_duration("3x").unwrap_err().to_string();
        assert!(msg.contains("'3x'"), "{msg}");
    }

    #[test]
    fn formats_with_largest_exact_unit() {
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_secs(300)), "5min");
        assert_eq!(format_duration(Duration::ZERO), "0ms");
    }
}
