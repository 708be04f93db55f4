//! From the stream graph to the job graph: resolve parallelism and partitioning, validate,
//! and chain operators into vertices (Flink's `StreamingJobGraphGenerator`).

use crate::error::JobError;
use crate::graph::stream_graph::{ChainingStrategy, NodeKind, StreamGraph};
use crate::network::partitioner::{PartitionKind, PartitionerSpec};
use brisk_core::hash::id_128;
use brisk_core::job_graph::{EdgeDescription, JobGraphDescription, OperatorDescription, VertexDescription};
use brisk_core::{DEFAULT_MAX_PARALLELISM, MAX_MAX_PARALLELISM};

/// A chain of operators run as one task.
#[derive(Clone, Debug)]
pub struct JobVertex {
    /// The chain's display name.
    pub name: String,
    /// The chain's head node.
    pub head: usize,
    /// All nodes of the chain, head first.
    pub nodes: Vec<usize>,
    /// Number of subtasks.
    pub parallelism: usize,
    /// Number of key groups.
    pub max_parallelism: usize,
    /// Slot sharing group.
    pub slot_sharing_group: String,
}

/// A data exchange between two vertices: a stream edge that is not inside a chain.
#[derive(Clone, Debug)]
pub struct JobEdge {
    /// The stream edge it carries.
    pub stream_edge: usize,
    /// The producing vertex.
    pub source: usize,
    /// The consuming vertex.
    pub target: usize,
    /// Which input of the consumer (1 or 2).
    pub input: usize,
    /// How records are spread over the consumer's subtasks.
    pub kind: PartitionKind,
}

/// The resolved, validated job graph.
#[derive(Clone, Debug)]
pub struct JobGraph {
    /// Vertices in topological order.
    pub vertices: Vec<JobVertex>,
    /// Vertex of each node.
    pub vertex_of: Vec<usize>,
    /// Whether each edge is inside a chain.
    pub chained: Vec<bool>,
    /// The exchanges between vertices, in stream edge order.
    pub edges: Vec<JobEdge>,
    /// Resolved partitioning of each edge.
    pub partitioners: Vec<PartitionerSpec>,
    /// Parallelism of each node.
    pub parallelism: Vec<usize>,
    /// Stable id of each node.
    pub operator_ids: Vec<String>,
    /// The serializable description.
    pub description: JobGraphDescription,
}

/// The job-wide defaults graph resolution needs.
#[derive(Clone, Debug)]
pub struct GraphDefaults {
    /// The job's name.
    pub job_name: String,
    /// Parallelism of operators that set none.
    pub parallelism: usize,
    /// Key groups of operators that set none; `None` derives it from the parallelism.
    pub max_parallelism: Option<usize>,
    /// Whether operators may be chained at all.
    pub chaining_enabled: bool,
}

/// Flink's default number of key groups for a parallelism: 1.5 × parallelism rounded up to a
/// power of two, at least 128, at most 32768.
pub fn default_max_parallelism(parallelism: usize) -> usize {
    (parallelism + parallelism / 2).next_power_of_two().clamp(DEFAULT_MAX_PARALLELISM, MAX_MAX_PARALLELISM)
}

