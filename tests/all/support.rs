//! Shared set-up: a `runner.toml` in a temp dir, run for real.

#![allow(dead_code)]

use protocol::{Event, EventKind};
use runner::config::Config;
use runner::events::EventBus;
use runner::plugin::Plugins;
use runner::run::{RunReport, Runner};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// Where the build put the test plugins (`chaos.wasm`, `probe.wasm`, ...).
pub fn plugin(stem: &str) -> String {
    Path::new(runner::builtin::PLUGIN_DIR)
        .join(format!("{stem}.wasm"))
        .display()
        .to_string()
}

/// A compile cache shared by every test, so each component compiles once.
pub fn shared_state_dir() -> String {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("runner-state")
        .display()
        .to_string()
}

/// A project directory holding a `runner.toml`.
pub struct Project {
    pub dir: TempDir,
}

impl Project {
    /// Writes `toml` as `runner.toml`. `{chaos}` and `{probe}` become the
    /// paths of those test plugins; `{state}` the shared state dir.
    pub fn new(toml: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = toml
            .replace("{chaos}", &plugin("chaos"))
            .replace("{probe}", &plugin("probe"))
            .replace("{state}", &shared_state_dir());
        std::fs::write(dir.path().join("runner.toml"), text).expect("write runner.toml");
        Self { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("runner.toml")
    }

    pub fn file(&self, relative: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn config(&self) -> Arc<Config> {
        Arc::new(Config::load(&self.path()).unwrap_or_else(|err| panic!("{err}")))
    }

    pub async fn runner(&self) -> Runner {
        let config = self.config();
        let plugins = Arc::new(
            Plugins::load(&config, None)
                .await
                .unwrap_or_else(|err| panic!("{err}")),
        );
        Runner::new(config, plugins, EventBus::new(1)).unwrap_or_else(|err| panic!("{err}"))
    }

    /// Runs `pipeline` and returns its report with every event it published.
    pub async fn run(&self, pipeline: &str) -> (RunReport, Vec<Arc<Event>>) {
        self.run_until(pipeline, CancellationToken::new()).await
    }

    pub async fn run_until(
        &self,
        pipeline: &str,
        cancel: CancellationToken,
    ) -> (RunReport, Vec<Arc<Event>>) {
        let runner = self.runner().await;
        let mut rx = runner.bus().subscribe();
        let report = runner.run(pipeline, cancel).await;
        let mut events = Vec::new();
        while let Ok(event) = rx.try_recv() {
            events.push(event);
        }
        (report, events)
    }
}

/// Runs `pipeline` of the `runner.toml` at `path` in-process; its report
/// and every event it published.
pub async fn run_config(path: &Path, pipeline: &str) -> (RunReport, Vec<Arc<Event>>) {
    let config = Arc::new(Config::load(path).unwrap_or_else(|err| panic!("{err}")));
    let plugins = Arc::new(
        Plugins::load(&config, None)
            .await
            .unwrap_or_else(|err| panic!("{err}")),
    );
    let runner =
        Runner::new(config, plugins, EventBus::new(1)).unwrap_or_else(|err| panic!("{err}"));
    let mut rx = runner.bus().subscribe();
    let report = runner.run(pipeline, CancellationToken::new()).await;
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    (report, events)
}

/// The `task_finished` event of `task`.
pub fn finished<'a>(events: &'a [Arc<Event>], task: &str) -> &'a EventKind {
    events
        .iter()
        .map(|e| &e.kind)
        .find(|k| matches!(k, EventKind::TaskFinished { task_id, .. } if task_id == task))
        .unwrap_or_else(|| panic!("no task_finished for `{task}`"))
}

/// All terminal output of `task`, joined.
pub fn output_of(events: &[Arc<Event>], task: &str) -> String {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TerminalOutput {
                task_id: Some(t),
                data,
                ..
            } if t == task => Some(data.as_str()),
            _ => None,
        })
        .collect()
}
