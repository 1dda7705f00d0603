//! `template`: renders text from the outputs of earlier tasks, and
//! optionally writes it to a file in a granted directory.
//!
//! Config: `template = "{{outputs.count.lines}} lines"`, optional
//! `path = "/out/report.md"`. A placeholder is a dotted path into the
//! task's input (`run.id`, `task.id`, `outputs.<task>.<field>...`); a
//! placeholder that names nothing fails the task, naming it.
//! Output: `{"text": "...", "path": "/out/report.md" | null}`.

use runner_plugin_sdk::block::{Guest, LogLevel, PluginInfo, host};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    template: String,
    path: Option<String>,
}

struct Template;

impl Guest for Template {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "template".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Renders text from earlier outputs, optionally into a file".into(),
            config_schema: json!({
                "type": "object",
                "required": ["template"],
                "properties": { "template": { "type": "string" }, "path": { "type": "string" } },
                "additionalProperties": false
            })
            .to_string(),
        }
    }

    fn run(config: String, input: String) -> Result<String, String> {
        let config: Config =
            serde_json::from_str(&config).map_err(|e| format!("template config: {e}"))?;
        let input: Value = serde_json::from_str(&input).map_err(|e| e.to_string())?;
        let text = render(&config.template, &input)?;
        if let Some(path) = &config.path {
            std::fs::write(path, &text).map_err(|e| format!("cannot write {path}: {e}"))?;
            host::log(
                LogLevel::Info,
                &format!("wrote {} bytes to {path}", text.len()),
            );
        }
        Ok(json!({ "text": text, "path": config.path }).to_string())
    }
}

fn render(template: &str, input: &Value) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| {
            format!(
                "unclosed `{{{{` in template at byte {}",
                template.len() - rest.len() + start
            )
        })?;
        let key = after[..end].trim();
        let value = key
            .split('.')
            .try_fold(input, |value, part| match value {
                Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => value.get(part),
            })
            .ok_or_else(|| format!("template placeholder `{key}` names nothing in the input"))?;
        match value {
            Value::String(s) => out.push_str(s),
            other => out.push_str(&other.to_string()),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

runner_plugin_sdk::export_block!(Template);
