//! `StreamExecutionEnvironment`: where a job is declared, configured and executed.

use crate::datastream::DataStream;
use crate::options;
use crate::sources::{CollectionSource, FileSource, NumberSequenceSource, SocketTextStreamSource};
use brisk_core::{ConfigError, Configuration, Data};
use brisk_runtime::JobOptions;
use brisk_runtime::checkpoint::{CheckpointConfig, SnapshotLocation};
use brisk_runtime::executor::Executor;
use brisk_runtime::failure::FailureInjector;
use brisk_runtime::graph::job_graph::{GraphDefaults, JobGraph};
use brisk_runtime::graph::stream_graph::{NodeKind, StreamGraph, StreamNode, source_factory, type_ops};
use brisk_runtime::jobmaster::restart::RestartStrategy;
use brisk_runtime::source::Source;
use brisk_runtime::source::watermark::WatermarkStrategy;
use brisk_runtime::taskexecutor::time::{Clock, SystemClock};
use brisk_runtime::{ExecutionMode, JobClient, JobError, JobExecutionResult};
use brisk_state::StateBackendConfig;
use std::cell::RefCell;
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// How a job executes (Flink's `RuntimeExecutionMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeExecutionMode {
    /// Continuous processing with incremental results.
    Streaming,
    /// Bounded inputs, final results only.
    Batch,
    /// Batch if every source is bounded, else streaming.
    Automatic,
}

impl FromStr for RuntimeExecutionMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "streaming" => Ok(RuntimeExecutionMode::Streaming),
            "batch" => Ok(RuntimeExecutionMode::Batch),
            "automatic" => Ok(RuntimeExecutionMode::Automatic),
            other => Err(format!("unknown execution mode '{other}' (expected streaming, batch or automatic)")),
        }
    }
}

impl fmt::Display for RuntimeExecutionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuntimeExecutionMode::Streaming => "STREAMING",
            RuntimeExecutionMode::Batch => "BATCH",
            RuntimeExecutionMode::Automatic => "AUTOMATIC",
        })
    }
}

pub(crate) struct EnvState {
    pub graph: StreamGraph,
    pub parallelism: usize,
    pub max_parallelism: Option<usize>,
    pub runtime_mode: RuntimeExecutionMode,
    pub buffer_timeout: Option<Duration>,
    pub chaining_enabled: bool,
    pub buffer_bytes: usize,
    pub buffers_per_channel: usize,
    pub progress_interval: Option<Duration>,
    pub auto_watermark_interval: Duration,
    pub task_slots: Option<usize>,
    pub task_managers: usize,
    pub state_backend: StateBackendConfig,
    pub config: Configuration,
    pub clock: Arc<dyn Clock>,
    pub checkpoint: CheckpointConfig,
    /// Set explicitly; else derived from the configuration when the job runs.
    pub restart_strategy: Option<RestartStrategy>,
    pub restore_from: Option<SnapshotLocation>,
    pub allow_non_restored_state: bool,
    pub failures: FailureInjector,
    /// Mistakes found while the job was declared; `execute` reports the first.
    pub errors: Vec<String>,
}

/// The context in which a streaming program is declared and executed (Flink's
/// `StreamExecutionEnvironment`). Cheap to clone: clones share the same job.
#[derive(Clone)]
pub struct StreamExecutionEnvironment {
    pub(crate) state: Rc<RefCell<EnvState>>,
}

