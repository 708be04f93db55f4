//! A splitting text-file source: files (or directories of files) are cut into byte ranges read
//! in parallel; each range emits the lines that start inside it. Optionally the paths are
//! re-scanned for new files (Flink's `FileSource.monitorContinuously`). Bulk formats (Flink's
//! `BulkFormat`: Parquet) are read a whole file per split, their position a record count.

use super::{RECORDS_PER_POLL, SplitQueue};
use brisk_core::{BoxError, Data, NonRecoverableError};
use brisk_runtime::source::{
    BadRecordPolicy, Boundedness, NextSplit, ReadStatus, ReaderContext, Source, SourceOutput, SourceReader,
    SourceSplit, SplitEnumerator, SplitReader, SplitReaders,
};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Smallest split: below this, splitting costs more than it gains.
const MIN_SPLIT_BYTES: u64 = 1 << 20;
/// Largest split, so readers share big files evenly.
const MAX_SPLIT_BYTES: u64 = 16 << 20;
/// Splits per reader a scan aims for.
const SPLITS_PER_READER: u64 = 64;
/// Bytes a reader emits per poll at most.
const BYTES_PER_POLL: usize = 256 << 10;

/// Why a file could not be read.
#[derive(Debug, Error)]
pub enum FileSourceError {
    /// A configured input path does not exist.
    #[error("input path '{0}' does not exist")]
    NotFound(PathBuf),
    /// A path could not be listed, opened or read.
    #[error("cannot read '{path}': {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not valid UTF-8 text, or the line format rejected it.
    #[error("'{path}', line {line} (byte offset {offset}): {message}")]
    InvalidRecord {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Byte offset of the line's start.
        offset: u64,
        /// What the format found wrong.
        message: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> FileSourceError + '_ {
    move |source| FileSourceError::Io { path: path.to_path_buf(), source }
}

/// Turns one line (without its line break) into a record, or says what is wrong with it.
pub type LineFormat<T> = Arc<dyn Fn(&str) -> Result<T, String> + Send + Sync>;

/// A record of a bulk-format file, or why it is bad (with its raw bytes).
pub type BulkRecord<T> = Result<T, (String, Vec<u8>)>;

/// A file format read a whole file at a time, positioned by records (Flink's `BulkFormat`).
pub trait BulkFormat<T>: Send + Sync {
    /// Opens `path` after its first `skip` records, or says why it cannot.
    fn open(&self, path: &Path, skip: u64) -> Result<Box<dyn BulkFileReader<T>>, String>;
}

/// Reads the records of one bulk-format file in batches.
pub trait BulkFileReader<T>: Send {
    /// Appends the next batch of records to `out`; `false` once the file has no more.
    fn read_batch(&mut self, out: &mut Vec<BulkRecord<T>>) -> Result<bool, String>;
}

/// How the source turns files into records.
enum FileFormat<T> {
    /// One record per line.
    Lines(LineFormat<T>),
    Bulk(Arc<dyn BulkFormat<T>>),
}

impl<T> Clone for FileFormat<T> {
    fn clone(&self) -> Self {
        match self {
            FileFormat::Lines(format) => FileFormat::Lines(format.clone()),
            FileFormat::Bulk(format) => FileFormat::Bulk(format.clone()),
        }
    }
}

/// Reads text files line by line (Flink's `FileSource` with a `TextLineInputFormat`, or with
/// [`for_record_format`](FileSource::for_record_format) a record format parsed per line), or
/// files of a [`BulkFormat`] ([`for_bulk_format`](FileSource::for_bulk_format)).
pub struct FileSource<T = String> {
    paths: Vec<PathBuf>,
    monitor_interval: Option<Duration>,
    format: FileFormat<T>,
}

impl<T> Clone for FileSource<T> {
    fn clone(&self) -> Self {
        FileSource { paths: self.paths.clone(), monitor_interval: self.monitor_interval, format: self.format.clone() }
    }
}

impl FileSource<String> {
    /// Reads the given files and directories (recursively; names starting with `.` or `_` are
    /// skipped, as in Flink, so writers can stage files under such names).
    pub fn for_paths(paths: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        Self::for_record_format(paths, |line: &str| Ok(line.to_owned()))
    }
}

impl<T> FileSource<T> {
    /// Reads records parsed from each line by `format`; a line it rejects fails the source
    /// with the file, line number and byte offset (Flink's `forRecordStreamFormat`).
    pub fn for_record_format(
        paths: impl IntoIterator<Item = impl Into<PathBuf>>,
        format: impl Fn(&str) -> Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        FileSource {
            paths: paths.into_iter().map(Into::into).collect(),
            monitor_interval: None,
            format: FileFormat::Lines(Arc::new(format)),
        }
    }

