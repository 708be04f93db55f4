//! The cluster's configuration, with Flink 2's keys: `conf/config.yaml`, overridden by
//! `-D key=value` flags.

use brisk_core::{ConfigOption, Configuration};
use std::time::Duration;

/// Where TaskManagers and clients reach the JobManager.
pub const RPC_ADDRESS: ConfigOption<&str> = ConfigOption {
    key: "jobmanager.rpc.address",
    default: "localhost",
    description: "Host of the JobManager's RPC endpoint.",
};

/// The JobManager's RPC port.
pub const RPC_PORT: ConfigOption<u32> =
    ConfigOption { key: "jobmanager.rpc.port", default: 6123, description: "Port of the JobManager's RPC endpoint." };

/// The interface the JobManager listens on (its RPC address when unset).
pub const BIND_HOST: ConfigOption<&str> = ConfigOption {
    key: "jobmanager.bind-host",
    default: "",
    description: "Interface the JobManager listens on; jobmanager.rpc.address when empty.",
};

/// Slots a TaskManager offers.
pub const SLOTS: ConfigOption<usize> = ConfigOption {
    key: "taskmanager.numberOfTaskSlots",
    default: 1,
    description: "Slots per TaskManager; each runs one subtask of each slot sharing group.",
};

/// How a TaskManager names itself; unique per process.
pub const RESOURCE_ID: ConfigOption<&str> = ConfigOption {
    key: "taskmanager.resource-id",
    default: "",
    description: "The TaskManager's id; generated from host and pid when empty.",
};

/// How a TaskManager names its host.
pub const TASK_MANAGER_HOST: ConfigOption<&str> =
    ConfigOption { key: "taskmanager.host", default: "localhost", description: "The TaskManager's host name." };

/// How long a TaskManager keeps trying to reach the JobManager.
pub const REGISTRATION_TIMEOUT: ConfigOption<Duration> = ConfigOption {
    key: "taskmanager.registration.timeout",
    default: Duration::from_secs(300),
    description: "How long a TaskManager tries to register before it gives up and exits.",
};

/// How often the JobManager asks each TaskManager for a heartbeat.
pub const HEARTBEAT_INTERVAL: ConfigOption<Duration> = ConfigOption {
    key: "heartbeat.interval",
    default: Duration::from_secs(1),
    description: "Time between heartbeat requests.",
};

/// How long without a heartbeat before a peer counts as lost (Flink's default is 50 s).
pub const HEARTBEAT_TIMEOUT: ConfigOption<Duration> = ConfigOption {
    key: "heartbeat.timeout",
    default: Duration::from_secs(5),
    description: "Time without a heartbeat after which the peer is considered lost.",
};

/// How long a job waits for enough free slots.
pub const SLOT_REQUEST_TIMEOUT: ConfigOption<Duration> = ConfigOption {
    key: "slot.request.timeout",
    default: Duration::from_secs(300),
    description: "How long a submitted job waits for the slots it needs before it fails.",
};

/// Where the JobManager keeps submitted artifacts and the jobs' logs.
pub const UPLOAD_DIR: ConfigOption<&str> = ConfigOption {
    key: "web.upload.dir",
    default: "",
    description: "Directory for submitted artifacts and job logs; a new one under the system temp directory when empty.",
};

/// Where a TaskManager keeps artifacts and its workers' logs.
pub const TMP_DIRS: ConfigOption<&str> = ConfigOption {
    key: "taskmanager.tmp.dirs",
    default: "",
    description: "Directory for the TaskManager's artifacts and worker logs; the system temp directory when empty.",
};

/// How the JobManager schedules jobs: `default` (each job at the parallelism it asks for) or
/// `reactive` (each job at as many slots as the cluster has, rescaled as TaskManagers come
/// and go).
pub const SCHEDULER_MODE: ConfigOption<&str> = ConfigOption {
    key: "scheduler-mode",
    default: "default",
    description: "'reactive': jobs use every available slot and rescale when TaskManagers join or leave.",
};

