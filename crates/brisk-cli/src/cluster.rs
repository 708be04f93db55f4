//! `brisk jobmanager`, `brisk taskmanager` and `brisk cluster start|stop|status`: the
//! processes of a standalone cluster (Flink's `jobmanager.sh`, `taskmanager.sh`,
//! `start-cluster.sh` and `stop-cluster.sh`).

use anyhow::{Context, bail};
use brisk_cluster::{ClusterConfig, JobManager, TaskManager};
use brisk_core::Configuration;
use brisk_rpc::{ClusterOverview, Request, Response, Role, RpcConnection};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the configuration comes from, shared by every cluster command.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// Directory with config.yaml (and workers) [default: $BRISK_CONF_DIR, else ./conf].
    #[arg(short = 'c', long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// Overrides a configuration option, e.g. -D heartbeat.timeout=10s (repeatable).
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    pub dynamic: Vec<String>,
}

impl ConfigArgs {
    /// The configuration directory: given, from the environment, or `./conf`.
    fn dir(&self) -> (PathBuf, bool) {
        match (&self.config_dir, std::env::var_os("BRISK_CONF_DIR")) {
            (Some(dir), _) => (dir.clone(), true),
            (None, Some(dir)) if !dir.is_empty() => (PathBuf::from(dir), true),
            _ => (PathBuf::from("conf"), false),
        }
    }

    /// `config.yaml` of the configuration directory (none in an implicit `./conf` is fine),
    /// then the `-D` overrides.
    pub fn load(&self) -> anyhow::Result<Configuration> {
        let (dir, explicit) = self.dir();
        let file = dir.join("config.yaml");
        let mut config = if file.exists() {
            Configuration::from_yaml_file(&file)?
        } else if explicit {
            bail!("no configuration file '{}' (the configuration directory must hold config.yaml)", file.display());
        } else {
            Configuration::new()
        };
        for property in &self.dynamic {
            config.set_dynamic(property)?;
        }
        Ok(config)
    }

    /// The same options as flags for a child process.
    fn to_flags(&self) -> anyhow::Result<Vec<String>> {
        let mut flags = Vec::new();
        let (dir, explicit) = self.dir();
        if explicit || dir.join("config.yaml").exists() {
            let dir = std::path::absolute(&dir).with_context(|| format!("cannot resolve '{}'", dir.display()))?;
            flags.extend(["--config-dir".to_string(), dir.display().to_string()]);
        }
        for property in &self.dynamic {
            flags.extend(["-D".to_string(), property.clone()]);
        }
        Ok(flags)
    }
}

/// `brisk jobmanager`: runs a JobManager in the foreground until it is stopped.
pub fn jobmanager(args: &ConfigArgs, rpc_port: Option<u16>) -> anyhow::Result<()> {
    let mut config = args.load()?;
    if let Some(port) = rpc_port {
        config.set(brisk_cluster::config::RPC_PORT.key, port);
    }
    let jobmanager = JobManager::start(ClusterConfig::from_configuration(&config)?)?;
    println!("JobManager listening on {}", jobmanager.local_addr());
    if let Some(rest) = jobmanager.rest_address() {
        // Whoever started it may have read only the first line and closed the pipe.
        let _ = writeln!(std::io::stdout(), "REST API at http://{rest}/");
    }
    jobmanager.wait();
    Ok(())
}

/// `brisk taskmanager`: runs a TaskManager in the foreground, registered with the JobManager.
pub fn taskmanager(args: &ConfigArgs, jobmanager: Option<String>, slots: Option<usize>) -> anyhow::Result<()> {
    let mut config = args.load()?;
    if let Some(slots) = slots {
        config.set(brisk_cluster::config::SLOTS.key, slots);
    }
    let cluster = ClusterConfig::from_configuration(&config)?;
    let address = jobmanager.unwrap_or_else(|| cluster.jobmanager_address());
    let taskmanager = TaskManager::new(cluster, address)?;
    taskmanager.run()?;
    Ok(())
}

/// The pid and log files of the processes `brisk cluster start` started.
struct ClusterFiles {
    dir: PathBuf,
}

