//! Configuration: a flat map of Flink-style dotted keys, read from a YAML file and overridden
//! by command-line flags, with typed, documented options.

use crate::time::parse_duration;
use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use thiserror::Error;

/// A configuration that could not be read or a value that does not fit its option.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not valid YAML or not a map.
    #[error("invalid configuration file {path}: {reason}")]
    Syntax {
        /// The file.
        path: String,
        /// What the parser said.
        reason: String,
    },
    /// A combination of options that cannot work, explained.
    #[error("{0}")]
    Invalid(String),
    /// A value does not parse as the option's type or is out of range.
    #[error("invalid value '{value}' for configuration option '{key}': {reason}")]
    InvalidValue {
        /// The option's key.
        key: String,
        /// The value given.
        value: String,
        /// What was wrong.
        reason: String,
    },
}

/// A typed configuration option with its key, default and meaning.
#[derive(Debug)]
pub struct ConfigOption<T: 'static> {
    /// The dotted key, e.g. `parallelism.default`.
    pub key: &'static str,
    /// The value used when the key is absent.
    pub default: T,
    /// What the option does.
    pub description: &'static str,
}

/// Types a configuration value can be parsed into.
pub trait ConfigValue: Sized {
    /// Parses the textual value.
    fn parse_value(text: &str) -> Result<Self, String>;
}

macro_rules! from_str_config_value {
    ($($t:ty),*) => {$(
        impl ConfigValue for $t {
            fn parse_value(text: &str) -> Result<Self, String> {
                <$t as FromStr>::from_str(text.trim()).map_err(|e| e.to_string())
            }
        }
    )*};
}
from_str_config_value!(usize, u64, u32, i64, f64, String);

impl ConfigValue for bool {
    fn parse_value(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Ok(true),
            "false" | "no" | "off" => Ok(false),
            _ => Err("expected true or false".into()),
        }
    }
}

impl ConfigValue for Duration {
    fn parse_value(text: &str) -> Result<Self, String> {
        parse_duration(text).map_err(|e| e.reason.to_string())
    }
}

/// Key/value configuration (Flink's `Configuration`): nested YAML maps are flattened into
/// dotted keys, so `state: {backend: rocksdb}` and `state.backend: rocksdb` mean the same.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Configuration {
    entries: BTreeMap<String, String>,
}

impl Configuration {
    /// An empty configuration: every option has its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a YAML configuration file.
    pub fn from_yaml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Io { path: path.display().to_string(), source })?;
        Self::from_yaml_str(&text).map_err(|reason| ConfigError::Syntax { path: path.display().to_string(), reason })
    }

    /// Parses YAML text; the error says why it is not a configuration map.
    pub fn from_yaml_str(text: &str) -> Result<Self, String> {
        let value: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        let mut config = Configuration::new();
        match value {
            Value::Null => {}
            Value::Mapping(_) => flatten("", &value, &mut config.entries)?,
            _ => return Err("the top level must be a map of options".into()),
        }
        Ok(config)
    }

    /// Sets a key to a value, replacing any earlier one.
    pub fn set(&mut self, key: impl Into<String>, value: impl Display) -> &mut Self {
        self.entries.insert(key.into(), value.to_string());
        self
    }

    /// The raw value of a key.
    pub fn get_raw(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// Whether the key is set.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The option's value, or its default when unset.
    pub fn get<T: ConfigValue + Clone>(&self, option: &ConfigOption<T>) -> Result<T, ConfigError> {
        Ok(self.get_optional(option.key)?.unwrap_or_else(|| option.default.clone()))
    }

    /// The value of a key without a default.
    pub fn get_optional<T: ConfigValue>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        match self.entries.get(key) {
            None => Ok(None),
            Some(value) => T::parse_value(value).map(Some).map_err(|reason| ConfigError::InvalidValue {
                key: key.to_string(),
                value: value.clone(),
                reason,
            }),
        }
    }

    /// Adds every entry of `other`, overriding this configuration's values.
    pub fn merge(&mut self, other: &Configuration) {
        for (k, v) in &other.entries {
            self.entries.insert(k.clone(), v.clone());
        }
    }

    /// All entries, sorted by key.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sets a `key=value` dynamic property (Flink's `-D key=value` flag).
    pub fn set_dynamic(&mut self, property: &str) -> Result<&mut Self, ConfigError> {
        match property.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok(self.set(key.trim(), value.trim())),
            _ => Err(ConfigError::Invalid(format!("invalid -D '{property}': expected key=value"))),
        }
    }
}

