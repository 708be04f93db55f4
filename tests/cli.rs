//! The `brisk` command line against real job artifacts (the example binaries).

mod common;

use brisk::runtime::graph::execution_plan::ExecutionPlan;
use common::{brisk, example_path, run};

/// `brisk info` output of word_count at `parallelism`: (plan lines, fingerprint).
fn word_count_info(parallelism: &str) -> (Vec<String>, String) {
    let (out, stdout, stderr) =
        run(brisk().arg("info").arg(example_path("word_count")).args(["--parallelism", parallelism]));
    assert!(out.status.success(), "{stderr}");
    let mut lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    let summary = lines.pop().expect("a summary line");
    let fingerprint = summary
        .strip_prefix("Fingerprint ")
        .and_then(|s| s.split(';').next())
        .unwrap_or_else(|| panic!("unexpected summary: {summary}"))
        .to_string();
    assert!(fingerprint.len() == 16 && fingerprint.chars().all(|c| c.is_ascii_hexdigit()), "{summary}");
    (lines, fingerprint)
}

#[test]
fn info_prints_the_job_graph_without_running_the_job() {
    let (lines, fingerprint) = word_count_info("2");
    assert_eq!(
        lines,
        vec![
            "Job 'WordCount'",
            "  [0] Source: Collection Source (parallelism 1, max parallelism 128)",
            "  [1] tokenizer (parallelism 2, max parallelism 128)",
            "  [2] counter -> Sink: print (parallelism 2, max parallelism 128)",
            "  [0] -> [1] REBALANCE",
            "  [1] -> [2] HASH",
        ]
    );
    assert_eq!(word_count_info("2").1, fingerprint, "the same program gives the same fingerprint");
    assert_ne!(word_count_info("3").1, fingerprint, "another parallelism is another job graph");

    let (out, stdout, stderr) =
        run(brisk().args(["info", "--json"]).arg(example_path("word_count")).args(["--parallelism", "2"]));
    assert!(out.status.success(), "{stderr}");
    let plan: ExecutionPlan = serde_json::from_str(&stdout).expect("the JSON plan decodes");
    assert_eq!(plan.fingerprint, fingerprint);
    assert_eq!((plan.tasks.len(), plan.slots, plan.regions, plan.channels.len()), (5, 2, 1, 6));
}

#[test]
fn info_says_what_is_wrong_with_an_artifact() {
    let (out, _, stderr) = run(brisk().args(["info", "/nonexistent/job"]));
    assert!(!out.status.success());
    assert!(stderr.contains("cannot run the artifact '/nonexistent/job'"), "{stderr}");

    let (out, _, stderr) = run(brisk().args(["info", "/bin/true"]));
    assert!(!out.status.success());
    assert!(stderr.contains("'/bin/true' is not a Brisk program"), "{stderr}");

    let (out, _, stderr) = run(brisk().arg("info").arg(example_path("word_count")).arg("--no-such-flag"));
    assert!(!out.status.success());
    assert!(stderr.contains("failed (exit status: 2)") && stderr.contains("--no-such-flag"), "{stderr}");
}
