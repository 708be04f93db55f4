//! Restoring a job from a completed checkpoint or savepoint: each new subtask gets the state of
//! its operators (matched by operator id), with keyed state cut to its key groups and operator
//! state redistributed, so the job may run at another parallelism than the one that wrote it.

use super::storage::{CompletedCheckpoint, shared_dir_of};
use super::{OperatorSnapshot, OperatorSubtaskState, TaskStateFile};
use brisk_core::KeyGroupRange;
use brisk_state::{
    KeyedStateHandle, KeyedStateSnapshot, OperatorStateSnapshot, RocksDbFiles, read_rocksdb_files, redistribute,
};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Whether the RocksDB files of an old subtask hold key groups of `range`: only those are read.
fn overlaps(files: &RocksDbFiles, range: &KeyGroupRange) -> bool {
    range.iter().any(|kg| files.key_group_range.contains(kg))
}

/// The restored state of one operator in one subtask.
#[derive(Clone, Debug, Default)]
pub struct OperatorRestore {
    /// Keyed state and timers of the subtask's key groups.
    pub keyed: Option<KeyedStateSnapshot>,
    /// Its share of the operator state.
    pub operator: Option<OperatorStateSnapshot>,
    /// The operator's own bytes from every old subtask (it keeps what is its own).
    pub raw: Vec<Vec<u8>>,
}

impl OperatorRestore {
    /// The share of subtask `subtask` (of `parallelism`) in the states an operator's old
    /// subtasks stored: its key groups, its part of the operator state, all raw bytes.
    pub fn from_states<'a>(
        states: impl IntoIterator<Item = &'a OperatorSubtaskState>,
        subtask: usize,
        parallelism: usize,
        max_parallelism: usize,
        shared: &Path,
    ) -> Result<Self, String> {
        let range = KeyGroupRange::for_operator(max_parallelism, parallelism, subtask);
        let (mut keyed, mut operator, mut raw) = (Vec::new(), Vec::new(), Vec::new());
        for state in states {
            let what = format!("operator {}", state.operator_id);
            if let Some(bytes) = &state.keyed {
                keyed.push(KeyedStateSnapshot::from_bytes(bytes, &what).map_err(|e| e.to_string())?);
            }
            if let Some(files) = state.keyed_files.as_ref().filter(|f| overlaps(f, &range)) {
                keyed.push(
                    read_rocksdb_files(files, shared, &std::env::temp_dir()).map_err(|e| format!("{what}: {e}"))?,
                );
            }
            if let Some(bytes) = &state.operator {
                operator.push(OperatorStateSnapshot::from_bytes(bytes, &what).map_err(|e| e.to_string())?);
            }
            if let Some(bytes) = &state.raw {
                raw.push(bytes.clone());
            }
        }
        let keyed = match keyed.first() {
            None => None,
            Some(first) => {
                let backend = first.backend.clone();
                Some(
                    KeyedStateSnapshot::merge_for_range(&keyed, range, &backend, max_parallelism)
                        .map_err(|e| e.to_string())?,
                )
            }
        };
        let operator =
            if operator.is_empty() { None } else { redistribute(&operator, parallelism).into_iter().nth(subtask) };
        Ok(OperatorRestore { keyed, operator, raw })
    }
}

/// Encodes the snapshot one operator handed over (the asynchronous part: keyed state is
/// serialized here).
/// With `incremental`, keyed state goes there as files where the backend can (RocksDB).
pub fn encode_operator_snapshot(
    operator_id: String,
    snapshot: OperatorSnapshot,
    incremental: Option<&Path>,
) -> Result<OperatorSubtaskState, String> {
    let (mut keyed, mut keyed_files) = (None, None);
    match (snapshot.keyed, incremental) {
        (Some(writer), Some(shared)) => match writer.write_incremental(shared).map_err(|e| e.to_string())? {
            KeyedStateHandle::Canonical(s) => keyed = Some(s.to_bytes().map_err(|e| e.to_string())?),
            KeyedStateHandle::Files(files) => keyed_files = Some(files),
        },
        (Some(writer), None) => keyed = Some(writer.write().and_then(|s| s.to_bytes()).map_err(|e| e.to_string())?),
        (None, _) => {}
    }
    let operator = match snapshot.operator {
        Some(state) if !state.is_empty() => Some(state.to_bytes().map_err(|e| e.to_string())?),
        _ => None,
    };
    Ok(OperatorSubtaskState { operator_id, keyed, keyed_files, operator, raw: snapshot.raw })
}

