//! `target/bench/summary.json`: every bench merges its figures in under its
//! own key, so one file holds the figures of one session's benches (and
//! `benches/compare/compare.py` adds its own), for comparing two commits.

use serde_json::{Value, json};

/// Merges `figures` under `key` into `target/bench/summary.json`.
pub fn merge(key: &str, figures: Value) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench/summary.json");
    let mut all: Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    if !all["figures"].is_object() {
        all["figures"] = json!({});
    }
    all["figures"][key] = figures;
    let _ = std::fs::create_dir_all(path.parent().expect("a parent"));
    match std::fs::write(
        &path,
        serde_json::to_string_pretty(&all).expect("JSON") + "\n",
    ) {
        Ok(()) => println!("merged into {}", path.display()),
        Err(err) => eprintln!("cannot write {}: {err}", path.display()),
    }
}
