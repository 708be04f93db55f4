//! Split-based sources (Flink's FLIP-27 `Source`): an enumerator hands out splits (file ranges,
//! sequence ranges, partitions) and a reader in each source subtask reads the splits it gets.

pub mod watermark;

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
use brisk_core::{BoxError, NO_TIMESTAMP, StreamRecord, Watermark};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Reads splits and emits their records.
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
}

/// A source: how to enumerate its splits and how to read them.
pub trait Source<T>: Send + Sync + 'static {
    /// The split type.
    type Split: SourceSplit;
    /// Whether the source ends by itself.
    fn boundedness(&self) -> Boundedness;
    /// Creates the enumerator for `parallelism` readers.
    fn create_enumerator(&self, parallelism: usize) -> Result<Box<dyn SplitEnumerator<Self::Split>>, BoxError>;
    /// Creates the reader of one subtask.
    fn create_reader(&self, ctx: &ReaderContext) -> Result<Box<dyn SplitReader<T, Self::Split>>, BoxError>;
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
}

impl<'a, T: 'static> SourceOutput<'a, T> {
    /// Wraps an operator output.
    pub fn new(out: &'a mut OperatorOutput<T>) -> Self {
        SourceOutput { out, watermarks: None, error: None, mailbox: None }
    }

    /// Wraps an operator output, generating watermarks for the tracker's part `part`.
    pub fn with_watermarks(out: &'a mut OperatorOutput<T>, tracker: &'a mut WatermarkTracker<T>, part: usize) -> Self {
        SourceOutput { out, watermarks: Some((tracker, part)), error: None, mailbox: None }
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

    fn into_error(self) -> Option<TaskError> {
        self.error
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

    /// Checkpoint `id` completed: no reader is restored from an older one any more.
    pub fn checkpoint_completed(&self, id: CheckpointId) {
        lock(&self.assignments).log.retain(|(epoch, _, _)| *epoch >= id);
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

/// A split being read by its own reader, with the split's id.
type ActiveSplit<T, S> = (Box<dyn SplitReader<T, S>>, String);

/// Drives a [`SplitReader`]: asks the enumerator for splits, reads them, ends the input.
pub struct SourceLink<T, S: Source<T>> {
    source: Arc<S>,
    strategy: Option<WatermarkStrategy<T>>,
    watermarks: Option<WatermarkTracker<T>>,
    time: Option<(ProcessingTimeService, i64)>,
    enumerator: Arc<dyn SplitAssignments<S::Split>>,
    reader_context: Option<ReaderContext>,
    /// Splits being read, each by its own reader, polled in turn.
    active: Vec<ActiveSplit<T, S::Split>>,
    next_active: usize,
    /// A reader whose split finished, reused for the next split.
    spare: Option<Box<dyn SplitReader<T, S::Split>>>,
    subtask_index: usize,
    no_more_splits: bool,
    /// Stop-with-savepoint: end after the savepoint (with the final watermark if draining).
    stopping: Option<bool>,
    records_read: Option<Arc<std::sync::atomic::AtomicU64>>,
    metrics: Option<Arc<TaskIoMetrics>>,
    /// The task's mailbox, which polls yield to.
    mailbox: Option<Mailbox>,
    out: OperatorOutput<T>,
    state: LinkState,
    name: Arc<str>,
}

impl<T: 'static, S: Source<T>> SourceLink<T, S> {
    /// A source head reading `source` with splits from `enumerator`, timestamps and watermarks
    /// from `strategy` (per split).
    pub fn new(
        source: Arc<S>,
        strategy: Option<WatermarkStrategy<T>>,
        enumerator: Arc<dyn SplitAssignments<S::Split>>,
        out: OperatorOutput<T>,
        info: OperatorInfo,
    ) -> Self {
        SourceLink {
            source,
            strategy,
            watermarks: None,
            time: None,
            enumerator,
            reader_context: None,
            active: Vec::new(),
            next_active: 0,
            spare: None,
            subtask_index: 0,
            no_more_splits: false,
            stopping: None,
            records_read: None,
            metrics: None,
            mailbox: None,
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
        loop {
            let wants_split = self.active.is_empty() || self.enumerator.offers_resumed(self.subtask_index);
            if wants_split && !self.no_more_splits {
                // Paused while this reader owes a checkpoint snapshot: the trigger is in the mailbox.
                match self.enumerator.next_split(self.subtask_index)? {
                    None if self.active.is_empty() => return Ok(SourceStatus::NothingAvailable(None)),
                    None => {}
                    Some(NextSplit::Split(split)) => {
                        self.open_split(split)?;
                        continue;
                    }
                    Some(NextSplit::NotYet(retry)) if self.active.is_empty() => {
                        return Ok(SourceStatus::NothingAvailable(Some(Instant::now() + retry)));
                    }
                    Some(NextSplit::NotYet(_)) => {}
                    Some(NextSplit::NoMoreSplits) => self.no_more_splits = true,
                }
            }
            if self.active.is_empty() {
                if self.no_more_splits {
                    // Bounded input is complete: fire every event-time timer downstream.
                    self.out.emit_watermark(Watermark::MAX)?;
                    return Ok(SourceStatus::EndOfInput);
                }
                continue;
            }
            let index = self.next_active % self.active.len();
            self.next_active = index + 1;
            let (reader, id) = &mut self.active[index];
            let before = self.out.records_out();
            let part = self.watermarks.as_ref().and_then(|tracker| tracker.part_index(id));
            let mut output = match (&mut self.watermarks, part) {
                (Some(tracker), Some(part)) => SourceOutput::with_watermarks(&mut self.out, tracker, part),
                _ => SourceOutput::new(&mut self.out),
            };
            if let Some(mailbox) = &self.mailbox {
                output = output.yielding_to(mailbox);
            }
            let status = reader.poll(&mut output);
            if let Some(e) = output.into_error() {
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
            return Ok(match status? {
                ReadStatus::More => SourceStatus::MoreAvailable,
                ReadStatus::Wait(d) if self.active.len() == 1 => {
                    SourceStatus::NothingAvailable(d.map(|d| Instant::now() + d))
                }
                ReadStatus::Wait(_) => SourceStatus::MoreAvailable,
                ReadStatus::SplitFinished => {
                    let (reader, id) = self.active.swap_remove(index);
                    self.spare = Some(reader);
                    if let Some(tracker) = &mut self.watermarks {
                        let update = tracker.remove_part(&id);
                        emit_updates(&mut self.out, update)?;
                    }
                    SourceStatus::MoreAvailable
                }
            });
        }
    }

    /// Starts reading `split` with a reader of its own.
    fn open_split(&mut self, split: S::Split) -> TaskResult {
        let mut reader = match self.spare.take() {
            Some(reader) => reader,
            None => {
                let ctx =
                    self.reader_context.as_ref().ok_or_else(|| TaskError::msg("source reader used before open"))?;
                self.source.create_reader(ctx)?
            }
        };
        let id = split.split_id();
        reader.open_split(split)?;
        // Each split gets its own watermark generator (Flink's per-split watermarks).
        if let Some(tracker) = &mut self.watermarks {
            tracker.add_part(&id);
        }
        self.active.push((reader, id));
        Ok(())
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
        };
        // A reader is created up front, so a source that cannot read fails at once.
        let source = &self.source;
        let spare = &mut self.spare;
        call_operator(&self.state.info.name, || {
            *spare = Some(source.create_reader(&ctx)?);
            Ok(())
        })?;
        self.reader_context = Some(ctx);
        Ok(())
    }

    fn finish(&mut self) -> TaskResult {
        self.out.finish()
    }

    fn close(&mut self) -> TaskResult {
        self.active.iter_mut().map(|(r, _)| r).chain(self.spare.as_mut()).for_each(|r| r.close());
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
                let splits: Vec<S::Split> = self.active.iter().flat_map(|(r, _)| r.snapshot_state()).collect();
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
            CheckpointEvent::Barrier(_) | CheckpointEvent::Complete(_) => {}
        }
        self.out.on_checkpoint(event)
    }
}
