//! `print` / `print_to_err`.

use crate::format::TextFormat;
use crate::functions::{RichFunction, RuntimeContext, SinkContext, SinkFunction};
use brisk_core::BoxError;
use std::io::Write;

/// Writes each record's text form on its own line to stdout or stderr, prefixed with the
/// 1-based subtask index when the sink runs in parallel (`2> (hello,1)`), as Flink does.
#[derive(Clone, Debug, Default)]
pub struct PrintSink {
    to_stderr: bool,
    identifier: Option<String>,
    prefix: String,
    line: String,
}

impl PrintSink {
    /// Prints to stdout.
    pub fn stdout() -> Self {
        PrintSink::default()
    }

    /// Prints to stderr.
    pub fn stderr() -> Self {
        PrintSink { to_stderr: true, ..PrintSink::default() }
    }

    /// Prefixes every line with `identifier` (`id:2> value`).
    pub fn with_identifier(mut self, identifier: impl Into<String>) -> Self {
        self.identifier = Some(identifier.into());
        self
    }

    /// The line prefix for a subtask.
    pub fn prefix_for(identifier: Option<&str>, subtask_index: usize, parallelism: usize) -> String {
        match (identifier, parallelism > 1) {
            (Some(id), true) => format!("{id}:{}> ", subtask_index + 1),
            (Some(id), false) => format!("{id}> "),
            (None, true) => format!("{}> ", subtask_index + 1),
            (None, false) => String::new(),
        }
    }
}

impl RichFunction for PrintSink {
    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> Result<(), BoxError> {
        self.prefix = Self::prefix_for(
            self.identifier.as_deref(),
            ctx.index_of_this_subtask(),
            ctx.number_of_parallel_subtasks(),
        );
        Ok(())
    }
}

impl<T: TextFormat> SinkFunction<T> for PrintSink {
    fn invoke(&mut self, value: T, _: &SinkContext<'_>) -> Result<(), BoxError> {
        self.line.clear();
        self.line.push_str(&self.prefix);
        value.write_text(&mut self.line);
        self.line.push('\n');
        let written = if self.to_stderr {
            std::io::stderr().lock().write_all(self.line.as_bytes())
        } else {
            std::io::stdout().lock().write_all(self.line.as_bytes())
        };
        written.map_err(|e| format!("cannot write to {}: {e}", if self.to_stderr { "stderr" } else { "stdout" }).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_follow_flink() {
        assert_eq!(PrintSink::prefix_for(None, 0, 1), "");
        assert_eq!(PrintSink::prefix_for(None, 1, 4), "2> ");
        assert_eq!(PrintSink::prefix_for(Some("out"), 0, 1), "out> ");
        assert_eq!(PrintSink::prefix_for(Some("out"), 2, 3), "out:3> ");
    }
}
