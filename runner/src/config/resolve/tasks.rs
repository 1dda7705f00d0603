//! A task: checked for its kind (exec, script, agent or a plugin).

use super::plugins::unknown_plugin;
use super::{Resolver, Result, to_json};
use crate::config::raw::*;
use crate::config::*;

impl Resolver<'_> {
    pub(super) fn task(
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
        let mut budget = Budget::default();
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
                budget = self.task_budget(&config, at, &key)?;
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
            budget,
        })
    }

    /// An agent task's `max_cost_usd` and `max_tokens` (in its `config`).
    fn task_budget(&self, config: &Value, at: usize, key: &str) -> Result<Budget> {
        let max_cost_usd = match config.get("max_cost_usd") {
            None => None,
            Some(v) => match v.as_f64() {
                Some(cost) if cost.is_finite() && cost > 0.0 => Some(cost),
                _ => {
                    return Err(self.error_at(
                        at,
                        Some(format!("{key}.config.max_cost_usd")),
                        "must be a positive number of dollars, like 1.5",
                    ));
                }
            },
        };
        let max_tokens = match config.get("max_tokens") {
            None => None,
            Some(v) => match v.as_u64() {
                Some(tokens) if tokens > 0 => Some(tokens),
                _ => {
                    return Err(self.error_at(
                        at,
                        Some(format!("{key}.config.max_tokens")),
                        "must be a positive number of tokens",
                    ));
                }
            },
        };
        Ok(Budget {
            max_cost_usd,
            max_tokens,
        })
    }
}
