//! `sequential`: runs the batch's tasks one after another, in order.
//!
//! Spec (`with`): `continue_on_failure = true` keeps going after a failed
//! task (default: the rest are skipped). The batch completes when every
//! task completed.

use runner_plugin_sdk::batch::{
    BatchOutcome, ExecutionMode, Expansion, Guest, PluginInfo, TaskResult, TaskSpec, TaskState,
};
use serde_json::{Value, json};

struct Sequential;

impl Guest for Sequential {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "sequential".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Runs tasks one after another; stops at the first failure".into(),
            config_schema: json!({
                "type": "object",
                "properties": { "continue_on_failure": { "type": "boolean" } },
                "additionalProperties": false
            })
            .to_string(),
        }
    }

    fn expand(spec: String, tasks: Vec<TaskSpec>) -> Result<Expansion, String> {
        let spec: Value = serde_json::from_str(&spec).map_err(|e| e.to_string())?;
        if let Some(key) = spec
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "continue_on_failure"))
        {
            return Err(format!(
                "unknown key `{key}` in `with` (sequential takes `continue_on_failure`)"
            ));
        }
        let keep_going = spec["continue_on_failure"].as_bool().unwrap_or(false);
        Ok(Expansion {
            mode: ExecutionMode::Sequential,
            fail_fast: !keep_going,
            tasks,
        })
    }

    fn reduce(_spec: String, results: Vec<TaskResult>) -> BatchOutcome {
        summarize(&results)
    }
}

/// Completed when every task completed; the first failure is the error.
fn summarize(results: &[TaskResult]) -> BatchOutcome {
    let done = results
        .iter()
        .filter(|r| r.state == TaskState::Completed)
        .count();
    let first_failure = results.iter().find(|r| r.state == TaskState::Failed);
    let outputs: serde_json::Map<String, Value> = results
        .iter()
        .filter_map(|r| Some((r.id.clone(), serde_json::from_str(r.output.as_ref()?).ok()?)))
        .collect();
    BatchOutcome {
        completed: done == results.len(),
        summary: format!("{done} of {} tasks completed", results.len()),
        error: first_failure.map(|r| {
            format!(
                "task `{}` failed: {}",
                r.id,
                r.error.as_deref().unwrap_or("no reason given")
            )
        }),
        output: Value::Object(outputs).to_string(),
    }
}

runner_plugin_sdk::export_batch!(Sequential);
