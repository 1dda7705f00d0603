//! `runner watch` and plugins: component files and granted directories as
//! inputs, and reloading a changed component. Real components from the
//! build, copied into temp dirs and replaced as a build would (written
//! beside, then renamed over).

use super::{Watching, runs};
use crate::support::{Project, plugin};
use runner::run::RunReport;
use runner::watch::WatchEvent;
use std::path::Path;
use std::time::Duration;

/// `p` is a copy of the `chaos` block (its default `noop` mode outputs
/// `null`), kept under `target/` (ignored, but named in runner.toml) and
/// granted `data/`.
const PIPELINE: &str = r#"
version = 1
[defaults]
state_dir = "{state}"
[git]
enabled = false
[plugins.p]
path = "{component}"
capabilities.dirs = [{ host = "data", guest = "/data" }]

[[pipelines.default.batches]]
id = "hash"
inputs = ["src/**"]
[[pipelines.default.batches.tasks]]
id = "sum"
type = "p"
config = { paths = ["/data"] }

[[pipelines.default.batches]]
id = "docs"
inputs = ["docs/**"]
[[pipelines.default.batches.tasks]]
id = "render"
type = "exec"
config = { command = "echo ran >> out/docs.log" }
"#;

/// Puts `bytes` at `path` the way a build does: written beside it, then
/// renamed over it, so a watcher never reads half a file.
fn replace(path: &Path, bytes: &[u8]) {
    let beside = path.with_extension("wasm.partial");
    std::fs::write(&beside, bytes).unwrap();
    std::fs::rename(&beside, path).unwrap();
}

fn component(stem: &str) -> Vec<u8> {
    std::fs::read(plugin(stem)).unwrap_or_else(|err| panic!("{stem}.wasm: {err}"))
}

fn project(component: &str) -> Project {
    let project = Project::new(&PIPELINE.replace("{component}", component));
    project.file("src/a.rs", "fn a() {}\n");
    project.file("data/in.txt", "one\n");
    project.file("docs/index.md", "# Docs\n");
    std::fs::create_dir_all(project.dir.path().join("out")).unwrap();
    project
}

