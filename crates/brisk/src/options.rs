//! The configuration options the environment understands, with Flink's keys.

use brisk_core::ConfigOption;
use std::time::Duration;

/// A savepoint or retained checkpoint to start the job from.
pub const SAVEPOINT_PATH: ConfigOption<&str> =
    ConfigOption { key: "execution.savepoint.path", default: "", description: "Savepoint to start from." };

/// Start even if the savepoint has state for operators the job lacks.
pub const SAVEPOINT_IGNORE_UNCLAIMED: ConfigOption<bool> = ConfigOption {
    key: "execution.savepoint.ignore-unclaimed-state",
    default: false,
    description: "Allow state of operators the job does not have (it is dropped).",
};

/// Default parallelism of operators.
pub const PARALLELISM: ConfigOption<usize> =
    ConfigOption { key: "parallelism.default", default: 1, description: "Default parallelism of operators." };

/// Number of key groups (upper bound of the parallelism of keyed operators).
pub const MAX_PARALLELISM: ConfigOption<usize> = ConfigOption {
    key: "pipeline.max-parallelism",
    default: brisk_core::DEFAULT_MAX_PARALLELISM,
    description: "Number of key groups; derived from the parallelism when unset.",
};

/// `streaming`, `batch` or `automatic`.
pub const RUNTIME_MODE: ConfigOption<&str> =
    ConfigOption { key: "execution.runtime-mode", default: "streaming", description: "STREAMING, BATCH or AUTOMATIC." };

/// Longest wait of a record in a partly filled network buffer.
pub const BUFFER_TIMEOUT: ConfigOption<Duration> = ConfigOption {
    key: "execution.buffer-timeout",
    default: Duration::from_millis(1),
    description: "Longest time a record waits in a partly filled network buffer.",
};

/// Whether operators are chained into one task.
pub const CHAINING: ConfigOption<bool> = ConfigOption {
    key: "pipeline.operator-chaining.enabled",
    default: true,
    description: "Whether operators are chained into tasks.",
};

/// Size of a network buffer.
pub const SEGMENT_SIZE: ConfigOption<usize> = ConfigOption {
    key: "taskmanager.memory.segment-size",
    default: 32 * 1024,
    description: "Bytes per network buffer.",
};

/// Buffers a channel holds before the producer is backpressured.
pub const BUFFERS_PER_CHANNEL: ConfigOption<usize> = ConfigOption {
    key: "taskmanager.network.memory.buffers-per-channel",
    default: 4,
    description: "Buffers per channel before backpressure.",
};

/// How often a running job logs its progress (records read, rate); `0` turns it off.
pub const PROGRESS_INTERVAL: ConfigOption<Duration> = ConfigOption {
    key: "execution.progress-interval",
    default: Duration::from_secs(10),
    description: "How often a running job logs its progress; 0 turns it off.",
};

/// Task slots of the local mini cluster; unset sizes it to what the job needs.
pub const TASK_SLOTS: ConfigOption<usize> = ConfigOption {
    key: "taskmanager.numberOfTaskSlots",
    default: 0,
    description: "Task slots of the mini cluster; unset: as many as the job needs.",
};

/// Task managers of the local mini cluster (Flink's `minicluster.number-of-taskmanagers`):
/// with more than one, channels between them go over TCP on 127.0.0.1.
pub const TASK_MANAGERS: ConfigOption<usize> = ConfigOption {
    key: "minicluster.number-of-taskmanagers",
    default: 1,
    description: "Task managers of the mini cluster; channels between them go over TCP.",
};

/// `state.backend`: `hashmap` or `rocksdb`.
pub const STATE_BACKEND_KEY: &str = brisk_state::backend::STATE_BACKEND.key;

/// `state.backend.rocksdb.localdir`: RocksDB's working directory.
pub const ROCKSDB_LOCAL_DIR_KEY: &str = brisk_state::backend::ROCKSDB_LOCAL_DIR.key;

/// Interval of periodic watermark generation.
pub const AUTO_WATERMARK_INTERVAL: ConfigOption<Duration> = ConfigOption {
    key: "pipeline.auto-watermark-interval",
    default: Duration::from_millis(200),
    description: "How often periodic watermarks are generated.",
};
