//! The execution plan: every subtask of a job, every channel between two subtasks, the
//! pipelined regions that fail over together, and the slot each subtask runs in (the parts
//! of Flink's `ExecutionGraph` that do not change while the job runs).
//!
//! It is computed by pure code from the job graph and is serializable, so the job master, a
//! deployer in the same process and TaskManagers in other processes all agree on the same
//! numbering: task `i`, channel `c`, region `r`, slot `s` mean the same thing everywhere.

use crate::error::JobError;
use crate::graph::job_graph::JobGraph;
use crate::network::partitioner::connected_consumers;
use brisk_core::hash::stable_hash;
use brisk_core::job_graph::JobGraphDescription;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Which subtask of which vertex (Flink's `ExecutionVertexID`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SubtaskId {
    /// The vertex, by index in the job graph.
    pub vertex: usize,
    /// The subtask index within the vertex.
    pub subtask: usize,
}

/// One subtask to deploy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedTask {
    /// Which subtask it is.
    pub id: SubtaskId,
    /// The pipelined region it belongs to.
    pub region: usize,
    /// The slot it runs in.
    pub slot: usize,
}

/// A channel from one producing subtask to one consuming subtask over one job edge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedChannel {
    /// The stream edge the channel belongs to.
    pub edge: usize,
    /// The producing task (index into [`ExecutionPlan::tasks`]).
    pub producer: usize,
    /// The consuming task.
    pub consumer: usize,
    /// Which input of the consumer (1 or 2).
    pub input: usize,
}

/// The whole plan of one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionPlan {
    /// The job graph it was computed from.
    pub job: JobGraphDescription,
    /// A fingerprint of the job graph: processes that rebuild the graph from the same program
    /// must arrive at the same one.
    pub fingerprint: String,
    /// Every subtask, vertex by vertex, subtask by subtask (the task index order).
    pub tasks: Vec<PlannedTask>,
    /// Index of each vertex's first task.
    pub first_task: Vec<usize>,
    /// Every channel; its index is its id.
    pub channels: Vec<PlannedChannel>,
    /// Number of pipelined regions.
    pub regions: usize,
    /// Number of slots the job occupies.
    pub slots: usize,
}

impl ExecutionPlan {
    /// Plans `job` into at most `available_slots` slots (`None`: as many as it needs).
    pub fn build(job: &JobGraph, available_slots: Option<usize>) -> Result<ExecutionPlan, JobError> {
        let mut first_task = Vec::with_capacity(job.vertices.len());
        let mut ids = Vec::new();
        for (vertex, v) in job.vertices.iter().enumerate() {
            first_task.push(ids.len());
            ids.extend((0..v.parallelism).map(|subtask| SubtaskId { vertex, subtask }));
        }
        let task_of = |vertex: usize, subtask: usize| first_task[vertex] + subtask;

        let mut channels = Vec::new();
        let mut regions = RegionBuilder::new(ids.len());
        for edge in &job.edges {
            let (pp, cp) = (job.vertices[edge.source].parallelism, job.vertices[edge.target].parallelism);
            for producer in 0..pp {
                for consumer in connected_consumers(edge.kind, producer, pp, cp) {
                    let (producer, consumer) = (task_of(edge.source, producer), task_of(edge.target, consumer));
                    channels.push(PlannedChannel { edge: edge.stream_edge, producer, consumer, input: edge.input });
                    regions.connect(producer, consumer);
                }
            }
        }
        let region_of = regions.finish();
        let (slots, first_slot) = assign_slots(job, available_slots)?;
        let tasks = ids
            .into_iter()
            .enumerate()
            .map(|(task, id)| PlannedTask { id, region: region_of[task], slot: first_slot[id.vertex] + id.subtask })
            .collect();
        Ok(ExecutionPlan {
            job: job.description.clone(),
            fingerprint: fingerprint(&job.description),
            tasks,
            first_task,
            channels,
            regions: region_of.iter().max().map_or(0, |r| r + 1),
            slots,
        })
    }

    /// The task index of `subtask` of `vertex`.
    pub fn task_index(&self, vertex: usize, subtask: usize) -> usize {
        self.first_task[vertex] + subtask
    }

    /// The tasks of `region`, in task order.
    pub fn tasks_of(&self, region: usize) -> impl Iterator<Item = usize> + '_ {
        self.tasks.iter().enumerate().filter(move |(_, t)| t.region == region).map(|(i, _)| i)
    }
}

/// A short hex digest of everything in the job graph that decides how subtasks connect.
pub fn fingerprint(job: &JobGraphDescription) -> String {
    format!("{:016x}", stable_hash(job))
}