fn report(events: &[WatchEvent]) -> RunReport {
    events
        .iter()
        .find_map(|e| match e {
            WatchEvent::Finished(report) => Some(report.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no finished run in {events:?}"))
}

/// The plugin error among `events` (the last one), as (plugin, path, message).
fn plugin_error(events: &[WatchEvent]) -> (String, String, String) {
    match events.last() {
        Some(WatchEvent::PluginError {
            plugin,
            path,
            message,
        }) => (plugin.clone(), path.clone(), message.clone()),
        other => panic!("not a plugin error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugins_component_and_granted_directory_rerun_its_batch_and_a_new_component_is_used() {
    let project = project("target/plugins/p.wasm");
    let file = project.dir.path().join("target/plugins/p.wasm");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, component("chaos")).unwrap();
    let mut w = Watching::start(project, Duration::from_millis(50)).await;

    // A granted directory is an input of the batch whose task uses it.
    w.project.file("data/in.txt", "two\n");
    let (paths, batches, events) = w.next_run().await;
    assert_eq!(
        (paths, batches),
        (vec!["data/in.txt".into()], vec!["hash".into()])
    );
    assert_eq!(report(&events).outputs["sum"], serde_json::Value::Null);

    // A new component (another block: checksum) re-runs it, and is used.
    replace(&file, &component("checksum"));
    let (paths, batches, events) = w.next_run().await;
    assert_eq!(paths, vec!["target/plugins/p.wasm"]);
    assert_eq!(batches, vec!["hash"]);
    assert!(
        events.iter().any(|e| matches!(e,
            WatchEvent::PluginReloaded { plugin, path }
                if plugin == "p" && path == "target/plugins/p.wasm")),
        "{events:?}"
    );
    let report = report(&events);
    assert_eq!(report.status, protocol::RunStatus::Completed, "{report:?}");
    assert_eq!(report.outputs["sum"]["count"], 1, "{report:?}");
    assert_eq!(w.lines("out/docs.log"), 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_granted_outside_the_project_is_watched_with_its_ignores() {
    let outside = tempfile::tempdir().unwrap();
    let data = outside.path().join("data");
    std::fs::create_dir_all(data.join("deep")).unwrap();
    std::fs::write(data.join("deep/in.txt"), "one\n").unwrap();
    let toml = PIPELINE.replace(
        r#"host = "data""#,
        &format!("host = {:?}", data.display().to_string()),
    );
    let project = Project::new(&toml.replace("{component}", &plugin("checksum")));
    project.file("src/a.rs", "fn a() {}\n");
    project.file("docs/index.md", "# Docs\n");
    std::fs::create_dir_all(project.dir.path().join("out")).unwrap();
    let mut w = Watching::start(project, Duration::from_millis(50)).await;

    // A file deep in the granted directory re-runs the batch using it, and
    // is named by its absolute path.
    std::fs::write(data.join("deep/in.txt"), "two\n").unwrap();
    let (paths, batches, events) = w.next_run().await;
    let changed = data.join("deep/in.txt").display().to_string();
    assert_eq!((paths, batches), (vec![changed], vec!["hash".into()]));
    assert_eq!(report(&events).outputs["sum"]["count"], 1, "{events:?}");

    // A new file there counts too.
    std::fs::write(data.join("new.txt"), "three\n").unwrap();
    let (_, batches, events) = w.next_run().await;
    assert_eq!(batches, vec!["hash"]);
    assert_eq!(report(&events).outputs["sum"]["count"], 2, "{events:?}");

    // An editor's swap file there runs nothing: the next run is the
    // sentinel's alone.
    std::fs::write(data.join(".new.txt.swp"), "swap").unwrap();
    w.project.file("docs/index.md", "# Docs, edited\n");
    let (paths, batches, _) = w.next_run().await;
    assert_eq!(
        (paths, batches),
        (vec!["docs/index.md".into()], vec!["docs".into()])
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_or_wrong_world_component_is_reported_and_the_old_one_kept() {
    let project = project("target/plugins/p.wasm");
    let file = project.dir.path().join("target/plugins/p.wasm");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, component("checksum")).unwrap();
    let mut w = Watching::start(project, Duration::from_millis(50)).await;

    replace(&file, b"not a component at all");
    let seen = w
        .until(|e| matches!(e, WatchEvent::PluginError { .. }))
        .await;
    let (name, path, message) = plugin_error(&seen);
    assert_eq!(
        (name.as_str(), path.as_str()),
        ("p", "target/plugins/p.wasm")
    );
    assert!(message.contains("plugin `p`"), "{message}");
    assert!(message.contains("target/plugins/p.wasm"), "{message}");
    assert!(message.contains("not a WebAssembly file"), "{message}");
    // The broken file ran nothing: the next run is the sentinel's alone.
    w.project.file("docs/index.md", "# Docs, edited\n");
    let (paths, _, events) = w.next_run().await;
    assert_eq!(paths, vec!["docs/index.md"], "{events:?}");
    assert_eq!(runs(&events), 1);

    // Still the old component: checksum's output.
    w.project.file("data/in.txt", "two\n");
    let (_, batches, events) = w.next_run().await;
    assert_eq!(batches, vec!["hash"]);
    assert_eq!(report(&events).outputs["sum"]["count"], 1, "{events:?}");

    // A valid component of the wrong world (a batch type for a task).
    replace(&file, &component("sequential"));
    let seen = w
        .until(|e| matches!(e, WatchEvent::PluginError { .. }))
        .await;
    let (_, _, message) = plugin_error(&seen);
    assert!(
        message.contains("plugin `p` is a batch-plugin, not a block type"),
        "{message}"
    );
    w.project.file("data/in.txt", "three\n");
    let (_, _, events) = w.next_run().await;
    assert_eq!(report(&events).outputs["sum"]["count"], 1, "{events:?}");
    w.stop().await;
}

/// Reads `lines` until one contains `needle` (within a minute).
async fn next_line_with(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    needle: &str,
) -> String {
    let mut seen = Vec::new();
    let wait = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(needle) {
                return line;
            }
            seen.push(line);
        }
        panic!("the watcher ended before `{needle}`: {seen:#?}");
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .unwrap_or_else(|_| panic!("no `{needle}` line"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_watch_reloads_a_component_outside_the_project_and_prints_a_broken_one() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let outside = tempfile::tempdir().unwrap();
    let file = outside.path().join("p.wasm");
    std::fs::write(&file, component("chaos")).unwrap();
    let project = project(&file.display().to_string());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_runner-under-test"))
        .arg("--config")
        .arg(project.path())
        .arg("watch")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    next_line_with(&mut lines, "[watch] watching").await;
    let shown = file.display().to_string();

    replace(&file, &component("checksum"));
    next_line_with(
        &mut lines,
        &format!("[watch] plugin `p` reloaded from {shown}"),
    )
    .await;
    next_line_with(
        &mut lines,
        &format!("[watch] changed: {shown} -> batches: hash"),
    )
    .await;
    let ended = next_line_with(&mut lines, "[watch] run ").await;
    assert!(ended.ends_with(": completed"), "{ended}");
    next_line_with(&mut lines, "[watch] watching").await;

    replace(&file, b"\0asm garbage");
    next_line_with(
        &mut lines,
        &format!("[watch] plugin `p` ({shown}) cannot be used; still using the one loaded before"),
    )
    .await;
    let why = next_line_with(&mut lines, "plugin `p`").await;
    assert!(why.contains("not a valid WebAssembly component"), "{why}");

    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("exits after Ctrl-C")
        .unwrap();
    assert_eq!(status.code(), Some(130));
}
