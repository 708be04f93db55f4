//! Split-based sources (Flink's FLIP-27 `Source`): an enumerator hands out splits (file ranges,
//! sequence ranges, partitions) and a reader in each source subtask reads the splits it gets.

pub mod reader;
pub mod watermark;

pub use reader::{
    BadRecord, BadRecordPolicy, BadRecords, DEAD_LETTERS, InputStatus, ReaderOutput, SourceReader, SplitReaderFactory,
    SplitReaders,
};

use crate::checkpoint::{CheckpointId, OperatorSnapshot};
use crate::error::{TaskError, TaskResult, lock};
use crate::metrics::OperatorReport;
use crate::metrics::task_io::TaskIoMetrics;
use crate::network::channel::{CancelToken, TaskWaker};
use crate::source::watermark::{WatermarkStrategy, WatermarkTracker, WatermarkUpdate};
use crate::taskexecutor::chain::{LinkState, call_operator};
use crate::taskexecutor::context::{OperatorInfo, TaskContext};
use crate::taskexecutor::mailbox::Mailbox;
use crate::taskexecutor::output::{ChainControl, CheckpointEvent, OperatorOutput};
use crate::taskexecutor::time::ProcessingTimeService;
use brisk_core::{BoxError, NO_TIMESTAMP, NonRecoverableError, StreamRecord, Watermark};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::debug;

/// Whether a source ends by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boundedness {
    /// The source has a finite amount of data; the job ends when it is read.
    Bounded,
    /// The source runs until cancelled (e.g. a monitored directory, a socket server).
    ContinuousUnbounded,
}

/// A piece of a source's input that one reader reads start to end; it also describes the
/// reader's position, so it is what a checkpoint stores.
pub trait SourceSplit: Clone + Send + Debug + Serialize + DeserializeOwned + 'static {
    /// A stable identifier, for logs and errors.
    fn split_id(&self) -> String;
}

/// What the enumerator answers when a reader asks for work.
#[derive(Debug)]
pub enum NextSplit<S> {
    /// Read this split.
    Split(S),
    /// Nothing now; ask again after the given time (new files may still appear).
    NotYet(Duration),
    /// There will never be more work for this reader.
    NoMoreSplits,
}

/// Decides which reader reads which split (runs in the job master).
pub trait SplitEnumerator<S>: Send {
    /// Work for reader `subtask`.
    fn next_split(&mut self, subtask: usize) -> Result<NextSplit<S>, BoxError>;
    /// Splits handed out earlier come back (their reader failed before finishing them, or a
    /// checkpoint is restored); `subtask` may not exist any more (rescaling).
    fn add_splits_back(&mut self, splits: Vec<S>, subtask: usize);
    /// The enumerator's state for a checkpoint: the splits no reader has got yet (and what
    /// else it needs, e.g. the files already seen).
    fn snapshot_state(&mut self) -> Result<Vec<u8>, BoxError>;
    /// Replaces the state by one from [`snapshot_state`](Self::snapshot_state).
    fn restore_state(&mut self, state: &[u8]) -> Result<(), BoxError>;
    /// Checkpoint `checkpoint` completed.
    fn notify_checkpoint_complete(&mut self, _checkpoint: CheckpointId) {}
}

/// What a reader's poll found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// Records were emitted and more are available at once.
    More,
    /// Nothing available now; poll again after the duration, or when the reader wakes the task.
    Wait(Option<Duration>),
    /// The current split is completely read.
    SplitFinished,
}

/// Reads one split at a time and emits its records (see [`SplitReaders`]).
pub trait SplitReader<T, S>: Send {
    /// Starts reading a split.
    fn open_split(&mut self, split: S) -> Result<(), BoxError>;
    /// Emits the next records of the current split: a bounded amount (about one network
    /// buffer), so the task can react to timers and control messages in between.
    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<ReadStatus, BoxError>;
    /// Releases resources.
    fn close(&mut self) {}
    /// The splits it is reading, each with its current position, for a checkpoint: reading
    /// them from there after a restore continues exactly after the last emitted record.
    fn snapshot_state(&self) -> Vec<S>;
}

