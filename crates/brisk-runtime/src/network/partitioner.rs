//! How records of one subtask are spread over the subtasks of the next operator.

use crate::error::{TaskError, TaskResult};
use brisk_core::key_group::{key_group_for_hash, operator_index_for_key_group};
use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// A key selector reduced to what partitioning needs: the stable hash of a record's key.
pub type KeyHashFn<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;
/// A user partitioner: the target channel of a record among `n` (Flink's `partitionCustom`).
pub type CustomPartitionFn<T> = Arc<dyn Fn(&T, usize) -> usize + Send + Sync>;

/// The partitioning strategies of Flink's `DataStream` API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionKind {
    /// To the subtask with the same index; requires equal parallelism; allows chaining.
    Forward,
    /// Round-robin over all downstream subtasks.
    Rebalance,
    /// Round-robin over a local group of downstream subtasks (pointwise connection).
    Rescale,
    /// Uniformly at random.
    Shuffle,
    /// To every downstream subtask.
    Broadcast,
    /// Everything to the first downstream subtask.
    Global,
    /// By key group of the record's key (`key_by`).
    Hash,
    /// By a user function.
    Custom,
}

impl PartitionKind {
    /// Whether the connection is pointwise (each producer feeds a subset of consumers).
    pub fn is_pointwise(self) -> bool {
        matches!(self, PartitionKind::Forward | PartitionKind::Rescale)
    }
}

impl fmt::Display for PartitionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            PartitionKind::Forward => "FORWARD",
            PartitionKind::Rebalance => "REBALANCE",
            PartitionKind::Rescale => "RESCALE",
            PartitionKind::Shuffle => "SHUFFLE",
            PartitionKind::Broadcast => "BROADCAST",
            PartitionKind::Global => "GLOBAL",
            PartitionKind::Hash => "HASH",
            PartitionKind::Custom => "CUSTOM",
        };
        f.write_str(name)
    }
}

/// A partitioning strategy with its typed function (for hash and custom), stored type-erased
/// in the job graph.
#[derive(Clone)]
pub struct PartitionerSpec {
    /// The strategy.
    pub kind: PartitionKind,
    function: Option<Arc<dyn Any + Send + Sync>>,
    /// For partitioning by key: reads a key from text (queryable state over HTTP).
    key_parser: Option<KeyParser>,
}

/// Reads a key of a keyed stream from text (JSON, or a bare string): its hash (which picks its
/// key group) and its encoding (as the keyed state stores it).
pub type KeyParser = Arc<dyn Fn(&str) -> Result<(u64, Vec<u8>), String> + Send + Sync>;

impl fmt::Debug for PartitionerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)
    }
}

impl PartitionerSpec {
    /// A strategy that needs no function.
    pub fn of(kind: PartitionKind) -> Self {
        PartitionerSpec { kind, function: None, key_parser: None }
    }

    /// Partitioning by key.
    pub fn hash<T: 'static>(key_hash: KeyHashFn<T>) -> Self {
        PartitionerSpec { kind: PartitionKind::Hash, function: Some(Arc::new(key_hash)), key_parser: None }
    }

    /// This partitioning, whose keys `parser` reads from text.
    pub fn with_key_parser(self, parser: KeyParser) -> Self {
        PartitionerSpec { key_parser: Some(parser), ..self }
    }

    /// How to read this partitioning's keys from text, if it partitions by key.
    pub fn key_parser(&self) -> Option<&KeyParser> {
        self.key_parser.as_ref()
    }

    /// Partitioning by a user function.
    pub fn custom<T: 'static>(partition: CustomPartitionFn<T>) -> Self {
        PartitionerSpec { kind: PartitionKind::Custom, function: Some(Arc::new(partition)), key_parser: None }
    }

    /// The typed partitioner for a producer with `channels` outputs.
    pub fn instantiate<T: 'static>(&self, subtask_index: usize, max_parallelism: usize) -> TaskResult<Partitioner<T>> {
        let function_of = |what: &str| -> TaskResult<&Arc<dyn Any + Send + Sync>> {
            self.function.as_ref().ok_or_else(|| TaskError::msg(format!("{what} partitioner without a function")))
        };
        Ok(match self.kind {
            PartitionKind::Forward => Partitioner::Forward,
            // Flink starts round-robin at a random channel so producers do not all hit channel 0;
            // the subtask index gives the same spread deterministically.
            PartitionKind::Rebalance | PartitionKind::Rescale => Partitioner::RoundRobin { next: subtask_index },
            PartitionKind::Shuffle => {
                Partitioner::Shuffle { state: 0x2545_F491_4F6C_DD1D ^ (subtask_index as u64 + 1) }
            }
            PartitionKind::Broadcast => Partitioner::Broadcast,
            PartitionKind::Global => Partitioner::Global,
            PartitionKind::Hash => {
                let key_hash = function_of("hash")?
                    .downcast_ref::<KeyHashFn<T>>()
                    .ok_or_else(|| TaskError::msg("hash partitioner of the wrong record type"))?;
                Partitioner::Hash { key_hash: key_hash.clone(), max_parallelism, channel_of_key_group: Vec::new() }
            }
            PartitionKind::Custom => {
                let f = function_of("custom")?
                    .downcast_ref::<CustomPartitionFn<T>>()
                    .ok_or_else(|| TaskError::msg("custom partitioner of the wrong record type"))?;
                Partitioner::Custom(f.clone())
            }
        })
    }
}

