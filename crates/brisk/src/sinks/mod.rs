//! Built-in sinks: print, collect (results back to the caller), text/CSV files, discard.

mod collect;
mod discard;
mod file;
mod print;

pub use collect::{CollectResult, CollectSink};
pub use discard::DiscardingSink;
pub use file::TextFileSink;
pub use print::PrintSink;
