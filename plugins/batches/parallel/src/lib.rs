//! `parallel`: runs the batch's tasks at once, within the run's concurrency.
//!
//! Spec (`with`): `fail_fast = true` starts no new task after a failure;
//! `allow_failures = N` lets the batch complete with up to N failed tasks.

use runner_plugin_sdk::batch::{
    BatchOutcome, ExecutionMode, Expansion, Guest, PluginInfo, TaskResult, TaskSpec, TaskState,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Spec {
    #[serde(default)]
    fail_fast: bool,
    #[serde(default)]
    allow_failures: usize,
}

fn parse(spec: &str) -> Result<Spec, String> {
    serde_json::from_str(spec).map_err(|e| format!("parallel `with`: {e}"))
}

struct Parallel;

impl Guest for Parallel {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "parallel".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Runs tasks at once; completes unless too many fail".into(),
            config_schema: json!({
                "type": "object",
                "properties": {
                    "fail_fast": { "type": "boolean" },
                    "allow_failures": { "type": "integer", "minimum": 0 }
                },
                "additionalProperties": false
            })
            .to_string(),
        }
    }

    fn expand(spec: String, tasks: Vec<TaskSpec>) -> Result<Expansion, String> {
        let spec = parse(&spec)?;
        Ok(Expansion {
            mode: ExecutionMode::Parallel,
            fail_fast: spec.fail_fast,
            tasks,
        })
    }

    fn reduce(spec: String, results: Vec<TaskResult>) -> BatchOutcome {
        let allowed = parse(&spec).unwrap_or_default().allow_failures;
        let done = results
            .iter()
            .filter(|r| r.state == TaskState::Completed)
            .count();
        let failed: Vec<&TaskResult> = results
            .iter()
            .filter(|r| r.state != TaskState::Completed)
            .collect();
        let outputs: serde_json::Map<String, Value> = results
            .iter()
            .filter_map(|r| Some((r.id.clone(), serde_json::from_str(r.output.as_ref()?).ok()?)))
            .collect();
        let completed = failed.len() <= allowed;
        BatchOutcome {
            completed,
            summary: format!("{done} of {} tasks completed", results.len()),
            error: (!completed).then(|| {
                let names: Vec<String> = failed
                    .iter()
                    .map(|r| {
                        format!(
                            "`{}` ({})",
                            r.id,
                            r.error.as_deref().unwrap_or("no reason given")
                        )
                    })
                    .collect();
                format!(
                    "{} of {} tasks did not complete: {}",
                    failed.len(),
                    results.len(),
                    names.join(", ")
                )
            }),
            output: Value::Object(outputs).to_string(),
        }
    }
}

runner_plugin_sdk::export_batch!(Parallel);
