//! A serializable description of a job graph: what the CLI, the REST API and logs show.

use serde::{Deserialize, Serialize};

/// One operator inside a job vertex's chain.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OperatorDescription {
    /// Stable operator id (32 hex digits).
    pub id: String,
    /// Display name.
    pub name: String,
    /// User-given uid, if any.
    pub uid: Option<String>,
}

/// A job vertex: a chain of operators run by `parallelism` subtasks.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VertexDescription {
    /// The id of the chain's head operator.
    pub id: String,
    /// The chain's name, e.g. `Source: words -> Flat Map`.
    pub name: String,
    /// Number of subtasks.
    pub parallelism: usize,
    /// Number of key groups.
    pub max_parallelism: usize,
    /// Slot sharing group.
    pub slot_sharing_group: String,
    /// The chained operators, head first.
    pub operators: Vec<OperatorDescription>,
}

/// A data exchange between two vertices.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EdgeDescription {
    /// Index of the producing vertex.
    pub source: usize,
    /// Index of the consuming vertex.
    pub target: usize,
    /// Which input of the consumer (1 or 2).
    pub input: usize,
    /// Partitioning, e.g. `HASH`, `REBALANCE`.
    pub partitioner: String,
    /// The side output the exchange reads, if not the main output.
    pub side_output: Option<String>,
}

/// A whole job graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobGraphDescription {
    /// The job's name.
    pub job_name: String,
    /// Vertices in topological order.
    pub vertices: Vec<VertexDescription>,
    /// Exchanges between vertices.
    pub edges: Vec<EdgeDescription>,
}

impl JobGraphDescription {
    /// A multi-line, human-readable plan (for logs and `--help`-style dumps).
    pub fn to_plan_string(&self) -> String {
        let mut s = format!("Job '{}'\n", self.job_name);
        for (i, v) in self.vertices.iter().enumerate() {
            s.push_str(&format!(
                "  [{i}] {} (parallelism {}, max parallelism {})\n",
                v.name, v.parallelism, v.max_parallelism
            ));
        }
        for e in &self.edges {
            let side = e.side_output.as_deref().map(|t| format!(" side output '{t}'")).unwrap_or_default();
            s.push_str(&format!("  [{}] -> [{}] {}{side}\n", e.source, e.target, e.partitioner));
        }
        s
    }
}
