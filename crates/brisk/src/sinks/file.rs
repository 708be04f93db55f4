//! Text and CSV file sinks: one file at parallelism 1, else a directory of part files.

use crate::format::TextFormat;
use crate::functions::{RichFunction, RuntimeContext, SinkContext, SinkFunction};
use brisk_core::{BoxError, NonRecoverableError};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes one line per record: to `path` itself when the sink has one subtask, else to
/// `path/part-<subtask>-0` (replacing earlier output).
pub struct TextFileSink<T> {
    path: PathBuf,
    format: fn(&T, &mut String),
    file: Option<(PathBuf, BufWriter<File>)>,
    line: String,
}

impl<T> Clone for TextFileSink<T> {
    fn clone(&self) -> Self {
        TextFileSink { path: self.path.clone(), format: self.format, file: None, line: String::new() }
    }
}

impl<T: TextFormat> TextFileSink<T> {
    /// Lines in the records' text form (`(a,b)` for tuples).
    pub fn text(path: impl Into<PathBuf>) -> Self {
        TextFileSink { path: path.into(), format: |v, s| v.write_text(s), file: None, line: String::new() }
    }

    /// CSV rows (`a,b` for tuples).
    pub fn csv(path: impl Into<PathBuf>) -> Self {
        TextFileSink { path: path.into(), format: |v, s| v.write_csv(s), file: None, line: String::new() }
    }
}

/// The file a subtask writes.
pub fn part_file(base: &Path, subtask_index: usize, parallelism: usize) -> PathBuf {
    if parallelism == 1 { base.to_path_buf() } else { base.join(format!("part-{subtask_index}-0")) }
}

impl<T> RichFunction for TextFileSink<T> {
    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> Result<(), BoxError> {
        let parallelism = ctx.number_of_parallel_subtasks();
        let target = part_file(&self.path, ctx.index_of_this_subtask(), parallelism);
        let dir = if parallelism == 1 { self.path.parent().map(Path::to_path_buf) } else { Some(self.path.clone()) };
        if let Some(dir) = dir.filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(&dir).map_err(|e| {
                NonRecoverableError::new(format!("cannot create output directory '{}': {e}", dir.display()))
            })?;
        }
        if target.is_dir() {
            let message = format!("cannot write output file '{}': it is a directory", target.display());
            return Err(NonRecoverableError::new(message).into());
        }
        let file =
            File::create(&target).map_err(|e| format!("cannot create output file '{}': {e}", target.display()))?;
        self.file = Some((target, BufWriter::with_capacity(1 << 16, file)));
        Ok(())
    }

    fn close(&mut self) -> Result<(), BoxError> {
        if let Some((path, mut file)) = self.file.take() {
            file.flush().map_err(|e| format!("cannot write output file '{}': {e}", path.display()))?;
        }
        Ok(())
    }
}

impl<T: Send + 'static> SinkFunction<T> for TextFileSink<T> {
    fn validate(&self) -> Result<(), String> {
        // A directory of part files, or a file in its parent directory (parallelism 1).
        if self.path.is_dir() {
            return Ok(());
        }
        match self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => super::check_creatable_dir(parent),
            None => Ok(()),
        }
    }

    fn invoke(&mut self, value: T, _: &SinkContext<'_>) -> Result<(), BoxError> {
        let Some((path, file)) = self.file.as_mut() else { return Err("file sink used before open".into()) };
        self.line.clear();
        (self.format)(&value, &mut self.line);
        self.line.push('\n');
        file.write_all(self.line.as_bytes())
            .map_err(|e| format!("cannot write output file '{}': {e}", path.display()).into())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        if let Some((path, file)) = self.file.as_mut() {
            file.flush().map_err(|e| format!("cannot write output file '{}': {e}", path.display()))?;
        }
        Ok(())
    }
}
