//! A block type that misbehaves on purpose, for tests and benchmarks.
//!
//! `config.mode` picks the behaviour: `noop`, `echo`, `log`, `fail`, `spin`,
//! `memory-bomb`, `trap`, `stack-overflow`.

use runner_plugin_sdk::block::{Guest, LogLevel, PluginInfo, host};
use serde_json::{Value, json};

struct Chaos;

impl Guest for Chaos {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "chaos".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Misbehaves on purpose: spins, traps, eats memory (for tests)".into(),
            config_schema: r#"{"type":"object","properties":{"mode":{"type":"string"}}}"#.into(),
        }
    }

    fn run(config: String, input: String) -> Result<String, String> {
        let config: Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        let mode = config["mode"].as_str().unwrap_or("noop");
        match mode {
            "noop" => Ok("null".into()),
            "echo" => Ok(json!({ "config": config, "input": serde_json::from_str::<Value>(&input).unwrap_or(Value::Null) }).to_string()),
            "log" => {
                host::progress("logging", Some(50));
                host::log(LogLevel::Info, config["message"].as_str().unwrap_or("hello from chaos"));
                host::log(LogLevel::Warn, "a warning");
                println!("chaos says hi on stdout");
                eprintln!("chaos says hi on stderr");
                Ok(json!({"logged": true}).to_string())
            }
            "fail" => Err(config["message"].as_str().unwrap_or("chaos failed on purpose").into()),
            "spin" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("chaos trapped on purpose"),
            "stack-overflow" => Ok(recurse(std::hint::black_box(1)).to_string()),
            other => Err(format!("unknown mode `{other}`")),
        }
    }
}

/// Recurses without a frame in linear memory, so it is wasm's own stack
/// that runs out.
#[allow(unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    recurse(std::hint::black_box(n + 1)).wrapping_add(n)
}

runner_plugin_sdk::export_block!(Chaos);
