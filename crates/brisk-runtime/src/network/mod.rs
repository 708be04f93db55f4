//! The data exchange between subtasks: bounded channels, partitioners choosing a channel per
//! record, the record writer batching records into buffers, and the input gate reading them.

pub mod channel;
pub mod input_gate;
pub mod partitioner;
pub mod record_writer;
pub mod tcp;
pub mod watermark_valve;
pub mod wire;