/// What a reader needs to know about its subtask.
#[derive(Clone)]
pub struct ReaderContext {
    /// 0-based index of the reading subtask.
    pub subtask_index: usize,
    /// Number of reading subtasks.
    pub parallelism: usize,
    /// Wakes the task when a background thread of the reader has data.
    pub waker: Arc<TaskWaker>,
    /// Set when the job is cancelled; background threads stop on it.
    pub cancel: CancelToken,
    /// Whether the job takes checkpoints (a reader that acknowledges at checkpoints must
    /// acknowledge otherwise without them).
    pub checkpointing: bool,
}

/// A source: how to enumerate its splits and how to read them.
pub trait Source<T>: Send + Sync + 'static {
    /// The split type.
    type Split: SourceSplit;
    /// Whether the source ends by itself.
    fn boundedness(&self) -> Boundedness;
    /// Creates the enumerator for `parallelism` readers.
    fn create_enumerator(&self, parallelism: usize) -> Result<Box<dyn SplitEnumerator<Self::Split>>, BoxError>;
    /// Creates the reader of one subtask ([`SplitReaders`] reads one split per [`SplitReader`]).
    fn create_reader(&self, ctx: &ReaderContext) -> Result<Box<dyn SourceReader<T, Self::Split>>, BoxError>;
}

/// A reader's view of its output: timestamps and watermarks of the current split are applied
/// here, and emission errors are kept and surface after the poll, so a reader emits without
/// checking each call.
pub struct SourceOutput<'a, T> {
    out: &'a mut OperatorOutput<T>,
    watermarks: Option<(&'a mut WatermarkTracker<T>, usize)>,
    error: Option<TaskError>,
    /// The task's mailbox: mail waiting there (a checkpoint trigger) ends the poll early.
    mailbox: Option<&'a Mailbox>,
    /// What to do with bad records, and the split they come from.
    bad_records: (&'a BadRecords, &'a str),
    /// Where the failure goes when the output is dropped (one split's output of a
    /// [`ReaderOutput`]).
    report_to: Option<&'a mut Option<TaskError>>,
}

impl<'a, T: 'static> SourceOutput<'a, T> {
    /// Wraps an operator output.
    pub fn new(out: &'a mut OperatorOutput<T>) -> Self {
        SourceOutput {
            out,
            watermarks: None,
            error: None,
            mailbox: None,
            bad_records: (&reader::FAILING, ""),
            report_to: None,
        }
    }

    /// Wraps an operator output, generating watermarks for the tracker's part `part`.
    pub fn with_watermarks(out: &'a mut OperatorOutput<T>, tracker: &'a mut WatermarkTracker<T>, part: usize) -> Self {
        let mut output = SourceOutput::new(out);
        output.watermarks = Some((tracker, part));
        output
    }

    /// Treats bad records of split `split` as `bad_records` says.
    pub fn reading(mut self, bad_records: &'a BadRecords, split: &'a str) -> Self {
        self.bad_records = (bad_records, split);
        self
    }

    /// Leaves a failure in `slot` when dropped.
    fn reporting_to(mut self, slot: &'a mut Option<TaskError>) -> Self {
        self.report_to = Some(slot);
        self
    }

    /// What the source does with bad records.
    pub fn bad_record_policy(&self) -> BadRecordPolicy {
        self.bad_records.0.policy
    }

    /// A record at `offset` of the split could not be read, for `reason`: fails the source,
    /// skips it or sends it to the dead letters, as the source's [`BadRecordPolicy`] says.
    pub fn bad_record(&mut self, offset: u64, reason: impl Into<String>, raw: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let (records, split) = self.bad_records;
        let reason = reason.into();
        match records.policy {
            BadRecordPolicy::Fail => {
                let source =
                    if records.source.is_empty() { String::new() } else { format!("source '{}', ", records.source) };
                let message = format!("{source}split '{split}', offset {offset}: {reason}");
                // The same record comes back after any restart: fail the job, not the attempt.
                self.error = Some(TaskError::User(Box::new(NonRecoverableError::new(message))));
            }
            BadRecordPolicy::Skip => {
                if let Some(metrics) = &records.metrics {
                    metrics.add_in_error();
                }
                debug!(source = %records.source, split, offset, reason = %reason, "skipped a bad record");
            }
            BadRecordPolicy::SideOutput => {
                let record = BadRecord {
                    source: records.source.clone(),
                    split: split.to_string(),
                    offset,
                    reason,
                    raw: raw.to_vec(),
                };
                if let Err(e) =
                    self.out.collect_side(DEAD_LETTERS, StreamRecord { value: record, timestamp: NO_TIMESTAMP })
                {
                    self.error = Some(e);
                }
            }
        }
    }

    /// Emits a record without a timestamp (the watermark strategy may assign one).
    #[inline]
    pub fn collect(&mut self, value: T) {
        self.emit(value, NO_TIMESTAMP);
    }

    /// Emits a record with an event-time timestamp.
    #[inline]
    pub fn collect_with_timestamp(&mut self, value: T, timestamp: i64) {
        self.emit(value, timestamp);
    }

    #[inline]
    fn emit(&mut self, value: T, timestamp: i64) {
        if self.error.is_some() {
            return;
        }
        let result = match &mut self.watermarks {
            None => self.out.collect(StreamRecord { value, timestamp }),
            Some((tracker, part)) => {
                let (timestamp, status, watermark) = tracker.on_event(*part, &value, timestamp);
                let emitted = self.out.collect(StreamRecord { value, timestamp });
                emitted.and_then(|_| emit_updates(self.out, status.into_iter().chain(watermark)))
            }
        };
        if let Err(e) = result {
            self.error = Some(e);
        }
    }

    /// Makes [`Self::should_yield`] true while `mailbox` holds mail for the task.
    pub fn yielding_to(mut self, mailbox: &'a Mailbox) -> Self {
        self.mailbox = Some(mailbox);
        self
    }

    /// True when the reader should return from its poll now: an emission failed, or the task
    /// has mail (a checkpoint trigger) that must not wait for a whole batch of records, which
    /// a slow user function chained to the source could take seconds to process.
    #[inline]
    pub fn should_yield(&self) -> bool {
        self.error.is_some() || self.mailbox.is_some_and(Mailbox::has_mail)
    }

    /// The failure of an emission or a bad record, if any (taken: it is reported once).
    pub fn take_error(&mut self) -> Option<TaskError> {
        self.error.take()
    }
}