    /// Reads whole files of a bulk format, each file a split (Flink's `forBulkFileFormat`).
    pub fn for_bulk_format(
        paths: impl IntoIterator<Item = impl Into<PathBuf>>,
        format: impl BulkFormat<T> + 'static,
    ) -> Self {
        FileSource {
            paths: paths.into_iter().map(Into::into).collect(),
            monitor_interval: None,
            format: FileFormat::Bulk(Arc::new(format)),
        }
    }

    /// Reads one JSON document per line (JSON lines) as `T`.
    pub fn json_lines(paths: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self
    where
        T: serde::de::DeserializeOwned,
    {
        Self::for_record_format(paths, |line: &str| {
            serde_json::from_str(line).map_err(|e| format!("the line is not the expected JSON: {e}"))
        })
    }

    /// Reads CSV rows (RFC 4180 fields on one line, no header row) as `T`, field by field:
    /// a tuple or a struct in the column order.
    pub fn csv(paths: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self
    where
        T: serde::de::DeserializeOwned,
    {
        Self::for_record_format(paths, |line: &str| {
            let mut rows = csv::ReaderBuilder::new().has_headers(false).from_reader(line.as_bytes());
            match rows.deserialize().next() {
                Some(Ok(record)) => Ok(record),
                Some(Err(e)) => Err(format!("the line is not the expected CSV row: {e}")),
                None => Err("the line is empty".into()),
            }
        })
    }

    /// Keeps watching the paths and reads files that appear later; the source never ends.
    pub fn monitor_continuously(mut self, interval: Duration) -> Self {
        self.monitor_interval = Some(interval);
        self
    }
}

/// A byte range of a file: the lines starting in `start..end`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileSplit {
    /// The file.
    pub path: PathBuf,
    /// First byte of the range.
    pub start: u64,
    /// End of the range (exclusive).
    pub end: u64,
    /// Records of the file already emitted (bulk formats, whose positions are records).
    pub records: u64,
}

impl SourceSplit for FileSplit {
    fn split_id(&self) -> String {
        format!("{}:{}+{}", self.path.display(), self.start, self.end - self.start)
    }
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.') || n.starts_with('_'))
}

/// All files under `path` with their sizes, in a stable order.
fn list_files(path: &Path, out: &mut Vec<(PathBuf, u64)>) -> Result<(), FileSourceError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            FileSourceError::NotFound(path.to_path_buf())
        } else {
            io_error(path)(e)
        }
    })?;
    if meta.is_file() {
        out.push((path.to_path_buf(), meta.len()));
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io_error(path))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io_error(path))?;
    entries.sort();
    for entry in entries.into_iter().filter(|e| !is_hidden(e)) {
        list_files(&entry, out)?;
    }
    Ok(())
}

fn split_file(path: PathBuf, size: u64, split_bytes: u64, out: &mut Vec<FileSplit>) {
    if size == 0 {
        return;
    }
    let mut start = 0;
    while start < size {
        let end = (start + split_bytes).min(size);
        out.push(FileSplit { path: path.clone(), start, end, records: 0 });
        start = end;
    }
}

struct FileEnumerator {
    paths: Vec<PathBuf>,
    /// Bulk formats read a whole file per split.
    whole_files: bool,
    parallelism: usize,
    queue: SplitQueue<FileSplit>,
    seen: HashSet<PathBuf>,
    monitor_interval: Option<Duration>,
    next_scan: Instant,
}

impl FileEnumerator {
    /// Finds files not seen before and queues their splits.
    fn scan(&mut self) -> Result<(), FileSourceError> {
        let mut files = Vec::new();
        for path in &self.paths {
            list_files(path, &mut files)?;
        }
        files.retain(|(path, _)| !self.seen.contains(path));
        let total: u64 = files.iter().map(|(_, size)| size).sum();
        // Many small splits per reader balance the load, and keep parallel readers of a
        // time-ordered file close in event time: readers far apart hold back the watermark and
        // then fire many windows at once (latency, memory).
        let split_bytes = match self.whole_files {
            true => u64::MAX,
            false => {
                (total / (self.parallelism as u64 * SPLITS_PER_READER).max(1)).clamp(MIN_SPLIT_BYTES, MAX_SPLIT_BYTES)
            }
        };
        let mut splits = Vec::new();
        for (path, size) in files {
            self.seen.insert(path.clone());
            split_file(path, size, split_bytes, &mut splits);
        }
        self.queue.push_shared(splits);
        Ok(())
    }
}