/// Places subtasks into slots as Flink's slot sharing does: subtask `i` of every vertex in a
/// slot sharing group shares slot `i` of that group, so a group needs as many slots as its
/// largest parallelism. Returns the slots needed and the first slot of each vertex.
fn assign_slots(job: &JobGraph, available: Option<usize>) -> Result<(usize, Vec<usize>), JobError> {
    let mut groups: Vec<(&str, usize)> = Vec::new();
    for v in &job.vertices {
        match groups.iter_mut().find(|(g, _)| *g == v.slot_sharing_group) {
            Some((_, size)) => *size = (*size).max(v.parallelism),
            None => groups.push((&v.slot_sharing_group, v.parallelism)),
        }
    }
    let needed: usize = groups.iter().map(|(_, size)| size).sum();
    if let Some(available) = available
        && needed > available
    {
        return Err(JobError::InvalidJob(format!(
            "the job needs {needed} task slots ({}), but the cluster has {available}",
            groups.iter().map(|(g, n)| format!("{n} for group '{g}'")).collect::<Vec<_>>().join(", ")
        )));
    }
    let first = job
        .vertices
        .iter()
        .map(|v| groups.iter().take_while(|(g, _)| *g != v.slot_sharing_group).map(|(_, size)| size).sum())
        .collect();
    Ok((needed, first))
}

/// Groups tasks into pipelined regions (union-find over the channels between them).
struct RegionBuilder {
    parent: Vec<usize>,
}

impl RegionBuilder {
    fn new(tasks: usize) -> Self {
        RegionBuilder { parent: (0..tasks).collect() }
    }

    fn root(&mut self, mut task: usize) -> usize {
        while self.parent[task] != task {
            self.parent[task] = self.parent[self.parent[task]];
            task = self.parent[task];
        }
        task
    }

