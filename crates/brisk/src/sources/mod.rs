//! Built-in sources: collections, number sequences, generated data, text files and sockets.
//! Connectors for external systems live in `brisk-connectors`.

mod collection;
mod datagen;
mod file;
mod sequence;
mod socket;
mod split_queue;

pub use collection::{CollectionSource, IndexSplit};
pub use datagen::{DataGeneratorSource, GeneratorSplit};
pub use file::{BulkFileReader, BulkFormat, BulkRecord, FileSource, FileSplit};
pub use sequence::{NumberSequenceSource, SequenceSplit};
pub use socket::{SocketSplit, SocketTextStreamSource};
pub use split_queue::SplitQueue;

pub use brisk_runtime::source::{BadRecord, BadRecordPolicy};

/// The side output of the records a source could not read, under
/// [`BadRecordPolicy::SideOutput`] (dead letters): read it with
/// `stream.get_side_output(&dead_letters())`.
pub fn dead_letters() -> crate::side_output::OutputTag<BadRecord> {
    crate::side_output::OutputTag::new(brisk_runtime::source::DEAD_LETTERS)
}

/// Records a reader emits per poll: about one network buffer, so the task stays responsive.
pub(crate) const RECORDS_PER_POLL: usize = 1024;
