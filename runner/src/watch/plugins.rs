//! Plugins as inputs: a plugin's component file and the directories
//! granted to it are inputs of every batch that uses the plugin (as its
//! batch type, as a task's type or script, or as the adapter of a task's
//! agent), besides the batch's `inputs`. Shipped plugins have no file;
//! their granted directories still count.
//!
//! ## Reload
//! Before a run that a changed component file triggered, the plugin is
//! loaded again through the running engine (compiled once, then from the
//! cache) and the world its tasks need is checked. One that does not load
//! or fit is reported, naming the plugin and the file, and the one loaded
//! before stays; its change triggers nothing.

use super::{Tell, WatchEvent};
use crate::config::{Config, Pipeline, PluginSource, TaskKind};
use crate::run::Runner;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The plugins `batch` uses, by name.
fn used_by(config: &Config, batch: &crate::config::Batch) -> Vec<String> {
    let mut names = vec![batch.batch_type.clone()];
    for task in &batch.tasks {
        match &task.kind {
            TaskKind::Script(p) | TaskKind::Plugin(p) => names.push(p.clone()),
            TaskKind::Agent(agent) => {
                if let Some(agent) = config.agents.get(agent) {
                    names.push(agent.adapter.clone());
                }
            }
            TaskKind::Exec => {}
        }
    }
    names.sort();
    names.dedup();
    names
}

/// `path` as a [`super::Snapshot`] names it: relative to `root` when
/// inside, else absolute.
pub(super) fn key(root: &Path, path: &Path) -> PathBuf {
    let path = lexical(path);
    path.strip_prefix(root)
        .map(Path::to_path_buf)
        .unwrap_or(path)
}

/// `path` with `..` resolved by its text (`project/../plugins/p.wasm` is
/// outside the project, and events name it `plugins/p.wasm`).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Each batch's implicit inputs (keys of files and directories) by batch id.
pub(super) fn implicit_inputs(
    config: &Config,
    pipeline: &Pipeline,
    root: &Path,
) -> HashMap<String, Vec<PathBuf>> {
    pipeline
        .batches
        .iter()
        .map(|batch| {
            let mut paths = Vec::new();
            for name in used_by(config, batch) {
                let Some(decl) = config.plugins.get(&name) else {
                    continue;
                };
                if let PluginSource::Path(file) = &decl.source {
                    paths.push(key(root, file));
                }
                for dir in &decl.capabilities.dirs {
                    paths.push(key(root, &dir.host));
                }
            }
            paths.sort();
            paths.dedup();
            (batch.id.clone(), paths)
        })
        .collect()
}

/// The component files of the plugins `pipeline` uses (absolute paths).
pub(super) fn component_files(config: &Config, pipeline: &Pipeline) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = pipeline
        .batches
        .iter()
        .flat_map(|batch| used_by(config, batch))
        .filter_map(|name| match &config.plugins.get(&name)?.source {
            PluginSource::Path(file) => Some(lexical(file)),
            PluginSource::Builtin(_) => None,
        })
        .collect();
    files.sort();
    files.dedup();
    files
}

