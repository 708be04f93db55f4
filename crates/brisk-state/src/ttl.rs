//! State time-to-live (Flink's `StateTtlConfig`): values expire a fixed processing time after
//! they were last written (or read).

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// When a value's expiry clock restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TtlUpdateType {
    /// On creation and every write.
    OnCreateAndWrite,
    /// Also on every read.
    OnReadAndWrite,
}

/// Whether an expired value that is still stored may be returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateVisibility {
    /// Expired values are never returned.
    NeverReturnExpired,
    /// Expired values are returned until they are cleaned up.
    ReturnExpiredIfNotCleanedUp,
}

/// Time-to-live settings of a state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateTtlConfig {
    /// How long a value lives after its last update.
    pub ttl: Duration,
    /// What restarts the clock.
    pub update_type: TtlUpdateType,
    /// Whether expired values are visible.
    pub visibility: StateVisibility,
    /// Leave expired values out of full snapshots.
    pub cleanup_full_snapshot: bool,
    /// Heap backend: check this many entries for expiry per state access (`None`: off).
    pub incremental_cleanup: Option<usize>,
    /// Heap backend: also run the incremental check for every processed record.
    pub incremental_cleanup_every_record: bool,
    /// RocksDB backend: drop expired values during compaction.
    pub rocksdb_compaction_filter: bool,
}

impl StateTtlConfig {
    /// A builder with Flink's defaults: restart on create and write, never return expired.
    pub fn new_builder(ttl: Duration) -> StateTtlConfigBuilder {
        StateTtlConfigBuilder(StateTtlConfig {
            ttl,
            update_type: TtlUpdateType::OnCreateAndWrite,
            visibility: StateVisibility::NeverReturnExpired,
            cleanup_full_snapshot: false,
            incremental_cleanup: None,
            incremental_cleanup_every_record: false,
            rocksdb_compaction_filter: false,
        })
    }

    /// Whether a value last updated at `timestamp` has expired at `now`.
    #[inline]
    pub fn is_expired(&self, timestamp: i64, now: i64) -> bool {
        let ttl = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        timestamp.saturating_add(ttl) <= now
    }
}

/// Builds a [`StateTtlConfig`].
#[derive(Clone, Debug)]
pub struct StateTtlConfigBuilder(StateTtlConfig);

impl StateTtlConfigBuilder {
    /// What restarts the expiry clock.
    pub fn set_update_type(mut self, update_type: TtlUpdateType) -> Self {
        self.0.update_type = update_type;
        self
    }

    /// Whether expired values are visible before cleanup.
    pub fn set_state_visibility(mut self, visibility: StateVisibility) -> Self {
        self.0.visibility = visibility;
        self
    }

    /// Leaves expired values out of full snapshots.
    pub fn cleanup_full_snapshot(mut self) -> Self {
        self.0.cleanup_full_snapshot = true;
        self
    }

    /// Heap backend: checks `cleanup_size` entries per state access (and per record if asked).
    pub fn cleanup_incrementally(mut self, cleanup_size: usize, run_cleanup_for_every_record: bool) -> Self {
        self.0.incremental_cleanup = Some(cleanup_size.max(1));
        self.0.incremental_cleanup_every_record = run_cleanup_for_every_record;
        self
    }

    /// RocksDB backend: drops expired values while compacting.
    pub fn cleanup_in_rocksdb_compact_filter(mut self) -> Self {
        self.0.rocksdb_compaction_filter = true;
        self
    }

    /// The configuration.
    pub fn build(self) -> StateTtlConfig {
        self.0
    }
}
