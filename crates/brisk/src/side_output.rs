//! Side outputs: extra typed streams an operator can emit besides its main output.

use std::marker::PhantomData;
use std::sync::Arc;

/// Names a side output and its type (Flink's `OutputTag`).
pub struct OutputTag<X> {
    id: Arc<str>,
    _type: PhantomData<fn() -> X>,
}

impl<X> OutputTag<X> {
    /// A tag called `id`.
    pub fn new(id: &str) -> Self {
        OutputTag { id: id.into(), _type: PhantomData }
    }

    /// The tag's name.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl<X> Clone for OutputTag<X> {
    fn clone(&self) -> Self {
        OutputTag { id: self.id.clone(), _type: PhantomData }
    }
}

impl<X> std::fmt::Debug for OutputTag<X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutputTag({})", self.id)
    }
}