impl SplitEnumerator<FileSplit> for FileEnumerator {
    fn next_split(&mut self, subtask: usize) -> Result<NextSplit<FileSplit>, BoxError> {
        if let Some(split) = self.queue.take(subtask) {
            return Ok(NextSplit::Split(split));
        }
        let Some(interval) = self.monitor_interval else { return Ok(NextSplit::NoMoreSplits) };
        let now = Instant::now();
        if now >= self.next_scan {
            self.next_scan = now + interval;
            self.scan()?;
            if let Some(split) = self.queue.take(subtask) {
                return Ok(NextSplit::Split(split));
            }
        }
        Ok(NextSplit::NotYet(self.next_scan.saturating_duration_since(now).max(Duration::from_millis(1))))
    }

    fn add_splits_back(&mut self, splits: Vec<FileSplit>, subtask: usize) {
        self.queue.add_splits_back(splits, subtask);
    }

    fn snapshot_state(&mut self) -> Result<Vec<u8>, BoxError> {
        let seen: Vec<&PathBuf> = self.seen.iter().collect();
        Ok(brisk_state::codec::encode(&(self.queue.snapshot_state()?, seen))?)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let (queue, seen): (Vec<u8>, Vec<PathBuf>) = brisk_state::codec::decode(state)?;
        self.queue.restore_state(&queue)?;
        self.seen = seen.into_iter().collect();
        Ok(())
    }
}

impl<T: Data> Source<T> for FileSource<T> {
    type Split = FileSplit;

    fn boundedness(&self) -> Boundedness {
        if self.monitor_interval.is_some() { Boundedness::ContinuousUnbounded } else { Boundedness::Bounded }
    }

    fn create_enumerator(&self, parallelism: usize) -> Result<Box<dyn SplitEnumerator<FileSplit>>, BoxError> {
        if self.paths.is_empty() {
            return Err("no input path given".into());
        }
        let mut enumerator = FileEnumerator {
            paths: self.paths.clone(),
            whole_files: matches!(self.format, FileFormat::Bulk(_)),
            parallelism: parallelism.max(1),
            queue: SplitQueue::shared(Vec::new()),
            seen: HashSet::new(),
            monitor_interval: self.monitor_interval,
            next_scan: Instant::now() + self.monitor_interval.unwrap_or_default(),
        };
        enumerator.scan()?;
        Ok(Box::new(enumerator))
    }

    fn create_reader(&self, _: &ReaderContext) -> Result<Box<dyn SourceReader<T, FileSplit>>, BoxError> {
        match self.format.clone() {
            FileFormat::Lines(format) => {
                SplitReaders::boxed(move || Ok(LineReader { current: None, line: Vec::new(), format: format.clone() }))
            }
            FileFormat::Bulk(format) => {
                SplitReaders::boxed(move || Ok(BulkReader { current: None, format: format.clone() }))
            }
        }
    }
}

/// A file a bulk format cannot read: it is the same file after any restart, so the job fails.
fn bulk_error(path: &Path, message: String) -> BoxError {
    let error = FileSourceError::Io { path: path.to_path_buf(), source: std::io::Error::other(message) };
    NonRecoverableError::new(error.to_string()).into()
}

/// Reads the files of a bulk format, one split (a whole file) at a time.
struct BulkReader<T> {
    current: Option<OpenBulkSplit<T>>,
    format: Arc<dyn BulkFormat<T>>,
}

/// A bulk-format file being read: its split counts the records emitted.
struct OpenBulkSplit<T> {
    split: FileSplit,
    reader: Box<dyn BulkFileReader<T>>,
    /// Records read from the file and not emitted yet.
    batch: Vec<BulkRecord<T>>,
    exhausted: bool,
}

impl<T: Send + 'static> SplitReader<T, FileSplit> for BulkReader<T> {
    fn open_split(&mut self, split: FileSplit) -> Result<(), BoxError> {
        let reader =
            self.format.open(&split.path, split.records).map_err(|message| bulk_error(&split.path, message))?;
        self.current = Some(OpenBulkSplit { split, reader, batch: Vec::new(), exhausted: false });
        Ok(())
    }

    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<ReadStatus, BoxError> {
        let Some(open) = self.current.as_mut() else { return Ok(ReadStatus::SplitFinished) };
        if open.batch.is_empty() && !open.exhausted {
            let path = &open.split.path;
            open.exhausted = !open.reader.read_batch(&mut open.batch).map_err(|message| bulk_error(path, message))?;
        }
        // A bounded amount per poll (a file's batch can be large), so barriers get through.
        let end = open.batch.len().min(RECORDS_PER_POLL);
        for record in open.batch.drain(..end) {
            match record {
                Ok(value) => out.collect(value),
                Err((reason, raw)) => {
                    let reason = format!("'{}' (record {}): {reason}", open.split.path.display(), open.split.records);
                    out.bad_record(open.split.records, reason, &raw);
                }
            }
            open.split.records += 1;
        }
        if open.batch.is_empty() && open.exhausted {
            self.current = None;
            return Ok(ReadStatus::SplitFinished);
        }
        Ok(ReadStatus::More)
    }

    fn snapshot_state(&self) -> Vec<FileSplit> {
        self.current.iter().map(|open| open.split.clone()).collect()
    }
}

