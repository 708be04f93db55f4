//! `brisk info`: runs a job's artifact in plan mode and prints what it would run.

use anyhow::{Context, bail};
use brisk_runtime::executor::PLAN_FILE_ENV;
use brisk_runtime::graph::execution_plan::ExecutionPlan;
use std::fs::{DirBuilder, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Learns the plan of `artifact` (run with `args`) and prints it, as text or JSON.
pub fn run(artifact: &Path, args: &[String], json: bool) -> anyhow::Result<()> {
    let plan = plan_of(artifact, args)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(());
    }
    print!("{}", plan.job.to_plan_string());
    println!(
        "Fingerprint {}; {} subtasks in {} slots, {} pipelined regions, {} channels",
        plan.fingerprint,
        plan.tasks.len(),
        plan.slots,
        plan.regions,
        plan.channels.len()
    );
    Ok(())
}

/// How long an artifact may take to declare its job.
const PLAN_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `artifact` in plan mode and reads the plan it wrote.
pub fn plan_of(artifact: &Path, args: &[String]) -> anyhow::Result<ExecutionPlan> {
    let dir = private_dir()?;
    let plan = run_in_plan_mode(artifact, args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    plan
}

/// A new directory only this user can read, for the plan and the artifact's messages.
fn private_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::temp_dir();
    for attempt in 0..16u32 {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!("brisk-plan-{}-{nanos:x}-{attempt}", std::process::id()));
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => bail!("cannot create a directory in '{}': {e}", base.display()),
        }
    }
    bail!("cannot create a fresh directory in '{}'", base.display())
}

fn run_in_plan_mode(artifact: &Path, args: &[String], dir: &Path) -> anyhow::Result<ExecutionPlan> {
    let file = dir.join("plan.json");
    let log = dir.join("stderr.log");
    // A bare name would be looked up in PATH; the user means the file.
    let program = if artifact.components().count() == 1 { Path::new(".").join(artifact) } else { artifact.into() };
    let stderr = File::create(&log).with_context(|| format!("cannot create '{}'", log.display()))?;
    let mut child = Command::new(&program)
        .args(args)
        .env(PLAN_FILE_ENV, &file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("cannot run the artifact '{}'", artifact.display()))?;
    let deadline = Instant::now() + PLAN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the artifact '{}' declared no job within {} s (a program that does not call execute, or one built \
                 against a Brisk without plan mode that ran its job); it was stopped",
                artifact.display(),
                PLAN_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !status.success() {
        let messages = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = messages.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("the artifact '{}' failed ({status}):\n{}", artifact.display(), tail.join("\n"));
    }
    let Ok(bytes) = std::fs::read(&file) else {
        bail!(
            "'{}' is not a Brisk program: it ended without declaring a job (nothing called execute)",
            artifact.display()
        );
    };
    serde_json::from_slice::<ExecutionPlan>(&bytes)
        .with_context(|| format!("the plan written by '{}' does not decode", artifact.display()))
}
