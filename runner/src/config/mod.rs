//! `runner.toml`: read raw, then resolved into a checked [`Config`].
//!
//! Every mistake is reported before anything runs, as a [`ConfigError`]
//! naming the file, the line and column, and the key to fix.

pub mod git;
pub mod history;
pub(crate) mod origin;
mod raw;
mod resolve;
pub mod server;
mod suggest;

use indexmap::IndexMap;
use protocol::Priority;
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use resolve::BUILTIN_TASK_TYPES;

/// The checked form of `runner.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// The directory relative paths start from.
    pub base_dir: PathBuf,
    pub defaults: Defaults,
    /// Declared plugins, plus the built-in ones under their own names.
    pub plugins: IndexMap<String, PluginDecl>,
    pub agents: IndexMap<String, AgentDecl>,
    /// `[server]`, with `token_file` resolved against `base_dir`.
    pub server: server::ServerSettings,
    /// `[git]`.
    pub git: git::GitSettings,
    /// `[history]`.
    pub history: history::HistorySettings,
    pub pipelines: IndexMap<String, Pipeline>,
    pub default_pipeline: Option<String>,
    /// `[watch]`: how `runner watch` watches.
    pub watch: WatchSettings,
    /// The text it was read from, for errors found after it was checked.
    source: Source,
}

/// `[watch]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSettings {
    /// Quiet time that closes a burst of changes.
    pub debounce: Duration,
    /// Extra ignore globs (gitignore syntax, relative to the project).
    pub ignore: Vec<String>,
    pub on_busy: OnBusy,
}

/// The debounce of `runner watch` unless `[watch] debounce` says otherwise.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(50);

impl Default for WatchSettings {
    fn default() -> Self {
        Self {
            debounce: DEFAULT_DEBOUNCE,
            ignore: Vec::new(),
            on_busy: OnBusy::Queue,
        }
    }
}

/// What a change seen while a run is going does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnBusy {
    /// One follow-up run once the current one ends, with every change seen.
    #[default]
    Queue,
    /// Stop the running run (and wait until its processes are gone), then
    /// start a new one with every change seen.
    Restart,
    /// Dropped.
    Ignore,
}

impl OnBusy {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "queue" => Some(Self::Queue),
            "restart" => Some(Self::Restart),
            "ignore" => Some(Self::Ignore),
            _ => None,
        }
    }
}

/// Default number of commands an agent runs at once: one, as the seeds ask.
pub const DEFAULT_AGENT_CONCURRENCY: usize = 1;
/// Default number of commands that may wait for an agent.
pub const DEFAULT_QUEUE_LIMIT: usize = 32;
/// How long a permission prompt waits for an answer by default.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct AgentDecl {
    pub name: String,
    /// The agent-plugin that drives the CLI.
    pub adapter: String,
    /// The CLI to run instead of the adapter's default.
    pub command: Option<String>,
    pub model: Option<String>,
    pub args: Vec<String>,
    pub concurrency: usize,
    pub queue_limit: usize,
    pub timeout: Duration,
    /// Bytes of terminal output one command may write.
    pub output: u64,
    pub working_dir: PathBuf,
    /// Adapter options: (key, JSON value).
    pub options: Vec<(String, String)>,
    pub env: Vec<(String, String)>,
    /// Where `adapter` is written.
    pub adapter_at: Location,
    /// What one command may spend (`max_cost_usd`, `max_tokens`).
    pub budget: Budget,
    /// How long a permission prompt waits for an answer before it is denied.
    pub approval_timeout: Duration,
}

/// A cap on what agent commands spend: dollars as the adapter reports
/// them, and tokens (input plus output). `None`: no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Budget {
    pub max_cost_usd: Option<f64>,
    pub max_tokens: Option<u64>,
}