    fn connect(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.root(a), self.root(b));
        self.parent[ra.max(rb)] = ra.min(rb);
    }

    /// The region of each task, numbered from 0 in task order.
    fn finish(mut self) -> Vec<usize> {
        let mut numbers: HashMap<usize, usize> = HashMap::new();
        (0..self.parent.len())
            .map(|task| {
                let root = self.root(task);
                let next = numbers.len();
                *numbers.entry(root).or_insert(next)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::job_graph::{JobEdge, JobVertex};
    use crate::network::partitioner::{PartitionKind, PartitionerSpec};
    use brisk_core::job_graph::{EdgeDescription, VertexDescription};
    use proptest::prelude::*;

    /// A job graph of unchained vertices `(parallelism, slot sharing group)` and edges
    /// `(source, target, kind)`.
    fn job(vertices: &[(usize, &str)], edges: &[(usize, usize, PartitionKind)]) -> JobGraph {
        let vertices: Vec<JobVertex> = vertices
            .iter()
            .enumerate()
            .map(|(i, (parallelism, group))| JobVertex {
                name: format!("v{i}"),
                head: i,
                nodes: vec![i],
                parallelism: *parallelism,
                max_parallelism: 128,
                slot_sharing_group: group.to_string(),
            })
            .collect();
        let edges: Vec<JobEdge> = edges
            .iter()
            .enumerate()
            .map(|(i, (source, target, kind))| JobEdge {
                stream_edge: i,
                source: *source,
                target: *target,
                input: 1,
                kind: *kind,
            })
            .collect();
        let description = JobGraphDescription {
            job_name: "test".into(),
            vertices: vertices
                .iter()
                .map(|v| VertexDescription {
                    id: v.name.clone(),
                    name: v.name.clone(),
                    parallelism: v.parallelism,
                    max_parallelism: v.max_parallelism,
                    slot_sharing_group: v.slot_sharing_group.clone(),
                    operators: Vec::new(),
                })
                .collect(),
            edges: edges
                .iter()
                .map(|e| EdgeDescription {
                    source: e.source,
                    target: e.target,
                    input: e.input,
                    partitioner: e.kind.to_string(),
                    side_output: None,
                })
                .collect(),
        };
        JobGraph {
            vertex_of: (0..vertices.len()).collect(),
            chained: vec![false; edges.len()],
            partitioners: edges.iter().map(|e| PartitionerSpec::of(e.kind)).collect(),
            parallelism: vertices.iter().map(|v| v.parallelism).collect(),
            operator_ids: vertices.iter().map(|v| v.name.clone()).collect(),
            vertices,
            edges,
            description,
        }
    }

    fn pairs(plan: &ExecutionPlan) -> Vec<(usize, usize)> {
        plan.channels.iter().map(|c| (c.producer, c.consumer)).collect()
    }

    #[test]
    fn an_all_to_all_exchange_connects_every_pair_in_one_region() {
        let plan = ExecutionPlan::build(&job(&[(2, "default"), (3, "default")], &[(0, 1, PartitionKind::Hash)]), None)
            .unwrap();
        let ids: Vec<(usize, usize)> = plan.tasks.iter().map(|t| (t.id.vertex, t.id.subtask)).collect();
        assert_eq!(ids, vec![(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]);
        // Consumers in the order the partitioner numbers its channels.
        assert_eq!(pairs(&plan), vec![(0, 2), (0, 3), (0, 4), (1, 2), (1, 3), (1, 4)]);
        assert_eq!(plan.regions, 1);
        assert_eq!(plan.slots, 3);
        let slots: Vec<usize> = plan.tasks.iter().map(|t| t.slot).collect();
        assert_eq!(slots, vec![0, 1, 0, 1, 2], "subtask i of every vertex shares slot i");
        assert_eq!(plan.task_index(1, 2), 4);
    }

    #[test]
    fn pointwise_exchanges_make_a_region_per_pipeline() {
        let plan =
            ExecutionPlan::build(&job(&[(2, "default"), (4, "default")], &[(0, 1, PartitionKind::Rescale)]), None)
                .unwrap();
        assert_eq!(pairs(&plan), vec![(0, 2), (0, 3), (1, 4), (1, 5)]);
        assert_eq!(plan.regions, 2);
        let regions: Vec<usize> = plan.tasks.iter().map(|t| t.region).collect();
        assert_eq!(regions, vec![0, 1, 0, 0, 1, 1]);
        assert_eq!(plan.tasks_of(1).collect::<Vec<_>>(), vec![1, 4, 5]);

        let forward =
            ExecutionPlan::build(&job(&[(3, "default"), (3, "sink")], &[(0, 1, PartitionKind::Forward)]), None)
                .unwrap();
        assert_eq!(pairs(&forward), vec![(0, 3), (1, 4), (2, 5)]);
        assert_eq!(forward.regions, 3);
    }

    #[test]
    fn slot_sharing_groups_take_their_own_slots() {
        let graph = job(&[(2, "default"), (3, "sinks")], &[(0, 1, PartitionKind::Rebalance)]);
        let plan = ExecutionPlan::build(&graph, Some(5)).unwrap();
        assert_eq!(plan.slots, 5);
        let slots: Vec<usize> = plan.tasks.iter().map(|t| t.slot).collect();
        assert_eq!(slots, vec![0, 1, 2, 3, 4]);
        let error = ExecutionPlan::build(&graph, Some(4)).unwrap_err().to_string();
        assert!(
            error.contains(
                "the job needs 5 task slots (2 for group 'default', 3 for group 'sinks'), but the cluster has 4"
            ),
            "{error}"
        );
    }

    #[test]
    fn the_fingerprint_changes_with_the_graph_and_the_plan_survives_encoding() {
        let a = ExecutionPlan::build(&job(&[(2, "default"), (2, "default")], &[(0, 1, PartitionKind::Hash)]), None)
            .unwrap();
        let same = ExecutionPlan::build(&job(&[(2, "default"), (2, "default")], &[(0, 1, PartitionKind::Hash)]), None)
            .unwrap();
        let wider = ExecutionPlan::build(&job(&[(2, "default"), (3, "default")], &[(0, 1, PartitionKind::Hash)]), None)
            .unwrap();
        let rebalanced =
            ExecutionPlan::build(&job(&[(2, "default"), (2, "default")], &[(0, 1, PartitionKind::Rebalance)]), None)
                .unwrap();
        assert_eq!(a.fingerprint, same.fingerprint);
        assert_ne!(a.fingerprint, wider.fingerprint);
        assert_ne!(a.fingerprint, rebalanced.fingerprint);
        let bytes = brisk_state::codec::encode(&a).unwrap();
        assert_eq!(brisk_state::codec::decode::<ExecutionPlan>(&bytes).unwrap(), a);
    }

    /// A random DAG: vertices `(parallelism, group)` and forward-going edges, every vertex
    /// after the first fed by at least one earlier vertex.
    fn random_job() -> impl Strategy<Value = JobGraph> {
        let kinds = prop_oneof![
            Just(PartitionKind::Hash),
            Just(PartitionKind::Rebalance),
            Just(PartitionKind::Rescale),
            Just(PartitionKind::Broadcast),
            Just(PartitionKind::Forward),
        ];
        (2usize..6)
            .prop_flat_map(move |n| {
                let vertices = proptest::collection::vec((1usize..5, 0usize..2), n);
                let edges = proptest::collection::vec((0usize..n, kinds.clone(), proptest::bool::ANY), n - 1);
                (vertices, edges)
            })
            .prop_map(|(vertices, inputs)| {
                let vertices: Vec<(usize, &str)> =
                    vertices.iter().map(|(p, g)| (*p, if *g == 0 { "default" } else { "other" })).collect();
                let mut edges = Vec::new();
                for (i, (from, kind, extra)) in inputs.into_iter().enumerate() {
                    let target = i + 1;
                    let source = from % target;
                    // Forward needs equal parallelism; fall back to rebalance otherwise.
                    let kind = if kind == PartitionKind::Forward && vertices[source].0 != vertices[target].0 {
                        PartitionKind::Rebalance
                    } else {
                        kind
                    };
                    edges.push((source, target, kind));
                    if extra && source + 1 < target {
                        edges.push((source + 1, target, PartitionKind::Hash));
                    }
                }
                job(&vertices, &edges)
            })
    }

    /// Tasks connected by channels, by breadth-first search: the reference for regions.
    fn components(tasks: usize, channels: &[PlannedChannel]) -> Vec<usize> {
        let mut component = vec![usize::MAX; tasks];
        for start in 0..tasks {
            if component[start] != usize::MAX {
                continue;
            }
            let mut queue = vec![start];
            component[start] = start;
            while let Some(t) = queue.pop() {
                for c in channels {
                    for (a, b) in [(c.producer, c.consumer), (c.consumer, c.producer)] {
                        if a == t && component[b] == usize::MAX {
                            component[b] = start;
                            queue.push(b);
                        }
                    }
                }
            }
        }
        component
    }

    proptest! {
        #[test]
        fn plans_connect_regions_and_slots_like_a_naive_model(graph in random_job()) {
            let plan = ExecutionPlan::build(&graph, None).unwrap();
            let total: usize = graph.vertices.iter().map(|v| v.parallelism).sum();
            prop_assert_eq!(plan.tasks.len(), total);
            // Channels: all-to-all exchanges connect every pair once; pointwise ones give every
            // consumer at least one producer and never repeat a pair.
            for edge in &graph.edges {
                let of_edge: Vec<(SubtaskId, SubtaskId)> = plan
                    .channels
                    .iter()
                    .filter(|c| c.edge == edge.stream_edge)
                    .map(|c| (plan.tasks[c.producer].id, plan.tasks[c.consumer].id))
                    .collect();
                let (pp, cp) = (graph.vertices[edge.source].parallelism, graph.vertices[edge.target].parallelism);
                prop_assert!(of_edge.iter().all(|(p, c)| p.vertex == edge.source && c.vertex == edge.target));
                let mut pairs: Vec<(usize, usize)> = of_edge.iter().map(|(p, c)| (p.subtask, c.subtask)).collect();
                let listed = pairs.clone();
                pairs.sort_unstable();
                prop_assert_eq!(&listed, &pairs, "channels ordered by producer, then consumer");
                pairs.dedup();
                prop_assert_eq!(pairs.len(), of_edge.len(), "no pair twice");
                if edge.kind.is_pointwise() {
                    for c in 0..cp {
                        prop_assert!(pairs.iter().any(|(_, consumer)| *consumer == c), "consumer {} fed", c);
                    }
                    prop_assert!(pairs.len() == pp.max(cp));
                } else {
                    prop_assert_eq!(pairs.len(), pp * cp);
                }
            }
            // Regions: exactly the connected components of the channel graph, numbered in task order.
            let reference = components(plan.tasks.len(), &plan.channels);
            for a in 0..plan.tasks.len() {
                for b in 0..plan.tasks.len() {
                    prop_assert_eq!(plan.tasks[a].region == plan.tasks[b].region, reference[a] == reference[b]);
                }
            }
            let mut first_seen = Vec::new();
            for t in &plan.tasks {
                if !first_seen.contains(&t.region) {
                    first_seen.push(t.region);
                }
            }
            prop_assert_eq!(first_seen, (0..plan.regions).collect::<Vec<_>>());
            // Slots: per group as many as its widest vertex, groups one after the other.
            let width = |g: &str| graph.vertices.iter().filter(|v| v.slot_sharing_group == g).map(|v| v.parallelism).max().unwrap_or(0);
            let default_first = graph.vertices.first().is_some_and(|v| v.slot_sharing_group == "default");
            let (first, second) = if default_first { ("default", "other") } else { ("other", "default") };
            prop_assert_eq!(plan.slots, width(first) + width(second));
            for t in &plan.tasks {
                let group = graph.vertices[t.id.vertex].slot_sharing_group.as_str();
                let offset = if group == first { 0 } else { width(first) };
                prop_assert_eq!(t.slot, offset + t.id.subtask);
            }
        }
    }
}
