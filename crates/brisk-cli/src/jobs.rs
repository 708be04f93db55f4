//! `brisk run`, `brisk list` and `brisk cancel`: jobs on a standalone cluster (Flink's
//! `flink run`, `flink list`, `flink cancel`).

use crate::cluster::{ConfigArgs, jobmanager_address};
use anyhow::{Context, bail};
use brisk_rpc::{JobInfo, JobState, JobSubmission, Request, Response, Role, RpcConnection};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// How much of the artifact goes in one message (below the frame limit).
const UPLOAD_CHUNK: usize = 8 << 20;
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

fn connect(address: &str) -> anyhow::Result<RpcConnection> {
    let no_requests =
        |_: &RpcConnection, request: Request| Response::Error(format!("a client does not serve {request:?}"));
    RpcConnection::connect(address, Role::Client, no_requests, Duration::from_secs(10))
        .with_context(|| format!("cannot reach the JobManager at {address}"))
}

/// Options of `brisk run`.
pub struct RunOptions<'a> {
    pub config: &'a ConfigArgs,
    pub jobmanager: Option<String>,
    pub parallelism: Option<usize>,
    pub detached: bool,
    pub from_savepoint: Option<String>,
    pub artifact: &'a Path,
    pub args: &'a [String],
}

/// Uploads the artifact, submits it and (attached) waits for the job to end.
pub fn run(options: RunOptions<'_>) -> anyhow::Result<()> {
    let address = jobmanager_address(options.config, options.jobmanager)?;
    let artifact = options.artifact;
    let metadata =
        std::fs::metadata(artifact).with_context(|| format!("cannot read the artifact '{}'", artifact.display()))?;
    if !metadata.is_file() {
        bail!("the artifact '{}' is not a file", artifact.display());
    }
    if std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o111 == 0 {
        bail!("the artifact '{}' is not executable: a job artifact is a program built with Brisk", artifact.display());
    }
    let mut config: Vec<(String, String)> = Vec::new();
    if let Some(p) = options.parallelism {
        if p == 0 {
            bail!("invalid -p 0: the parallelism must be at least 1");
        }
        config.push(("parallelism.default".into(), p.to_string()));
    }
    if let Some(path) = options.from_savepoint {
        if !Path::new(&path).exists() && !path.contains("://") {
            bail!("the savepoint '{path}' does not exist");
        }
        config.push(("execution.savepoint.path".into(), path));
    }
    let mut dynamic = brisk_core::Configuration::new();
    for property in &options.config.dynamic {
        dynamic.set_dynamic(property)?;
    }
    config.extend(dynamic.entries().map(|(k, v)| (k.to_string(), v.to_string())));
    let connection = connect(&address)?;
    let upload = std::process::id() as u64 ^ (metadata.len() << 20);
    let mut file = std::fs::File::open(artifact).with_context(|| format!("cannot open '{}'", artifact.display()))?;
    let mut buffer = vec![0u8; UPLOAD_CHUNK];
    loop {
        let n = file.read(&mut buffer).with_context(|| format!("cannot read '{}'", artifact.display()))?;
        if n == 0 {
            break;
        }
        connection
            .call(Request::UploadArtifact { upload, data: buffer[..n].to_vec() }, CALL_TIMEOUT)
            .context("cannot upload the artifact")?;
    }
    let submission = JobSubmission {
        upload,
        artifact_name: artifact.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(),
        args: options.args.to_vec(),
        config,
    };
    let job_id =
        match connection.call(Request::SubmitJob(submission), CALL_TIMEOUT).context("the job was not submitted")? {
            Response::JobSubmitted { job_id } => job_id,
            other => bail!("unexpected answer from the JobManager: {other:?}"),
        };
    println!("Job has been submitted with JobID {job_id}");
    if options.detached {
        return Ok(());
    }
    let info = loop {
        std::thread::sleep(Duration::from_millis(200));
        let info = status(&connection, &job_id)?;
        if info.state.is_terminal() {
            break info;
        }
    };
    connection.close();
    match info.state {
        JobState::Finished => {
            println!("Job with JobID {job_id} has finished.");
            println!("Job Runtime: {} ms", info.duration_ms);
            Ok(())
        }
        JobState::Canceled => bail!("job {job_id} was cancelled"),
        _ => bail!("job {job_id} failed: {}", info.failure.unwrap_or_else(|| "no reason given".into())),
    }
}