impl StreamExecutionEnvironment {
    /// A local environment with the default parallelism of the number of CPU cores, configured
    /// from `$BRISK_CONF_DIR/config.yaml` when that variable is set.
    pub fn get_execution_environment() -> Self {
        let env = Self::with_parallelism(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        if let Ok(dir) = std::env::var("BRISK_CONF_DIR") {
            let path = PathBuf::from(dir).join("config.yaml");
            match Configuration::from_yaml_file(&path) {
                Ok(config) => {
                    if let Err(e) = env.configure(&config) {
                        env.record_error(e.to_string());
                    }
                }
                Err(e) => env.record_error(e.to_string()),
            }
        }
        env
    }

    /// A local environment with the given default parallelism.
    pub fn create_local_environment(parallelism: usize) -> Self {
        let env = Self::with_parallelism(parallelism);
        if parallelism == 0 {
            env.record_error("parallelism must be at least 1, not 0".into());
        }
        env
    }

    /// A local environment configured from `config` (unset options keep their defaults).
    pub fn from_configuration(config: &Configuration) -> Result<Self, ConfigError> {
        let env = Self::with_parallelism(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        env.configure(config)?;
        Ok(env)
    }

    fn with_parallelism(parallelism: usize) -> Self {
        let env = Self::unconfigured(parallelism);
        // In a cluster, the job's configuration (`brisk run -p`, `-D`) is where every
        // environment of the program starts; the program's own settings come on top.
        match Executor::job_configuration() {
            Ok(None) => {}
            Ok(Some(pairs)) => {
                let mut config = Configuration::new();
                for (key, value) in pairs {
                    config.set(key, value);
                }
                if let Err(e) = env.configure(&config) {
                    env.record_error(format!("invalid job configuration: {e}"));
                }
            }
            Err(e) => env.record_error(e),
        }
        env
    }

    fn unconfigured(parallelism: usize) -> Self {
        StreamExecutionEnvironment {
            state: Rc::new(RefCell::new(EnvState {
                graph: StreamGraph::new(),
                parallelism: parallelism.max(1),
                max_parallelism: None,
                runtime_mode: RuntimeExecutionMode::Streaming,
                buffer_timeout: Some(options::BUFFER_TIMEOUT.default),
                chaining_enabled: true,
                buffer_bytes: options::SEGMENT_SIZE.default,
                buffers_per_channel: options::BUFFERS_PER_CHANNEL.default,
                progress_interval: Some(options::PROGRESS_INTERVAL.default),
                auto_watermark_interval: options::AUTO_WATERMARK_INTERVAL.default,
                task_slots: None,
                task_managers: 1,
                state_backend: StateBackendConfig::default(),
                config: Configuration::new(),
                clock: Arc::new(SystemClock),
                checkpoint: CheckpointConfig::default(),
                restart_strategy: None,
                restore_from: None,
                allow_non_restored_state: false,
                failures: FailureInjector::default(),
                errors: Vec::new(),
            })),
        }
    }

    /// Applies the options set in `config` (see [`crate::options`]).
    pub fn configure(&self, config: &Configuration) -> Result<&Self, ConfigError> {
        let invalid = |key: &str, value: String, reason: &str| ConfigError::InvalidValue {
            key: key.to_string(),
            value,
            reason: reason.to_string(),
        };
        if let Some(p) = config.get_optional::<usize>(options::PARALLELISM.key)? {
            if p == 0 {
                return Err(invalid(options::PARALLELISM.key, p.to_string(), "must be at least 1"));
            }
            self.state.borrow_mut().parallelism = p;
        }
        if let Some(p) = config.get_optional::<usize>(options::MAX_PARALLELISM.key)? {
            if p == 0 || p > brisk_core::MAX_MAX_PARALLELISM {
                return Err(invalid(options::MAX_PARALLELISM.key, p.to_string(), "must be between 1 and 32768"));
            }
            self.state.borrow_mut().max_parallelism = Some(p);
        }
        if let Some(mode) = config.get_raw(options::RUNTIME_MODE.key) {
            let mode = mode.parse().map_err(|e: String| invalid(options::RUNTIME_MODE.key, mode.to_string(), &e))?;
            self.state.borrow_mut().runtime_mode = mode;
        }
        if let Some(timeout) = config.get_optional::<Duration>(options::BUFFER_TIMEOUT.key)? {
            self.state.borrow_mut().buffer_timeout = Some(timeout);
        }
        if let Some(enabled) = config.get_optional::<bool>(options::CHAINING.key)? {
            self.state.borrow_mut().chaining_enabled = enabled;
        }
        if let Some(size) = config.get_raw(options::SEGMENT_SIZE.key) {
            let bytes = brisk_core::config::parse_memory_size(size)
                .map_err(|e| invalid(options::SEGMENT_SIZE.key, size.to_string(), &e))?;
            self.state.borrow_mut().buffer_bytes = bytes.max(1);
        }
        if let Some(interval) = config.get_optional::<Duration>(options::PROGRESS_INTERVAL.key)? {
            self.state.borrow_mut().progress_interval = (!interval.is_zero()).then_some(interval);
        }
        if let Some(interval) = config.get_optional::<Duration>(options::AUTO_WATERMARK_INTERVAL.key)? {
            self.set_auto_watermark_interval(interval);
        }
        if let Some(slots) = config.get_optional::<usize>(options::TASK_SLOTS.key)? {
            if slots == 0 {
                return Err(invalid(options::TASK_SLOTS.key, slots.to_string(), "must be at least 1"));
            }
            self.state.borrow_mut().task_slots = Some(slots);
        }
        if let Some(n) = config.get_optional::<usize>(options::TASK_MANAGERS.key)? {
            if n == 0 {
                return Err(invalid(options::TASK_MANAGERS.key, n.to_string(), "must be at least 1"));
            }
            self.state.borrow_mut().task_managers = n;
        }
        if let Some(n) = config.get_optional::<usize>(options::BUFFERS_PER_CHANNEL.key)? {
            if n == 0 {
                return Err(invalid(options::BUFFERS_PER_CHANNEL.key, n.to_string(), "must be at least 1"));
            }
            self.state.borrow_mut().buffers_per_channel = n;
        }
        let backend =
            StateBackendConfig::from_configuration(config).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.state.borrow_mut().state_backend = backend;
        self.state.borrow_mut().config.merge(config);
        let merged = self.state.borrow().config.clone();
        let checkpoint = CheckpointConfig::from_configuration(&merged)?;
        RestartStrategy::from_configuration(&merged, checkpoint.is_enabled())?;
        let mut state = self.state.borrow_mut();
        state.checkpoint = checkpoint;
        if let Some(path) = merged.get_raw(options::SAVEPOINT_PATH.key).filter(|p| !p.is_empty()) {
            state.restore_from =
                Some(brisk_runtime::checkpoint::config::parse_directory(options::SAVEPOINT_PATH.key, path)?);
        }
        if let Some(allow) = merged.get_optional::<bool>(options::SAVEPOINT_IGNORE_UNCLAIMED.key)? {
            state.allow_non_restored_state = allow;
        }
        drop(state);
        Ok(self)
    }

    /// Takes a checkpoint every `interval` (Flink's `enableCheckpointing`).
    pub fn enable_checkpointing(&self, interval: Duration) -> &Self {
        self.state.borrow_mut().checkpoint.interval = (!interval.is_zero()).then_some(interval);
        self
    }

    /// The checkpointing configuration.
    pub fn get_checkpoint_config(&self) -> CheckpointConfig {
        self.state.borrow().checkpoint.clone()
    }

    /// Replaces the checkpointing configuration.
    pub fn set_checkpoint_config(&self, config: CheckpointConfig) -> &Self {
        self.state.borrow_mut().checkpoint = config;
        self
    }

    /// How the job restarts after failures (default: exponential delay with checkpointing,
    /// none without).
    pub fn set_restart_strategy(&self, strategy: RestartStrategy) -> &Self {
        self.state.borrow_mut().restart_strategy = Some(strategy);
        self
    }

    /// Starts the job from a savepoint or retained checkpoint; with `allow_non_restored_state`,
    /// state of operators the job no longer has is dropped instead of failing the start.
    pub fn set_savepoint_restore(&self, path: impl Into<SnapshotLocation>, allow_non_restored_state: bool) -> &Self {
        let mut state = self.state.borrow_mut();
        state.restore_from = Some(path.into());
        state.allow_non_restored_state = allow_non_restored_state;
        drop(state);
        self
    }

    /// Injects planned failures (recovery tests, `--inject-failures`).
    pub fn set_failure_injector(&self, failures: FailureInjector) -> &Self {
        self.state.borrow_mut().failures = failures;
        self
    }

    /// Chooses where keyed state lives: `hashmap` (memory) or `rocksdb` (local disk).
    pub fn set_state_backend(&self, backend: StateBackendConfig) -> &Self {
        self.state.borrow_mut().state_backend = backend;
        self
    }

    /// The configured state backend.
    pub fn get_state_backend(&self) -> StateBackendConfig {
        self.state.borrow().state_backend.clone()
    }

    /// The configuration given to operators.
    pub fn get_configuration(&self) -> Configuration {
        self.state.borrow().config.clone()
    }

    /// Sets the default parallelism of operators.
    pub fn set_parallelism(&self, parallelism: usize) -> &Self {
        if parallelism == 0 {
            self.record_error("parallelism must be at least 1, not 0".into());
        } else {
            self.state.borrow_mut().parallelism = parallelism;
        }
        self
    }

    /// The default parallelism.
    pub fn get_parallelism(&self) -> usize {
        self.state.borrow().parallelism
    }

    /// Sets the number of key groups: the upper bound for rescaling keyed state.
    pub fn set_max_parallelism(&self, max_parallelism: usize) -> &Self {
        if max_parallelism == 0 || max_parallelism > brisk_core::MAX_MAX_PARALLELISM {
            self.record_error(format!("max parallelism must be between 1 and 32768, not {max_parallelism}"));
        } else {
            self.state.borrow_mut().max_parallelism = Some(max_parallelism);
        }
        self
    }

    /// Streaming, batch or automatic execution.
    pub fn set_runtime_mode(&self, mode: RuntimeExecutionMode) -> &Self {
        self.state.borrow_mut().runtime_mode = mode;
        self
    }

    /// Longest time a record may wait in a partly filled network buffer (Flink's
    /// `setBufferTimeout`); zero sends every record at once. Buffers are also sent whenever a
    /// task runs out of input.
    pub fn set_buffer_timeout(&self, timeout: Duration) -> &Self {
        self.state.borrow_mut().buffer_timeout = Some(timeout);
        self
    }

    /// Sends only full buffers while a task is busy (Flink's buffer timeout of -1).
    pub fn disable_buffer_timeout(&self) -> &Self {
        self.state.borrow_mut().buffer_timeout = None;
        self
    }

    /// How often periodic watermarks are generated (Flink's `setAutoWatermarkInterval`, 200 ms
    /// by default).
    pub fn set_auto_watermark_interval(&self, interval: Duration) -> &Self {
        self.state.borrow_mut().auto_watermark_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Runs every operator in its own task (no chaining).
    pub fn disable_operator_chaining(&self) -> &Self {
        self.state.borrow_mut().chaining_enabled = false;
        self
    }

    /// The processing-time clock of the job's tasks (a manual clock in tests).
    pub fn set_clock(&self, clock: Arc<dyn Clock>) -> &Self {
        self.state.borrow_mut().clock = clock;
        self
    }

    /// A source over the values of a vector (parallelism 1).
    pub fn from_collection<T: Data>(&self, values: Vec<T>) -> DataStream<T> {
        self.add_source_node(CollectionSource::new(values), None, "Collection Source", Some(1))
    }

    /// A source over the values of an iterator (parallelism 1).
    pub fn from_iter<T: Data>(&self, values: impl IntoIterator<Item = T>) -> DataStream<T> {
        self.from_collection(values.into_iter().collect())
    }

    /// The numbers `from..=to`, split over the subtasks.
    pub fn from_sequence(&self, from: i64, to: i64) -> DataStream<i64> {
        self.add_source_node(NumberSequenceSource::new(from, to), None, "Sequence Source", None)
    }

    /// The lines of a text file or of all files in a directory (split for parallel reading).
    pub fn read_text_file(&self, path: impl Into<PathBuf>) -> DataStream<String> {
        self.from_source(FileSource::for_paths([path.into()]), WatermarkStrategy::no_watermarks(), "FileSource")
    }

    /// Lines from a TCP server at `host:port`; ends when the server closes the connection.
    pub fn socket_text_stream(&self, host: &str, port: u16) -> DataStream<String> {
        self.add_source_node(SocketTextStreamSource::new(host, port), None, "Socket Stream", Some(1))
    }

    /// A stream from any [`Source`], with timestamps and watermarks generated per split by
    /// `strategy` (Flink's `fromSource`).
    pub fn from_source<T: Data, S: Source<T>>(
        &self,
        source: S,
        strategy: WatermarkStrategy<T>,
        name: &str,
    ) -> DataStream<T> {
        self.add_source_node(source, Some(strategy), name, None)
    }

    fn add_source_node<T: Data, S: Source<T>>(
        &self,
        source: S,
        strategy: Option<WatermarkStrategy<T>>,
        name: &str,
        max_parallelism: Option<usize>,
    ) -> DataStream<T> {
        let node = {
            let mut state = self.state.borrow_mut();
            let factory = source_factory::<T, S>(source, strategy);
            let node = state.graph.add_node(format!("Source: {name}"), NodeKind::Source(factory), type_ops::<T>());
            state.graph.nodes[node].max_allowed_parallelism = max_parallelism;
            node
        };
        DataStream::from_node(self.clone(), node)
    }

    pub(crate) fn record_error(&self, message: String) {
        self.state.borrow_mut().errors.push(message);
    }

    pub(crate) fn with_node<R>(&self, node: usize, f: impl FnOnce(&mut StreamNode) -> R) -> R {
        f(&mut self.state.borrow_mut().graph.nodes[node])
    }

    fn defaults(state: &EnvState, job_name: &str) -> GraphDefaults {
        GraphDefaults {
            job_name: job_name.to_string(),
            parallelism: state.parallelism,
            max_parallelism: state.max_parallelism,
            chaining_enabled: state.chaining_enabled,
        }
    }

    /// The job as it would run: vertices (chains) and exchanges.
    pub fn get_execution_plan(&self) -> Result<String, JobError> {
        let state = self.state.borrow();
        let job = JobGraph::build(&state.graph, &Self::defaults(&state, "plan"))?;
        Ok(job.description.to_plan_string())
    }

    /// Takes the declared job, leaving the environment empty for the next one.
    fn take_job(&self, job_name: &str) -> Result<(StreamGraph, JobOptions), JobError> {
        let mut state = self.state.borrow_mut();
        if let Some(first) = state.errors.first() {
            return Err(JobError::InvalidJob(first.clone()));
        }
        let all_bounded = state.graph.nodes.iter().all(|n| match &n.kind {
            NodeKind::Source(f) => f.is_bounded(),
            _ => true,
        });
        let execution_mode = match state.runtime_mode {
            RuntimeExecutionMode::Streaming => ExecutionMode::Streaming,
            RuntimeExecutionMode::Batch if !all_bounded => {
                return Err(JobError::InvalidJob(
                    "an unbounded source cannot run in BATCH execution mode; use STREAMING or AUTOMATIC".into(),
                ));
            }
            RuntimeExecutionMode::Batch => ExecutionMode::Batch,
            RuntimeExecutionMode::Automatic if all_bounded => ExecutionMode::Batch,
            RuntimeExecutionMode::Automatic => ExecutionMode::Streaming,
        };
        let mut options = JobOptions::new(job_name);
        options.defaults = Self::defaults(&state, job_name);
        options.execution_mode = execution_mode;
        options.buffer_timeout = state.buffer_timeout;
        // A zero timeout means "send every record at once": one record per buffer.
        options.buffer_bytes = if state.buffer_timeout == Some(Duration::ZERO) { 1 } else { state.buffer_bytes };
        options.buffers_per_channel = state.buffers_per_channel;
        options.progress_interval = state.progress_interval;
        options.auto_watermark_interval = state.auto_watermark_interval;
        options.task_slots = state.task_slots;
        options.task_managers = state.task_managers;
        options.state_backend = state.state_backend.clone();
        options.config = Arc::new(state.config.clone());
        options.clock = state.clock.clone();
        options.checkpoint = state.checkpoint.clone();
        options.restart_strategy = match &state.restart_strategy {
            Some(strategy) => strategy.clone(),
            None => RestartStrategy::from_configuration(&state.config, state.checkpoint.is_enabled())
                .map_err(|e| JobError::InvalidJob(e.to_string()))?,
        };
        options.restore_from = state.restore_from.clone();
        options.allow_non_restored_state = state.allow_non_restored_state;
        options.failures = state.failures.clone();
        Ok((std::mem::take(&mut state.graph), options))
    }

    /// Runs the job and waits for it to finish.
    pub fn execute(&self, job_name: &str) -> Result<JobExecutionResult, JobError> {
        self.execute_async(job_name)?.wait()
    }

    /// Starts the job and returns at once with a client to wait for or cancel it.
    /// A job run in this process's mini cluster is served over REST when `rest.port` is set.
    pub fn execute_async(&self, job_name: &str) -> Result<JobClient, JobError> {
        let (graph, options) = self.take_job(job_name)?;
        let executor = Executor::from_environment()?;
        let config = options.config.clone();
        let rest = match executor {
            Executor::Local => {
                brisk_rest::serve_local_job(&config, options.task_managers).map_err(JobError::InvalidJob)?
            }
            _ => None,
        };
        // Checked before the job starts: a bad setting must not leave it running.
        let coordinator = match executor {
            Executor::Coordinator { .. } => {
                Some(brisk_rest::RestSettings::from_configuration(&config, 0).map_err(JobError::InvalidJob)?)
            }
            _ => None,
        };
        let client = executor.execute(graph, options)?;
        if let Some(server) = rest {
            server.add_job(client.controller());
        }
        if let Some(settings) = coordinator {
            // The JobManager's REST server forwards this job's requests here.
            client.serve_rest(brisk_rest::job_handler(client.controller(), settings));
        }
        Ok(client)
    }
}
