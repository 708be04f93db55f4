//! Built-in sinks: print, collect (results back to the caller), text/CSV files, discard; the
//! unified sink API (`Sink`, `SinkWriter`) and the two-phase-commit framework beneath it.

mod collect;
mod discard;
mod file;
mod file_sink;
mod print;
mod sink_api;
mod two_phase;

pub use collect::{CollectResult, CollectSink};
pub use discard::DiscardingSink;
pub use file::TextFileSink;
pub use file_sink::{BulkWriter, BulkWriterFactory, FileSink, PartFiles};
pub use print::PrintSink;
pub use sink_api::{Sink, SinkTransactions, SinkWriter, WriterInitContext};
pub use two_phase::{END_OF_INPUT, TwoPhaseCommitSink, TwoPhaseCommitSinkFunction};

/// Checks that directory `dir` exists or can be created: no part of its path is a file.
fn check_creatable_dir(dir: &std::path::Path) -> Result<(), String> {
    let Some(existing) = dir.ancestors().find(|a| a.exists()) else { return Ok(()) };
    if existing.is_dir() {
        return Ok(());
    }
    Err(format!(
        "cannot create output directory '{}': '{}' is a file (left by an earlier run?)",
        dir.display(),
        existing.display()
    ))
}