/// The restored state of one subtask.
#[derive(Clone, Debug, Default)]
pub struct TaskRestore {
    /// By operator id.
    pub operators: HashMap<String, OperatorRestore>,
    /// Records that were in flight to the subtask (unaligned checkpoints), per input.
    pub in_flight: Vec<(usize, Vec<Vec<u8>>)>,
}

/// A checkpoint indexed for restoring a job. Task files are read when a subtask's restore
/// needs them: those of the chains that hold its operators.
#[derive(Clone, Debug)]
pub struct JobRestore {
    /// The checkpoint or savepoint.
    pub checkpoint: CompletedCheckpoint,
    /// Per operator id: the checkpoint's tasks (indexes into its metadata) whose chain holds
    /// it and that stored state.
    by_operator: HashMap<String, Vec<usize>>,
}

/// One old subtask's state of an operator: the subtask, its parallelism, and its task file.
type OldState = (usize, usize, Arc<TaskStateFile>);

impl JobRestore {
    /// Indexes `checkpoint` by its metadata.
    pub fn new(checkpoint: CompletedCheckpoint) -> Self {
        let mut by_operator: HashMap<String, Vec<usize>> = HashMap::new();
        for (task, handle) in checkpoint.metadata.tasks.iter().enumerate().filter(|(_, h)| h.file.is_some()) {
            for id in &handle.operator_ids {
                by_operator.entry(id.clone()).or_default().push(task);
            }
        }
        JobRestore { checkpoint, by_operator }
    }

    /// Where the checkpoint's shared files are (next to the checkpoint directories).
    fn shared_dir(&self) -> PathBuf {
        shared_dir_of(&self.checkpoint.path)
    }

    /// The checkpoint's id.
    pub fn id(&self) -> u64 {
        self.checkpoint.metadata.id
    }

    /// The task files that hold state of `operator_id`, read on first use.
    fn files_of(&self, operator_id: &str) -> Result<Vec<OldState>, String> {
        let mut files = Vec::new();
        for &task in self.by_operator.get(operator_id).into_iter().flatten() {
            let handle = &self.checkpoint.metadata.tasks[task];
            if let Some(state) = self.checkpoint.task_state(task).map_err(|e| e.to_string())? {
                files.push((handle.subtask, handle.parallelism, state));
            }
        }
        Ok(files)
    }

