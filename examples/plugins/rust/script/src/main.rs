//! `linecount PATH...`: a script in Rust (a plain `wasi:cli/command`).
//!
//! Prints `PATH: N lines` per file, then a JSON summary as its last line:
//! `{"files", "lines", "env"}`, `env` being the names of the variables it
//! sees. A file it cannot read (outside its granted directories, say) is an
//! error: `cannot read PATH: ...` on stderr and exit code 1.

use std::process::ExitCode;

fn main() -> ExitCode {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: linecount PATH...");
        return ExitCode::FAILURE;
    }
    let mut total = 0;
    for path in &paths {
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(err) => {
                eprintln!("cannot read {path}: {err}");
                return ExitCode::FAILURE;
            }
        };
        let lines = text.lines().count();
        println!("{path}: {lines} lines");
        total += lines;
    }
    let mut env: Vec<String> = std::env::vars().map(|(name, _)| name).collect();
    env.sort();
    let summary = serde_json::json!({"files": paths.len(), "lines": total, "env": env});
    println!("{summary}");
    ExitCode::SUCCESS
}
