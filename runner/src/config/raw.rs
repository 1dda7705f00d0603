//! The raw `runner.toml` model: what serde reads, before any checking.
//!
//! Only this module and [`super::resolve`] see these types; the rest of the
//! runner works with the resolved [`super::Config`].

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The format version. Example: `version = 1`
    pub version: Spanned<i64>,
    /// The pipeline `runner run` runs when none is named.
    /// Example: `default_pipeline = "ci"`
    pub default_pipeline: Option<Spanned<String>>,
    /// Example: `[defaults]` with `timeout = "5m"`, `concurrency = 4`
    #[serde(default)]
    pub defaults: RawDefaults,
    /// Example: `[plugins.hash]` with `builtin = "checksum"`
    #[serde(default)]
    pub plugins: IndexMap<String, RawPlugin>,
    /// Example: `[agents.reviewer]` with `adapter = "claude"`
    #[serde(default)]
    pub agents: IndexMap<String, RawAgent>,
    /// The WebSocket server of `runner serve`. Example: `[server]` with `listen = "127.0.0.1:7420"`
    #[serde(default)]
    pub server: crate::config::server::ServerSettings,
    /// A branch and worktree per batch. Example: `[git]` with `merge = "ff"`
    #[serde(default)]
    pub git: crate::config::git::GitSettings,
    /// What the history keeps. Example: `[history]` with `log_retention_days = 14`
    #[serde(default)]
    pub history: crate::config::history::HistorySettings,
    /// Example: `[[pipelines.default.batches]]`
    #[serde(default)]
    pub pipelines: IndexMap<String, RawPipeline>,
    /// How `runner watch` watches. Example: `[watch]` with `debounce = "100ms"`
    #[serde(default)]
    pub watch: RawWatch,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatch {
    /// Quiet time that closes a burst of changes. Example: `debounce = "50ms"`
    pub debounce: Option<Spanned<toml::Value>>,
    /// More paths to ignore, gitignore syntax. Example: `ignore = ["dist/", "*.log"]`
    #[serde(default)]
    pub ignore: Vec<Spanned<String>>,
    /// A change seen while a run is going: `queue` (default) or `ignore`.
    /// Example: `on_busy = "ignore"`
    pub on_busy: Option<Spanned<String>>,
}

/// Where each key of `[server]`, `[git]` and `[history]` is written, read
/// beside [`RawConfig`] (whose sections are their owners' own types) so that
/// a value those sections refuse is reported at its line and column.
#[derive(Debug, Default, Deserialize)]
pub struct RawSectionSpans {
    #[serde(default)]
    pub server: IndexMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    pub git: IndexMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    pub history: IndexMap<String, Spanned<toml::Value>>,
}

