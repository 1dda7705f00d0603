//! Raw → checked: every rule of `runner.toml`, each with its own error.

mod agents;
mod pipeline;
mod plugins;
mod spans;
mod tasks;

use super::raw::*;
use super::*;
use toml::Spanned;

/// Task types the host implements itself; every other type names a plugin.
pub const BUILTIN_TASK_TYPES: &[&str] = &["exec", "script", "agent"];

/// The only format version so far.
const VERSION: i64 = 1;

struct Resolver<'a> {
    file: &'a Path,
    text: &'a str,
    source: Source,
}

type Result<T> = std::result::Result<T, ConfigError>;

pub fn resolve(path: &Path, text: &str) -> Result<Config> {
    let r = Resolver {
        file: path,
        text,
        source: Source::new(text),
    };
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
        let checks = [raw.server.check(), raw.git.check(), raw.history.check()];
        if checks.iter().any(|checked| checked.is_err()) {
            // Only a refused value needs the spans: a second parse otherwise.
            let spans: RawSectionSpans = toml::from_str(self.text).unwrap_or_default();
            let [server, git, history] = checks;
            self.section("server", &spans.server, server)?;
            self.section("git", &spans.git, git)?;
            self.section("history", &spans.history, history)?;
        }
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
            source: self.source.clone(),
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
        let run_budget = self.budget(&raw.max_cost_usd, &raw.max_tokens, "defaults")?;
        Ok(Defaults {
            run_budget,
            timeout,
            concurrency,
            memory,
            output,
            priority,
            state_dir,
        })
    }
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