impl Budget {
    /// The tighter of both caps, each on its own.
    pub fn and(self, other: Budget) -> Budget {
        fn min<T: PartialOrd>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(if b < a { b } else { a }),
                (a, b) => a.or(b),
            }
        }
        Budget {
            max_cost_usd: min(self.max_cost_usd, other.max_cost_usd),
            max_tokens: min(self.max_tokens, other.max_tokens),
        }
    }

    pub fn is_none(&self) -> bool {
        self.max_cost_usd.is_none() && self.max_tokens.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct Defaults {
    pub timeout: Duration,
    pub concurrency: usize,
    pub memory: u64,
    /// Bytes of output one task may write (both streams).
    pub output: u64,
    pub priority: Priority,
    pub state_dir: PathBuf,
    /// What all agent commands of one run may spend together.
    pub run_budget: Budget,
}

/// Five minutes, as the seeds ask.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Memory one plugin instance may use unless its limits say otherwise.
pub const DEFAULT_MEMORY: u64 = 256 << 20;
/// Output one task may write unless configured otherwise (GitLab Runner's default).
pub const DEFAULT_OUTPUT: u64 = 4 << 20;
/// The smallest output limit: enough for a line of why.
pub const MIN_OUTPUT: u64 = 1 << 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// Shipped inside the runner binary.
    Builtin(String),
    /// A component file.
    Path(PathBuf),
}

#[derive(Debug, Clone)]
pub struct PluginDecl {
    pub name: String,
    pub source: PluginSource,
    /// Lower-case hex, checked against the file before it is loaded.
    pub sha256: Option<String>,
    pub capabilities: Capabilities,
    pub memory: u64,
    pub timeout: Option<Duration>,
    /// Bytes of output one of its tasks may write; `None`: the default.
    pub output: Option<u64>,
    /// Where in `runner.toml` it was declared, for errors (`None` for implicit built-ins).
    pub declared_at: Option<Location>,
}

/// What a plugin may reach. Nothing else: no other files, no other
/// variables, no network.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    pub dirs: Vec<DirGrant>,
    /// Host variables passed through by name (absent ones stay absent).
    pub env: Vec<String>,
    pub vars: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    pub host: PathBuf,
    pub guest: String,
    pub writable: bool,
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub description: Option<String>,
    /// In an order where every batch comes after the batches it depends on.
    /// Shared, so a run holds its batches (and their tasks) without a copy.
    pub batches: Vec<Arc<Batch>>,
}

#[derive(Debug, Clone)]
pub struct Batch {
    pub id: String,
    pub name: String,
    /// The batch-type plugin's name.
    pub batch_type: String,
    pub depends_on: Vec<String>,
    /// The `with` table, as JSON.
    pub with: Value,
    pub tasks: Vec<Task>,
    /// Globs of the files it reads, relative to the project (`runner watch`);
    /// `None`: the whole project directory.
    pub inputs: Option<Vec<String>>,
    /// Where its `type` (or `id`, when it has no type) is written.
    pub type_at: Location,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub name: String,
    pub kind: TaskKind,
    /// The `config` table, as JSON.
    pub config: Value,
    pub timeout: Duration,
    /// Bytes of output it may write (both streams); agent tasks use their agent's.
    pub output: u64,
    pub priority: Priority,
    /// Where its `type` is written.
    pub type_at: Location,
    /// An agent task's own cap (`config.max_cost_usd`, `config.max_tokens`).
    pub budget: Budget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskKind {
    /// A host command, in its own process group.
    Exec,
    /// `type = "script"`: a WASI command component named by `config.component`.
    Script(String),
    /// `type = "<plugin>"`: a block type, or a command component run as a script.
    Plugin(String),
    /// `type = "agent"`: a prompt for the agent named by `config.agent`.
    Agent(String),
}

impl TaskKind {
    /// The `type` as written in `runner.toml`.
    pub fn type_name(&self) -> &str {
        match self {
            Self::Exec => "exec",
            Self::Script(_) => "script",
            Self::Plugin(plugin) => plugin,
            Self::Agent(_) => "agent",
        }
    }
}

impl Config {
    /// The plugins a pipeline uses: its batch types and its tasks' plugins.
    pub fn plugins_used_by(&self, pipeline: &Pipeline) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for batch in &pipeline.batches {
            names.push(batch.batch_type.clone());
            for task in &batch.tasks {
                if let TaskKind::Script(p) | TaskKind::Plugin(p) = &task.kind {
                    names.push(p.clone());
                }
            }
        }
        names.extend(self.agents.values().map(|a| a.adapter.clone()));
        names.sort();
        names.dedup();
        names
    }

    /// An error about something at `location` in this file, showing the
    /// line as it was read (the file may have changed since).
    pub fn error_at(&self, location: Location, key: String, message: String) -> ConfigError {
        self.source
            .error_at(&self.path, location, Some(key), message)
    }

