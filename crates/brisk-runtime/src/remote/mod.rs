//! A job's own processes in a standalone cluster: the coordinator (job master and split
//! enumerators, started by the JobManager) and the workers (subtasks in TaskManager slots,
//! started by the TaskManagers), all running the job's artifact, and what they say to each
//! other.

pub(crate) mod coordinator;
pub(crate) mod protocol;
pub(crate) mod worker;