struct OpenSplit {
    split: FileSplit,
    reader: BufReader<File>,
    /// Offset of the next unread byte.
    position: u64,
}

struct LineReader<T> {
    current: Option<OpenSplit>,
    line: Vec<u8>,
    format: LineFormat<T>,
}

impl<T: 'static> SplitReader<T, FileSplit> for LineReader<T> {
    fn open_split(&mut self, split: FileSplit) -> Result<(), BoxError> {
        let path = split.path.clone();
        let mut file = File::open(&path).map_err(io_error(&path))?;
        // A range that starts mid-line leaves that line to the range before it.
        let mut position = split.start;
        let mut skip_partial = false;
        if split.start > 0 {
            file.seek(SeekFrom::Start(split.start - 1)).map_err(io_error(&path))?;
            let mut previous = [0u8; 1];
            file.read_exact(&mut previous).map_err(io_error(&path))?;
            skip_partial = previous[0] != b'\n';
        }
        let mut reader = BufReader::with_capacity(1 << 20, file);
        if skip_partial {
            let mut discard = Vec::new();
            position += reader.read_until(b'\n', &mut discard).map_err(io_error(&path))? as u64;
        }
        self.current = Some(OpenSplit { split, reader, position });
        Ok(())
    }

    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<ReadStatus, BoxError> {
        let Some(open) = self.current.as_mut() else { return Ok(ReadStatus::SplitFinished) };
        let mut bytes = 0;
        for _ in 0..RECORDS_PER_POLL {
            if open.position >= open.split.end || out.should_yield() {
                break;
            }
            self.line.clear();
            let n = open.reader.read_until(b'\n', &mut self.line).map_err(io_error(&open.split.path))?;
            if n == 0 {
                open.position = open.split.end;
                break;
            }
            let line_start = open.position;
            open.position += n as u64;
            bytes += n;
            let mut content = &self.line[..];
            if let Some(rest) = content.strip_suffix(b"\n") {
                content = rest.strip_suffix(b"\r").unwrap_or(rest);
            }
            let problem = match std::str::from_utf8(content) {
                Err(_) => Some("the line is not valid UTF-8 text".to_string()),
                Ok(text) => match (self.format)(text) {
                    Ok(record) => {
                        out.collect(record);
                        None
                    }
                    Err(message) => Some(message),
                },
            };
            if let Some(message) = problem {
                let path = &open.split.path;
                // Counting lines reads the file up to the line: only for the error that fails.
                let reason = match out.bad_record_policy() {
                    BadRecordPolicy::Fail => {
                        let line = line_number_at(path, line_start)?;
                        FileSourceError::InvalidRecord { path: path.clone(), line, offset: line_start, message }
                            .to_string()
                    }
                    _ => format!("'{}' (byte offset {line_start}): {message}", path.display()),
                };
                out.bad_record(line_start, reason, content);
            }
            if bytes >= BYTES_PER_POLL {
                break;
            }
        }
        if open.position >= open.split.end {
            self.current = None;
            Ok(ReadStatus::SplitFinished)
        } else {
            Ok(ReadStatus::More)
        }
    }

    fn snapshot_state(&self) -> Vec<FileSplit> {
        // Positions are at line starts between polls, so reading resumes at the next line.
        self.current
            .iter()
            .filter(|open| open.position < open.split.end)
            .map(|open| FileSplit { start: open.position, ..open.split.clone() })
            .collect()
    }
}

