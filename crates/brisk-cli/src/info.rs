//! `brisk info`: runs a job's artifact in plan mode and prints what it would run.

use anyhow::{Context, bail};
use brisk_runtime::executor::PLAN_FILE_ENV;
use brisk_runtime::graph::execution_plan::ExecutionPlan;
use std::path::Path;
use std::process::{Command, Stdio};

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

/// Runs `artifact` in plan mode and reads the plan it wrote.
pub fn plan_of(artifact: &Path, args: &[String]) -> anyhow::Result<ExecutionPlan> {
    let dir = std::env::temp_dir().join(format!("brisk-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create '{}'", dir.display()))?;
    let file = dir.join("plan.json");
    let _ = std::fs::remove_file(&file);
    let output = Command::new(artifact)
        .args(args)
        .env(PLAN_FILE_ENV, &file)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run the artifact '{}'", artifact.display()));
    let plan = output.and_then(|output| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        if !output.status.success() {
            bail!("the artifact '{}' failed ({}):\n{}", artifact.display(), output.status, tail.join("\n"));
        }
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(_) => bail!(
                "'{}' is not a Brisk program: it ended without declaring a job (nothing called execute)",
                artifact.display()
            ),
        };
        serde_json::from_slice::<ExecutionPlan>(&bytes)
            .with_context(|| format!("the plan written by '{}' does not decode", artifact.display()))
    });
    let _ = std::fs::remove_dir_all(&dir);
    plan
}
