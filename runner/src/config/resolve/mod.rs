//! Raw → checked: every rule of `runner.toml`, each with its own error.

use super::raw::*;
use super::*;
use crate::units::{format_size, parse_duration, parse_size};
use std::collections::{HashMap, HashSet};
use toml::Spanned;

/// Task types the host implements itself; every other type names a plugin.
pub const BUILTIN_TASK_TYPES: &[&str] = &["exec", "script", "agent"];

/// The only format version so far.
const VERSION: i64 = 1;

/// The smallest memory limit a plugin may have.
const MIN_MEMORY: u64 = 1 << 20;
/// The largest memory limit a plugin may have: 4 GiB, all that a 32-bit
/// wasm memory can address.
const MAX_MEMORY: u64 = 4 << 30;

struct Resolver<'a> {
    file: &'a Path,
    text: &'a str,
}

type Result<T> = std::result::Result<T, ConfigError>;

pub fn resolve(path: &Path, text: &str) -> Result<Config> {
    let r = Resolver { file: path, text };
    let raw: RawConfig = toml::from_str(text).map_err(|err| {
        let message = super::suggest::did_you_mean(err.message().trim());
        match err.span() {
            Some(span) => r.error_at(span.start, r.section_key_at(span.start), message),
            None => r.error(None, message),
        }
    })?;
    r.config(raw)
}

