//! `best_of`: the batch's tasks tried several times, each attempt on its own
//! branch, the best attempt kept (the `attempts-batch-plugin` world).
//!
//! Spec (`with`): `attempts = 3` (how many; default: one per listed agent),
//! `agents = ["claude", "codex"]` (attempt `n` runs its agent tasks with
//! agent `agents[(n - 1) % len]`; default: the agent each task names),
//! `check = "cargo test"` (run in each attempt's worktree; exit 0 passes),
//! `pick = "check,diff,cost"` (the ranking keys, in order; also `tokens` and
//! `duration`). Ranking is in [`rank`].

mod rank;

/// Bindings of the `attempts-batch-plugin` world, generated here: the SDK
/// binds the plain `batch-plugin` world, and two worlds that both export
/// `batch` cannot be bound in one crate (their export macros collide).
mod bindings {
    wit_bindgen::generate!({
        world: "attempts-batch-plugin",
        path: "../../../wit",
    });
}

use bindings::exports::runner::plugin::attempts::{
    AttemptPlan, AttemptReport, AttemptSpec, AttemptTask, Guest, Verdict,
};
use bindings::exports::runner::plugin::batch::{
    BatchOutcome, Expansion, Guest as BatchGuest, TaskResult, TaskSpec,
};
use bindings::runner::plugin::types::PluginInfo;
use serde::Deserialize;
use serde_json::json;

/// The most attempts one batch may make.
pub const MAX_ATTEMPTS: u32 = 32;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    attempts: Option<u32>,
    #[serde(default)]
    agents: Vec<String>,
    check: Option<String>,
    pick: Option<Keys>,
}

/// `pick = "check,diff,cost"` or `pick = ["check", "diff", "cost"]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Keys {
    Text(String),
    List(Vec<String>),
}

fn parse(spec: &str) -> Result<Spec, String> {
    let spec: Spec = serde_json::from_str(spec).map_err(|e| format!("best_of `with`: {e}"))?;
    if let Some(check) = &spec.check
        && check.trim().is_empty()
    {
        return Err("best_of `with.check` is empty: give a command, or leave it out".into());
    }
    if let Some(agent) = spec.agents.iter().find(|a| a.trim().is_empty()) {
        return Err(format!(
            "best_of `with.agents` holds an empty name ({agent:?})"
        ));
    }
    Ok(spec)
}

impl Spec {
    fn count(&self) -> Result<u32, String> {
        let count = match (self.attempts, self.agents.len()) {
            (Some(n), _) => n,
            (None, 0) => {
                return Err(
                    "best_of needs `with.attempts = N` or `with.agents = [...]` (one attempt per agent)"
                        .into(),
                );
            }
            (None, agents) => agents as u32,
        };
        if !(1..=MAX_ATTEMPTS).contains(&count) {
            return Err(format!(
                "best_of `with.attempts` must be 1 to {MAX_ATTEMPTS}, not {count}"
            ));
        }
        Ok(count)
    }

    fn keys(&self) -> Result<Vec<rank::Key>, String> {
        let names: Vec<String> = match &self.pick {
            None => return Ok(rank::DEFAULT_KEYS.to_vec()),
            Some(Keys::Text(text)) => text.split(',').map(|k| k.trim().to_string()).collect(),
            Some(Keys::List(list)) => list.clone(),
        };
        let mut keys = Vec::new();
        for name in names.iter().filter(|n| !n.is_empty()) {
            let key = rank::Key::parse(name).ok_or_else(|| {
                format!(
                    "best_of `with.pick`: unknown key `{name}`; known keys: check, diff, cost, tokens, duration"
                )
            })?;
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        if keys.iter().skip(1).any(|k| *k == rank::Key::Check) {
            return Err(
                "best_of `with.pick`: `check` can only come first (an attempt that failed its check is never kept)"
                    .into(),
            );
        }
        Ok(keys)
    }
}

struct BestOf;

impl Guest for BestOf {
    fn plan(spec: String, tasks: Vec<AttemptTask>) -> Result<AttemptPlan, String> {
        let spec = parse(&spec)?;
        let count = spec.count()?;
        spec.keys()?;
        if tasks.is_empty() {
            return Err("best_of has no task to attempt: declare the batch's tasks".into());
        }
        let attempts = (1..=count)
            .map(|n| AttemptSpec {
                tasks: tasks
                    .iter()
                    .map(|task| AttemptTask {
                        id: format!("{}#{n}", task.id),
                        name: format!("{} (attempt {n})", task.name),
                        template: task.template.clone(),
                        config: task.config.clone(),
                    })
                    .collect(),
                agent: (!spec.agents.is_empty())
                    .then(|| spec.agents[(n as usize - 1) % spec.agents.len()].clone()),
            })
            .collect();
        Ok(AttemptPlan {
            attempts,
            check: spec.check,
        })
    }

    fn pick(spec: String, reports: Vec<AttemptReport>) -> Verdict {
        let spec = parse(&spec).ok();
        let keys = spec
            .as_ref()
            .and_then(|s| s.keys().ok())
            .unwrap_or_else(|| rank::DEFAULT_KEYS.to_vec());
        let check = spec.as_ref().and_then(|s| s.check.clone());
        let verdict = rank::rank(&reports, &keys, check.as_deref());
        let winner = verdict.winner.map(|i| &reports[i]);
        let summary = match winner {
            Some(w) => format!(
                "attempt {} of {} won ({}): {}",
                w.number,
                reports.len(),
                w.branch,
                verdict.reason
            ),
            None => format!(
                "none of {} attempts can be kept: {}",
                reports.len(),
                verdict.reason
            ),
        };
        Verdict {
            winner: winner.map(|w| w.number),
            reason: verdict.reason,
            ranks: verdict.ranks,
            notes: verdict.notes,
            summary,
        }
    }
}

/// This runner asks for a `plan` instead; a runner that knows only the
/// plain batch world gets a clear refusal.
impl BatchGuest for BestOf {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "best_of".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Tries the batch several times, each on its own branch, and keeps the best attempt".into(),
            config_schema: json!({
                "type": "object",
                "properties": {
                    "attempts": { "type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS },
                    "agents": { "type": "array", "items": { "type": "string", "minLength": 1 } },
                    "check": { "type": "string", "minLength": 1 },
                    "pick": {
                        "oneOf": [
                            { "type": "string" },
                            { "type": "array", "items": { "enum": ["check", "diff", "cost", "tokens", "duration"] } }
                        ]
                    }
                },
                "additionalProperties": false
            })
            .to_string(),
        }
    }

    fn expand(_spec: String, _tasks: Vec<TaskSpec>) -> Result<Expansion, String> {
        Err(NEEDS_ATTEMPTS.into())
    }

    fn reduce(_spec: String, _results: Vec<TaskResult>) -> BatchOutcome {
        BatchOutcome {
            completed: false,
            summary: NEEDS_ATTEMPTS.into(),
            error: Some(NEEDS_ATTEMPTS.into()),
            output: "null".into(),
        }
    }
}

const NEEDS_ATTEMPTS: &str = "best_of needs a runner that speaks the `attempts` interface of runner:plugin@0.2.0 (per-attempt branches and a check)";

bindings::export!(BestOf with_types_in bindings);
