//! Operator (non-keyed) state: list state redistributed evenly or as a union when the
//! parallelism changes, and broadcast state, identical in every subtask (Flink's
//! `OperatorStateBackend`).

use crate::codec;
use crate::descriptor::{ListStateDescriptor, MapStateDescriptor};
use crate::error::{StateError, StateResult};
use crate::handles::{ListAccess, ListState, MapAccess, MapState};
use crate::registry::{self, Registered, RegistryId};
use brisk_core::hash::StableHasher;
use brisk_core::{Data, Key};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::hash::BuildHasherDefault;
use std::marker::PhantomData;
use std::sync::Arc;

/// How a list state is split when the parallelism changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Distribution {
    /// The elements of all subtasks are divided evenly (Flink's `getListState`).
    EvenSplit,
    /// Every subtask gets all elements of all subtasks (`getUnionListState`).
    Union,
}

/// An encoded (key, value) pair of a broadcast state.
pub type EncodedEntry = (Vec<u8>, Vec<u8>);

/// The operator state of one subtask, as stored in a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorStateSnapshot {
    /// List states: name, distribution and encoded elements.
    pub lists: Vec<(String, Distribution, Vec<Vec<u8>>)>,
    /// Broadcast states: name and encoded entries.
    pub broadcast: Vec<(String, Vec<EncodedEntry>)>,
}

const MAGIC: &[u8; 8] = b"BRSKOPST";

impl OperatorStateSnapshot {
    /// Encodes with magic, version and checksum.
    pub fn to_bytes(&self) -> StateResult<Vec<u8>> {
        crate::snapshot::encode_file(MAGIC, self)
    }

    /// Decodes and verifies bytes written by [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8], what: &str) -> StateResult<Self> {
        crate::snapshot::decode_file(MAGIC, bytes, what)
    }

    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty() && self.broadcast.is_empty()
    }
}

/// Redistributes the operator state of `old` subtasks over `parallelism` new ones: even-split
/// lists are concatenated and cut into contiguous, near-equal parts; union lists go whole to
/// everyone; broadcast state is copied from the first old subtask that has it.
pub fn redistribute(old: &[OperatorStateSnapshot], parallelism: usize) -> Vec<OperatorStateSnapshot> {
    let parallelism = parallelism.max(1);
    let mut new: Vec<OperatorStateSnapshot> = vec![OperatorStateSnapshot::default(); parallelism];
    let mut names: Vec<(String, Distribution)> = Vec::new();
    for snapshot in old {
        for (name, distribution, _) in &snapshot.lists {
            if !names.iter().any(|(n, _)| n == name) {
                names.push((name.clone(), *distribution));
            }
        }
    }
    for (name, distribution) in names {
        let all: Vec<Vec<u8>> = old
            .iter()
            .flat_map(|s| s.lists.iter().filter(|(n, _, _)| *n == name).flat_map(|(_, _, e)| e.iter().cloned()))
            .collect();
        for (i, target) in new.iter_mut().enumerate() {
            let elements = match distribution {
                Distribution::Union => all.clone(),
                Distribution::EvenSplit => {
                    let (start, end) = (all.len() * i / parallelism, all.len() * (i + 1) / parallelism);
                    all[start..end].to_vec()
                }
            };
            target.lists.push((name.clone(), distribution, elements));
        }
    }
    let mut seen: Vec<&str> = Vec::new();
    for snapshot in old {
        for (name, entries) in &snapshot.broadcast {
            if seen.contains(&name.as_str()) {
                continue;
            }
            seen.push(name);
            for target in &mut new {
                target.broadcast.push((name.clone(), entries.clone()));
            }
        }
    }
    new
}

type FastMap<K, V> = hashbrown::HashMap<K, V, BuildHasherDefault<StableHasher>>;

type EncodeList = fn(&dyn Any) -> Result<Vec<Vec<u8>>, String>;

struct OperatorList {
    name: String,
    distribution: Distribution,
    type_name: &'static str,
    elements: Box<dyn Any>,
    encode: EncodeList,
}

struct BroadcastMap {
    name: String,
    type_name: &'static str,
    map: Box<dyn Any>,
    encode: fn(&dyn Any) -> Result<Vec<EncodedEntry>, String>,
}

