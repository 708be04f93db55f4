//! Window functions: what a firing window computes (Flink's `ProcessWindowFunction`,
//! `WindowFunction`).

use crate::functions::{Collector, ProcessContext, RichFunction};
use crate::side_output::OutputTag;
use brisk_core::{BoxError, Data};
use brisk_runtime::taskexecutor::time::ProcessingTimeService;

/// What a window function knows about the firing window.
pub struct ProcessWindowContext<'a, W, O> {
    pub(crate) window: &'a W,
    pub(crate) watermark: i64,
    pub(crate) time: &'a ProcessingTimeService,
    pub(crate) inner: ProcessContext<'a, O>,
}

impl<W, O> ProcessWindowContext<'_, W, O> {
    /// The window.
    pub fn window(&self) -> &W {
        self.window
    }

    /// The operator's current watermark.
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    /// Current processing time.
    pub fn current_processing_time(&self) -> i64 {
        self.time.current_processing_time()
    }

    /// Emits to a side output.
    pub fn output<X: Data>(&mut self, tag: &OutputTag<X>, value: X) {
        self.inner.output(tag, value);
    }
}

/// Computes a window's result from its elements (Flink's `ProcessWindowFunction`); after a
/// `reduce` or `aggregate` it gets the one pre-aggregated element.
pub trait ProcessWindowFunction<IN, OUT, K, W>: RichFunction + Clone + Send + 'static {
    /// Processes the elements of `window` for `key`.
    fn process(
        &mut self,
        key: &K,
        ctx: &mut ProcessWindowContext<'_, W, OUT>,
        elements: Vec<IN>,
        out: &mut Collector<'_, OUT>,
    ) -> Result<(), BoxError>;
}

/// Emits the (pre-aggregated) elements unchanged: the function of plain `reduce`/`aggregate`.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassThrough;

impl RichFunction for PassThrough {}

impl<T, K, W> ProcessWindowFunction<T, T, K, W> for PassThrough {
    fn process(
        &mut self,
        _: &K,
        _: &mut ProcessWindowContext<'_, W, T>,
        elements: Vec<T>,
        out: &mut Collector<'_, T>,
    ) -> Result<(), BoxError> {
        elements.into_iter().for_each(|e| out.collect(e));
        Ok(())
    }
}

/// Adapts a closure `(key, window, elements, out)` (Flink's `WindowFunction`).
#[derive(Clone)]
pub struct WindowFn<F>(pub F);

impl<F> RichFunction for WindowFn<F> {}

impl<IN, OUT, K, W, F> ProcessWindowFunction<IN, OUT, K, W> for WindowFn<F>
where
    F: FnMut(&K, &W, Vec<IN>, &mut Collector<'_, OUT>) + Clone + Send + 'static,
{
    fn process(
        &mut self,
        key: &K,
        ctx: &mut ProcessWindowContext<'_, W, OUT>,
        elements: Vec<IN>,
        out: &mut Collector<'_, OUT>,
    ) -> Result<(), BoxError> {
        (self.0)(key, ctx.window, elements, out);
        Ok(())
    }
}
