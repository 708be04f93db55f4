//! `/metrics` in the Prometheus text format, with Flink's metric names and scopes
//! (`<system>_taskmanager_job_task_<name>` per subtask, `<system>_jobmanager_job_<name>` per
//! job) labelled by job, vertex (task) and subtask. Every value is a gauge, as Flink's
//! Prometheus reporter writes them.

use crate::server::{ServerState, lock_rates};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use brisk_runtime::jobmaster::result::epoch_ms;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Instant;

/// Samples of one metric, written together under one `# HELP`/`# TYPE` header.
struct Family {
    help: String,
    /// Whole sample lines.
    samples: Vec<String>,
}

/// Metrics by full metric name.
#[derive(Default)]
pub(crate) struct Exposition {
    families: BTreeMap<String, Family>,
}

impl Exposition {
    pub fn add(&mut self, name: String, help: &str, labels: &str, value: f64) {
        let line = if labels.is_empty() { format!("{name} {value}") } else { format!("{name}{{{labels}}} {value}") };
        self.family(name, help).samples.push(line);
    }

    fn family(&mut self, name: String, help: &str) -> &mut Family {
        self.families.entry(name).or_insert_with(|| Family { help: help.to_string(), samples: Vec::new() })
    }

    /// Adds the samples of another exposition in the text format (another process's), so
    /// that each family is written once.
    pub fn merge(&mut self, text: &str) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                self.family(name.to_string(), help);
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                self.family(name.to_string(), "").samples.push(line.to_string());
            }
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, family) in &self.families {
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} gauge");
            for line in &family.samples {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }
}

/// The content type of the Prometheus text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub(crate) async fn metrics(State(state): State<Arc<ServerState>>) -> impl IntoResponse {
    let mut exposition = Exposition::default();
    let now = Instant::now();
    for job in state.all_jobs() {
        let job_labels = format!("job_id=\"{}\",job_name=\"{}\"", job.job_id(), escape(job.job_name()));
        let job_metric = |name: &str| format!("brisk_jobmanager_job_{name}");
        let (start, end) = job.times();
        let uptime = if job.state().is_terminal() { 0 } else { end.unwrap_or_else(epoch_ms) - start };
        exposition.add(job_metric("uptime"), "Milliseconds the job has been running.", &job_labels, uptime as f64);
        exposition.add(job_metric("numRestarts"), "Restarts after failures.", &job_labels, job.restarts() as f64);
        let stats = job.checkpoint_stats();
        let last = stats.latest_completed.as_ref();
        let checkpoint_gauges = [
            ("numberOfCompletedCheckpoints", "Checkpoints and savepoints completed.", stats.completed as f64),
            ("numberOfFailedCheckpoints", "Checkpoints and savepoints that failed.", stats.failed as f64),
            ("totalNumberOfCheckpoints", "Checkpoints and savepoints triggered.", stats.total() as f64),
            (
                "lastCheckpointDuration",
                "Milliseconds the last completed checkpoint took.",
                last.map_or(0.0, |c| c.duration.as_millis() as f64),
            ),
            ("lastCheckpointSize", "Bytes of the last completed checkpoint.", last.map_or(0.0, |c| c.size as f64)),
        ];
        for (name, help, value) in checkpoint_gauges {
            exposition.add(job_metric(name), help, &job_labels, value);
        }
        let vertices = &job.job_graph().vertices;
        let mut rates = lock_rates(&state);
        for m in job.metrics() {
            let Some(vertex) = vertices.get(m.vertex) else { continue };
            let labels = format!(
                "{job_labels},task_id=\"{}\",task_name=\"{}\",subtask_index=\"{}\"",
                vertex.id,
                escape(&vertex.name),
                m.subtask
            );
            let v = &m.values;
            let per_second = rates.of_subtask(job.job_id(), &m, now);
            let task_metric = |name: &str| format!("brisk_taskmanager_job_task_{name}");
            let gauges = [
                ("numRecordsIn", "Records the subtask received.", v.records_in as f64),
                ("numRecordsOut", "Records the subtask sent.", v.records_out as f64),
                ("numBytesIn", "Bytes the subtask received.", v.bytes_in as f64),
                ("numBytesOut", "Bytes the subtask sent.", v.bytes_out as f64),
                ("numRecordsInPerSecond", "Records received per second.", per_second[0]),
                ("numRecordsOutPerSecond", "Records sent per second.", per_second[1]),
                ("backPressuredTimeMsPerSecond", "Milliseconds per second blocked on full outputs.", per_second[2]),
                (
                    "checkpointedSize",
                    "Bytes of the subtask's state in its last checkpoint.",
                    v.checkpointed_size as f64,
                ),
                ("numRecordsInErrors", "Records a source skipped as unreadable.", v.records_in_errors as f64),
            ];
            for (name, help, value) in gauges {
                exposition.add(task_metric(name), help, &labels, value);
            }
            if let Some(watermark) = v.current_input_watermark {
                exposition.add(
                    task_metric("currentInputWatermark"),
                    "The combined watermark of the subtask's inputs.",
                    &labels,
                    watermark as f64,
                );
            }
        }
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], exposition.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_expositions_write_each_family_once() {
        let mut merged = Exposition::default();
        merged.add("a_total".into(), "Help of a.", "job=\"1\"", 1.0);
        merged.merge("# HELP a_total Help of a.\n# TYPE a_total gauge\na_total{job=\"2\"} 2\n# HELP b B.\n# TYPE b gauge\nb{x=\"y\"} 3.5\n");
        assert_eq!(
            merged.render(),
            "# HELP a_total Help of a.\n# TYPE a_total gauge\na_total{job=\"1\"} 1\na_total{job=\"2\"} 2\n\
             # HELP b B.\n# TYPE b gauge\nb{x=\"y\"} 3.5\n"
        );
    }
}
