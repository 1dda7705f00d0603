//! A block type that misbehaves on purpose, for tests and benchmarks.
//!
//! `config.mode` picks the behaviour: `noop`, `echo`, `log`, `fail`, `spin`,
//! `memory-bomb`, `trap`, `stack-overflow`, `stack-overflow-in-memory`,
//! `stack-overflow-in-memory-zeroed`, `out-of-bounds`, `flood` (writes
//! `config.bytes` bytes of `x` lines to stdout, 64 MiB by default).

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
            "stack-overflow-in-memory" => {
                Ok(recurse_with_frame(std::hint::black_box(1)).to_string())
            }
            "stack-overflow-in-memory-zeroed" => {
                Ok(recurse_with_zeroed_frame(std::hint::black_box(1)).to_string())
            }
            "out-of-bounds" => {
                // 3 GiB: far beyond this plugin's memory, far from its stack.
                let far = std::hint::black_box(0xC000_0000usize) as *const u8;
                // SAFETY: none; reading outside memory is the point, and
                // wasm turns it into a trap.
                Ok(unsafe { std::ptr::read_volatile(far) }.to_string())
            }
            "flood" => {
                use std::io::Write;
                let total = config["bytes"].as_u64().unwrap_or(64 << 20);
                let line = [b'x'; 1023];
                let mut block = Vec::with_capacity(64 << 10);
                while block.len() < 64 << 10 {
                    block.extend_from_slice(&line);
                    block.push(b'\n');
                }
                let mut stdout = std::io::stdout().lock();
                let mut left = total;
                while left > 0 {
                    let n = left.min(block.len() as u64) as usize;
                    stdout.write_all(&block[..n]).map_err(|e| e.to_string())?;
                    left -= n as u64;
                }
                stdout.flush().map_err(|e| e.to_string())?;
                Ok(json!({ "written": total }).to_string())
            }
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

/// Recurses with a 4 KiB frame in linear memory, as real Rust and C code
/// does, so it is the stack in linear memory that runs out first. The frame
/// is written word by word (plain stores, as most frames are).
#[allow(unconditional_recursion)]
#[inline(never)]
fn recurse_with_frame(n: u64) -> u64 {
    let frame: [u64; 512] = std::array::from_fn(|i| std::hint::black_box(n ^ i as u64));
    std::hint::black_box(&frame);
    recurse_with_frame(std::hint::black_box(n + 1)).wrapping_add(frame[0])
}

/// The same with a zeroed frame, which the compiler clears with one
/// `memory.fill`: that out-of-bounds trap comes without an address.
#[allow(unconditional_recursion)]
#[inline(never)]
fn recurse_with_zeroed_frame(n: u64) -> u64 {
    let mut frame = [0u8; 4096];
    frame[(n % 4096) as usize] = n as u8;
    std::hint::black_box(&mut frame);
    recurse_with_zeroed_frame(std::hint::black_box(n + 1)).wrapping_add(u64::from(frame[0]))
}

runner_plugin_sdk::export_block!(Chaos);
