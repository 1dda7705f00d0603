//! `matrix`: one task per value of a parameter, for every declared task.
//!
//! Spec (`with`): `parameter = "target"`, `values = ["a", "b"]`, optional
//! `fail_fast = true`, `max_failures = N`. Each task becomes one task per
//! value with id `<task>[<value>]`; every `{{matrix.<parameter>}}` in its
//! config strings is replaced by the value, and the value is also set as
//! `config.matrix = {"<parameter>": "<value>"}` when the config is a table.

use runner_plugin_sdk::batch::{
    BatchOutcome, ExecutionMode, Expansion, Guest, PluginInfo, TaskResult, TaskSpec, TaskState,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    parameter: String,
    values: Vec<Value>,
    #[serde(default)]
    fail_fast: bool,
    #[serde(default)]
    max_failures: usize,
}

fn parse(spec: &str) -> Result<Spec, String> {
    serde_json::from_str(spec).map_err(|e| format!("matrix `with`: {e}"))
}

struct Matrix;

impl Guest for Matrix {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "matrix".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "One task per value of a parameter".into(),
            config_schema: json!({
                "type": "object",
                "required": ["parameter", "values"],
                "properties": {
                    "parameter": { "type": "string" },
                    "values": { "type": "array", "minItems": 1 },
                    "fail_fast": { "type": "boolean" },
                    "max_failures": { "type": "integer", "minimum": 0 }
                },
                "additionalProperties": false
            })
            .to_string(),
        }
    }

    fn expand(spec: String, tasks: Vec<TaskSpec>) -> Result<Expansion, String> {
        let spec = parse(&spec)?;
        if spec.values.is_empty() {
            return Err("matrix `with.values` is empty: give at least one value".into());
        }
        let placeholder = format!("{{{{matrix.{}}}}}", spec.parameter);
        let mut expanded = Vec::new();
        for task in &tasks {
            for value in &spec.values {
                let text = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let mut config: Value =
                    serde_json::from_str(&task.config).map_err(|e| e.to_string())?;
                substitute(&mut config, &placeholder, &text);
                if let Value::Object(map) = &mut config {
                    map.insert("matrix".into(), json!({ spec.parameter.clone(): value }));
                }
                expanded.push(TaskSpec {
                    id: format!("{}[{text}]", task.id),
                    name: format!("{} ({} = {text})", task.name, spec.parameter),
                    template: task.template.clone(),
                    config: config.to_string(),
                });
            }
        }
        Ok(Expansion {
            mode: ExecutionMode::Parallel,
            fail_fast: spec.fail_fast,
            tasks: expanded,
        })
    }

    fn reduce(spec: String, results: Vec<TaskResult>) -> BatchOutcome {
        let allowed = parse(&spec).map(|s| s.max_failures).unwrap_or(0);
        let done = results
            .iter()
            .filter(|r| r.state == TaskState::Completed)
            .count();
        let failed: Vec<&str> = results
            .iter()
            .filter(|r| r.state != TaskState::Completed)
            .map(|r| r.id.as_str())
            .collect();
        let outputs: serde_json::Map<String, Value> = results
            .iter()
            .filter_map(|r| Some((r.id.clone(), serde_json::from_str(r.output.as_ref()?).ok()?)))
            .collect();
        let completed = failed.len() <= allowed;
        BatchOutcome {
            completed,
            summary: format!("{done} of {} combinations completed", results.len()),
            error: (!completed)
                .then(|| format!("combinations that did not complete: {}", failed.join(", "))),
            output: Value::Object(outputs).to_string(),
        }
    }
}

fn substitute(value: &mut Value, placeholder: &str, text: &str) {
    match value {
        Value::String(s) if s.contains(placeholder) => *s = s.replace(placeholder, text),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| substitute(v, placeholder, text)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| substitute(v, placeholder, text)),
        _ => {}
    }
}

runner_plugin_sdk::export_batch!(Matrix);