/// How long the slots must stay unchanged before a reactive job rescales.
pub const RESOURCE_STABILIZATION_TIMEOUT: ConfigOption<Duration> = ConfigOption {
    key: "jobmanager.adaptive-scheduler.resource-stabilization-timeout",
    default: Duration::from_secs(10),
    description: "In reactive mode, how long the available slots must stay the same before a job rescales to them.",
};

/// The port of the JobManager's REST API and web UI (0: any free port; -1: none).
pub const REST_PORT: ConfigOption<i64> = ConfigOption {
    key: "rest.port",
    default: 8081,
    description: "Port of the JobManager's REST API; 0 picks a free one, -1 serves none.",
};

/// The interface the JobManager's REST API listens on.
pub const REST_BIND_ADDRESS: ConfigOption<&str> = ConfigOption {
    key: "rest.bind-address",
    default: "127.0.0.1",
    description: "Interface of the REST API; another than loopback needs rest.security.token.",
};

/// What every cluster process reads from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `jobmanager.rpc.address`.
    pub rpc_address: String,
    /// `jobmanager.rpc.port`.
    pub rpc_port: u16,
    /// `jobmanager.bind-host` (or the RPC address).
    pub bind_host: String,
    /// `taskmanager.numberOfTaskSlots`.
    pub slots: usize,
    /// `taskmanager.resource-id` (`None`: generated).
    pub resource_id: Option<String>,
    /// `taskmanager.host`.
    pub taskmanager_host: String,
    /// `taskmanager.registration.timeout`.
    pub registration_timeout: Duration,
    /// `heartbeat.interval`.
    pub heartbeat_interval: Duration,
    /// `heartbeat.timeout`.
    pub heartbeat_timeout: Duration,
    /// `slot.request.timeout`.
    pub slot_request_timeout: Duration,
    /// `web.upload.dir` (`None`: a new temporary directory).
    pub upload_dir: Option<std::path::PathBuf>,
    /// `taskmanager.tmp.dirs` (`None`: the system temp directory).
    pub tmp_dir: Option<std::path::PathBuf>,
    /// `scheduler-mode: reactive`.
    pub reactive: bool,
    /// `jobmanager.adaptive-scheduler.resource-stabilization-timeout`.
    pub resource_stabilization_timeout: Duration,
    /// `rest.port` (`None`: no REST API).
    pub rest_port: Option<u16>,
    /// `rest.bind-address`.
    pub rest_bind_address: String,
    /// The REST API's token, body limit and savepoint roots.
    pub rest: brisk_rest::RestSettings,
}

impl ClusterConfig {
    /// Reads and checks the cluster options of `config`.
    pub fn from_configuration(config: &Configuration) -> Result<Self, crate::ClusterError> {
        let text = |option: &ConfigOption<&str>| -> Result<String, crate::ClusterError> {
            Ok(config.get_optional::<String>(option.key)?.unwrap_or_else(|| option.default.to_string()))
        };
        let rpc_port = config.get(&RPC_PORT)?;
        let rpc_port = u16::try_from(rpc_port).map_err(|_| {
            crate::ClusterError::Config(format!("{} = {rpc_port} is not a TCP port (0..=65535)", RPC_PORT.key))
        })?;
        let rest_port = match config.get(&REST_PORT)? {
            -1 => None,
            port => Some(u16::try_from(port).map_err(|_| {
                crate::ClusterError::Config(format!(
                    "{} = {port} is not a TCP port (0..=65535, or -1 for none)",
                    REST_PORT.key
                ))
            })?),
        };
        let rpc_address = text(&RPC_ADDRESS)?;
        let bind_host = Some(text(&BIND_HOST)?).filter(|h| !h.is_empty()).unwrap_or_else(|| rpc_address.clone());
        let resource_id = Some(text(&RESOURCE_ID)?).filter(|id| !id.is_empty());
        let reactive = match text(&SCHEDULER_MODE)?.as_str() {
            "reactive" => true,
            "default" | "adaptive" => false,
            other => {
                return Err(crate::ClusterError::Config(format!(
                    "{} = '{other}' is not a scheduler mode (expected 'default' or 'reactive')",
                    SCHEDULER_MODE.key
                )));
            }
        };
        let cluster = ClusterConfig {
            rpc_address,
            rpc_port,
            bind_host,
            slots: config.get(&SLOTS)?,
            resource_id,
            taskmanager_host: text(&TASK_MANAGER_HOST)?,
            registration_timeout: config.get(&REGISTRATION_TIMEOUT)?,
            heartbeat_interval: config.get(&HEARTBEAT_INTERVAL)?,
            heartbeat_timeout: config.get(&HEARTBEAT_TIMEOUT)?,
            slot_request_timeout: config.get(&SLOT_REQUEST_TIMEOUT)?,
            upload_dir: Some(text(&UPLOAD_DIR)?).filter(|d| !d.is_empty()).map(Into::into),
            tmp_dir: Some(text(&TMP_DIRS)?).filter(|d| !d.is_empty()).map(Into::into),
            reactive,
            resource_stabilization_timeout: config.get(&RESOURCE_STABILIZATION_TIMEOUT)?,
            rest_port,
            rest_bind_address: text(&REST_BIND_ADDRESS)?,
            rest: brisk_rest::RestSettings::from_configuration(config, 0).map_err(crate::ClusterError::Config)?,
        };
        cluster.validate()?;
        Ok(cluster)
    }

