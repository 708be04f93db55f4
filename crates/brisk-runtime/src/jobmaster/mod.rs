//! The job master: runs attempts of a job, coordinates its checkpoints and recovers it from
//! failures by restarting regions or the whole job per the restart strategy.

pub(crate) mod deployer;
pub mod job;
pub mod master;
pub(crate) mod queryable;
pub mod restart;
pub mod result;