impl Resolver<'_> {
    fn error(&self, key: Option<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            location: None,
            key,
            message: message.into(),
            source_line: None,
        }
    }

    fn error_at(
        &self,
        offset: usize,
        key: Option<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = self.text[line_start..offset].chars().count() + 1;
        let source_line = self.text[line_start..]
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        ConfigError {
            file: self.file.to_path_buf(),
            location: Some(Location { line, column }),
            key,
            message: message.into(),
            source_line: Some(source_line),
        }
    }

    fn at<T>(
        &self,
        spanned: &Spanned<T>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        self.error_at(spanned.span().start, Some(key.into()), message)
    }

    fn location<T>(&self, spanned: &Spanned<T>) -> Location {
        self.error_at(spanned.span().start, None, "")
            .location
            .expect("offset has a location")
    }

    fn duration(&self, value: &Spanned<toml::Value>, key: &str) -> Result<Duration> {
        let toml::Value::String(text) = value.get_ref() else {
            return Err(self.at(
                value,
                key,
                "a duration is a string with a unit; write for example \"30s\"",
            ));
        };
        parse_duration(text).map_err(|msg| self.at(value, key, msg))
    }

    /// Where `prefix.name` (a table such as `[plugins.lint]`) is first
    /// written, pointing at `name`.
    fn table_at(
        &self,
        prefix: &str,
        name: &str,
        key: String,
        message: impl Into<String>,
    ) -> ConfigError {
        let needle = format!("{prefix}.{name}");
        match self.text.find(&needle) {
            Some(at) => self.error_at(at + prefix.len() + 1, Some(key), message),
            None => self.error(Some(key), message),
        }
    }

    /// `server.heartbeat` when `offset` is inside the value of `heartbeat`
    /// under `[server]` (or `[git]`, `[history]`), whose types report their
    /// own mistakes without the key.
    fn section_key_at(&self, offset: usize) -> Option<String> {
        let spans: RawSectionSpans = toml::from_str(self.text).ok()?;
        [
            ("server", &spans.server),
            ("git", &spans.git),
            ("history", &spans.history),
        ]
        .into_iter()
        .find_map(|(section, values)| {
            values
                .iter()
                .find(|(_, value)| value.span().contains(&offset))
                .map(|(key, _)| format!("{section}.{key}"))
        })
    }

    /// A section's own check, as an error at the refused value (or at the
    /// section's header when the value is a default).
    fn section(
        &self,
        section: &str,
        spans: &IndexMap<String, Spanned<toml::Value>>,
        checked: std::result::Result<(), InvalidSetting>,
    ) -> Result<()> {
        let Err(invalid) = checked else {
            return Ok(());
        };
        let key = format!("{section}.{}", invalid.key);
        Err(match spans.get(invalid.key) {
            Some(value) => self.at(value, key, invalid.message),
            None => match self.text.find(&format!("[{section}]")) {
                Some(at) => self.error_at(at, Some(key), invalid.message),
                None => self.error(Some(key), invalid.message),
            },
        })
    }

    fn size(&self, value: &Spanned<String>, key: &str) -> Result<u64> {
        parse_size(value.get_ref()).map_err(|msg| self.at(value, key, msg))
    }

    /// A plugin's memory limit: from 1 MiB to [`MAX_MEMORY`].
    fn memory(&self, value: &Spanned<String>, key: &str) -> Result<u64> {
        let bytes = self.size(value, key)?;
        if bytes < MIN_MEMORY {
            return Err(self.at(value, key, "must be at least 1MiB"));
        }
        if bytes > MAX_MEMORY {
            return Err(self.at(
                value,
                key,
                format!(
                    "`{}` is too large; at most {} (all that a 32-bit wasm memory can address)",
                    value.get_ref(),
                    format_size(MAX_MEMORY)
                ),
            ));
        }
        Ok(bytes)
    }

    /// `[history]`: `max_size` checked and read.
    fn history(
        &self,
        mut history: super::history::HistorySettings,
    ) -> Result<super::history::HistorySettings> {
        if let Some(max) = &history.max_size {
            let bytes = self.size(max, "history.max_size")?;
            if bytes < super::history::MIN_MAX_SIZE {
                return Err(self.at(max, "history.max_size", "must be at least 1MiB"));
            }
            history.max_size_bytes = Some(bytes);
        }
        Ok(history)
    }

    /// An output limit: a size of at least [`MIN_OUTPUT`].
    fn output_limit(&self, value: &Spanned<String>, key: &str) -> Result<u64> {
        let limit = self.size(value, key)?;
        if limit < MIN_OUTPUT {
            return Err(self.at(value, key, "must be at least 1KiB"));
        }
        Ok(limit)
    }

    fn priority(&self, value: &Spanned<String>, key: &str) -> Result<Priority> {
        Priority::parse(value.get_ref()).ok_or_else(|| {
            self.at(
                value,
                key,
                format!(
                    "unknown priority `{}`; use high, normal or low",
                    value.get_ref()
                ),
            )
        })
    }

    fn config(&self, raw: RawConfig) -> Result<Config> {
        if *raw.version.get_ref() != VERSION {
            return Err(self.at(
                &raw.version,
                "version",
                format!(
                    "unsupported version {}; this runner reads version {VERSION}",
                    raw.version.get_ref()
                ),
            ));
        }
        let base_dir = self
            .file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // Absolute, so paths stay right in a batch's worktree and any cwd.
        let base_dir = std::path::absolute(base_dir).unwrap_or_else(|_| base_dir.to_path_buf());
        let defaults = self.defaults(&raw.defaults, &base_dir)?;
        let plugins = self.plugins(&raw.plugins, &base_dir, &defaults)?;
        let mut agents = IndexMap::new();
        for (name, agent) in &raw.agents {
            agents.insert(
                name.clone(),
                self.agent(name, agent, &plugins, &base_dir, &defaults)?,
            );
        }
        let mut pipelines = IndexMap::new();
        for (name, pipeline) in &raw.pipelines {
            pipelines.insert(
                name.clone(),
                self.pipeline(name, pipeline, &plugins, &agents, &defaults)?,
            );
        }
        let default_pipeline = match &raw.default_pipeline {
            Some(name) if !pipelines.contains_key(name.get_ref()) => {
                let known: Vec<&str> = pipelines.keys().map(String::as_str).collect();
                return Err(self.at(
                    name,
                    "default_pipeline",
                    format!(
                        "no pipeline `{}`; pipelines: {}",
                        name.get_ref(),
                        known.join(", ")
                    ),
                ));
            }
            Some(name) => Some(name.get_ref().clone()),
            None => None,
        };
        let spans: RawSectionSpans = toml::from_str(self.text).unwrap_or_default();
        self.section("server", &spans.server, raw.server.check())?;
        self.section("git", &spans.git, raw.git.check())?;
        self.section("history", &spans.history, raw.history.check())?;
        let watch = self.watch(&raw.watch)?;
        let mut server = raw.server;
        server.resolve_paths(&base_dir);
        Ok(Config {
            server,
            git: raw.git,
            history: self.history(raw.history)?,
            path: self.file.to_path_buf(),
            base_dir,
            defaults,
            plugins,
            agents,
            pipelines,
            default_pipeline,
            watch,
        })
    }

    fn watch(&self, raw: &RawWatch) -> Result<WatchSettings> {
        let debounce = match &raw.debounce {
            Some(d) => self.duration(d, "watch.debounce")?,
            None => DEFAULT_DEBOUNCE,
        };
        if debounce.is_zero() || debounce > Duration::from_secs(60) {
            let at = raw.debounce.as_ref().expect("a configured debounce");
            return Err(self.at(at, "watch.debounce", "must be between 1ms and 60s"));
        }
        let mut patterns = Vec::new();
        for (i, pattern) in raw.ignore.iter().enumerate() {
            let key = format!("watch.ignore[{i}]");
            if pattern.get_ref().trim().is_empty() {
                return Err(self.at(pattern, key, "an empty pattern ignores nothing"));
            }
            let mut builder = ignore::gitignore::GitignoreBuilder::new("/");
            builder.add_line(None, pattern.get_ref()).map_err(|err| {
                self.at(pattern, key.clone(), format!("not a valid pattern: {err}"))
            })?;
            patterns.push(pattern.get_ref().clone());
        }
        let on_busy = match &raw.on_busy {
            Some(text) => OnBusy::parse(text.get_ref()).ok_or_else(|| {
                self.at(
                    text,
                    "watch.on_busy",
                    format!(
                        "unknown value `{}`; use queue, restart or ignore",
                        text.get_ref()
                    ),
                )
            })?,
            None => OnBusy::Queue,
        };
        Ok(WatchSettings {
            debounce,
            ignore: patterns,
            on_busy,
        })
    }

    fn inputs(&self, raw: &Option<Vec<Spanned<String>>>, key: &str) -> Result<Option<Vec<String>>> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let mut inputs = Vec::new();
        for (i, glob) in raw.iter().enumerate() {
            let key = format!("{key}.inputs[{i}]");
            let text = glob.get_ref();
            if text.trim().is_empty() {
                return Err(self.at(glob, key, "an empty glob matches nothing"));
            }
            if text.starts_with('/')
                || Path::new(text)
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
            {
                return Err(self.at(
                    glob,
                    key,
                    format!("`{text}` leaves the project; inputs are relative to the directory of runner.toml"),
                ));
            }
            globset::GlobBuilder::new(text)
                .literal_separator(true)
                .build()
                .map_err(|err| self.at(glob, key, format!("not a valid glob: {}", err.kind())))?;
            inputs.push(text.clone());
        }
        Ok(Some(inputs))
    }

    fn defaults(&self, raw: &RawDefaults, base_dir: &Path) -> Result<Defaults> {
        let timeout = match &raw.timeout {
            Some(t) => self.duration(t, "defaults.timeout")?,
            None => DEFAULT_TIMEOUT,
        };
        let concurrency = match &raw.concurrency {
            Some(c) if *c.get_ref() < 1 || *c.get_ref() > 1024 => {
                return Err(self.at(c, "defaults.concurrency", "must be between 1 and 1024"));
            }
            Some(c) => *c.get_ref() as usize,
            None => std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .max(2),
        };
        let memory = match &raw.memory {
            Some(m) => self.memory(m, "defaults.memory")?,
            None => DEFAULT_MEMORY,
        };
        let output = match &raw.output {
            Some(o) => self.output_limit(o, "defaults.output")?,
            None => DEFAULT_OUTPUT,
        };
        let priority = match &raw.priority {
            Some(p) => self.priority(p, "defaults.priority")?,
            None => Priority::Normal,
        };
        let state_dir = base_dir.join(raw.state_dir.as_deref().unwrap_or(".runner"));
        Ok(Defaults {
            timeout,
            concurrency,
            memory,
            output,
            priority,
            state_dir,
        })
    }

    fn plugins(
        &self,
        raw: &IndexMap<String, RawPlugin>,
        base_dir: &Path,
        defaults: &Defaults,
    ) -> Result<IndexMap<String, PluginDecl>> {
        let mut plugins = IndexMap::new();
        for name in crate::builtin::names() {
            plugins.insert(
                name.to_string(),
                PluginDecl {
                    name: name.to_string(),
                    source: PluginSource::Builtin(name.to_string()),
                    sha256: None,
                    capabilities: Capabilities::default(),
                    memory: defaults.memory,
                    timeout: None,
                    output: None,
                    declared_at: None,
                },
            );
        }
        for (name, plugin) in raw {
            let key = format!("plugins.{name}");
            if BUILTIN_TASK_TYPES.contains(&name.as_str()) {
                return Err(self.table_at(
                    "plugins",
                    name,
                    key,
                    format!(
                        "`{name}` is a task type of the runner itself; pick another plugin name"
                    ),
                ));
            }
            let source = match (&plugin.path, &plugin.builtin) {
                (Some(path), None) => {
                    let full = base_dir.join(path.get_ref());
                    if !full.is_file() {
                        return Err(self.at(
                            path,
                            format!("{key}.path"),
                            format!("no component file at `{}`", full.display()),
                        ));
                    }
                    PluginSource::Path(full)
                }
                (None, Some(builtin)) => {
                    if !crate::builtin::names().contains(&builtin.get_ref().as_str()) {
                        return Err(self.at(
                            builtin,
                            format!("{key}.builtin"),
                            format!(
                                "no built-in plugin `{}`; built-in plugins: {}",
                                builtin.get_ref(),
                                crate::builtin::names().join(", ")
                            ),
                        ));
                    }
                    PluginSource::Builtin(builtin.get_ref().clone())
                }
                (Some(path), Some(_)) => {
                    return Err(self.at(path, key, "give either `path` or `builtin`, not both"));
                }
                (None, None) => {
                    return Err(self.table_at(
                        "plugins",
                        name,
                        key,
                        "give the component: `path = \"file.wasm\"` or `builtin = \"name\"`",
                    ));
                }
            };
            let sha256 = match &plugin.sha256 {
                Some(sum) => {
                    let hex = sum.get_ref().to_ascii_lowercase();
                    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(self.at(
                            sum,
                            format!("{key}.sha256"),
                            "expected 64 hexadecimal digits",
                        ));
                    }
                    Some(hex)
                }
                None => None,
            };
            let capabilities = self.capabilities(&plugin.capabilities, &key, base_dir)?;
            let memory = match &plugin.limits.memory {
                Some(m) => self.memory(m, &format!("{key}.limits.memory"))?,
                None => defaults.memory,
            };
            let timeout = plugin
                .limits
                .timeout
                .as_ref()
                .map(|t| self.duration(t, &format!("{key}.limits.timeout")))
                .transpose()?;
            let output = plugin
                .limits
                .output
                .as_ref()
                .map(|o| self.output_limit(o, &format!("{key}.limits.output")))
                .transpose()?;
            let declared_at = plugin
                .path
                .as_ref()
                .or(plugin.builtin.as_ref())
                .map(|s| self.location(s));
            plugins.insert(
                name.clone(),
                PluginDecl {
                    name: name.clone(),
                    source,
                    sha256,
                    capabilities,
                    memory,
                    timeout,
                    output,
                    declared_at,
                },
            );
        }
        Ok(plugins)
    }

    fn capabilities(
        &self,
        raw: &RawCapabilities,
        key: &str,
        base_dir: &Path,
    ) -> Result<Capabilities> {
        let mut dirs = Vec::new();
        for (i, dir) in raw.dirs.iter().enumerate() {
            let dir_key = format!("{key}.capabilities.dirs[{i}]");
            let host = base_dir.join(&dir.get_ref().host);
            if !host.is_dir() {
                return Err(self.at(
                    dir,
                    format!("{dir_key}.host"),
                    format!("no directory at `{}`", host.display()),
                ));
            }
            let writable = match dir.get_ref().access.as_deref() {
                None | Some("read-only") => false,
                Some("read-write") => true,
                Some(other) => {
                    return Err(self.at(
                        dir,
                        format!("{dir_key}.access"),
                        format!("unknown access `{other}`; use read-only or read-write"),
                    ));
                }
            };
            let guest = dir
                .get_ref()
                .guest
                .clone()
                .unwrap_or_else(|| dir.get_ref().host.clone());
            dirs.push(DirGrant {
                host,
                guest,
                writable,
            });
        }
        let mut env = Vec::new();
        for (i, name) in raw.env.iter().enumerate() {
            let valid = !name.get_ref().is_empty() && !name.get_ref().contains(['=', '\0']);
            if !valid {
                return Err(self.at(
                    name,
                    format!("{key}.capabilities.env[{i}]"),
                    "not a variable name",
                ));
            }
            env.push(name.get_ref().clone());
        }
        let vars = raw
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Capabilities { dirs, env, vars })
    }

    fn agent(
        &self,
        name: &str,
        raw: &RawAgent,
        plugins: &IndexMap<String, PluginDecl>,
        base_dir: &Path,
        defaults: &Defaults,
    ) -> Result<AgentDecl> {
        let key = format!("agents.{name}");
        check_id(name).map_err(|msg| self.at(&raw.adapter, key.clone(), msg))?;
        let adapter = raw.adapter.get_ref();
        if !plugins.contains_key(adapter) {
            return Err(self.at(
                &raw.adapter,
                format!("{key}.adapter"),
                unknown_plugin(adapter, "adapter", plugins),
            ));
        }
        let command = raw.command.as_ref().map(|command| {
            let text = command.get_ref();
            if text.contains('/') {
                base_dir.join(text).display().to_string()
            } else {
                text.clone()
            }
        });
        let count = |value: &Option<Spanned<i64>>, field: &str, default: usize| -> Result<usize> {
            match value {
                Some(v) if *v.get_ref() < 1 || *v.get_ref() > 10_000 => {
                    Err(self.at(v, format!("{key}.{field}"), "must be between 1 and 10000"))
                }
                Some(v) => Ok(*v.get_ref() as usize),
                None => Ok(default),
            }
        };
        let concurrency = count(&raw.concurrency, "concurrency", DEFAULT_AGENT_CONCURRENCY)?;
        let queue_limit = count(&raw.queue_limit, "queue_limit", DEFAULT_QUEUE_LIMIT)?;
        let timeout = match &raw.timeout {
            Some(t) => self.duration(t, &format!("{key}.timeout"))?,
            None => defaults.timeout,
        };
        let output = match &raw.output {
            Some(o) => self.output_limit(o, &format!("{key}.output"))?,
            None => defaults.output,
        };
        let working_dir = match &raw.working_dir {
            Some(dir) => {
                let full = base_dir.join(dir.get_ref());
                if !full.is_dir() {
                    return Err(self.at(
                        dir,
                        format!("{key}.working_dir"),
                        format!("no directory at `{}`", full.display()),
                    ));
                }
                full
            }
            None => base_dir.to_path_buf(),
        };
        Ok(AgentDecl {
            name: name.to_string(),
            adapter: adapter.clone(),
            command,
            model: raw.model.clone(),
            args: raw.args.clone(),
            concurrency,
            queue_limit,
            timeout,
            output,
            working_dir,
            options: raw
                .options
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v).to_string()))
                .collect(),
            env: raw
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            adapter_at: self.location(&raw.adapter),
        })
    }

    fn pipeline(
        &self,
        name: &str,
        raw: &RawPipeline,
        plugins: &IndexMap<String, PluginDecl>,
        agents: &IndexMap<String, AgentDecl>,
        defaults: &Defaults,
    ) -> Result<Pipeline> {
        let key = format!("pipelines.{name}");
        if raw.batches.is_empty() {
            let message = format!("a pipeline needs at least one `[[pipelines.{name}.batches]]`");
            return Err(self.table_at("pipelines", name, key, message));
        }
        let mut batch_ids: HashMap<&str, usize> = HashMap::new();
        let mut task_ids: HashSet<&str> = HashSet::new();
        let mut batches = Vec::new();
        for (index, batch) in raw.batches.iter().enumerate() {
            let batch_key = format!("{key}.batches[{index}]");
            let id = batch.id.get_ref();
            check_id(id).map_err(|msg| self.at(&batch.id, format!("{batch_key}.id"), msg))?;
            if batch_ids.insert(id, index).is_some() {
                return Err(self.at(
                    &batch.id,
                    format!("{batch_key}.id"),
                    format!("batch `{id}` is declared twice in this pipeline"),
                ));
            }
            let batch_type = match &batch.batch_type {
                Some(t) => {
                    if !plugins.contains_key(t.get_ref()) {
                        return Err(self.at(
                            t,
                            format!("{batch_key}.type"),
                            unknown_plugin(t.get_ref(), "batch type", plugins),
                        ));
                    }
                    t.get_ref().clone()
                }
                None => "sequential".to_string(),
            };
            let mut tasks = Vec::new();
            for (task_index, task) in batch.tasks.iter().enumerate() {
                let task_key = format!("{batch_key}.tasks[{task_index}]");
                let task_id = task.id.get_ref();
                check_id(task_id)
                    .map_err(|msg| self.at(&task.id, format!("{task_key}.id"), msg))?;
                if !task_ids.insert(task_id) {
                    return Err(self.at(
                        &task.id,
                        format!("{task_key}.id"),
                        format!("task `{task_id}` is declared twice in this pipeline"),
                    ));
                }
                tasks.push(self.task(task, &task_key, plugins, agents, defaults)?);
            }
            if tasks.is_empty() {
                return Err(self.at(
                    &batch.id,
                    batch_key,
                    format!(
                        "batch `{id}` has no tasks; add a `[[pipelines.{name}.batches.tasks]]`"
                    ),
                ));
            }
            let with = match &batch.with {
                Some(with) => to_json(with),
                None => Value::Object(Default::default()),
            };
            let type_at = self.location(batch.batch_type.as_ref().unwrap_or(&batch.id));
            let inputs = self.inputs(&batch.inputs, &batch_key)?;
            batches.push(Batch {
                inputs,
                type_at,
                id: id.clone(),
                name: batch.name.clone().unwrap_or_else(|| id.clone()),
                batch_type,
                depends_on: batch
                    .depends_on
                    .iter()
                    .map(|d| d.get_ref().clone())
                    .collect(),
                with,
                tasks,
            });
        }
        for (index, batch) in raw.batches.iter().enumerate() {
            for (dep_index, dep) in batch.depends_on.iter().enumerate() {
                let dep_key = format!("{key}.batches[{index}].depends_on[{dep_index}]");
                if dep.get_ref() == batch.id.get_ref() {
                    return Err(self.at(
                        dep,
                        dep_key,
                        format!("batch `{}` depends on itself", dep.get_ref()),
                    ));
                }
                if !batch_ids.contains_key(dep.get_ref().as_str()) {
                    let mut known: Vec<&str> = batch_ids.keys().copied().collect();
                    known.sort_unstable();
                    return Err(self.at(
                        dep,
                        dep_key,
                        format!(
                            "no batch `{}` in pipeline `{name}`; batches: {}",
                            dep.get_ref(),
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
        let order = self.order(name, raw, &batch_ids)?;
        let mut by_index: Vec<Option<Batch>> = batches.into_iter().map(Some).collect();
        let batches = order
            .into_iter()
            .map(|i| by_index[i].take().expect("each batch once"))
            .collect();
        Ok(Pipeline {
            name: name.to_string(),
            description: raw.description.clone(),
            batches,
        })
    }

    /// Orders batches after their dependencies (declaration order among
    /// equals), or reports a cycle with the dependency that closes it.
    fn order(
        &self,
        name: &str,
        raw: &RawPipeline,
        ids: &HashMap<&str, usize>,
    ) -> Result<Vec<usize>> {
        let n = raw.batches.len();
        let deps: Vec<Vec<usize>> = raw
            .batches
            .iter()
            .map(|b| {
                b.depends_on
                    .iter()
                    .map(|d| ids[d.get_ref().as_str()])
                    .collect()
            })
            .collect();
        let mut done = vec![false; n];
        let mut order = Vec::with_capacity(n);
        while order.len() < n {
            let next = (0..n).find(|&i| !done[i] && deps[i].iter().all(|&d| done[d]));
            match next {
                Some(i) => {
                    done[i] = true;
                    order.push(i);
                }
                None => {
                    let cycle = find_cycle(&deps, &done);
                    let names: Vec<&str> = cycle
                        .iter()
                        .map(|&i| raw.batches[i].id.get_ref().as_str())
                        .collect();
                    let (last, first) = (cycle[cycle.len() - 1], cycle[0]);
                    let dep_index = deps[last]
                        .iter()
                        .position(|&d| d == first)
                        .expect("cycle edge");
                    let at = &raw.batches[last].depends_on[dep_index];
                    return Err(self.at(
                        at,
                        format!("pipelines.{name}.batches[{last}].depends_on[{dep_index}]"),
                        format!("dependency cycle: {} → {}", names.join(" → "), names[0]),
                    ));
                }
            }
        }
        Ok(order)
    }

    fn task(
        &self,
        raw: &RawTask,
        key: &str,
        plugins: &IndexMap<String, PluginDecl>,
        agents: &IndexMap<String, AgentDecl>,
        defaults: &Defaults,
    ) -> Result<Task> {
        let config = match &raw.config {
            Some(config) => {
                if !config.get_ref().is_table() {
                    return Err(self.at(
                        config,
                        format!("{key}.config"),
                        "must be a table, for example `config = { paths = [\"/data\"] }`",
                    ));
                }
                to_json(config.get_ref())
            }
            None => Value::Object(Default::default()),
        };
        let type_name = raw.task_type.get_ref();
        let kind = match type_name.as_str() {
            "exec" => {
                match config.get("command") {
                    Some(Value::String(s)) if !s.trim().is_empty() => {}
                    Some(Value::Array(items))
                        if !items.is_empty() && items.iter().all(Value::is_string) => {}
                    _ => {
                        let at = raw
                            .config
                            .as_ref()
                            .map_or(raw.task_type.span().start, |c| c.span().start);
                        return Err(self.error_at(at, Some(format!("{key}.config.command")),
                            "an exec task needs `command`: a shell line (\"make test\") or a list ([\"make\", \"test\"])"));
                    }
                }
                TaskKind::Exec
            }
            "script" => {
                let Some(Value::String(component)) = config.get("component") else {
                    let at = raw
                        .config
                        .as_ref()
                        .map_or(raw.task_type.span().start, |c| c.span().start);
                    return Err(self.error_at(at, Some(format!("{key}.config.component")),
                        "a script task needs `component`: the name of a plugin that is a WASI command"));
                };
                if !plugins.contains_key(component) {
                    let at = raw.config.as_ref().expect("component came from config");
                    return Err(self.at(
                        at,
                        format!("{key}.config.component"),
                        unknown_plugin(component, "component", plugins),
                    ));
                }
                TaskKind::Script(component.clone())
            }
            "agent" => {
                let at = raw
                    .config
                    .as_ref()
                    .map_or(raw.task_type.span().start, |c| c.span().start);
                let Some(Value::String(agent)) = config.get("agent") else {
                    return Err(self.error_at(
                        at,
                        Some(format!("{key}.config.agent")),
                        "an agent task needs `agent`: the name of an agent declared under [agents]",
                    ));
                };
                if !agents.contains_key(agent) {
                    let known: Vec<&str> = agents.keys().map(String::as_str).collect();
                    return Err(self.error_at(
                        at,
                        Some(format!("{key}.config.agent")),
                        format!(
                            "no agent `{agent}`; declare it as [agents.{agent}] (agents: {})",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                }
                match config.get("prompt") {
                    Some(Value::String(p)) if !p.trim().is_empty() => {}
                    _ => {
                        return Err(self.error_at(
                            at,
                            Some(format!("{key}.config.prompt")),
                            "an agent task needs a non-empty `prompt`",
                        ));
                    }
                }
                TaskKind::Agent(agent.clone())
            }
            plugin if plugins.contains_key(plugin) => TaskKind::Plugin(plugin.to_string()),
            other => {
                return Err(self.at(
                    &raw.task_type,
                    format!("{key}.type"),
                    unknown_plugin(other, "task type", plugins),
                ));
            }
        };
        let plugin_timeout = match &kind {
            TaskKind::Script(p) | TaskKind::Plugin(p) => plugins[p].timeout,
            TaskKind::Agent(a) => Some(agents[a].timeout),
            TaskKind::Exec => None,
        };
        let timeout = match &raw.timeout {
            Some(t) => self.duration(t, &format!("{key}.timeout"))?,
            None => plugin_timeout.unwrap_or(defaults.timeout),
        };
        let output = match &kind {
            TaskKind::Script(p) | TaskKind::Plugin(p) => plugins[p].output,
            TaskKind::Agent(a) => Some(agents[a].output),
            TaskKind::Exec => None,
        }
        .unwrap_or(defaults.output);
        let priority = match &raw.priority {
            Some(p) => self.priority(p, &format!("{key}.priority"))?,
            None => defaults.priority,
        };
        let id = raw.id.get_ref().clone();
        let type_at = match (&kind, &raw.config) {
            (TaskKind::Script(_), Some(config)) => self.location(config),
            _ => self.location(&raw.task_type),
        };
        Ok(Task {
            name: raw.name.clone().unwrap_or_else(|| id.clone()),
            id,
            kind,
            config,
            timeout,
            output,
            priority,
            type_at,
        })
    }
}

/// "unknown task type `x`; ... use one of: ..." suggesting only what fits:
/// declared plugins (their kind is known only once loaded) and the
/// built-ins of the right kind.
fn unknown_plugin(name: &str, what: &str, plugins: &IndexMap<String, PluginDecl>) -> String {
    let fits: &[&str] = match what {
        "batch type" => &["batch"],
        "adapter" => &["adapter"],
        "component" => &["script"],
        _ => &["block", "script"],
    };
    let mut known: Vec<&str> = if what == "task type" {
        BUILTIN_TASK_TYPES.to_vec()
    } else {
        Vec::new()
    };
    for (plugin_name, decl) in plugins {
        let kind = match &decl.source {
            PluginSource::Builtin(builtin) if decl.declared_at.is_none() => {
                crate::builtin::kind(builtin)
            }
            _ => None,
        };
        if kind.is_none_or(|k| fits.contains(&k)) {
            known.push(plugin_name);
        }
    }
    if known.is_empty() {
        return format!("unknown {what} `{name}`; declare it under [plugins.{name}]");
    }
    format!(
        "unknown {what} `{name}`; declare it under [plugins.{name}] or use one of: {}",
        known.join(", ")
    )
}

fn check_id(id: &str) -> std::result::Result<(), String> {
    let ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{id}` is not a valid id; use letters, digits, `-`, `_` and `.`"
        ))
    }
}

fn find_cycle(deps: &[Vec<usize>], done: &[bool]) -> Vec<usize> {
    // Every unfinished node has an unfinished dependency, so walking
    // dependencies from any of them must revisit a node.
    let start = (0..deps.len())
        .find(|&i| !done[i])
        .expect("an unfinished batch");
    let mut path = vec![start];
    let mut current = start;
    loop {
        let next = *deps[current]
            .iter()
            .find(|&&d| !done[d])
            .expect("unfinished dependency");
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle = path[pos..].to_vec();
            // Report it in dependency order: a depends on b ... depends on a.
            cycle.rotate_left(0);
            return cycle;
        }
        path.push(next);
        current = next;
    }
}

/// TOML → JSON, for configs handed to plugins.
pub fn to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        toml::Value::Table(table) => {
            Value::Object(table.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}
