//! Plugin versions, the compatibility check and first-compile feedback, on
//! real components: the shipped plugins (built against the newest
//! `runner:plugin`), the 0.1.0 components committed in
//! `tests/fixtures/plugin-0.1.0/`, and components built here from WIT with
//! `wit-component`.

use crate::pipelines::run_binary;
use crate::support::{Project, plugin};
use protocol::{CompileStatus, EventKind, TaskStatus};
use runner::events::EventBus;
use runner::plugin::{Plugins, check};
use std::path::{Path, PathBuf};
use wit_component::{ComponentEncoder, StringEncoding, embed_component_metadata};
use wit_parser::{ManglingAndAbi, Resolve};

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/plugin-0.1.0")
        .join(name)
        .display()
        .to_string()
}

/// A component of `world` in `wit` (pushed after the runner's own WIT, so it
/// may use `runner:plugin`), with functions that trap: enough for the check.
fn component(wit: &str, world: &str, with_runner_wit: bool) -> Vec<u8> {
    let mut resolve = if with_runner_wit {
        check::ours()
    } else {
        Resolve::new()
    };
    let package = resolve.push_str("test.wit", wit).expect("test WIT parses");
    let world = resolve
        .select_world(&[package], Some(world))
        .expect("world");
    let mut module = wit_component::dummy_module(&resolve, world, ManglingAndAbi::Standard32);
    embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8).unwrap();
    ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

async fn plugin_check(file: &Path) -> (i32, String) {
    let dir = file.parent().unwrap();
    let (code, stdout, stderr) =
        run_binary(dir, &["plugin", "check", &file.display().to_string()], &[]).await;
    assert!(stderr.is_empty(), "{stderr}");
    (code, stdout)
}

#[tokio::test]
async fn plugin_check_says_which_world_and_version_the_shipped_and_the_0_1_0_plugins_target() {
    let (code, out) = plugin_check(Path::new(&plugin("checksum"))).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("block-plugin of runner:plugin@0.2.0: this runner can load it"),
        "{out}"
    );
    let (code, out) = plugin_check(Path::new(&plugin("claude_adapter"))).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("agent-plugin of runner:plugin@0.2.0"), "{out}");
    let (code, out) = plugin_check(Path::new(&fixture("sequential.wasm"))).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("batch-plugin of runner:plugin@0.1.0: this runner can load it"),
        "{out}"
    );
    let (code, out) = plugin_check(Path::new(&plugin("wordcount"))).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("wasi:cli/command (wasi:cli@0.2"), "{out}");
}

#[tokio::test]
async fn plugin_check_names_an_unknown_import_with_its_signature_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let wit = r#"
package test:extra;
interface api { ping: func(times: u32) -> string; }
world extra { import api; include runner:plugin/block-plugin@0.2.0; }
"#;
    let file = write(dir.path(), "extra.wasm", &component(wit, "extra", true));
    let (code, out) = plugin_check(&file).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("block-plugin of runner:plugin@0.2.0: this runner cannot load it"),
        "{out}"
    );
    assert!(out.contains("unexpected import `test:extra/api`"), "{out}");
    assert!(
        out.contains("found:    ping: func(times: u32) -> string"),
        "{out}"
    );
}

#[tokio::test]
async fn plugin_check_shows_both_signatures_of_an_export_that_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    // A `runner:plugin@0.2.0` of its own whose `run` lost its `input`.
    let wit = r#"
package runner:plugin@0.2.0;
interface types {
    record plugin-info { name: string, version: string, description: string, config-schema: string }
}
interface block {
    use types.{plugin-info};
    describe: func() -> plugin-info;
    run: func(config: string) -> string;
}
world block-plugin { export block; }
"#;
    let file = write(
        dir.path(),
        "bad.wasm",
        &component(wit, "block-plugin", false),
    );
    let (code, out) = plugin_check(&file).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("export `runner:plugin/block@0.2.0`: function `run` does not match"),
        "{out}"
    );
    assert!(
        out.contains(
            "expected: run: func(config: string, input: string) -> result<string, string>"
        ),
        "{out}"
    );
    assert!(
        out.contains("found:    run: func(config: string) -> string"),
        "{out}"
    );
}

#[tokio::test]
async fn plugin_check_refuses_a_component_of_another_world_and_files_that_are_no_component() {
    let dir = tempfile::tempdir().unwrap();
    let wit =
        "package test:other;\ninterface thing { go: func(); }\nworld other { export thing; }\n";
    let file = write(dir.path(), "other.wasm", &component(wit, "other", false));
    let (code, out) = plugin_check(&file).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("it exports none of runner:plugin/block"),
        "{out}"
    );
    assert!(out.contains("found:    exports test:other/thing"), "{out}");

    let text = write(dir.path(), "notes.wasm", b"hello");
    let (code, out) = plugin_check(&text).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not a WebAssembly file"), "{out}");

    let core = write(dir.path(), "core.wasm", b"\0asm\x01\0\0\0");
    let (code, out) = plugin_check(&core).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("a core WebAssembly module, not a component"),
        "{out}"
    );
}