    /// What tells this project apart from any other on the machine: the
    /// absolute path of its `runner.toml` (as given when it cannot be resolved).
    pub fn project_id(&self) -> String {
        std::fs::canonicalize(&self.path)
            .unwrap_or_else(|_| self.path.clone())
            .display()
            .to_string()
    }

    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            file: path.to_path_buf(),
            location: None,
            key: None,
            message: format!("cannot read the file: {err}"),
            source_line: None,
        })?;
        Self::parse(path, &text)
    }

    /// Checks `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        resolve::resolve(path, text)
    }

    /// The pipeline to run: the one named, else `default_pipeline`, else the
    /// one called `default`, else the only one.
    pub fn pipeline(&self, name: Option<&str>) -> Result<&Pipeline, PipelineError> {
        let names = || {
            self.pipelines
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(name) = name {
            return self
                .pipelines
                .get(name)
                .ok_or_else(|| PipelineError::Unknown {
                    file: self.path.clone(),
                    name: name.to_string(),
                    known: names(),
                });
        }
        if let Some(name) = &self.default_pipeline {
            return Ok(&self.pipelines[name]);
        }
        if let Some(pipeline) = self.pipelines.get("default") {
            return Ok(pipeline);
        }
        match self.pipelines.len() {
            1 => Ok(&self.pipelines[0]),
            0 => Err(PipelineError::NoneDeclared {
                file: self.path.clone(),
            }),
            _ => Err(PipelineError::NoDefault {
                file: self.path.clone(),
                known: names(),
            }),
        }
    }

    /// Where the cache and state live.
    pub fn state_dir(&self) -> &Path {
        &self.defaults.state_dir
    }
}

/// Why [`Config::pipeline`] found no pipeline to run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    #[error("{}: no pipeline `{name}`; pipelines: {known}", file.display())]
    Unknown {
        file: PathBuf,
        name: String,
        /// The declared ones, comma-separated.
        known: String,
    },
    #[error("{}: no pipelines are declared", file.display())]
    NoneDeclared { file: PathBuf },
    #[error("{}: several pipelines and no `default_pipeline`; name one of: {known}", file.display())]
    NoDefault { file: PathBuf, known: String },
}

/// For callers that still pass errors on as text (`service`, `watch`).
impl From<PipelineError> for String {
    fn from(err: PipelineError) -> Self {
        err.to_string()
    }
}

/// A value of `[server]`, `[git]` or `[history]` that the section's own
/// check refuses: the key within the section and why. The resolver turns it
/// into a [`ConfigError`] pointing at the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct InvalidSetting {
    /// The key inside its section, for example `client_queue`.
    pub key: &'static str,
    pub message: String,
}

impl InvalidSetting {
    pub fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self {
            key,
            message: message.into(),
        }
    }
}

/// A line and column in `runner.toml`, both from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// The text of a `runner.toml`, to point at a place in it. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Source {
    text: std::sync::Arc<str>,
    /// Where each line starts, so a location is a binary search and not a
    /// scan from the top (a config of 10,000 tasks asks for 20,000).
    line_starts: std::sync::Arc<[usize]>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Source({} bytes)", self.text.len())
    }
}

impl Source {
    pub(crate) fn new(text: &str) -> Self {
        Self {
            text: text.into(),
            line_starts: std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        }
    }

    /// The line and column of byte `offset` (the end when past it).
    pub(crate) fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        // The number of line starts at or before `offset` is its line.
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        let column = self.text[line_start..offset].chars().count() + 1;
        Location { line, column }
    }

    /// An error at `location` in `file`, with the line it points at.
    pub(crate) fn error_at(
        &self,
        file: &Path,
        location: Location,
        key: Option<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let source_line = self
            .line_starts
            .get(location.line.wrapping_sub(1))
            .map(|&start| self.text[start..].lines().next().unwrap_or("").to_string());
        ConfigError {
            file: file.to_path_buf(),
            location: Some(location),
            key,
            message: message.into(),
            source_line,
        }
    }
}

/// A mistake in `runner.toml`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub location: Option<Location>,
    /// The dotted key, for example `pipelines.default.batches[1].depends_on[0]`.
    pub key: Option<String>,
    pub message: String,
    /// The offending line, shown under the message.
    pub source_line: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(Location { line, column }) = self.location {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        write!(f, "{}", self.message)?;
        if let (Some(Location { line, column }), Some(text)) = (self.location, &self.source_line) {
            let gutter = line.to_string().len();
            write!(
                f,
                "\n{:gutter$} |\n{line} | {text}\n{:gutter$} | {:>column$}",
                "", "", "^"
            )?;
        }
        Ok(())
    }
}