/// Where a record goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// One channel.
    One(usize),
    /// Every channel.
    All,
}

/// A typed partitioner of one producing subtask.
pub enum Partitioner<T> {
    /// Channel 0 (the only one of a pointwise forward connection).
    Forward,
    /// Round-robin (rebalance, and rescale within its local group).
    RoundRobin {
        /// The next channel.
        next: usize,
    },
    /// Pseudo-random (xorshift).
    Shuffle {
        /// Generator state.
        state: u64,
    },
    /// Every channel.
    Broadcast,
    /// Channel 0.
    Global,
    /// The subtask owning the record's key group.
    Hash {
        /// Stable hash of the record's key.
        key_hash: KeyHashFn<T>,
        /// Number of key groups.
        max_parallelism: usize,
        /// The consumer of each key group, computed on first use (saves a division per record).
        channel_of_key_group: Vec<u32>,
    },
    /// A user function.
    Custom(CustomPartitionFn<T>),
}

impl<T> Partitioner<T> {
    /// The channel(s) a record goes to, among `channels`.
    #[inline]
    pub fn select(&mut self, value: &T, channels: usize) -> TaskResult<Target> {
        Ok(match self {
            Partitioner::Forward | Partitioner::Global => Target::One(0),
            Partitioner::RoundRobin { next } => {
                *next = if *next + 1 >= channels { 0 } else { *next + 1 };
                Target::One(*next)
            }
            Partitioner::Shuffle { state } => {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                Target::One((*state % channels as u64) as usize)
            }
            Partitioner::Broadcast => Target::All,
            Partitioner::Hash { key_hash, max_parallelism, channel_of_key_group } => {
                if channel_of_key_group.len() != *max_parallelism {
                    *channel_of_key_group = (0..*max_parallelism)
                        .map(|kg| operator_index_for_key_group(*max_parallelism, channels, kg) as u32)
                        .collect();
                }
                let key_group = key_group_for_hash(key_hash(value), *max_parallelism);
                Target::One(channel_of_key_group[key_group] as usize)
            }
            Partitioner::Custom(f) => {
                let target = f(value, channels);
                if target >= channels {
                    return Err(TaskError::msg(format!(
                        "custom partitioner chose channel {target}, but there are only {channels} (0..{})",
                        channels - 1
                    )));
                }
                Target::One(target)
            }
        })
    }
}