impl<T> Drop for SourceOutput<'_, T> {
    fn drop(&mut self) {
        if let (Some(slot), Some(error)) = (self.report_to.as_mut(), self.error.take()) {
            **slot = Some(error);
        }
    }
}

/// Passes watermark updates on.
pub fn emit_updates<T>(out: &mut OperatorOutput<T>, updates: impl IntoIterator<Item = WatermarkUpdate>) -> TaskResult {
    for update in updates {
        match update {
            WatermarkUpdate::Watermark(w) => out.emit_watermark(w)?,
            WatermarkUpdate::Status(s) => out.emit_watermark_status(s)?,
        }
    }
    Ok(())
}

/// The enumerator of one source node, shared by its reader subtasks. While a checkpoint is
/// being triggered a reader gets no new split until it has taken its snapshot, so the
/// enumerator's snapshot and the readers' snapshots cover every split exactly once.
pub struct EnumeratorCell<S> {
    enumerator: Mutex<Box<dyn SplitEnumerator<S>>>,
    paused: Vec<AtomicBool>,
    /// Restored in-progress splits not yet handed out again (at the queue's front).
    resumed: AtomicUsize,
    /// Per reader: splits given back to it alone (region failover) not yet taken again.
    resumed_by: Vec<AtomicUsize>,
    /// Splits handed out, with the reader and the newest checkpoint triggered before: what a
    /// reader restarted alone (region failover) must read again. Pruned as checkpoints complete.
    assignments: Mutex<Assignments<S>>,
}

/// Splits handed out since the oldest checkpoint a reader may still be restored from.
struct Assignments<S> {
    /// The newest checkpoint whose enumerator snapshot was taken.
    epoch: CheckpointId,
    log: Vec<(CheckpointId, usize, S)>,
    /// Per reader: the checkpoint whose split positions of it were already given back (by a
    /// restore or an earlier reset); given back again they would be read twice.
    handed_back: Vec<Option<CheckpointId>>,
}

/// An [`EnumeratorCell`] shared by the readers of a source node.
pub type SharedEnumerator<S> = Arc<EnumeratorCell<S>>;