#[tokio::test]
async fn runner_check_reports_a_configured_plugin_file_that_does_not_fit() {
    let project = Project::new(
        "version = 1\n[defaults]\nstate_dir = \"{state}\"\n[plugins.other]\npath = \"other.wasm\"\n",
    );
    let wit =
        "package test:other;\ninterface thing { go: func(); }\nworld other { export thing; }\n";
    write(
        project.dir.path(),
        "other.wasm",
        &component(wit, "other", false),
    );
    let (code, stdout, _) = run_binary(project.dir.path(), &["check"], &[]).await;
    assert_eq!(code, 2, "{stdout}");
    // The file is named as the configuration resolved it (absolute).
    let named = format!(
        "plugin `other` ({}): no world this runner knows: this runner cannot load it",
        project.dir.path().join("other.wasm").display()
    );
    assert!(stdout.contains(&named), "{stdout}");
}

#[tokio::test]
async fn a_component_not_in_the_compile_cache_reports_compiling_with_its_size_then_the_time_it_took()
 {
    let state = tempfile::tempdir().unwrap();
    let project = Project::new(&format!(
        "version = 1\n[defaults]\nstate_dir = {:?}\n[plugins.checksum]\nbuiltin = \"checksum\"\n",
        state.path().display().to_string()
    ));
    let config = project.config();
    let size = runner::builtin::bytes("checksum").unwrap().len() as u64;
    let bus = EventBus::new(1);
    let mut events = bus.subscribe();
    Plugins::load_reporting(&config, Some(&["checksum".to_string()]), Some(&bus))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let EventKind::PluginCompile {
            plugin,
            size_bytes,
            status,
            duration_ms,
            ..
        } = &event.kind
        {
            seen.push((plugin.clone(), *size_bytes, *status, duration_ms.is_some()));
        }
    }
    assert_eq!(
        seen,
        vec![
            (
                "checksum".to_string(),
                size,
                CompileStatus::Compiling,
                false
            ),
            ("checksum".to_string(), size, CompileStatus::Compiled, true),
        ]
    );
    // Cached now: a second load compiles nothing and says nothing.
    let bus = EventBus::new(1);
    let mut events = bus.subscribe();
    Plugins::load_reporting(&config, Some(&["checksum".to_string()]), Some(&bus))
        .await
        .unwrap();
    assert!(events.try_recv().is_err());
}

/// A start trusts a remembered digest only while the file is unchanged:
/// a component rebuilt in place, even with its old modification time put
/// back, is read, hashed and used.
#[tokio::test]
async fn a_component_rebuilt_in_place_is_used_even_with_its_old_modification_time() {
    let project = Project::new(
        "version = 1\n[defaults]\nstate_dir = \"{state}\"\n[git]\nenabled = false\n\
         [plugins.p]\npath = \"p.wasm\"\ncapabilities.dirs = [{ host = \".\", guest = \"/data\" }]\n\
         [[pipelines.default.batches]]\nid = \"b\"\n\
         [[pipelines.default.batches.tasks]]\nid = \"t\"\ntype = \"p\"\nconfig = { paths = [\"/data/runner.toml\"] }\n",
    );
    let file = project.dir.path().join("p.wasm");
    std::fs::copy(plugin("chaos"), &file).unwrap();
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    for _ in 0..2 {
        // The second start comes from the cache and the remembered digest.
        let (report, _) = project.run("default").await;
        assert_eq!(report.outputs["t"], serde_json::Value::Null, "{report:?}");
    }
    std::fs::write(&file, std::fs::read(plugin("checksum")).unwrap()).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let (report, _) = project.run("default").await;
    assert_eq!(report.outputs["t"]["count"], 1, "{report:?}");
}

#[tokio::test]
async fn runner_check_warms_the_compile_cache_so_the_first_run_compiles_nothing() {
    let state = tempfile::tempdir().unwrap();
    let project = Project::new(&format!(
        r#"version = 1
[defaults]
state_dir = {:?}
[plugins.checksum]
builtin = "checksum"
capabilities.dirs = [{{ host = "data", guest = "/data" }}]
[[pipelines.default.batches]]
id = "sums"
[[pipelines.default.batches.tasks]]
id = "sum"
type = "checksum"
config = {{ paths = ["/data"] }}
"#,
        state.path().display().to_string()
    ));
    project.file("data/a.txt", "a");
    let (code, stdout, stderr) = run_binary(project.dir.path(), &["check"], &[]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("compiling checksum ("), "{stderr}");
    assert!(stderr.contains("compiled checksum ("), "{stderr}");
    let (code, stdout, stderr) = run_binary(project.dir.path(), &["run"], &[]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stderr.contains("compiling"), "{stderr}");
}