/// Which consumer subtasks producer `index` of `producers` connects to, for a pointwise
/// (forward, rescale) or all-to-all connection to `consumers` subtasks.
pub fn connected_consumers(kind: PartitionKind, index: usize, producers: usize, consumers: usize) -> Vec<usize> {
    if !kind.is_pointwise() {
        return (0..consumers).collect();
    }
    if producers >= consumers {
        vec![index * consumers / producers]
    } else {
        let start = index * consumers / producers;
        let end = (index + 1) * consumers / producers;
        (start..end).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The channels `p` picks for `records` records (`u32` stand-ins) among `channels`.
    fn picks(p: &mut Partitioner<u32>, records: u32, channels: usize) -> Vec<usize> {
        (0..records)
            .map(|i| match p.select(&i, channels).unwrap() {
                Target::One(c) => c,
                Target::All => panic!("one channel expected"),
            })
            .collect()
    }

    #[test]
    fn round_robin_visits_every_channel_evenly() {
        let mut p = PartitionerSpec::of(PartitionKind::Rebalance).instantiate::<u32>(0, 128).unwrap();
        let mut counts = [0; 3];
        for c in picks(&mut p, 300, 3) {
            counts[c] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
        // Each producer starts after its own index, so producers do not all begin at channel 0.
        for (subtask, expected) in [(0, [1, 2, 0, 1, 2, 0]), (1, [2, 0, 1, 2, 0, 1]), (2, [0, 1, 2, 0, 1, 2])] {
            let mut p = PartitionerSpec::of(PartitionKind::Rescale).instantiate::<u32>(subtask, 128).unwrap();
            assert_eq!(picks(&mut p, 6, 3), expected, "subtask {subtask}");
        }
    }

    #[test]
    fn hash_sends_each_key_to_the_owner_of_its_key_group() {
        let f: KeyHashFn<(u32, u32)> = Arc::new(|v| brisk_core::hash::stable_hash(&v.0));
        let mut p = PartitionerSpec::hash(f).instantiate::<(u32, u32)>(0, 128).unwrap();
        let mut used = [false; 4];
        for k in 0..100u32 {
            // Flink's rule, written out: key group = hash mod 128 (murmur-mixed), and of 4
            // subtasks, subtask i owns key groups [32 i, 32 i + 32).
            let owner = brisk_core::key_group::assign_to_key_group(&k, 128) * 4 / 128;
            assert_eq!(p.select(&(k, 1), 4).unwrap(), Target::One(owner), "key {k}");
            assert_eq!(p.select(&(k, 2), 4).unwrap(), Target::One(owner), "key {k}, another record");
            used[owner] = true;
        }
        assert_eq!(used, [true; 4], "100 keys reach every subtask");
    }

    #[test]
    fn custom_out_of_range_is_an_error() {
        let f: CustomPartitionFn<u32> = Arc::new(|v, _| *v as usize);
        let mut p = PartitionerSpec::custom(f).instantiate::<u32>(0, 128).unwrap();
        assert_eq!(p.select(&1, 2).unwrap(), Target::One(1));
        let msg = p.select(&5, 2).unwrap_err().to_string();
        assert_eq!(msg, "custom partitioner chose channel 5, but there are only 2 (0..1)");
    }

    #[test]
    fn pointwise_connections_cover_every_consumer_once() {
        // By hand: producers split the consumers into contiguous groups, or consumers split the
        // producers, the larger groups last.
        let cases: [(usize, usize, &[&[usize]]); 9] = [
            (1, 3, &[&[0, 1, 2]]),
            (2, 4, &[&[0, 1], &[2, 3]]),
            (2, 3, &[&[0], &[1, 2]]),
            (3, 5, &[&[0], &[1, 2], &[3, 4]]),
            (2, 2, &[&[0], &[1]]),
            (3, 1, &[&[0], &[0], &[0]]),
            (4, 2, &[&[0], &[0], &[1], &[1]]),
            (3, 2, &[&[0], &[0], &[1]]),
            (5, 3, &[&[0], &[0], &[1], &[1], &[2]]),
        ];
        for (producers, consumers, expected) in cases {
            let got: Vec<Vec<usize>> =
                (0..producers).map(|i| connected_consumers(PartitionKind::Rescale, i, producers, consumers)).collect();
            assert_eq!(got, expected, "{producers} -> {consumers}");
        }
        for producers in 1..6 {
            for consumers in 1..6 {
                let all: Vec<usize> = (0..producers)
                    .flat_map(|i| connected_consumers(PartitionKind::Rescale, i, producers, consumers))
                    .collect();
                let mut distinct = all.clone();
                distinct.dedup();
                assert_eq!(distinct, (0..consumers).collect::<Vec<_>>(), "{producers}->{consumers}: {all:?}");
                if producers <= consumers {
                    assert_eq!(all, distinct, "{producers}->{consumers}: each consumer once");
                } else {
                    assert_eq!(all.len(), producers, "{producers}->{consumers}: one consumer per producer");
                }
            }
        }
        assert_eq!(connected_consumers(PartitionKind::Rebalance, 1, 2, 3), vec![0, 1, 2], "all to all");
    }

    #[test]
    fn wrong_type_is_an_error_not_a_panic() {
        let f: KeyHashFn<u32> = Arc::new(|v| *v as u64);
        let err = PartitionerSpec::hash(f).instantiate::<String>(0, 128).err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("hash partitioner of the wrong record type"));
    }
}