/// The operator state of one operator subtask.
pub struct OperatorStateBackend {
    operator: String,
    lists: Vec<OperatorList>,
    broadcast: Vec<BroadcastMap>,
    restored: OperatorStateSnapshot,
    was_restored: bool,
}

fn encode_list<T: Data>(elements: &dyn Any) -> Result<Vec<Vec<u8>>, String> {
    let elements = elements.downcast_ref::<Vec<T>>().ok_or("list of another type")?;
    elements.iter().map(codec::encode).collect()
}

fn encode_map<K: Key, V: Data>(map: &dyn Any) -> Result<Vec<EncodedEntry>, String> {
    let map = map.downcast_ref::<FastMap<K, V>>().ok_or("map of another type")?;
    map.iter().map(|(k, v)| Ok((codec::encode(k)?, codec::encode(v)?))).collect()
}

impl OperatorStateBackend {
    /// An empty backend for `operator`, filled from `restored` when given.
    pub fn new(operator: &str, restored: Option<OperatorStateSnapshot>) -> Self {
        OperatorStateBackend {
            operator: operator.to_string(),
            lists: Vec::new(),
            broadcast: Vec::new(),
            was_restored: restored.is_some(),
            restored: restored.unwrap_or_default(),
        }
    }

    /// Whether the backend was restored from a snapshot (Flink's `isRestored`).
    pub fn is_restored(&self) -> bool {
        self.was_restored
    }

    fn decode_error(&self, state: &str, reason: String) -> StateError {
        StateError::Deserialize { state: state.to_string(), operator: self.operator.clone(), reason }
    }

    fn list_index<T: Data>(&mut self, name: &str, distribution: Distribution) -> StateResult<usize> {
        if let Some(i) = self.lists.iter().position(|l| l.name == name) {
            let list = &self.lists[i];
            if list.type_name != std::any::type_name::<T>() || list.distribution != distribution {
                return Err(StateError::Incompatible {
                    state: name.to_string(),
                    operator: self.operator.clone(),
                    existing: format!("{:?} list of {}", list.distribution, list.type_name),
                    requested: format!("{distribution:?} list of {}", std::any::type_name::<T>()),
                });
            }
            return Ok(i);
        }
        let mut elements: Vec<T> = Vec::new();
        if let Some(pos) = self.restored.lists.iter().position(|(n, _, _)| n == name) {
            let (_, _, encoded) = self.restored.lists.swap_remove(pos);
            for bytes in encoded {
                elements.push(codec::decode(&bytes).map_err(|reason| self.decode_error(name, reason))?);
            }
        }
        self.lists.push(OperatorList {
            name: name.to_string(),
            distribution,
            type_name: std::any::type_name::<T>(),
            elements: Box::new(elements),
            encode: encode_list::<T>,
        });
        Ok(self.lists.len() - 1)
    }

    fn broadcast_index<K: Key, V: Data>(&mut self, name: &str) -> StateResult<usize> {
        let type_name = std::any::type_name::<(K, V)>();
        if let Some(i) = self.broadcast.iter().position(|b| b.name == name) {
            if self.broadcast[i].type_name != type_name {
                return Err(StateError::Incompatible {
                    state: name.to_string(),
                    operator: self.operator.clone(),
                    existing: format!("broadcast state of {}", self.broadcast[i].type_name),
                    requested: format!("broadcast state of {type_name}"),
                });
            }
            return Ok(i);
        }
        let mut map: FastMap<K, V> = FastMap::default();
        if let Some(pos) = self.restored.broadcast.iter().position(|(n, _)| n == name) {
            let (_, entries) = self.restored.broadcast.swap_remove(pos);
            for (k, v) in entries {
                let decoded = codec::decode::<K>(&k).and_then(|k| Ok((k, codec::decode::<V>(&v)?)));
                let (k, v) = decoded.map_err(|reason| self.decode_error(name, reason))?;
                map.insert(k, v);
            }
        }
        self.broadcast.push(BroadcastMap {
            name: name.to_string(),
            type_name,
            map: Box::new(map),
            encode: encode_map::<K, V>,
        });
        Ok(self.broadcast.len() - 1)
    }

