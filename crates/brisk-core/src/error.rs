//! Error vocabulary shared by all layers.

/// The error type user functions return: any error, sendable across task threads.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