impl JobGraph {
    /// Resolves and validates `graph`.
    pub fn build(graph: &StreamGraph, defaults: &GraphDefaults) -> Result<JobGraph, JobError> {
        let invalid = |msg: String| Err(JobError::InvalidJob(msg));
        if graph.nodes.is_empty() {
            return invalid(
                "no operators defined in the streaming topology; add a source and a sink before executing".into(),
            );
        }
        if defaults.parallelism == 0 {
            return invalid("the default parallelism must be at least 1".into());
        }
        let mut parallelism: Vec<usize> = Vec::with_capacity(graph.nodes.len());
        let mut max_parallelism = Vec::with_capacity(graph.nodes.len());
        for node in &graph.nodes {
            let p = node.parallelism.unwrap_or(match node.max_allowed_parallelism {
                Some(limit) => defaults.parallelism.min(limit),
                None => defaults.parallelism,
            });
            if p == 0 {
                return invalid(format!("operator '{}' has parallelism 0; it must be at least 1", node.name));
            }
            if let Some(limit) = node.max_allowed_parallelism
                && p > limit
            {
                return invalid(format!(
                    "operator '{}' is not parallel: its parallelism must be at most {limit}, not {p}",
                    node.name
                ));
            }
            let maxp = node.max_parallelism.or(defaults.max_parallelism).unwrap_or_else(|| default_max_parallelism(p));
            if maxp == 0 || maxp > MAX_MAX_PARALLELISM {
                return invalid(format!(
                    "operator '{}' has max parallelism {maxp}; it must be between 1 and {MAX_MAX_PARALLELISM}",
                    node.name
                ));
            }
            if p > maxp {
                return invalid(format!(
                    "operator '{}' has parallelism {p} above its max parallelism {maxp}",
                    node.name
                ));
            }
            parallelism.push(p);
            max_parallelism.push(maxp);
        }

        let mut partitioners = Vec::with_capacity(graph.edges.len());
        for edge in &graph.edges {
            if edge.source >= edge.target || edge.target >= graph.nodes.len() {
                return invalid(format!("edge {} -> {} does not go forward in the graph", edge.source, edge.target));
            }
            let (ps, pt) = (parallelism[edge.source], parallelism[edge.target]);
            let spec = match &edge.partitioner {
                Some(spec) => spec.clone(),
                None if ps == pt => PartitionerSpec::of(PartitionKind::Forward),
                None => PartitionerSpec::of(PartitionKind::Rebalance),
            };
            if spec.kind == PartitionKind::Forward && ps != pt {
                return invalid(format!(
                    "forward partitioning does not allow a change of parallelism: '{}' has {ps}, '{}' has {pt}; use rebalance() or rescale()",
                    graph.nodes[edge.source].name, graph.nodes[edge.target].name
                ));
            }
            partitioners.push(spec);
        }

        for node in &graph.nodes {
            let inputs: Vec<usize> = graph.in_edges(node.id).map(|(_, e)| e.input).collect();
            let ok = match node.kind {
                NodeKind::Source(_) => inputs.is_empty(),
                NodeKind::OneInput(_) => !inputs.is_empty() && inputs.iter().all(|&i| i == 1),
                NodeKind::TwoInput(_) => inputs.contains(&1) && inputs.contains(&2),
            };
            if !ok {
                return invalid(format!("operator '{}' is missing an input", node.name));
            }
        }

        // Chain: a node joins its producer's chain when the only stream into it is a forward
        // stream at equal parallelism and neither side forbids it.
        let mut chained = vec![false; graph.edges.len()];
        let mut vertex_of = vec![usize::MAX; graph.nodes.len()];
        let mut vertices: Vec<JobVertex> = Vec::new();
        for node in &graph.nodes {
            let ins: Vec<(usize, &crate::graph::stream_graph::StreamEdge)> = graph.in_edges(node.id).collect();
            let chain_with = match ins.as_slice() {
                [(idx, edge)]
                    if defaults.chaining_enabled
                        && matches!(node.kind, NodeKind::OneInput(_))
                        && node.chaining == ChainingStrategy::Always
                        && graph.nodes[edge.source].chaining != ChainingStrategy::Never
                        && partitioners[*idx].kind == PartitionKind::Forward
                        && parallelism[edge.source] == parallelism[node.id]
                        && graph.nodes[edge.source].slot_sharing_group == node.slot_sharing_group =>
                {
                    Some((*idx, edge.source))
                }
                _ => None,
            };
            match chain_with {
                Some((edge_idx, producer)) => {
                    chained[edge_idx] = true;
                    let v = vertex_of[producer];
                    vertex_of[node.id] = v;
                    vertices[v].nodes.push(node.id);
                }
                None => {
                    vertex_of[node.id] = vertices.len();
                    vertices.push(JobVertex {
                        name: String::new(),
                        head: node.id,
                        nodes: vec![node.id],
                        parallelism: parallelism[node.id],
                        max_parallelism: max_parallelism[node.id],
                        slot_sharing_group: node.slot_sharing_group.clone(),
                    });
                }
            }
        }
        for v in &mut vertices {
            v.name = v.nodes.iter().map(|&n| graph.nodes[n].name.as_str()).collect::<Vec<_>>().join(" -> ");
        }

        // Stable ids: from the uid, else from the node's position and its inputs' ids, so they
        // survive renaming but not restructuring (as Flink's generated hashes).
        let mut operator_ids: Vec<String> = Vec::with_capacity(graph.nodes.len());
        for node in &graph.nodes {
            let id = match &node.uid {
                Some(uid) => id_128(&format!("uid:{uid}")),
                None => {
                    let inputs: Vec<&str> =
                        graph.in_edges(node.id).map(|(_, e)| operator_ids[e.source].as_str()).collect();
                    id_128(&format!("node:{}:{}", node.id, inputs.join(",")))
                }
            };
            operator_ids.push(id);
        }

        let edges: Vec<JobEdge> = graph
            .edges
            .iter()
            .enumerate()
            .filter(|(i, _)| !chained[*i])
            .map(|(i, e)| JobEdge {
                stream_edge: i,
                source: vertex_of[e.source],
                target: vertex_of[e.target],
                input: e.input,
                kind: partitioners[i].kind,
            })
            .collect();
        let description = JobGraphDescription {
            job_name: defaults.job_name.clone(),
            vertices: vertices
                .iter()
                .map(|v| VertexDescription {
                    id: operator_ids[v.head].clone(),
                    name: v.name.clone(),
                    parallelism: v.parallelism,
                    max_parallelism: v.max_parallelism,
                    slot_sharing_group: v.slot_sharing_group.clone(),
                    operators: v
                        .nodes
                        .iter()
                        .map(|&n| OperatorDescription {
                            id: operator_ids[n].clone(),
                            name: graph.nodes[n].name.clone(),
                            uid: graph.nodes[n].uid.clone(),
                        })
                        .collect(),
                })
                .collect(),
            edges: edges
                .iter()
                .map(|e| EdgeDescription {
                    source: e.source,
                    target: e.target,
                    input: e.input,
                    partitioner: e.kind.to_string(),
                    side_output: graph.edges[e.stream_edge].side_output.clone(),
                })
                .collect(),
        };
        Ok(JobGraph { vertices, vertex_of, chained, edges, partitioners, parallelism, operator_ids, description })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_max_parallelism_follows_flink() {
        assert_eq!(default_max_parallelism(1), 128);
        assert_eq!(default_max_parallelism(100), 256);
        assert_eq!(default_max_parallelism(30000), 32768);
    }
}
