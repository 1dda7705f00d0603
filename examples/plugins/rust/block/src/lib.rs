//! `greet`: a block plugin in Rust (world `block-plugin` of runner:plugin@0.2.0).
//!
//! Config: `{"name": "..."}`. Output: `{"greeting", "language", "upstream"}`,
//! where `upstream` lists the ids of the tasks whose outputs reached this one.

use runner_plugin_sdk::block::{Guest, LogLevel, PluginInfo, host};
use serde_json::{Value, json};

struct Greet;

impl Guest for Greet {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "greet".into(),
            version: "0.1.0".into(),
            description: "Greets someone (a block plugin in Rust)".into(),
            config_schema: json!({
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
            })
            .to_string(),
        }
    }

    fn run(config: String, input: String) -> Result<String, String> {
        let config: Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        let name = match config.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => name,
            // `Err` fails the task with this message.
            _ => return Err("config needs `name` (a non-empty string)".into()),
        };
        host::progress(&format!("greeting {name}"), Some(50));
        host::log(LogLevel::Info, &format!("greeting {name}"));
        let input: Value = serde_json::from_str(&input).map_err(|e| e.to_string())?;
        let mut upstream: Vec<&String> = input["outputs"]
            .as_object()
            .map(|outputs| outputs.keys().collect())
            .unwrap_or_default();
        upstream.sort();
        Ok(json!({"greeting": format!("hello, {name}"), "language": "rust", "upstream": upstream})
            .to_string())
    }
}

runner_plugin_sdk::export_block!(Greet);
