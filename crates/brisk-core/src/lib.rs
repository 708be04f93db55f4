//! Vocabulary shared by all Brisk crates: stream elements, event time, key groups, stable
//! hashing, durations and configuration. Nothing here knows about tasks or operators.
#![deny(missing_docs)]

pub mod clock;
pub mod config;
pub mod data;
pub mod element;
pub mod error;
pub mod hash;
pub mod job_graph;
pub mod key_group;
pub mod time;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{ConfigError, ConfigOption, Configuration};
pub use data::{Data, Key};
pub use element::{NO_TIMESTAMP, StreamRecord, Watermark, WatermarkStatus};
pub use error::{BoxError, NonRecoverableError};
pub use key_group::{DEFAULT_MAX_PARALLELISM, KeyGroupRange, MAX_MAX_PARALLELISM};
