//! `checksum`: the SHA-256 of files, or of every file under a directory.
//!
//! Config: `paths = ["/data/report.txt", "/data/src"]` (guest paths inside
//! the directories granted to the plugin). Output:
//! `{"files": {"<path>": "<hex>"}, "count": N, "bytes": N}`.

use runner_plugin_sdk::block::{Guest, LogLevel, PluginInfo, host};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    paths: Vec<String>,
}

struct Checksum;

impl Guest for Checksum {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "checksum".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "SHA-256 of files or of every file under a directory".into(),
            config_schema: json!({
                "type": "object",
                "required": ["paths"],
                "properties": { "paths": { "type": "array", "items": { "type": "string" } } },
                "additionalProperties": false
            })
            .to_string(),
        }
    }

    fn run(config: String, _input: String) -> Result<String, String> {
        let config: Config =
            serde_json::from_str(&config).map_err(|e| format!("checksum config: {e}"))?;
        if config.paths.is_empty() {
            return Err("checksum config: `paths` is empty".into());
        }
        let mut files = Vec::new();
        for path in &config.paths {
            collect(Path::new(path), &mut files).map_err(|e| format!("{path}: {e}"))?;
        }
        files.sort();
        let mut sums = Map::new();
        let mut bytes = 0u64;
        for (index, file) in files.iter().enumerate() {
            let data = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
            bytes += data.len() as u64;
            let percent = ((index + 1) * 100 / files.len()) as u8;
            host::progress(&format!("hashed {}", file.display()), Some(percent));
            sums.insert(
                file.display().to_string(),
                Value::String(hex(&Sha256::digest(&data))),
            );
        }
        host::log(
            LogLevel::Info,
            &format!("hashed {} files, {bytes} bytes", files.len()),
        );
        Ok(json!({ "files": sums, "count": files.len(), "bytes": bytes }).to_string())
    }
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if std::fs::metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            collect(&entry?.path(), files)?;
        }
    } else {
        files.push(path.to_path_buf());
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

runner_plugin_sdk::export_block!(Checksum);