fn status(connection: &RpcConnection, job_id: &str) -> anyhow::Result<JobInfo> {
    match connection.call(Request::JobStatus { job_id: job_id.to_string() }, CALL_TIMEOUT)? {
        Response::Job(info) => Ok(info),
        other => bail!("unexpected answer from the JobManager: {other:?}"),
    }
}

/// `brisk list`: the cluster's jobs, newest first.
pub fn list(config: &ConfigArgs, jobmanager: Option<String>, json: bool) -> anyhow::Result<()> {
    let address = jobmanager_address(config, jobmanager)?;
    let connection = connect(&address)?;
    let jobs = match connection.call(Request::ListJobs, CALL_TIMEOUT)? {
        Response::Jobs(jobs) => jobs,
        other => bail!("unexpected answer from the JobManager: {other:?}"),
    };
    connection.close();
    if json {
        let jobs: Vec<serde_json::Value> = jobs
            .iter()
            .map(|j| {
                serde_json::json!({
                    "jid": j.job_id, "name": j.name, "state": j.state.to_string(),
                    "start-time": j.start_time_ms, "duration": j.duration_ms, "failure": j.failure, "slots": j.slots,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "jobs": jobs }))?);
        return Ok(());
    }
    if jobs.is_empty() {
        println!("No jobs.");
    }
    for j in &jobs {
        println!("{} : {} ({}, {} ms)", j.job_id, j.name, j.state, j.duration_ms);
        if let Some(failure) = &j.failure {
            println!("    {failure}");
        }
    }
    Ok(())
}

/// `brisk cancel JOB`.
pub fn cancel(config: &ConfigArgs, jobmanager: Option<String>, job_id: &str) -> anyhow::Result<()> {
    let address = jobmanager_address(config, jobmanager)?;
    let connection = connect(&address)?;
    connection
        .call(Request::CancelJob { job_id: job_id.to_string() }, CALL_TIMEOUT)
        .with_context(|| format!("cannot cancel job {job_id}"))?;
    connection.close();
    println!("Cancelled job {job_id}.");
    Ok(())
}

/// The configuration key naming the default savepoint directory (Flink 2's).
const SAVEPOINT_DIR_KEY: &str = "execution.checkpointing.savepoint-dir";

/// `brisk savepoint JOB [DIR]` and `brisk stop [--savepoint-path DIR] JOB`: a savepoint of a
/// running job (with `stop`, the job ends after it); prints its path.
pub fn savepoint(
    config: &ConfigArgs,
    jobmanager: Option<String>,
    job_id: &str,
    directory: Option<String>,
    stop: Option<bool>,
) -> anyhow::Result<()> {
    let directory = match directory {
        Some(dir) => dir,
        None => match config.load()?.get_raw(SAVEPOINT_DIR_KEY) {
            Some(dir) => dir.to_string(),
            None => bail!("no savepoint directory: give one, or set {SAVEPOINT_DIR_KEY} in config.yaml or with -D"),
        },
    };
    // The job's processes run elsewhere: a relative path means this directory.
    let directory = if directory.contains("://") {
        directory
    } else {
        std::path::absolute(&directory)
            .with_context(|| format!("cannot resolve the savepoint directory '{directory}'"))?
            .display()
            .to_string()
    };
    let address = jobmanager_address(config, jobmanager)?;
    let connection = connect(&address)?;
    let what = if stop.is_some() { "stop job" } else { "take a savepoint of job" };
    println!("Triggering a savepoint of job {job_id} into {directory}.");
    let request = Request::TriggerSavepoint { job_id: job_id.to_string(), directory, stop };
    let answer =
        connection.call(request, Duration::from_secs(3600)).with_context(|| format!("cannot {what} {job_id}"))?;
    connection.close();
    match answer {
        Response::SavepointCompleted { path } => {
            println!("Savepoint completed. Path: {path}");
            Ok(())
        }
        other => bail!("unexpected answer from the JobManager: {other:?}"),
    }
}
