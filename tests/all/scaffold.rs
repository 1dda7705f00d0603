//! `runner new KIND NAME --lang L`: the folder it writes builds with the
//! real toolchain and passes its own test (`test.sh`, which runs the
//! plugin through `runner run`); bad requests are refused with exit 2.

use crate::pipelines::{run_binary, runner_binary};
use crate::toolchains::{Lang, available, build_root, node_modules, repo};
use std::path::Path;
use std::process::Command;

async fn new(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["new"];
    all.extend_from_slice(args);
    run_binary(dir, &all, &[]).await
}

#[tokio::test]
async fn runner_new_refuses_a_bad_name_an_unknown_kind_or_language_and_a_full_folder() {
    // No runner.toml here: `new` needs none.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/file.txt"), "mine").unwrap();

    let (code, _, stderr) = new(dir.path(), &["block", "My_Step", "--lang", "python"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("`My_Step` is not a plugin name: use lowercase letters"),
        "{stderr}"
    );

    let (code, _, stderr) = new(dir.path(), &["widget", "x", "--lang", "python"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("'widget'") && stderr.contains("block, script, batch, agent"),
        "{stderr}"
    );

    let (code, _, stderr) = new(dir.path(), &["block", "x", "--lang", "go"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("'go'") && stderr.contains("rust, python, js, c"),
        "{stderr}"
    );

    let (code, _, stderr) = new(dir.path(), &["block", "taken", "--lang", "rust"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("taken exists and is not empty"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("taken/file.txt")).unwrap(),
        "mine",
        "nothing of the existing folder was touched"
    );
    for refused in ["My_Step", "x"] {
        assert!(
            !dir.path().join(refused).exists(),
            "`{refused}` was created"
        );
    }
}

/// `runner new KIND NAME --lang L` in a temp dir, then the folder's own
/// `test.sh` (build with the real toolchain, `runner run`, check the output).
async fn scaffold_passes_its_test(kind: &str, lang: Lang, flag: &str) {
    let test = format!("runner new {kind} --lang {flag}");
    if !available(lang, &test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = format!("my-{kind}");
    let (code, stdout, stderr) = new(dir.path(), &[kind, &name, "--lang", flag]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("[plugins.{name}]\npath = \"{name}/{name}.wasm\"")),
        "it prints the runner.toml lines: {stdout}"
    );
    let folder = dir.path().join(&name);
    if kind != "script" {
        assert_eq!(
            std::fs::read_to_string(folder.join("wit/plugin.wit")).unwrap(),
            std::fs::read_to_string(repo().join("wit/plugin.wit")).unwrap(),
            "the template carries the runner's own WIT"
        );
    }
    let started = std::time::Instant::now();
    let output = Command::new("sh")
        .arg(folder.join("test.sh"))
        .env("RUNNER", runner_binary())
        .env("CARGO_TARGET_DIR", build_root().join("cargo-target"))
        .env("JCO", node_modules().join(".bin/jco"))
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("sh runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{name}/test.sh failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("test passed: {name} ran")),
        "{stdout}"
    );
    assert!(folder.join(format!("{name}.wasm")).exists());
    if kind == "block" {
        // The greeting comes from the config, not from the template's text.
        let toml = std::fs::read_to_string(folder.join("runner.toml")).unwrap();
        let changed = toml.replace(r#"who = "runner""#, r#"who = "a reader""#);
        assert_ne!(toml, changed, "runner.toml sets `who`: {toml}");
        std::fs::write(folder.join("runner.toml"), changed).unwrap();
        let (code, events, stderr) = run_binary(&folder, &["run", "--json"], &[]).await;
        assert_eq!(code, 0, "{events}\n{stderr}");
        assert!(
            events.contains(r#""greeting":"hello, a reader""#),
            "the block greets the `who` of its config: {events}"
        );
    }
    eprintln!(
        "{test}: built and tested in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn runner_new_python_block_builds_and_passes_its_own_test() {
    scaffold_passes_its_test("block", Lang::Python, "python").await;
}

#[tokio::test]
#[ignore = "slow (a full build and first compile); run with --ignored"]
async fn runner_new_python_script_builds_and_passes_its_own_test() {
    scaffold_passes_its_test("script", Lang::Python, "python").await;
}

#[tokio::test]
#[ignore = "slow (a full build and first compile); run with --ignored"]
async fn runner_new_python_batch_builds_and_passes_its_own_test() {
    scaffold_passes_its_test("batch", Lang::Python, "python").await;
}

#[tokio::test]
#[ignore = "slow (a full build and first compile); run with --ignored"]
async fn runner_new_python_agent_builds_and_passes_its_own_test() {
    scaffold_passes_its_test("agent", Lang::Python, "python").await;
}

#[tokio::test]
async fn runner_new_rust_block_builds_and_passes_its_own_test() {
    scaffold_passes_its_test("block", Lang::Rust, "rust").await;
}

#[tokio::test]
async fn runner_new_rust_script_builds_and_passes_its_own_test() {
    scaffold_passes_its_test("script", Lang::Rust, "rust").await;
}

#[tokio::test]
async fn runner_new_rust_batch_builds_and_passes_its_own_test() {
    scaffold_passes_its_test("batch", Lang::Rust, "rust").await;
}

#[tokio::test]
async fn runner_new_rust_agent_builds_and_passes_its_own_test() {
    scaffold_passes_its_test("agent", Lang::Rust, "rust").await;
}

#[tokio::test]
async fn runner_new_js_block_builds_and_passes_its_own_test() {
    scaffold_passes_its_test("block", Lang::JavaScript, "js").await;
}

#[tokio::test]
#[ignore = "slow (a full build and first compile); run with --ignored"]
async fn runner_new_js_script_builds_and_passes_its_own_test() {
    scaffold_passes_its_test("script", Lang::JavaScript, "js").await;
}

#[tokio::test]
#[ignore = "slow (a full build and first compile); run with --ignored"]
async fn runner_new_js_batch_builds_and_passes_its_own_test() {
    scaffold_passes_its_test("batch", Lang::JavaScript, "js").await;
}

#[tokio::test]
#[ignore = "slow (a full build and first compile); run with --ignored"]
async fn runner_new_js_agent_builds_and_passes_its_own_test() {
    scaffold_passes_its_test("agent", Lang::JavaScript, "js").await;
}

#[tokio::test]
async fn runner_new_c_block_builds_and_passes_its_own_test() {
    scaffold_passes_its_test("block", Lang::C, "c").await;
}

#[tokio::test]
async fn runner_new_c_script_builds_and_passes_its_own_test() {
    scaffold_passes_its_test("script", Lang::C, "c").await;
}

#[tokio::test]
async fn runner_new_c_batch_builds_and_passes_its_own_test() {
    scaffold_passes_its_test("batch", Lang::C, "c").await;
}

#[tokio::test]
async fn runner_new_c_agent_builds_and_passes_its_own_test() {
    scaffold_passes_its_test("agent", Lang::C, "c").await;
}