/// Parses a memory size such as `32kb`, `64 mb`, `1g` or a plain byte count.
pub fn parse_memory_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let amount: usize = digits.parse().map_err(|_| format!("'{text}' is not a memory size such as 32kb or 64mb"))?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "bytes" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown memory unit '{other}' in '{text}'")),
    };
    amount.checked_mul(factor).ok_or_else(|| format!("memory size '{text}' is too large"))
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) -> Result<(), String> {
    match value {
        Value::Mapping(map) => {
            for (k, v) in map {
                let key = match k {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => return Err(format!("unsupported key {other:?} under '{prefix}'")),
                };
                let full = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
                flatten(&full, v, out)?;
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        Value::Number(n) => {
            out.insert(prefix.to_string(), n.to_string());
        }
        Value::Bool(b) => {
            out.insert(prefix.to_string(), b.to_string());
        }
        Value::Null => {}
        Value::Sequence(items) => {
            let parts: Result<Vec<String>, String> = items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    Value::Bool(b) => Ok(b.to_string()),
                    _ => Err(format!("option '{prefix}' may only list plain values")),
                })
                .collect();
            out.insert(prefix.to_string(), parts?.join(";"));
        }
        Value::Tagged(tagged) => flatten(prefix, &tagged.value, out)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_properties_override_and_bad_ones_are_named() {
        let mut config = Configuration::from_yaml_str("a.b: 1").unwrap();
        config.set_dynamic("a.b = 2").unwrap().set_dynamic("c=x=y").unwrap();
        assert_eq!((config.get_raw("a.b"), config.get_raw("c")), (Some("2"), Some("x=y")));
        for bad in ["novalue", "=1"] {
            let error = config.set_dynamic(bad).unwrap_err().to_string();
            assert!(error.contains(bad) && error.contains("key=value"), "{error}");
        }
    }

    const PARALLELISM: ConfigOption<usize> =
        ConfigOption { key: "parallelism.default", default: 1, description: "test" };

    #[test]
    fn nested_and_flat_keys_are_the_same() {
        let a = Configuration::from_yaml_str("parallelism:\n  default: 4\nstate.backend: rocksdb\n").unwrap();
        let b = Configuration::from_yaml_str("parallelism.default: 4\nstate:\n  backend: rocksdb\n").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.get(&PARALLELISM).unwrap(), 4);
        assert_eq!(a.get_raw("state.backend"), Some("rocksdb"));
    }

    #[test]
    fn defaults_and_bad_values() {
        let empty = Configuration::from_yaml_str("").unwrap();
        assert_eq!(empty.get(&PARALLELISM).unwrap(), 1);
        let bad = Configuration::from_yaml_str("parallelism.default: many").unwrap();
        let msg = bad.get(&PARALLELISM).unwrap_err().to_string();
        assert!(msg.contains("parallelism.default") && msg.contains("many"), "{msg}");
        assert!(Configuration::from_yaml_str("- a\n- b").is_err());
        let d: Option<Duration> = Configuration::from_yaml_str("execution.buffer-timeout: 5 ms")
            .unwrap()
            .get_optional("execution.buffer-timeout")
            .unwrap();
        assert_eq!(d, Some(Duration::from_millis(5)));
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory_size("32kb"), Ok(32 * 1024));
        assert_eq!(parse_memory_size("64 mb"), Ok(64 << 20));
        assert_eq!(parse_memory_size("4096"), Ok(4096));
        assert!(parse_memory_size("lots").is_err());
        assert!(parse_memory_size("3 parsecs").is_err());
    }
}