    fn validate(&self) -> Result<(), crate::ClusterError> {
        let invalid = |m: String| Err(crate::ClusterError::Config(m));
        if self.slots == 0 {
            return invalid(format!("{} must be at least 1", SLOTS.key));
        }
        if self.heartbeat_interval.is_zero() {
            return invalid(format!("{} must be positive", HEARTBEAT_INTERVAL.key));
        }
        if self.heartbeat_timeout <= self.heartbeat_interval {
            return invalid(format!(
                "{} ({} ms) must be longer than {} ({} ms)",
                HEARTBEAT_TIMEOUT.key,
                self.heartbeat_timeout.as_millis(),
                HEARTBEAT_INTERVAL.key,
                self.heartbeat_interval.as_millis()
            ));
        }
        Ok(())
    }

    /// `host:port` of the JobManager's RPC endpoint.
    pub fn jobmanager_address(&self) -> String {
        format!("{}:{}", self.rpc_address, self.rpc_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_flinks_keys_with_a_short_heartbeat() {
        let config = ClusterConfig::from_configuration(&Configuration::new()).unwrap();
        assert_eq!(config.jobmanager_address(), "localhost:6123");
        assert_eq!(config.bind_host, "localhost");
        assert_eq!(config.slots, 1);
        assert_eq!(config.heartbeat_timeout, Duration::from_secs(5));
        assert_eq!(config.resource_id, None);
        assert!(!config.reactive);
    }

    #[test]
    fn yaml_and_overrides_are_read() {
        let mut config = Configuration::from_yaml_str(
            "jobmanager:\n  rpc:\n    address: 127.0.0.1\n    port: 7000\ntaskmanager.numberOfTaskSlots: 4\nheartbeat.timeout: 2 s\n",
        )
        .unwrap();
        config.set("heartbeat.interval", "200 ms");
        let config = ClusterConfig::from_configuration(&config).unwrap();
        assert_eq!(config.jobmanager_address(), "127.0.0.1:7000");
        assert_eq!(config.slots, 4);
        assert_eq!(
            (config.heartbeat_interval, config.heartbeat_timeout),
            (Duration::from_millis(200), Duration::from_secs(2))
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (key, value, expected) in [
            ("jobmanager.rpc.port", "70000", "jobmanager.rpc.port = 70000 is not a TCP port"),
            ("taskmanager.numberOfTaskSlots", "0", "taskmanager.numberOfTaskSlots must be at least 1"),
            ("heartbeat.timeout", "500 ms", "heartbeat.timeout (500 ms) must be longer than heartbeat.interval"),
            ("heartbeat.interval", "soon", "heartbeat.interval"),
            ("scheduler-mode", "eager", "scheduler-mode = 'eager' is not a scheduler mode"),
        ] {
            let mut config = Configuration::new();
            config.set(key, value);
            let error = ClusterConfig::from_configuration(&config).unwrap_err().to_string();
            assert!(error.contains(expected), "{key}={value}: {error}");
        }
    }
}