impl ClusterFiles {
    fn pid_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("brisk-{name}.pid"))
    }

    fn log_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("brisk-{name}.log"))
    }

    /// The pid files there, with the process each names (if it still runs a `brisk`).
    fn running(&self) -> anyhow::Result<Vec<(PathBuf, Option<u32>)>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot read '{}'", self.dir.display())),
        };
        let mut found = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            if !(name.starts_with("brisk-") && name.ends_with(".pid")) {
                continue;
            }
            let pid = std::fs::read_to_string(&path).ok().and_then(|t| t.trim().parse::<u32>().ok());
            found.push((path, pid.filter(|pid| is_brisk_process(*pid))));
        }
        found.sort();
        Ok(found)
    }

    /// Starts `brisk ARGS` in the background as `name`, its output appended to its log file.
    fn spawn(&self, name: &str, args: &[String]) -> anyhow::Result<u32> {
        let log_path = self.log_file(name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open log file '{}'", log_path.display()))?;
        let exe = std::env::current_exe().context("cannot find the brisk executable")?;
        let child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C in the terminal that started it does not stop it.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        let pid_path = self.pid_file(name);
        std::fs::write(&pid_path, format!("{}\n", child.id()))
            .with_context(|| format!("cannot write pid file '{}'", pid_path.display()))?;
        Ok(child.id())
    }
}

/// Whether `pid` is a running `brisk` process (not a recycled pid).
fn is_brisk_process(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| {
            let exe = cmdline.split(|b| *b == 0).next().unwrap_or_default();
            Path::new(&*String::from_utf8_lossy(exe)).file_name().is_some_and(|n| n == "brisk")
        })
        .unwrap_or(false)
}

