//! Bad `runner.toml` files and the exact errors they produce.
//!
//! Every `tests/ui/<case>.toml` is checked the way `runner check` checks a
//! file (read and resolve the config, load every plugin, match plugins to
//! worlds) and must fail with exactly the text in `tests/ui/<case>.err`.
//! The case is written as `runner.toml` into a temporary directory, whose
//! path shows as `$DIR`; `{chaos}`, `{probe}` and `{state}` are replaced as
//! in [`Project`], and shown back as `$PLUGINS/<name>.wasm` and `$STATE`; a
//! file's sha256 in a mismatch shows as `$SHA256`.
//!
//! `RUNNER_BLESS=1 cargo test -p runner-tests --test all config_errors`
//! (re)writes the `.err` files; review every one before committing it.

use crate::support::{Project, plugin, shared_state_dir};
use runner::config::Config;
use runner::events::EventBus;
use runner::plugin::Plugins;
use runner::run::Runner;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ui")
}

/// The error `runner check` reports for `project`, with its paths normalized.
async fn check_error(project: &Project) -> Option<String> {
    let error = match Config::load(&project.path()) {
        Err(err) => err.to_string(),
        Ok(config) => {
            let config = Arc::new(config);
            match Plugins::load(&config, None).await {
                Err(err) => err.to_string(),
                Ok(plugins) => match Runner::new(config, Arc::new(plugins), EventBus::new(1)) {
                    Err(err) => err.to_string(),
                    Ok(_) => return None,
                },
            }
        }
    };
    let plugin_dir = Path::new(&plugin("chaos"))
        .parent()
        .unwrap()
        .display()
        .to_string();
    let error = error
        .replace(&project.dir.path().display().to_string(), "$DIR")
        .replace(&plugin_dir, "$PLUGINS")
        .replace(&shared_state_dir(), "$STATE");
    Some(hide_file_digests(&error))
}

/// `the file is <sha256>` → `the file is $SHA256`: a rebuilt plugin has
/// another digest, and the case is about the mismatch, not the number.
fn hide_file_digests(text: &str) -> String {
    const MARK: &str = "the file is ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        let after = &rest[at + MARK.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_hexdigit).count();
        out.push_str(&rest[..at + MARK.len()]);
        if digits == 64 {
            out.push_str("$SHA256");
            rest = &after[64..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(ui_dir())
        .expect("tests/ui exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    cases
}

#[tokio::test]
async fn every_bad_runner_toml_in_tests_ui_fails_with_the_error_in_its_err_file() {
    let cases: Vec<PathBuf> = cases();
    compare(
        &cases,
        std::env::var_os("RUNNER_BLESS").is_some_and(|v| v == "1"),
    )
    .await;
}

async fn compare(cases: &[PathBuf], bless: bool) {
    assert!(!cases.is_empty(), "no cases in {}", ui_dir().display());
    let mut mismatches = Vec::new();
    for case in cases {
        let name = case.file_stem().unwrap().to_string_lossy().into_owned();
        let project = Project::new(&std::fs::read_to_string(case).unwrap());
        let Some(actual) = check_error(&project).await else {
            mismatches.push(format!(
                "{name}: expected an error, but the file checks out"
            ));
            continue;
        };
        let actual = format!("{actual}\n");
        let expected_file = case.with_extension("err");
        if bless {
            std::fs::write(&expected_file, &actual).unwrap();
            continue;
        }
        match std::fs::read_to_string(&expected_file) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => mismatches.push(format!(
                "{name}:\n--- expected\n{expected}--- actual\n{actual}"
            )),
            Err(_) => mismatches.push(format!(
                "{name}: no {} (bless with RUNNER_BLESS=1)\n{actual}",
                expected_file.display()
            )),
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} cases differ:\n\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}

#[test]
fn every_ui_case_has_an_err_file_and_every_err_file_a_case() {
    for case in cases() {
        assert!(
            case.with_extension("err").is_file(),
            "{} has no .err",
            case.display()
        );
    }
    for entry in std::fs::read_dir(ui_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "err") {
            assert!(
                path.with_extension("toml").is_file(),
                "{} has no .toml",
                path.display()
            );
        }
    }
}

/// Beyond the exact texts: every config error starts with
/// `$DIR/runner.toml:LINE:COLUMN: ` and names a key in backquotes.
#[tokio::test]
async fn every_config_error_names_the_file_the_line_and_column_and_a_key() {
    let mut without = Vec::new();
    for case in cases().iter() {
        let project = Project::new(&std::fs::read_to_string(case).unwrap());
        let error = check_error(&project).await.unwrap_or_default();
        let first = error.lines().next().unwrap_or("");
        if first.starts_with("plugin `") {
            continue; // a plugin that fails to load is named with its file instead
        }
        let numbered = |part: Option<&str>| {
            part.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        };
        let located = first.strip_prefix("$DIR/runner.toml:").is_some_and(|rest| {
            let mut parts = rest.splitn(3, ':');
            numbered(parts.next())
                && numbered(parts.next())
                && parts.next().is_some_and(|m| m.starts_with(' '))
        });
        let names_a_key =
            first.matches('`').count() >= 2 || case.file_stem().is_some_and(|s| s == "not_toml");
        if !located || !names_a_key {
            without.push(format!(
                "{}: {first}",
                case.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(
        without.is_empty(),
        "errors without file:line:column or a key:\n{}",
        without.join("\n")
    );
}

/// Values at the limits `runner.toml` allows run like any others: deadlines
/// a year away are computed without overflowing (issue 9.6), for a block,
/// a host command and an agent.
#[tokio::test]
async fn a_pipeline_whose_timeouts_are_a_year_runs_to_the_end_without_panicking() {
    use crate::pipelines::status_of;
    use protocol::{RunStatus, TaskStatus};
    let fake_claude = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("examples/fake-agents/claude");
    let project = Project::new(&format!(
        r#"
version = 1

[defaults]
state_dir = "{{state}}"
timeout = "8760h"

[plugins.chaos]
path = "{{chaos}}"
limits.timeout = "8759h60m"

[agents.reviewer]
adapter = "claude"
command = "{}"
timeout = "8760h"

[server]
heartbeat = "1h"

[[pipelines.default.batches]]
id = "all"

[[pipelines.default.batches.tasks]]
id = "block"
type = "chaos"
config = {{ mode = "echo" }}

[[pipelines.default.batches.tasks]]
id = "shell"
type = "exec"
config = {{ command = "echo fine" }}

[[pipelines.default.batches.tasks]]
id = "ask"
type = "agent"
config = {{ agent = "reviewer", prompt = "Review the change" }}
"#,
        fake_claude.display()
    ));
    let (report, events) = project.run("default").await;
    for task in ["block", "shell", "ask"] {
        assert_eq!(status_of(&events, task), TaskStatus::Completed, "{task}");
    }
    assert_eq!(report.status, RunStatus::Completed);
}