/// A reader's view of its enumerator: the enumerator itself in the same process, or a proxy
/// that asks the job's coordinator process ([`RemoteSplits`]).
pub trait SplitAssignments<S>: Send + Sync {
    /// Work for reader `subtask` (`None` while it owes a checkpoint snapshot).
    fn next_split(&self, subtask: usize) -> Result<Option<NextSplit<S>>, BoxError>;
    /// Whether splits restored from a checkpoint are still offered (taken all at once).
    fn offers_resumed(&self, subtask: usize) -> bool;
    /// Reader `subtask` took its snapshot, or the checkpoint was abandoned.
    fn resume(&self, subtask: usize);
}

impl<S: SourceSplit> SplitAssignments<S> for EnumeratorCell<S> {
    fn next_split(&self, subtask: usize) -> Result<Option<NextSplit<S>>, BoxError> {
        EnumeratorCell::next_split(self, subtask)
    }

    fn offers_resumed(&self, subtask: usize) -> bool {
        EnumeratorCell::offers_resumed(self, subtask)
    }

    fn resume(&self, subtask: usize) {
        EnumeratorCell::resume(self, subtask)
    }
}

/// An enumerator's answer with the split encoded, as it travels between processes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum EncodedNextSplit {
    /// Nothing while the reader owes a checkpoint snapshot.
    Paused,
    /// A split ([`brisk_state::codec`]), and whether restored splits are still offered.
    Split(Vec<u8>, bool),
    /// Ask again after this many milliseconds.
    NotYet(u64),
    /// No more work for this reader.
    NoMoreSplits,
}

/// How a reader in a worker process reaches the enumerators in the job's coordinator.
pub trait SplitRequests: Send + Sync {
    /// [`SplitAssignments::next_split`] of source `operator_id`.
    fn next_split(&self, operator_id: &str, subtask: usize) -> Result<EncodedNextSplit, BoxError>;
    /// [`SplitAssignments::resume`] of source `operator_id`.
    fn resume(&self, operator_id: &str, subtask: usize);
}

/// The enumerator of source `operator_id` as a worker process sees it (an
/// [`ErasedEnumerator`](crate::graph::stream_graph::ErasedEnumerator) the source task
/// recognises).
#[derive(Clone)]
pub struct RemoteEnumerator {
    /// The source node's operator id.
    pub operator_id: String,
    /// The way to the coordinator.
    pub requests: Arc<dyn SplitRequests>,
}

/// [`SplitAssignments`] over a [`RemoteEnumerator`], decoding the splits it gets.
pub struct RemoteSplits<S> {
    remote: RemoteEnumerator,
    /// Whether the coordinator still offered restored splits with the last answer.
    resumed: AtomicBool,
    _split: std::marker::PhantomData<fn() -> S>,
}

impl<S> RemoteSplits<S> {
    /// Splits of `remote` for the readers of this process.
    pub fn new(remote: RemoteEnumerator) -> Self {
        // Restored splits are announced by the first answer.
        RemoteSplits { remote, resumed: AtomicBool::new(true), _split: std::marker::PhantomData }
    }
}

impl<S: SourceSplit> SplitAssignments<S> for RemoteSplits<S> {
    fn next_split(&self, subtask: usize) -> Result<Option<NextSplit<S>>, BoxError> {
        let answer = self.remote.requests.next_split(&self.remote.operator_id, subtask)?;
        let (next, resumed) = match answer {
            EncodedNextSplit::Paused => (None, false),
            EncodedNextSplit::Split(bytes, resumed) => {
                let split = brisk_state::codec::decode(&bytes)
                    .map_err(|e| format!("a split from the coordinator does not decode: {e}"))?;
                (Some(NextSplit::Split(split)), resumed)
            }
            EncodedNextSplit::NotYet(ms) => (Some(NextSplit::NotYet(Duration::from_millis(ms))), false),
            EncodedNextSplit::NoMoreSplits => (Some(NextSplit::NoMoreSplits), false),
        };
        self.resumed.store(resumed, Ordering::Release);
        Ok(next)
    }

    fn offers_resumed(&self, _subtask: usize) -> bool {
        self.resumed.load(Ordering::Acquire)
    }