/// The hosts in `workers` of the configuration directory (`localhost` without one).
fn workers(args: &ConfigArgs) -> anyhow::Result<Vec<String>> {
    let file = args.dir().0.join("workers");
    let hosts: Vec<String> = match std::fs::read_to_string(&file) {
        Ok(text) => text
            .lines()
            .map(|l| l.split('#').next().unwrap_or_default().trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec!["localhost".into()],
        Err(e) => return Err(e).with_context(|| format!("cannot read '{}'", file.display())),
    };
    if let Some(remote) = hosts.iter().find(|h| !matches!(h.as_str(), "localhost" | "127.0.0.1" | "::1")) {
        bail!(
            "'{}' lists the host '{remote}': brisk cluster start starts TaskManagers on this host only; on other hosts run \
             `brisk taskmanager --jobmanager HOST:PORT` there",
            file.display()
        );
    }
    Ok(hosts)
}

/// `brisk cluster start`: a JobManager and one TaskManager per line of `workers`, in the
/// background, with pid and log files in `log_dir`; returns once all registered.
pub fn start(args: &ConfigArgs, log_dir: &Path, timeout: Duration) -> anyhow::Result<()> {
    let config = ClusterConfig::from_configuration(&args.load()?)?;
    let hosts = workers(args)?;
    std::fs::create_dir_all(log_dir).with_context(|| format!("cannot create '{}'", log_dir.display()))?;
    let files = ClusterFiles { dir: log_dir.to_path_buf() };
    if let Some((path, Some(pid))) = files.running()?.into_iter().find(|(_, pid)| pid.is_some()) {
        bail!("a cluster is already running here (pid {pid} in '{}'); run `brisk cluster stop` first", path.display());
    }
    let flags = args.to_flags()?;
    let command = |role: &str| [vec![role.to_string()], flags.clone()].concat();
    let jobmanager_pid = files.spawn("jobmanager", &command("jobmanager"))?;
    for i in 0..hosts.len() {
        files.spawn(&format!("taskmanager-{i}"), &command("taskmanager"))?;
    }
    let address = config.jobmanager_address();
    let deadline = Instant::now() + timeout;
    let overview = loop {
        let seen = overview(&address, Duration::from_secs(1));
        match &seen {
            Ok(o) if o.taskmanagers.len() >= hosts.len() => break seen?,
            _ if Instant::now() >= deadline => {
                let why = seen.map_or_else(|e| format!("{e:#}"), |o| format!("{} registered", o.taskmanagers.len()));
                bail!(
                    "the cluster did not come up within {} s ({why}); see the logs in '{}'",
                    timeout.as_secs(),
                    log_dir.display()
                );
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    println!(
        "Started a JobManager at {address} (pid {jobmanager_pid}) and {} TaskManagers with {} slots; logs in {}",
        overview.taskmanagers.len(),
        overview.slots_total(),
        log_dir.display()
    );
    Ok(())
}

/// `brisk cluster stop`: stops the processes `brisk cluster start` started in `log_dir`.
pub fn stop(log_dir: &Path) -> anyhow::Result<()> {
    let files = ClusterFiles { dir: log_dir.to_path_buf() };
    let found = files.running()?;
    if found.is_empty() {
        bail!("no cluster to stop: no pid files in '{}'", log_dir.display());
    }
    // TaskManagers first, so none of them registers again with a JobManager going away.
    let mut ordered = found;
    ordered.sort_by_key(|(path, _)| path.to_string_lossy().contains("jobmanager"));
    for (path, pid) in ordered {
        let name = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        match pid {
            Some(pid) => {
                terminate(pid).with_context(|| format!("cannot stop {name} (pid {pid})"))?;
                println!("Stopped {name} (pid {pid})");
            }
            None => println!("{name} was not running"),
        }
        std::fs::remove_file(&path).with_context(|| format!("cannot remove '{}'", path.display()))?;
    }
    Ok(())
}

/// Sends SIGTERM, then SIGKILL if the process is still there after 10 s.
fn terminate(pid: u32) -> anyhow::Result<()> {
    for (signal, wait) in [("-TERM", Duration::from_secs(10)), ("-KILL", Duration::from_secs(5))] {
        let status = Command::new("kill").args([signal, &pid.to_string()]).stderr(Stdio::null()).status()?;
        if !status.success() && !is_brisk_process(pid) {
            return Ok(());
        }
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if has_ended(pid) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    bail!("the process did not end")
}

/// Whether process `pid` is gone (or dead, waiting for its parent to collect it).
fn has_ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            stat.rsplit_once(')').is_some_and(|(_, rest)| matches!(rest.trim_start().chars().next(), Some('Z' | 'X')))
        }
    }
}

/// The cluster's overview from the JobManager at `address`.
fn overview(address: &str, timeout: Duration) -> anyhow::Result<ClusterOverview> {
    let no_requests =
        |_: &RpcConnection, request: Request| Response::Error(format!("a client does not serve {request:?}"));
    let connection = RpcConnection::connect(address, Role::Client, no_requests, timeout)
        .with_context(|| format!("cannot reach the JobManager at {address}"))?;
    let answer = connection.call(Request::ClusterOverview, timeout);
    connection.close();
    match answer.with_context(|| format!("the JobManager at {address} did not answer"))? {
        Response::Overview(overview) => Ok(overview),
        other => bail!("unexpected answer from the JobManager at {address}: {other:?}"),
    }
}

/// The JobManager's address: given, or from the configuration.
pub fn jobmanager_address(args: &ConfigArgs, jobmanager: Option<String>) -> anyhow::Result<String> {
    Ok(match jobmanager {
        Some(address) => address,
        None => ClusterConfig::from_configuration(&args.load()?)?.jobmanager_address(),
    })
}

/// `brisk cluster status`: the JobManager and its TaskManagers.
pub fn status(args: &ConfigArgs, jobmanager: Option<String>, json: bool) -> anyhow::Result<()> {
    let address = jobmanager_address(args, jobmanager)?;
    let overview = overview(&address, Duration::from_secs(10))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&overview_json(&address, &overview))?);
        return Ok(());
    }
    println!("JobManager {} at {address} (Brisk {})", overview.jobmanager_id, overview.version);
    if let Some(rest) = &overview.rest_address {
        println!("REST API and metrics at http://{rest}/");
    }
    println!(
        "{} TaskManagers, {} slots, {} available",
        overview.taskmanagers.len(),
        overview.slots_total(),
        overview.slots_available()
    );
    for t in &overview.taskmanagers {
        println!(
            "  {}  host {} pid {}  {} slots ({} free)  last heartbeat {} ms ago",
            t.resource_id, t.host, t.pid, t.slots, t.free_slots, t.last_heartbeat_ms_ago
        );
    }
    Ok(())
}

/// The overview with Flink's `/overview` and `/taskmanagers` field names.
fn overview_json(address: &str, overview: &ClusterOverview) -> serde_json::Value {
    serde_json::json!({
        "jobmanager": { "id": overview.jobmanager_id, "address": address, "rest-address": overview.rest_address },
        "brisk-version": overview.version,
        "taskmanagers": overview.taskmanagers.len(),
        "slots-total": overview.slots_total(),
        "slots-available": overview.slots_available(),
        "taskmanagers-detail": overview.taskmanagers.iter().map(|t| serde_json::json!({
            "id": t.resource_id,
            "host": t.host,
            "pid": t.pid,
            "path": t.address,
            "slotsNumber": t.slots,
            "freeSlots": t.free_slots,
            "timeSinceLastHeartbeat": t.last_heartbeat_ms_ago,
        })).collect::<Vec<_>>(),
    })
}
