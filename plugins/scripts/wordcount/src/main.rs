//! `wordcount [PATH...]`: counts lines, words and bytes of files (or of
//! every file in a directory), like `wc`, and prints a JSON summary last.
//!
//! An example of a script: a plain WASI command component that sees only
//! the directories `runner.toml` grants it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let paths: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if paths.is_empty() {
        eprintln!("usage: wordcount PATH...");
        return ExitCode::from(2);
    }
    let mut files = Vec::new();
    for path in &paths {
        if let Err(err) = collect(path, &mut files) {
            eprintln!("wordcount: {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
    }
    files.sort();
    let (mut lines, mut words, mut bytes) = (0, 0, 0);
    for file in &files {
        let text = match std::fs::read(file) {
            Ok(text) => text,
            Err(err) => {
                eprintln!("wordcount: {}: {err}", file.display());
                return ExitCode::FAILURE;
            }
        };
        let text = String::from_utf8_lossy(&text);
        let (l, w, b) = (
            text.lines().count(),
            text.split_whitespace().count(),
            text.len(),
        );
        println!("{l:>7} {w:>7} {b:>7} {}", file.display());
        (lines, words, bytes) = (lines + l, words + w, bytes + b);
    }
    println!("{lines:>7} {words:>7} {bytes:>7} total");
    println!(
        r#"{{"files":{},"lines":{lines},"words":{words},"bytes":{bytes}}}"#,
        files.len()
    );
    ExitCode::SUCCESS
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            collect(&entry?.path(), files)?;
        }
    } else {
        std::fs::metadata(path)?;
        files.push(path.to_path_buf());
    }
    Ok(())
}