/// The 1-based number of the line starting at `offset` (only computed for error messages).
fn line_number_at(path: &Path, offset: u64) -> Result<u64, FileSourceError> {
    let file = File::open(path).map_err(io_error(path))?;
    let mut reader = BufReader::new(file.take(offset));
    let mut buf = [0u8; 64 << 10];
    let mut newlines = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(io_error(path))?;
        if n == 0 {
            return Ok(newlines + 1);
        }
        newlines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brisk_runtime::OperatorOutput;
    use brisk_runtime::taskexecutor::output::{CollectedElement, CollectingOutput};
    use std::io::Write;

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("brisk-file-source-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        File::create(&path).unwrap().write_all(bytes).unwrap();
        path
    }

    /// Polls `reader` until its split is read; the first failure, of the poll or of an emission.
    fn read_to_end<T: 'static>(reader: &mut LineReader<T>, out: &mut OperatorOutput<T>) -> Result<(), BoxError> {
        loop {
            let mut output = SourceOutput::new(out);
            let status = reader.poll(&mut output)?;
            if let Some(e) = output.take_error() {
                return Err(e.into());
            }
            if status == ReadStatus::SplitFinished {
                return Ok(());
            }
        }
    }

    fn read_split(split: FileSplit) -> Result<Vec<String>, BoxError> {
        let (collecting, elements) = CollectingOutput::<String>::new();
        let mut out = OperatorOutput::new(Box::new(collecting), Vec::new());
        let FileFormat::Lines(format) = FileSource::for_paths([""]).format else { panic!("a line format") };
        let mut reader = LineReader { current: None, line: Vec::new(), format };
        reader.open_split(split)?;
        read_to_end(&mut reader, &mut out)?;
        let lines = elements
            .borrow()
            .iter()
            .filter_map(|e| match e {
                CollectedElement::Record(r) => Some(r.value.clone()),
                _ => None,
            })
            .collect();
        Ok(lines)
    }

    #[test]
    fn every_line_is_read_once_whatever_the_split_size() {
        let text = "alpha\nbeta\r\n\ngamma delta\nlast line without newline";
        let path = temp_file("lines.txt", text.as_bytes());
        let expected = vec!["alpha", "beta", "", "gamma delta", "last line without newline"];
        for split_bytes in 1..=text.len() as u64 + 1 {
            let mut splits = Vec::new();
            split_file(path.clone(), text.len() as u64, split_bytes, &mut splits);
            let lines: Vec<String> = splits.into_iter().flat_map(|s| read_split(s).unwrap()).collect();
            assert_eq!(lines, expected, "split size {split_bytes}");
        }
    }

    #[test]
    fn invalid_utf8_names_file_and_line() {
        let path = temp_file("bad.txt", b"ok\nfine\nbad \xff byte\nnever read\n");
        let err = read_split(FileSplit { path, start: 0, end: 40, records: 0 }).unwrap_err().to_string();
        assert!(err.contains("bad.txt") && err.contains("line 3") && err.contains("offset 8"), "{err}");
    }

    #[test]
    fn record_format_errors_name_file_line_and_offset() {
        let path = temp_file("numbers.txt", b"1\n22\nthree\n4\n");
        let source = FileSource::for_record_format([path.clone()], |l: &str| {
            l.parse::<i64>().map_err(|e| format!("'{l}' is not a number: {e}"))
        });
        let FileFormat::Lines(format) = source.format else { panic!("a line format") };
        let mut reader = LineReader { current: None, line: Vec::new(), format };
        reader.open_split(FileSplit { path, start: 0, end: 20, records: 0 }).unwrap();
        let (collecting, elements) = CollectingOutput::<i64>::new();
        let mut out = OperatorOutput::new(Box::new(collecting), Vec::new());
        let err = read_to_end(&mut reader, &mut out).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "numbers.txt', line 3 (byte offset 5): 'three' is not a number: invalid digit found in string"
            ),
            "{err}"
        );
        assert_eq!(elements.borrow().len(), 2, "the lines before it were emitted");
    }

    #[test]
    fn missing_path_is_named() {
        let source = FileSource::for_paths(["/definitely/not/here.txt"]);
        let err = source.create_enumerator(1).err().unwrap().to_string();
        assert_eq!(err, "input path '/definitely/not/here.txt' does not exist");
    }

    #[test]
    fn directories_are_read_recursively_without_hidden_files() {
        let a = temp_file("a.txt", b"1\n");
        let dir = a.parent().unwrap().to_path_buf();
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        File::create(dir.join("sub/b.txt")).unwrap().write_all(b"2\n").unwrap();
        File::create(dir.join(".hidden")).unwrap().write_all(b"x\n").unwrap();
        File::create(dir.join("_staging")).unwrap().write_all(b"y\n").unwrap();
        let mut files = Vec::new();
        list_files(&dir, &mut files).unwrap();
        let names: Vec<String> =
            files.iter().map(|(p, _)| p.strip_prefix(&dir).unwrap().display().to_string()).collect();
        assert_eq!(names, vec!["a.txt", "sub/b.txt"]);
    }
}
