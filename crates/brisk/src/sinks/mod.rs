//! Built-in sinks: print, collect (results back to the caller), text/CSV files, discard.

mod collect;
mod discard;
mod file;
mod file_sink;
mod print;
mod two_phase;

pub use collect::{CollectResult, CollectSink};
pub use discard::DiscardingSink;
pub use file::TextFileSink;
pub use file_sink::{FileSink, PartFiles};
pub use print::PrintSink;
pub use two_phase::{TwoPhaseCommitSink, TwoPhaseCommitSinkFunction};
