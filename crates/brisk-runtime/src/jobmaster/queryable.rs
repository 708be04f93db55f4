//! Queryable state: how a client of the job master reaches the subtask holding a key, in this
//! process (its mailbox) or in a worker process (over the job's own protocol).

use crate::taskexecutor::mailbox::{Mail, Mailbox};
use crate::taskexecutor::output::StateQuery;
use std::time::Duration;

/// How long a subtask may take to answer a state query: it answers between two records,
/// or between two input buffers.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where one subtask's keyed state is looked up.
pub(crate) trait StateLookup: Send + Sync {
    /// The subtask's answer to `query`: `Ok(None)` when it has no such state or value, or
    /// cannot answer (it ended, or was busy past [`QUERY_TIMEOUT`]).
    fn lookup(&self, query: StateQuery) -> Result<Option<Vec<u8>>, String>;
}

impl StateLookup for Mailbox {
    fn lookup(&self, query: StateQuery) -> Result<Option<Vec<u8>>, String> {
        let (reply, answer) = std::sync::mpsc::channel();
        self.send(Mail::QueryState { query, reply });
        answer.recv_timeout(QUERY_TIMEOUT).unwrap_or(Ok(None))
    }
}
