//! `[agents]`: each agent, its adapter and its limits.

use super::plugins::unknown_plugin;
use super::{Resolver, Result, check_id, to_json};
use crate::config::raw::*;
use crate::config::*;
use toml::Spanned;

impl Resolver<'_> {
    /// `max_cost_usd` and `max_tokens` under `key` (a section).
    pub(super) fn budget(
        &self,
        cost: &Option<Spanned<f64>>,
        tokens: &Option<Spanned<i64>>,
        key: &str,
    ) -> Result<Budget> {
        let max_cost_usd = match cost {
            Some(c) if !(c.get_ref().is_finite() && *c.get_ref() > 0.0) => {
                return Err(self.at(
                    c,
                    format!("{key}.max_cost_usd"),
                    "must be a positive number of dollars, like 1.5",
                ));
            }
            Some(c) => Some(*c.get_ref()),
            None => None,
        };
        let max_tokens = match tokens {
            Some(t) if *t.get_ref() < 1 => {
                return Err(self.at(
                    t,
                    format!("{key}.max_tokens"),
                    "must be a positive number of tokens",
                ));
            }
            Some(t) => Some(*t.get_ref() as u64),
            None => None,
        };
        Ok(Budget {
            max_cost_usd,
            max_tokens,
        })
    }

    pub(super) fn agent(
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
        let budget = self.budget(&raw.max_cost_usd, &raw.max_tokens, &key)?;
        let approval_timeout = match &raw.approval_timeout {
            Some(t) => self.duration(t, &format!("{key}.approval_timeout"))?,
            None => DEFAULT_APPROVAL_TIMEOUT,
        };
        Ok(AgentDecl {
            budget,
            approval_timeout,
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
}