    /// Snapshots every state (restored states never used again are carried over).
    pub fn snapshot(&self) -> StateResult<OperatorStateSnapshot> {
        let err = |name: &str, reason: String| StateError::Snapshot {
            what: format!("operator state '{name}' of '{}'", self.operator),
            reason,
        };
        let mut out =
            OperatorStateSnapshot { lists: self.restored.lists.clone(), broadcast: self.restored.broadcast.clone() };
        for list in &self.lists {
            out.lists.push((
                list.name.clone(),
                list.distribution,
                (list.encode)(list.elements.as_ref()).map_err(|e| err(&list.name, e))?,
            ));
        }
        for b in &self.broadcast {
            out.broadcast.push((b.name.clone(), (b.encode)(b.map.as_ref()).map_err(|e| err(&b.name, e))?));
        }
        Ok(out)
    }
}

/// A registered operator state backend's list, used through [`ListState`].
struct OperatorListHandle<T> {
    backend: RegistryId,
    index: usize,
    name: Arc<str>,
    _type: PhantomData<fn() -> T>,
}

impl<T: Data> OperatorListHandle<T> {
    fn with<R>(&self, f: impl FnOnce(&mut Vec<T>) -> R) -> StateResult<R> {
        registry::with::<OperatorStateBackend, R>(self.backend, &self.name, |b| {
            let list = b.lists[self.index]
                .elements
                .downcast_mut::<Vec<T>>()
                .ok_or_else(|| StateError::NotInTask(self.name.to_string()))?;
            Ok(f(list))
        })
    }
}

impl<T: Data> ListAccess<T> for OperatorListHandle<T> {
    fn get(&self) -> StateResult<Vec<T>> {
        self.with(|l| l.clone())
    }
    fn add_all(&self, values: Vec<T>) -> StateResult {
        self.with(|l| l.extend(values))
    }
    fn update(&self, values: Vec<T>) -> StateResult {
        self.with(|l| *l = values)
    }
}

/// Registers an operator list state (`Distribution::EvenSplit` for Flink's `getListState`,
/// `Union` for `getUnionListState`) and returns its handle.
pub fn operator_list_state<T: Data>(
    backend: &Registered<OperatorStateBackend>,
    desc: &ListStateDescriptor<T>,
    distribution: Distribution,
) -> StateResult<ListState<T>> {
    let index = backend.with(desc.name(), |b| b.list_index::<T>(desc.name(), distribution))?;
    Ok(ListState::new(Arc::new(OperatorListHandle::<T> {
        backend: backend.id(),
        index,
        name: desc.name().into(),
        _type: PhantomData,
    })))
}