    fn resume(&self, subtask: usize) {
        self.remote.requests.resume(&self.remote.operator_id, subtask)
    }
}

impl<S: SourceSplit> EnumeratorCell<S> {
    /// [`next_split`](Self::next_split) with the split encoded for another process.
    pub fn next_split_encoded(&self, subtask: usize) -> Result<EncodedNextSplit, BoxError> {
        Ok(match self.next_split(subtask)? {
            None => EncodedNextSplit::Paused,
            Some(NextSplit::Split(split)) => EncodedNextSplit::Split(
                brisk_state::codec::encode(&split)
                    .map_err(|e| format!("cannot encode split {}: {e}", split.split_id()))?,
                self.offers_resumed(subtask),
            ),
            Some(NextSplit::NotYet(d)) => EncodedNextSplit::NotYet(d.as_millis() as u64),
            Some(NextSplit::NoMoreSplits) => EncodedNextSplit::NoMoreSplits,
        })
    }
}

impl<S: SourceSplit> EnumeratorCell<S> {
    /// Shares `enumerator` among `readers` readers; `epoch` is the checkpoint the job started
    /// from (0 for none).
    pub fn new(enumerator: Box<dyn SplitEnumerator<S>>, readers: usize, epoch: CheckpointId) -> Self {
        EnumeratorCell {
            enumerator: Mutex::new(enumerator),
            paused: (0..readers).map(|_| AtomicBool::new(false)).collect(),
            resumed: AtomicUsize::new(0),
            resumed_by: (0..readers).map(|_| AtomicUsize::new(0)).collect(),
            assignments: Mutex::new(Assignments { epoch, log: Vec::new(), handed_back: vec![None; readers] }),
        }
    }

    /// Work for reader `subtask` (nothing while it owes a checkpoint snapshot).
    pub fn next_split(&self, subtask: usize) -> Result<Option<NextSplit<S>>, BoxError> {
        // Under the enumerator's lock, as snapshots pause readers: a split handed out is
        // either in the enumerator's snapshot or logged after it.
        let mut enumerator = lock(&self.enumerator);
        if self.paused.get(subtask).is_some_and(|p| p.load(Ordering::Acquire)) {
            return Ok(None);
        }
        let next = enumerator.next_split(subtask)?;
        if let NextSplit::Split(split) = &next {
            let take = |count: &AtomicUsize| {
                count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
            };
            if !self.resumed_by.get(subtask).is_some_and(take) {
                take(&self.resumed);
            }
            let mut assignments = lock(&self.assignments);
            let epoch = assignments.epoch;
            assignments.log.push((epoch, subtask, split.clone()));
        }
        Ok(Some(next))
    }

    /// Whether splits that were being read together before a restore are still offered: a
    /// reader takes them all at once, so their per-split watermarks hold each other back as
    /// they did before (reading them one after another would make the later ones late).
    pub fn offers_resumed(&self, subtask: usize) -> bool {
        self.resumed.load(Ordering::Acquire) > 0
            || self.resumed_by.get(subtask).is_some_and(|n| n.load(Ordering::Acquire) > 0)
    }

    /// Snapshots the unassigned splits for checkpoint `id` and pauses every reader until it
    /// took its snapshot.
    pub fn snapshot_for_checkpoint(&self, id: CheckpointId) -> Result<Vec<u8>, BoxError> {
        let mut enumerator = lock(&self.enumerator);
        self.paused.iter().for_each(|p| p.store(true, Ordering::Release));
        lock(&self.assignments).epoch = id;
        enumerator.snapshot_state()
    }

    /// Checkpoint `id` completed: no reader is restored from an older one any more, and the
    /// enumerator hears of it.
    pub fn checkpoint_completed(&self, id: CheckpointId) {
        lock(&self.assignments).log.retain(|(epoch, _, _)| *epoch >= id);
        lock(&self.enumerator).notify_checkpoint_complete(id);
    }