    /// The old subtasks' states of `operator_id`, with their subtask and parallelism.
    fn states_of<'a>(
        files: &'a [OldState],
        operator_id: &'a str,
    ) -> impl Iterator<Item = (usize, usize, &'a OperatorSubtaskState)> + 'a {
        files.iter().filter_map(move |(subtask, parallelism, file)| {
            file.operators.iter().find(|o| o.operator_id == operator_id).map(|o| (*subtask, *parallelism, o))
        })
    }

    /// Checks that every operator with state in the checkpoint exists in the job (by id),
    /// unless state may be dropped. Only the task files of operators the job lacks are read.
    pub fn check_mapping(&self, job_operators: &BTreeSet<String>, allow_non_restored: bool) -> Result<(), String> {
        if allow_non_restored {
            return Ok(());
        }
        let mut missing: Vec<&str> = Vec::new();
        for id in self.by_operator.keys().filter(|id| !job_operators.contains(*id)) {
            let files = self.files_of(id)?;
            if Self::states_of(&files, id).next().is_some() {
                missing.push(id);
            }
        }
        let enumerators = self.checkpoint.metadata.enumerators.iter().map(|(id, _)| id.as_str());
        missing.extend(enumerators.filter(|id| !job_operators.contains(*id)));
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        Err(format!(
            "the snapshot '{}' has state for operators the job does not have ({}); give operators stable ids with uid(), \
             or allow non-restored state (--allow-non-restored-state / execution.savepoint.ignore-unclaimed-state)",
            self.checkpoint.location(),
            missing.join(", ")
        ))
    }

    /// The enumerator state of source operator `operator_id`.
    pub fn enumerator_state(&self, operator_id: &str) -> Option<&[u8]> {
        self.checkpoint.metadata.enumerators.iter().find(|(id, _)| id == operator_id).map(|(_, s)| s.as_slice())
    }

    /// Every old subtask's own bytes of `operator_id` (source split positions).
    pub fn raw_states(&self, operator_id: &str) -> Result<Vec<Vec<u8>>, String> {
        let files = self.files_of(operator_id)?;
        Ok(Self::states_of(&files, operator_id).filter_map(|(_, _, s)| s.raw.clone()).collect())
    }

    /// Old subtask `subtask`'s own bytes of `operator_id` (its split positions), if the
    /// operator ran at `parallelism` then.
    pub fn raw_state_of(
        &self,
        operator_id: &str,
        subtask: usize,
        parallelism: usize,
    ) -> Result<Option<Vec<u8>>, String> {
        let files = self.files_of(operator_id)?;
        Ok(Self::states_of(&files, operator_id)
            .find(|(old, old_parallelism, _)| *old == subtask && *old_parallelism == parallelism)
            .and_then(|(_, _, s)| s.raw.clone()))
    }

    /// The state of subtask `subtask` of `parallelism` running the chain `operator_ids`.
    pub fn for_subtask(
        &self,
        operator_ids: &[String],
        subtask: usize,
        parallelism: usize,
        max_parallelism: usize,
    ) -> Result<TaskRestore, String> {
        let mut restore = TaskRestore::default();
        for id in operator_ids {
            let files = self.files_of(id)?;
            let states: Vec<&OperatorSubtaskState> = Self::states_of(&files, id).map(|(_, _, s)| s).collect();
            if states.is_empty() {
                continue;
            }
            // Shared files come from the object store (if there) only where they will be read.
            let range = KeyGroupRange::for_operator(max_parallelism, parallelism, subtask);
            let shared: Vec<String> = states
                .iter()
                .filter_map(|s| s.keyed_files.as_ref().filter(|f| overlaps(f, &range)))
                .flat_map(|f| f.shared.iter().map(|(_, name)| name.clone()))
                .collect();
            self.checkpoint.fetch_shared(&shared).map_err(|e| e.to_string())?;
            let operator =
                OperatorRestore::from_states(states, subtask, parallelism, max_parallelism, &self.shared_dir())?;
            restore.operators.insert(id.clone(), operator);
        }
        // In-flight records go back to the same subtask of the same chain.
        let Some(head) = operator_ids.first() else { return Ok(restore) };
        for (task, handle) in self.checkpoint.metadata.tasks.iter().enumerate() {
            if handle.operator_ids.first() != Some(head) {
                continue;
            }
            let Some(state) = self.checkpoint.task_state(task).map_err(|e| e.to_string())? else { continue };
            if state.in_flight.iter().all(|(_, records)| records.is_empty()) {
                continue;
            }
            if handle.parallelism != parallelism {
                return Err(format!(
                    "checkpoint {} is unaligned and holds in-flight records of '{head}', which cannot be redistributed to \
                     another parallelism; rescale from a savepoint (always aligned) instead",
                    self.id(),
                ));
            }
            if handle.subtask == subtask {
                restore.in_flight = state.in_flight.clone();
            }
        }
        Ok(restore)
    }
}