/// The directories granted to the plugins `pipeline` uses that lie outside
/// `root` (absolute paths): watched, and their files counted, as well.
pub(super) fn outside_granted_dirs(
    config: &Config,
    pipeline: &Pipeline,
    root: &Path,
) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = pipeline
        .batches
        .iter()
        .flat_map(|batch| used_by(config, batch))
        .filter_map(|name| config.plugins.get(&name))
        .flat_map(|decl| decl.capabilities.dirs.iter().map(|dir| lexical(&dir.host)))
        .filter(|dir| !dir.starts_with(root))
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Directories outside `root` that must be watched for `files` (their
/// parents: an editor or a build replaces a file by renaming over it).
pub(super) fn outside_dirs(root: &Path, files: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .filter(|file| !file.starts_with(root))
        .filter_map(|file| file.parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Loads again the plugins of `runner` whose component file is among
/// `changed` (snapshot keys) and, when they load and fit, replaces
/// `runner`. Returns the keys of the files that could not be used: their
/// change should trigger nothing.
pub(super) async fn reload_changed(
    runner: &mut Arc<Runner>,
    root: &Path,
    changed: &[PathBuf],
    events: &Tell,
) -> Vec<PathBuf> {
    let config = runner.config().clone();
    let mut plugins = runner.plugins().clone();
    let mut broken = Vec::new();
    let mut reloaded = false;
    let loaded: Vec<(String, PathBuf)> = plugins
        .iter()
        .filter_map(|plugin| match &plugin.decl.source {
            PluginSource::Path(file) => Some((plugin.name().to_string(), file.clone())),
            PluginSource::Builtin(_) => None,
        })
        .collect();
    for (name, file) in loaded {
        let file_key = key(root, &file);
        if !changed.contains(&file_key) {
            continue;
        }
        let decl = &config.plugins[&name];
        let shown = file_key.display().to_string();
        let outcome = match plugins.reload(decl).await {
            Ok(candidate) => {
                let candidate = Arc::new(candidate);
                // The world each task needs, as `runner check` checks it.
                match Runner::new(config.clone(), candidate.clone(), runner.bus().clone()) {
                    Ok(_) => Ok(candidate),
                    Err(err) => Err(err.to_string()),
                }
            }
            Err(err) => Err(err.to_string()),
        };
        match outcome {
            Ok(candidate) => {
                plugins = candidate;
                reloaded = true;
                events.send(WatchEvent::PluginReloaded {
                    plugin: name,
                    path: shown,
                });
            }
            Err(message) => {
                broken.push(file_key);
                events.send(WatchEvent::PluginError {
                    plugin: name,
                    path: shown,
                    message,
                });
            }
        }
    }
    if reloaded {
        // Each candidate was checked with the others loaded so far.
        match Runner::new(config, plugins, runner.bus().clone()) {
            Ok(next) => *runner = Arc::new(next),
            Err(err) => events.send(WatchEvent::Warning(format!(
                "the reloaded plugins cannot be used ({err}); still using the ones loaded before"
            ))),
        }
    }
    broken
}

#[cfg(test)]
mod tests {
    use super::super::inputs::Inputs;
    use super::*;

    #[test]
    fn a_batch_reads_the_files_and_directories_of_the_plugins_it_uses() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["data", "agentdata"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let component = std::path::Path::new(crate::builtin::PLUGIN_DIR).join("chaos.wasm");
        std::fs::create_dir_all(root.join("build")).unwrap();
        std::fs::write(root.join("build/p.wasm"), "placeholder").unwrap();
        let text = format!(
            r#"
version = 1
[plugins.p]
path = "build/p.wasm"
capabilities.dirs = [{{ host = "data", guest = "/data" }}]
[plugins.far]
path = "{far}"
[plugins.template]
builtin = "template"
capabilities.dirs = [{{ host = "agentdata", guest = "/a" }}]
[[pipelines.default.batches]]
id = "uses-p"
inputs = ["src/**"]
[[pipelines.default.batches.tasks]]
id = "t1"
type = "p"
[[pipelines.default.batches]]
id = "uses-far"
inputs = ["src/**"]
[[pipelines.default.batches.tasks]]
id = "t2"
type = "far"
[[pipelines.default.batches]]
id = "uses-template"
inputs = ["src/**"]
[[pipelines.default.batches.tasks]]
id = "t3"
type = "template"
config = {{ template = "x" }}
"#,
            far = component.display()
        );
        let config = Config::parse(&root.join("runner.toml"), &text).unwrap();
        let pipeline = &config.pipelines["default"];
        let inputs = Inputs::new(&config, pipeline, root).unwrap();
        let reading = |path: PathBuf| {
            let mut batches: Vec<String> = inputs.reading(&[path]).into_iter().collect();
            batches.sort();
            batches
        };
        assert_eq!(reading("build/p.wasm".into()), vec!["uses-p"]);
        assert_eq!(reading("data/x/y.txt".into()), vec!["uses-p"]);
        assert_eq!(reading(component.clone()), vec!["uses-far"]);
        // A shipped plugin has no file; its granted directory counts.
        assert_eq!(reading("agentdata/z".into()), vec!["uses-template"]);
        assert!(reading("docs/a.md".into()).is_empty());
        let mut files = vec![component, root.join("build/p.wasm")];
        files.sort();
        assert_eq!(component_files(&config, pipeline), files);
    }
}