    /// Reader `subtask` restarts alone from checkpoint `from` (region failover): the splits
    /// it was reading then (`checkpointed`) and those it got since go back to it.
    pub fn reset_reader(&self, subtask: usize, from: CheckpointId, checkpointed: Vec<S>) {
        let mut assignments = lock(&self.assignments);
        let mut splits = Vec::new();
        if let Some(handed_back) = assignments.handed_back.get_mut(subtask)
            && *handed_back != Some(from)
        {
            *handed_back = Some(from);
            splits = checkpointed;
        }
        assignments.log.retain(|(epoch, reader, split)| {
            let again = *reader == subtask && *epoch >= from;
            if again {
                splits.push(split.clone());
            }
            !again
        });
        drop(assignments);
        if let Some(count) = self.resumed_by.get(subtask) {
            count.store(splits.len(), Ordering::Release);
        }
        lock(&self.enumerator).add_splits_back(splits, subtask);
    }

    /// Reader `subtask` took its snapshot (or will not: the checkpoint was abandoned).
    pub fn resume(&self, subtask: usize) {
        if let Some(p) = self.paused.get(subtask) {
            p.store(false, Ordering::Release);
        }
    }

    /// Lets every reader continue.
    pub fn resume_all(&self) {
        self.paused.iter().for_each(|p| p.store(false, Ordering::Release));
    }

    /// Restores the enumerator from checkpoint `id` and gives back the splits readers were in
    /// the middle of.
    pub fn restore(&self, id: CheckpointId, state: &[u8], in_progress: Vec<S>) -> Result<(), BoxError> {
        let mut enumerator = lock(&self.enumerator);
        enumerator.restore_state(state)?;
        let mut assignments = lock(&self.assignments);
        assignments.epoch = id;
        assignments.handed_back.iter_mut().for_each(|h| *h = Some(id));
        drop(assignments);
        self.resumed.store(in_progress.len(), Ordering::Release);
        enumerator.add_splits_back(in_progress, usize::MAX);
        Ok(())
    }

    /// Gives back splits of readers that failed.
    pub fn add_splits_back(&self, splits: Vec<S>, subtask: usize) {
        lock(&self.enumerator).add_splits_back(splits, subtask);
    }
}

/// What the source head of a task reports after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// Poll again at once.
    MoreAvailable,
    /// Nothing now; poll again at the instant, or when woken.
    NothingAvailable(Option<Instant>),
    /// The source has ended.
    EndOfInput,
}

/// The head of a source task.
pub trait SourceHead: ChainControl {
    /// Lets the reader emit its next records.
    fn poll_next(&mut self) -> TaskResult<SourceStatus>;
}

/// How often a reader that takes splits while reading asks for more at most (each ask may be
/// a call to the job's coordinator).
const SPLIT_REQUEST_INTERVAL: Duration = Duration::from_millis(100);

/// Drives a [`SourceReader`]: asks the enumerator for splits, has the reader read them, ends
/// the input.
pub struct SourceLink<T, S: Source<T>> {
    source: Arc<S>,
    strategy: Option<WatermarkStrategy<T>>,
    watermarks: Option<WatermarkTracker<T>>,
    time: Option<(ProcessingTimeService, i64)>,
    enumerator: Arc<dyn SplitAssignments<S::Split>>,
    reader: Option<Box<dyn SourceReader<T, S::Split>>>,
    /// Ids of the splits being read.
    reading: Vec<String>,
    /// When a reader that takes splits while reading asks again.
    next_request: Instant,
    subtask_index: usize,
    no_more_splits: bool,
    /// Stop-with-savepoint: end after the savepoint (with the final watermark if draining).
    stopping: Option<bool>,
    records_read: Option<Arc<std::sync::atomic::AtomicU64>>,
    metrics: Option<Arc<TaskIoMetrics>>,
    /// The task's mailbox, which polls yield to.
    mailbox: Option<Mailbox>,
    bad_records: BadRecords,
    out: OperatorOutput<T>,
    state: LinkState,
    name: Arc<str>,
}

