//! `{{name}}`: a block plugin (world `block-plugin` of runner:plugin@0.2.0).

wit_bindgen::generate!({ world: "block-plugin", path: "wit" });

use exports::runner::plugin::block::Guest;
use runner::plugin::host;
use runner::plugin::types::{LogLevel, PluginInfo};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".into(),
            version: "0.1.0".into(),
            description: "A block plugin".into(),
            config_schema: "{}".into(),
        }
    }

    /// `config` and `input` are JSON; the `Ok` text is the task's output
    /// (JSON), an `Err` fails the task with that message.
    fn run(config: String, _input: String) -> Result<String, String> {
        let config: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        let who = config["who"].as_str().unwrap_or("world");
        host::progress(&format!("greeting {who}"), Some(50));
        host::log(LogLevel::Info, &format!("greeting {who}"));
        Ok(serde_json::json!({ "greeting": format!("hello, {who}") }).to_string())
    }
}

export!(Plugin);