/// A broadcast state's map.
struct BroadcastHandle<K, V> {
    backend: RegistryId,
    index: usize,
    name: Arc<str>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: Key, V: Data> BroadcastHandle<K, V> {
    fn with<R>(&self, f: impl FnOnce(&mut FastMap<K, V>) -> R) -> StateResult<R> {
        registry::with::<OperatorStateBackend, R>(self.backend, &self.name, |b| {
            let map = b.broadcast[self.index]
                .map
                .downcast_mut::<FastMap<K, V>>()
                .ok_or_else(|| StateError::NotInTask(self.name.to_string()))?;
            Ok(f(map))
        })
    }
}

impl<K: Key, V: Data> MapAccess<K, V> for BroadcastHandle<K, V> {
    fn get(&self, key: &K) -> StateResult<Option<V>> {
        self.with(|m| m.get(key).cloned())
    }
    fn put(&self, key: K, value: V) -> StateResult {
        self.with(|m| {
            m.insert(key, value);
        })
    }
    fn remove(&self, key: &K) -> StateResult {
        self.with(|m| {
            m.remove(key);
        })
    }
    fn entries(&self) -> StateResult<Vec<(K, V)>> {
        self.with(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
    fn clear(&self) -> StateResult {
        self.with(|m| m.clear())
    }
}

/// Registers a broadcast state and returns its handle (a map identical in every subtask).
pub fn broadcast_state<K: Key, V: Data>(
    backend: &Registered<OperatorStateBackend>,
    desc: &MapStateDescriptor<K, V>,
) -> StateResult<MapState<K, V>> {
    let index = backend.with(desc.name(), |b| b.broadcast_index::<K, V>(desc.name()))?;
    Ok(MapState::new(Arc::new(BroadcastHandle::<K, V> {
        backend: backend.id(),
        index,
        name: desc.name().into(),
        _types: PhantomData,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot_with(list: &[u32], union: &[u32]) -> OperatorStateSnapshot {
        let enc = |v: &[u32]| v.iter().map(|x| codec::encode(x).unwrap()).collect();
        OperatorStateSnapshot {
            lists: vec![
                ("split".into(), Distribution::EvenSplit, enc(list)),
                ("union".into(), Distribution::Union, enc(union)),
            ],
            broadcast: vec![("rules".into(), vec![(vec![1], vec![2])])],
        }
    }

    /// The decoded elements of list `name` in `snapshot`.
    fn list_of(snapshot: &OperatorStateSnapshot, name: &str) -> Vec<u32> {
        let (_, _, elements) = snapshot.lists.iter().find(|(n, _, _)| n == name).unwrap();
        elements.iter().map(|b| codec::decode::<u32>(b).unwrap()).collect()
    }

    #[test]
    fn redistribution_splits_evenly_and_unions_fully() {
        let old = vec![snapshot_with(&[1, 2, 3], &[10]), snapshot_with(&[4, 5], &[20])];
        // By hand: the old subtasks' elements in order (1..=5), cut into contiguous parts whose
        // sizes differ by at most one, the larger ones last.
        let splits: [&[&[u32]]; 4] =
            [&[&[1, 2, 3, 4, 5]], &[&[1, 2], &[3, 4, 5]], &[&[1], &[2, 3], &[4, 5]], &[&[1], &[2], &[3], &[4, 5]]];
        for (p, expected) in (1..=4).zip(splits) {
            let new = redistribute(&old, p);
            let split: Vec<Vec<u32>> = new.iter().map(|s| list_of(s, "split")).collect();
            assert_eq!(split, expected, "even split at parallelism {p}");
            for s in &new {
                assert_eq!(list_of(s, "union"), vec![10, 20], "every subtask gets the union at {p}");
                assert_eq!(s.broadcast, vec![("rules".to_string(), vec![(vec![1], vec![2])])], "one copy at {p}");
            }
        }
    }

    #[test]
    fn typed_access_round_trips_through_a_snapshot() {
        let backend = Registered::new(OperatorStateBackend::new("op", None));
        let list =
            operator_list_state(&backend, &ListStateDescriptor::<String>::new("l"), Distribution::EvenSplit).unwrap();
        list.add("a".into()).unwrap();
        list.add_all(vec!["b".into()]).unwrap();
        let rules = broadcast_state(&backend, &MapStateDescriptor::<String, u32>::new("rules")).unwrap();
        rules.put("x".into(), 7).unwrap();
        let snap = backend.with("snap", |b| b.snapshot()).unwrap();
        let bytes = snap.to_bytes().unwrap();
        let restored = Registered::new(OperatorStateBackend::new(
            "op",
            Some(OperatorStateSnapshot::from_bytes(&bytes, "t").unwrap()),
        ));
        let list =
            operator_list_state(&restored, &ListStateDescriptor::<String>::new("l"), Distribution::EvenSplit).unwrap();
        assert_eq!(list.get().unwrap(), vec!["a".to_string(), "b".to_string()]);
        let rules = broadcast_state(&restored, &MapStateDescriptor::<String, u32>::new("rules")).unwrap();
        assert_eq!(rules.get(&"x".to_string()).unwrap(), Some(7));
        let wrong = operator_list_state(&restored, &ListStateDescriptor::<u64>::new("l"), Distribution::EvenSplit);
        let Err(StateError::Incompatible { state, operator, existing, requested }) = wrong else {
            panic!("a list of another type must be incompatible");
        };
        assert_eq!((state.as_str(), operator.as_str()), ("l", "op"));
        assert_eq!(existing, format!("EvenSplit list of {}", std::any::type_name::<String>()));
        assert_eq!(requested, "EvenSplit list of u64");
    }
}
