//! Joins of two streams: window joins and co-groups (equal keys in the same window) and
//! interval joins (equal keys within a time interval of each other).

pub mod interval;
pub mod window;

pub use interval::{IntervalJoin, IntervalJoined, ProcessJoinContext, ProcessJoinFunction};
pub use window::{CoGroupedStreams, JoinedStreams, TaggedUnion};
