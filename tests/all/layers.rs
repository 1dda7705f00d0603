//! The modules of `runner/src` import each other one way, in the layers
//! `runner/src/lib.rs` documents. Read from the `crate::` paths in the
//! source (outside `#[cfg(test)] mod tests`), as `.ci` reads them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module and its layer: a module may import only modules of
/// a lower layer. The leaves stand on `units` alone; `store`, `queue` and `git` sit
/// beside `plugin`: above `config`, and neither imports the other or `plugin`.
const LAYERS: &[(&str, u32)] = &[
    ("units", 0),
    ("hash", 0),
    ("builtin", 1),
    ("process", 1),
    ("slots", 1),
    ("ids", 1),
    ("events", 1),
    ("printer", 1),
    ("config", 2),
    ("plugin", 3),
    ("store", 3),
    ("queue", 3),
    ("git", 3),
    ("agents", 4),
    ("run", 5),
    ("worker", 5),
    ("watch", 6),
    ("service", 7),
    ("server", 8),
    ("cli", 9),
];

/// One `crate::` reference: the module it names, where, and the line.
struct Import {
    from: String,
    to: String,
    file: PathBuf,
    line: usize,
    text: String,
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The identifier starting at `text[at..]`.
fn ident(text: &str, at: usize) -> &str {
    let rest = &text[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The modules a file's non-test code names through `crate::`, with the
/// byte offset of each reference. `use crate::{a::X, b::Y}` names `a` and `b`.
fn references(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(i) = text[at..].find("crate::") {
        let start = at + i + "crate::".len();
        at = start;
        if text[start..].starts_with('{') {
            let end = text[start..].find(';').map_or(text.len(), |e| start + e);
            let block = &text[start + 1..end];
            let mut offset = 0;
            while offset < block.len() {
                let word = ident(block, offset);
                let preceded = offset == 0
                    || block[..offset]
                        .ends_with(|c: char| c == ',' || c == '{' || c.is_whitespace());
                if !word.is_empty() {
                    if preceded && block[offset + word.len()..].starts_with("::") {
                        found.push((start, word.to_string()));
                    }
                    offset += word.len();
                } else {
                    offset += block[offset..].chars().next().map_or(1, char::len_utf8);
                }
            }
        } else {
            found.push((start, ident(text, start).to_string()));
        }
    }
    found
}

/// The text before `#[cfg(test)] mod tests {`.
fn without_tests(text: &str) -> &str {
    let mut at = 0;
    while let Some(i) = text[at..].find("#[cfg(test)]") {
        let after = text[at + i + "#[cfg(test)]".len()..].trim_start();
        if after.starts_with("mod tests")
            && after["mod tests".len()..].trim_start().starts_with('{')
        {
            return &text[..at + i];
        }
        at += i + 1;
    }
    text
}

fn imports() -> Vec<Import> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runner/src");
    let mut files = Vec::new();
    source_files(&root, &mut files);
    files.sort();
    let mut imports = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&root).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let from = first.to_str().unwrap().trim_end_matches(".rs").to_string();
        if from == "lib" || from == "main" {
            continue;
        }
        let full = std::fs::read_to_string(&file).unwrap();
        let text = without_tests(&full);
        for (offset, to) in references(text) {
            if to == from {
                continue;
            }
            let line = text[..offset].matches('\n').count() + 1;
            imports.push(Import {
                from: from.clone(),
                to,
                file: relative.to_path_buf(),
                line,
                text: full
                    .lines()
                    .nth(line - 1)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            });
        }
    }
    imports
}

#[test]
fn every_module_imports_only_modules_of_a_lower_layer() {
    let layer: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let imports = imports();
    assert!(
        imports.iter().any(|i| i.from == "run" && i.to == "config"),
        "the scan found no `crate::config` in run: it no longer reads the source"
    );
    let mut wrong = Vec::new();
    for import in &imports {
        let (Some(from), Some(to)) = (
            layer.get(import.from.as_str()),
            layer.get(import.to.as_str()),
        ) else {
            let unknown = if layer.contains_key(import.from.as_str()) {
                &import.to
            } else {
                &import.from
            };
            wrong.push(format!(
                "runner/src/{}:{}: `{}`: module `{unknown}` has no layer; place it in LAYERS here and in lib.rs",
                import.file.display(),
                import.line,
                import.text,
            ));
            continue;
        };
        if to >= from {
            wrong.push(format!(
                "runner/src/{}:{}: `{}`: {} (layer {from}) imports {} (layer {to}), which is not below it",
                import.file.display(),
                import.line,
                import.text,
                import.from,
                import.to,
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that point up or sideways:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scan_reads_grouped_uses_and_skips_test_modules() {
    let text = "use crate::{a::X, b::{Y, Z}};\nfn f() { crate::c::g(); }\n#[cfg(test)]\nmod tests {\n    use crate::d::W;\n}\n";
    let names: Vec<String> = references(without_tests(text))
        .into_iter()
        .map(|(_, name)| name)
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
}