/// A coding agent: an adapter plugin plus the CLI it drives.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    /// A built-in adapter (`claude`, `gemini`, `codex`) or an agent-plugin name.
    /// Example: `adapter = "claude"`
    pub adapter: Spanned<String>,
    /// The CLI to run instead of the adapter's default; a path (relative to
    /// `runner.toml`) or a name on `PATH`. Example: `command = "/usr/local/bin/claude"`
    pub command: Option<Spanned<String>>,
    /// Example: `model = "claude-sonnet-4-5"`
    pub model: Option<String>,
    /// Extra CLI arguments. Example: `args = ["--max-turns", "5"]`
    #[serde(default)]
    pub args: Vec<String>,
    /// Commands it runs at once. Example: `concurrency = 1`
    pub concurrency: Option<Spanned<i64>>,
    /// Commands that may wait; more are refused. Example: `queue_limit = 16`
    pub queue_limit: Option<Spanned<i64>>,
    /// Per-command timeout. Example: `timeout = "10m"`
    pub timeout: Option<Spanned<toml::Value>>,
    /// Terminal output one command may write. Example: `output = "8MiB"`
    pub output: Option<Spanned<String>>,
    /// Where the CLI runs, relative to `runner.toml`. Example: `working_dir = "."`
    pub working_dir: Option<Spanned<String>>,
    /// Adapter options. Example: `options = { skip_permissions = true }`
    #[serde(default)]
    pub options: IndexMap<String, toml::Value>,
    /// Variables set for the CLI. Example: `env = { CLAUDE_CONFIG_DIR = ".claude" }`
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Dollars one command may spend, as the adapter reports them; past it
    /// the command is stopped and fails. Example: `max_cost_usd = 1.5`
    pub max_cost_usd: Option<Spanned<f64>>,
    /// Tokens (input plus output) one command may use. Example: `max_tokens = 200000`
    pub max_tokens: Option<Spanned<i64>>,
    /// How long a permission prompt waits for someone to answer it before it
    /// is denied (default 5m). Example: `approval_timeout = "2m"`
    pub approval_timeout: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// Per-task timeout. Example: `timeout = "5m"`
    pub timeout: Option<Spanned<toml::Value>>,
    /// How many tasks run at once. Example: `concurrency = 4`
    pub concurrency: Option<Spanned<i64>>,
    /// Memory limit of one plugin instance. Example: `memory = "256MiB"`
    pub memory: Option<Spanned<String>>,
    /// Output a task (exec, script, plugin, agent command) may write, both
    /// streams together; the rest is dropped (default 4MiB). Example: `output = "8MiB"`
    pub output: Option<Spanned<String>>,
    /// Priority of tasks that give none. Example: `priority = "normal"`
    pub priority: Option<Spanned<String>>,
    /// Where the runner keeps its cache and state. Example: `state_dir = ".runner"`
    pub state_dir: Option<String>,
    /// Dollars all agent commands of one run may spend together; past it the
    /// running ones are stopped and nothing more starts. Example: `max_cost_usd = 10`
    pub max_cost_usd: Option<Spanned<f64>>,
    /// Tokens all agent commands of one run may use together. Example: `max_tokens = 1000000`
    pub max_tokens: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlugin {
    /// A component file, relative to `runner.toml`. Example: `path = "build/my_block.wasm"`
    pub path: Option<Spanned<String>>,
    /// A plugin shipped with the runner. Example: `builtin = "checksum"`
    pub builtin: Option<Spanned<String>>,
    /// Checked before loading. Example: `sha256 = "9f86d08..."`
    pub sha256: Option<Spanned<String>>,
    /// What the plugin may reach. Example: `[plugins.hash.capabilities]`
    #[serde(default)]
    pub capabilities: RawCapabilities,
    /// Example: `[plugins.hash.limits]` with `memory = "64MiB"`
    #[serde(default)]
    pub limits: RawLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapabilities {
    /// Example: `dirs = [{ host = "data", guest = "/data", access = "read-only" }]`
    #[serde(default)]
    pub dirs: Vec<Spanned<RawDir>>,
    /// Host variables passed through by name. Example: `env = ["LANG"]`
    #[serde(default)]
    pub env: Vec<Spanned<String>>,
    /// Variables with fixed values. Example: `vars = { MODE = "ci" }`
    #[serde(default)]
    pub vars: IndexMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDir {
    /// Host directory, relative to `runner.toml`. Example: `host = "examples/data"`
    pub host: String,
    /// Where the plugin sees it. Example: `guest = "/data"`
    pub guest: Option<String>,
    /// `read-only` (default) or `read-write`.
    pub access: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Example: `memory = "64MiB"`
    pub memory: Option<Spanned<String>>,
    /// Default timeout of this plugin's tasks. Example: `timeout = "30s"`
    pub timeout: Option<Spanned<toml::Value>>,
    /// Output one of this plugin's tasks may write. Example: `output = "1MiB"`
    pub output: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// Example: `description = "Build and check"`
    pub description: Option<String>,
    /// Example: `[[pipelines.default.batches]]`
    #[serde(default)]
    pub batches: Vec<RawBatch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    /// Unique in the pipeline. Example: `id = "build"`
    pub id: Spanned<String>,
    /// Example: `name = "Build everything"`
    pub name: Option<String>,
    /// The batch type. Example: `type = "parallel"` (default `sequential`)
    #[serde(rename = "type")]
    pub batch_type: Option<Spanned<String>>,
    /// Example: `depends_on = ["prepare"]`
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    /// The batch type's settings. Example: `with = { fail_fast = true }`
    pub with: Option<toml::Value>,
    /// Example: `[[pipelines.default.batches.tasks]]`
    #[serde(default)]
    pub tasks: Vec<RawTask>,
    /// The files it reads, globs relative to the project, for `runner watch`
    /// (default: the whole project). Example: `inputs = ["src/**/*.rs", "Cargo.toml"]`
    pub inputs: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTask {
    /// Unique in the batch. Example: `id = "compile"`
    pub id: Spanned<String>,
    /// Example: `name = "Compile the host"`
    pub name: Option<String>,
    /// `exec`, `script`, `agent` or a plugin name. Example: `type = "checksum"`
    #[serde(rename = "type")]
    pub task_type: Spanned<String>,
    /// Given to the task type. Example: `config = { paths = ["/data"] }`
    pub config: Option<Spanned<toml::Value>>,
    /// Example: `timeout = "30s"`
    pub timeout: Option<Spanned<toml::Value>>,
    /// `high`, `normal` or `low`. Example: `priority = "high"`
    pub priority: Option<Spanned<String>>,
}
