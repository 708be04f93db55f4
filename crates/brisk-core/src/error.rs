//! Error vocabulary shared by all layers.

/// The error type user functions return: any error, sendable across task threads.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error that no restart can fix: a bad configuration, an output path that cannot be
/// created, a record that can never be read. A task failing with it fails the job at once
/// instead of being restarted (Flink's non-recoverable errors). Its message is the wrapped
/// error's.
#[derive(Debug)]
pub struct NonRecoverableError(BoxError);

impl NonRecoverableError {
    /// Marks `error` as one no restart can fix.
    pub fn new(error: impl Into<BoxError>) -> Self {
        NonRecoverableError(error.into())
    }
}

impl std::fmt::Display for NonRecoverableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for NonRecoverableError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Whether `error` is a [`NonRecoverableError`] (itself or one it wraps as a source).
pub fn is_non_recoverable(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<NonRecoverableError>() {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(NonRecoverableError);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "wrapped: {}", self.0)
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn non_recoverable_errors_are_found_in_the_source_chain() {
        let plain: BoxError = "disk full".into();
        assert!(!is_non_recoverable(plain.as_ref()));
        let marked: BoxError = Box::new(NonRecoverableError::new("cannot create 'out'"));
        assert_eq!(marked.to_string(), "cannot create 'out'");
        assert!(is_non_recoverable(marked.as_ref()));
        let wrapped = Wrapper(NonRecoverableError::new("bad option"));
        assert!(is_non_recoverable(&wrapped));
    }
}