#[tokio::test]
async fn a_0_1_0_component_runs_next_to_a_0_2_0_one_in_the_same_run() {
    let project = Project::new(&format!(
        r#"version = 1
[defaults]
state_dir = "{{state}}"
[plugins.checksum]
builtin = "checksum"
capabilities.dirs = [{{ host = "data", guest = "/data" }}]
[plugins.old_checksum]
path = {:?}
capabilities.dirs = [{{ host = "data", guest = "/data" }}]
[plugins.old_sequential]
path = {:?}
[[pipelines.default.batches]]
id = "sums"
type = "old_sequential"
[[pipelines.default.batches.tasks]]
id = "new"
type = "checksum"
config = {{ paths = ["/data"] }}
[[pipelines.default.batches.tasks]]
id = "old"
type = "old_checksum"
config = {{ paths = ["/data"] }}
"#,
        fixture("checksum.wasm"),
        fixture("sequential.wasm")
    ));
    project.file("data/a.txt", "hello");
    let plugins = Plugins::load(&project.config(), None).await.unwrap();
    assert_eq!(
        plugins.get("checksum").unwrap().wit_version,
        "runner:plugin@0.2.0"
    );
    assert_eq!(
        plugins.get("old_checksum").unwrap().wit_version,
        "runner:plugin@0.1.0"
    );
    assert_eq!(
        plugins.get("old_sequential").unwrap().wit_version,
        "runner:plugin@0.1.0"
    );
    let (report, events) = project.run("default").await;
    assert_eq!(report.status, protocol::RunStatus::Completed, "{events:#?}");
    for task in ["new", "old"] {
        assert!(events.iter().any(|e| matches!(&e.kind,
            EventKind::TaskFinished { task_id, status: TaskStatus::Completed, result: Some(result), .. }
                if task_id == task && result["count"] == 1)), "{task}: {events:#?}");
    }
}

#[tokio::test]
async fn a_0_1_0_agent_adapter_builds_its_command_line_and_parses_lines_as_before() {
    let project = Project::new(&format!(
        "version = 1\n[defaults]\nstate_dir = \"{{state}}\"\n[plugins.old_claude]\npath = {:?}\n",
        fixture("claude_adapter.wasm")
    ));
    let plugins = Plugins::load(&project.config(), None).await.unwrap();
    let adapter = plugins.get("old_claude").unwrap();
    assert_eq!(adapter.world.name(), "agent-plugin");
    let mut session = adapter
        .agent_session(
            std::time::Duration::from_secs(10),
            runner::plugin::discard(),
        )
        .await
        .unwrap();
    assert!(!session.handles_approvals());
    let request = runner::plugin::AgentRequest {
        prompt: "say hi".into(),
        model: None,
        working_dir: "/tmp".into(),
        resume_session: None,
        program: None,
        extra_args: vec![],
        options: vec![],
    };
    let invocation = session.start(&request).await.unwrap().unwrap();
    assert_eq!(invocation.program, "claude");
    assert!(
        invocation.args.contains(&"say hi".to_string()),
        "{:?}",
        invocation.args
    );
    let events = session
        .parse_line(
            protocol::Stream::Stdout,
            r#"{"type":"system","subtype":"init","session_id":"s-1"}"#,
        )
        .await
        .unwrap();
    assert!(
        matches!(events.as_slice(), [runner::plugin::AgentEvent::SessionStarted(id)] if id == "s-1"),
        "{events:?}"
    );
}

/// 0.2.0 only adds to 0.1.0: every 0.1.0 world is a semver-compatible
/// predecessor of the 0.2.0 world of the same name (what
/// `wasm-tools component semver-check` checks).
#[test]
fn every_0_1_0_world_is_still_there_unchanged_in_0_2_0() {
    let resolve = check::ours();
    let world = |version: &str, name: &str| {
        resolve
            .worlds
            .iter()
            .find(|(_, w)| {
                w.name == name
                    && w.package.is_some_and(|p| {
                        resolve.packages[p]
                            .name
                            .version
                            .as_ref()
                            .map(|v| v.to_string())
                            == Some(version.to_string())
                    })
            })
            .map(|(id, _)| id)
            .unwrap_or_else(|| panic!("no {name}@{version}"))
    };
    for name in ["block-plugin", "batch-plugin", "agent-plugin"] {
        wit_component::semver_check(resolve.clone(), world("0.1.0", name), world("0.2.0", name))
            .unwrap_or_else(|err| panic!("{name}: 0.2.0 changed what 0.1.0 had: {err:#}"));
    }
    // And the check catches a change: an export 0.1.0 never had.
    let changed = resolve.clone();
    assert!(
        wit_component::semver_check(
            changed,
            world("0.1.0", "agent-plugin"),
            world("0.2.0", "approving-agent-plugin")
        )
        .is_err()
    );
}