impl<T: 'static, S: Source<T>> SourceLink<T, S> {
    /// A source head reading `source` with splits from `enumerator`, timestamps and watermarks
    /// from `strategy` (per split), bad records treated by `policy`.
    pub fn new(
        source: Arc<S>,
        strategy: Option<WatermarkStrategy<T>>,
        enumerator: Arc<dyn SplitAssignments<S::Split>>,
        policy: BadRecordPolicy,
        out: OperatorOutput<T>,
        info: OperatorInfo,
    ) -> Self {
        SourceLink {
            source,
            strategy,
            watermarks: None,
            time: None,
            enumerator,
            reader: None,
            reading: Vec::new(),
            next_request: Instant::now(),
            subtask_index: 0,
            no_more_splits: false,
            stopping: None,
            records_read: None,
            metrics: None,
            mailbox: None,
            bad_records: BadRecords { policy, source: info.name.clone(), metrics: None },
            out,
            name: info.name.as_str().into(),
            state: LinkState::new(info),
        }
    }

    fn poll_reader(&mut self) -> TaskResult<SourceStatus> {
        if let Some(drain) = self.stopping {
            if drain {
                self.out.emit_watermark(Watermark::MAX)?;
            }
            return Ok(SourceStatus::EndOfInput);
        }
        let Some(reader) = self.reader.as_mut() else { return Err(TaskError::msg("source reader used before open")) };
        loop {
            let idle = self.reading.is_empty();
            let now = Instant::now();
            let wants_split = idle
                || self.enumerator.offers_resumed(self.subtask_index)
                || (reader.takes_splits_while_reading() && now >= self.next_request);
            if wants_split && !self.no_more_splits {
                // Paused while this reader owes a checkpoint snapshot: the trigger is in the mailbox.
                match self.enumerator.next_split(self.subtask_index)? {
                    None if idle => return Ok(SourceStatus::NothingAvailable(None)),
                    None => self.next_request = now + SPLIT_REQUEST_INTERVAL,
                    Some(NextSplit::Split(split)) => {
                        let id = split.split_id();
                        // Each split gets its own watermark generator (Flink's per-split watermarks).
                        if let Some(tracker) = &mut self.watermarks {
                            tracker.add_part(&id);
                        }
                        reader.add_splits(vec![split])?;
                        self.reading.push(id);
                        continue;
                    }
                    Some(NextSplit::NotYet(retry)) if idle => {
                        return Ok(SourceStatus::NothingAvailable(Some(now + retry)));
                    }
                    Some(NextSplit::NotYet(retry)) => self.next_request = now + retry.max(SPLIT_REQUEST_INTERVAL),
                    Some(NextSplit::NoMoreSplits) => self.no_more_splits = true,
                }
            }
            if idle {
                if self.no_more_splits {
                    // Bounded input is complete: fire every event-time timer downstream.
                    self.out.emit_watermark(Watermark::MAX)?;
                    return Ok(SourceStatus::EndOfInput);
                }
                continue;
            }
            let before = self.out.records_out();
            let mut output = ReaderOutput::new(&mut self.out, self.watermarks.as_mut(), &self.bad_records);
            if let Some(mailbox) = &self.mailbox {
                output = output.yielding_to(mailbox);
            }
            let status = reader.poll(&mut output);
            let (error, finished) = output.into_parts();
            if let Some(e) = error {
                return Err(e);
            }
            let read = self.out.records_out() - before;
            self.state.records_in += read;
            if let Some(counter) = &self.records_read {
                counter.fetch_add(read, std::sync::atomic::Ordering::Relaxed);
            }
            if let Some(metrics) = &self.metrics {
                metrics.add_in(read, read * std::mem::size_of::<StreamRecord<T>>() as u64);
            }
            let status = status?;
            if !finished.is_empty() {
                self.reading.retain(|id| !finished.contains(id));
                if let Some(tracker) = &mut self.watermarks {
                    for id in &finished {
                        let update = tracker.remove_part(id);
                        emit_updates(&mut self.out, update)?;
                    }
                }
                // Ask for the next split at once.
                return Ok(SourceStatus::MoreAvailable);
            }
            return Ok(match status {
                InputStatus::MoreAvailable => SourceStatus::MoreAvailable,
                InputStatus::NothingAvailable(wait) => {
                    let mut at = wait.map(|d| Instant::now() + d);
                    if reader.takes_splits_while_reading() && !self.no_more_splits {
                        at = Some(at.map_or(self.next_request, |at| at.min(self.next_request)));
                    }
                    SourceStatus::NothingAvailable(at)
                }
            });
        }
    }
}

impl<T: 'static, S: Source<T>> SourceHead for SourceLink<T, S> {
    fn poll_next(&mut self) -> TaskResult<SourceStatus> {
        let name = self.name.clone();
        call_operator(&name, || self.poll_reader())
    }
}

impl<T: 'static, S: Source<T>> ChainControl for SourceLink<T, S> {
    fn open(&mut self, task: &TaskContext) -> TaskResult {
        self.out.open(task)?;
        self.subtask_index = task.info.subtask_index;
        self.records_read = Some(task.records_read.clone());
        self.metrics = Some(task.metrics.clone());
        self.mailbox = Some(task.mailbox.clone());
        self.bad_records.metrics = Some(task.metrics.clone());
        if self.bad_records.policy == BadRecordPolicy::SideOutput && !self.out.has_side_output(DEAD_LETTERS) {
            return Err(TaskError::msg(format!(
                "source '{}' sends bad records to the side output '{DEAD_LETTERS}', which no operator reads: \
                 read it with get_side_output(&dead_letters())",
                self.name
            )));
        }
        // Batch execution needs no watermarks but the final one; timestamps are still assigned.
        if let Some(strategy) = &self.strategy {
            self.watermarks = Some(WatermarkTracker::new(strategy.clone(), task.clock.clone()));
            if task.execution_mode == crate::taskexecutor::context::ExecutionMode::Streaming
                && strategy.generates_watermarks()
            {
                let interval = task.auto_watermark_interval.as_millis().max(1) as i64;
                let time = task.processing_time.clone();
                time.register_wakeup(time.current_processing_time() + interval);
                self.time = Some((time, interval));
            }
        }
        let ctx = ReaderContext {
            subtask_index: task.info.subtask_index,
            parallelism: task.info.parallelism,
            waker: task.waker.clone(),
            cancel: task.cancel.clone(),
            checkpointing: task.checkpoint_config.is_some(),
        };
        let (source, reader) = (&self.source, &mut self.reader);
        call_operator(&self.state.info.name, || {
            *reader = Some(source.create_reader(&ctx)?);
            Ok(())
        })
    }

    fn finish(&mut self) -> TaskResult {
        self.out.finish()
    }

    fn close(&mut self) -> TaskResult {
        if let Some(reader) = &mut self.reader {
            reader.close();
        }
        self.out.close()
    }

    fn flush(&mut self) -> TaskResult {
        self.out.flush()
    }

    fn on_processing_time(&mut self, now: i64) -> TaskResult {
        if let (Some(tracker), Some((time, interval))) = (&mut self.watermarks, &self.time) {
            let updates = tracker.on_periodic_emit();
            emit_updates(&mut self.out, updates)?;
            time.register_wakeup(now + interval);
        }
        self.out.on_processing_time(now)
    }

    fn report(&self, into: &mut Vec<OperatorReport>) {
        self.state.report(&self.out, into);
    }

    fn query_state(
        &mut self,
        query: &crate::taskexecutor::output::StateQuery,
    ) -> Option<Result<Option<Vec<u8>>, String>> {
        self.out.query_state(query)
    }

    fn on_checkpoint(&mut self, event: &mut CheckpointEvent<'_>) -> TaskResult {
        match event {
            CheckpointEvent::Snapshot { barrier, into } => {
                let splits: Vec<S::Split> =
                    self.reader.as_mut().map(|r| r.snapshot_state(barrier.id)).unwrap_or_default();
                let raw = brisk_state::codec::encode(&splits)
                    .map_err(|e| TaskError::msg(format!("cannot encode the source's split positions: {e}")))?;
                into.operators.push((
                    self.state.info.operator_id.clone(),
                    OperatorSnapshot { raw: Some(raw), ..Default::default() },
                ));
                self.enumerator.resume(self.subtask_index);
                if let Some(drain) = barrier.stop {
                    self.stopping = Some(drain);
                }
            }
            CheckpointEvent::Aborted(_) => self.enumerator.resume(self.subtask_index),
            CheckpointEvent::Complete(id) => {
                if let Some(reader) = &mut self.reader {
                    reader.notify_checkpoint_complete(*id).map_err(TaskError::User)?;
                }
            }
            CheckpointEvent::Barrier(_) => {}
        }
        self.out.on_checkpoint(event)
    }
}
