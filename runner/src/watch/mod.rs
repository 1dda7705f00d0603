//! `runner watch`: run a pipeline, then re-run what file changes affect.
//!
//! It sits beside the service layer: it uses [`crate::config`],
//! [`crate::run`] and [`crate::events`]; nothing below imports it.
//!
//! ## What re-runs
//! Each batch's `inputs` globs (default: the whole project) select the
//! files it reads. A change is decided by content: after a burst of events
//! (debounced) the tree is re-hashed (only files whose size, mtime or inode
//! moved are read again) and compared with the baseline; the batches whose
//! inputs gained, lost or changed a file re-run with every batch that
//! depends on them, transitively. The others are reported "not re-run" and
//! their last outputs stay available. A batch that did not complete last
//! time runs again with the next re-run.
//!
//! ## Never a loop
//! When a run ends the tree is hashed again and becomes the new baseline,
//! so whatever the run wrote itself is absorbed. The cost: a file saved
//! while a run is going that is an input of a batch the run ran is absorbed
//! too (save it again to re-run).
//!
//! ## While busy
//! `queue` (default): changes seen during a run to the inputs of batches it
//! did not run give one follow-up run once it ends (a follow-up never
//! queues another, so two runs cannot feed each other). `ignore`: dropped.
//! `restart`: a content change (against the files as the run started) to
//! any batch's inputs cancels the run; its exec tasks end only once their
//! process groups are empty, so the next run starts after every process
//! of the old one is gone, with every change seen. A path that stopped
//! `MAX_RESTARTS_IN_A_ROW` (10) runs in a row restarts nothing more until a
//! run ends (a task rewriting its own input cannot restart forever).
//!
//! ## Events
//! Every [`WatchEvent`] but `Finished` is also published on the bus as a
//! `watch_status` event; a `triggered` one names the run it starts, which
//! the history records with its trigger. The first run's `triggered` (no
//! paths) goes on the bus only.
//!
//! ## Reload
//! A change to `runner.toml` is checked as `runner check` would; a good one
//! replaces the runner and every batch re-runs, a bad one is reported and
//! the last good configuration stays. A changed plugin component is
//! reloaded before the run it triggers ([`plugins`]).
//!
//! ## Lost events
//! A `Rescan` flag, a full event buffer or a watcher error means anything
//! may have changed: every input is re-checked and the error is reported.

mod events;
mod files;
mod inputs;
mod plugins;
mod run_loop;
mod watcher;

pub use events::WatchEvent;
pub use run_loop::watch;

pub use files::{BUILTIN_IGNORES, Snapshot, Tree, changed};

use crate::config::{Config, OnBusy};
use events::Tell;
pub use inputs::with_dependents;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub pipeline: String,
    pub debounce: Duration,
    /// Poll the tree at this interval instead of using kernel events.
    pub poll: Option<Duration>,
    pub on_busy: OnBusy,
    /// Files never counted: where this process's own output goes
    /// (`runner watch > log.txt` inside the project must not loop).
    pub own_output: Vec<PathBuf>,
}

/// Regular files this process's stdout and stderr write to.
pub fn own_output_files() -> Vec<PathBuf> {
    ["/proc/self/fd/1", "/proc/self/fd/2"]
        .iter()
        .filter_map(|fd| std::fs::read_link(fd).ok())
        .filter(|path| path.is_file())
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {path}: {message}")]
    Watcher { path: PathBuf, message: String },
    #[error("{0}")]
    Ignore(String),
}

/// `config` as `runner watch` uses it: batches run in the project
/// directory (no worktrees), so uncommitted edits are what runs.
pub fn for_watch(config: &Config) -> Config {
    let mut config = config.clone();
    config.git.enabled = Some(false);
    config
}

#[cfg(test)]
mod tests {
    use super::inputs::Inputs;
    use super::run_loop::{MAX_RESTARTS_IN_A_ROW, Restarts};
    use super::watcher::{MAX_PENDING_PATHS, Pending, Shared, out_of_watches};
    use super::*;
    use notify::event::{EventKind, Flag, ModifyKind};
    use notify_debouncer_full::DebouncedEvent;
    use std::collections::HashSet;
    use std::sync::Mutex;
    use std::time::Instant;
    use tokio::sync::Notify;

    fn shared() -> Shared {
        Shared {
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
        }
    }

    fn event(path: &str) -> notify::Event {
        notify::Event::new(EventKind::Modify(ModifyKind::Any)).add_path(PathBuf::from(path))
    }

    #[test]
    fn a_rescan_flag_a_watcher_error_or_too_many_paths_mean_recheck_everything() {
        let s = shared();
        s.record(Ok(vec![DebouncedEvent::new(event("/p/a"), Instant::now())]));
        assert!(!s.take().rescan);

        s.record(Ok(vec![DebouncedEvent::new(
            event("/p/a").set_flag(Flag::Rescan),
            Instant::now(),
        )]));
        assert!(s.take().rescan);

        s.record(Err(vec![notify::Error::generic("queue overflow")]));
        let pending = s.take();
        assert!(pending.rescan);
        assert_eq!(pending.errors, vec!["queue overflow".to_string()]);

        let many = (0..MAX_PENDING_PATHS + 5)
            .map(|i| DebouncedEvent::new(event(&format!("/p/{i}")), Instant::now()))
            .collect();
        s.record(Ok(many));
        let pending = s.take();
        assert!(pending.rescan);
        assert_eq!(pending.paths.len(), MAX_PENDING_PATHS);
    }

    #[test]
    fn opening_reading_or_listing_is_no_change_but_closing_after_a_write_is() {
        use notify::event::{AccessKind, AccessMode};
        let s = shared();
        let at = |kind: EventKind, path: &str| {
            DebouncedEvent::new(
                notify::Event::new(kind).add_path(PathBuf::from(path)),
                Instant::now(),
            )
        };
        // What the re-check itself does to every file and directory.
        s.record(Ok(vec![
            at(
                EventKind::Access(AccessKind::Open(AccessMode::Any)),
                "/p/src",
            ),
            at(EventKind::Access(AccessKind::Read), "/p/src/a.rs"),
            at(
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                "/p/src/a.rs",
            ),
        ]));
        let pending = s.take();
        assert!(pending.paths.is_empty(), "{:?}", pending.paths);
        assert!(!pending.rescan);
        s.record(Ok(vec![at(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            "/p/src/b.rs",
        )]));
        assert_eq!(
            s.take().paths.into_iter().collect::<Vec<_>>(),
            vec![PathBuf::from("/p/src/b.rs")]
        );
    }

    #[test]
    fn a_path_that_stopped_ten_runs_in_a_row_restarts_no_more() {
        let mut restarts = Restarts::default();
        let own = PathBuf::from("out.txt");
        let user = PathBuf::from("src/a.rs");
        for _ in 0..MAX_RESTARTS_IN_A_ROW - 1 {
            restarts.record(std::slice::from_ref(&own));
            assert!(!restarts.exhausted(&own));
        }
        restarts.record(std::slice::from_ref(&own));
        assert!(restarts.exhausted(&own));
        assert!(!restarts.exhausted(&user));
        // A run stopped by another path breaks the streak.
        restarts.record(std::slice::from_ref(&user));
        assert!(!restarts.exhausted(&own));
    }

    #[test]
    fn running_out_of_inotify_watches_is_recognised() {
        assert!(out_of_watches(&notify::Error::new(
            notify::ErrorKind::MaxFilesWatch
        )));
        assert!(out_of_watches(&notify::Error::io(
            std::io::Error::from_raw_os_error(nix::libc::ENOSPC)
        )));
        assert!(!out_of_watches(&notify::Error::generic("other")));
    }

    #[test]
    fn a_star_stays_in_its_directory_and_two_stars_cross_them() {
        let config = Config::parse(
            std::path::Path::new("/p/runner.toml"),
            r#"
version = 1
[[pipelines.default.batches]]
id = "a"
inputs = ["*.toml", "src/**/*.rs"]
[[pipelines.default.batches.tasks]]
id = "ta"
type = "exec"
config = { command = "true" }
"#,
        )
        .unwrap();
        let inputs = Inputs::new(
            &config,
            &config.pipelines["default"],
            std::path::Path::new("/p"),
        )
        .unwrap();
        let reads = |path: &str| !inputs.reading(&[PathBuf::from(path)]).is_empty();
        assert!(reads("Cargo.toml"));
        assert!(!reads("sub/Cargo.toml"));
        assert!(reads("src/a.rs"));
        assert!(reads("src/deep/er/a.rs"));
        assert!(!reads("tests/a.rs"));
    }

    #[test]
    fn a_plugin_error_is_a_watch_status_naming_the_plugin_and_its_file() {
        let event = WatchEvent::PluginError {
            plugin: "p".into(),
            path: "build/p.wasm".into(),
            message: "plugin `p` (build/p.wasm): not a valid WebAssembly component".into(),
        };
        let Some(protocol::EventKind::WatchStatus {
            status,
            plugin,
            paths,
            message,
            ..
        }) = event.to_event("default")
        else {
            panic!("not a watch_status")
        };
        assert_eq!(status, protocol::WatchState::PluginError);
        assert_eq!(plugin.as_deref(), Some("p"));
        assert_eq!(paths, vec!["build/p.wasm"]);
        assert!(
            message
                .unwrap()
                .contains("not a valid WebAssembly component")
        );
        assert!(
            event
                .to_string()
                .starts_with("plugin `p` (build/p.wasm) cannot be used")
        );
    }

    #[test]
    fn dependents_are_selected_transitively_in_pipeline_order() {
        let config = Config::parse(
            std::path::Path::new("/p/runner.toml"),
            r#"
version = 1
[[pipelines.default.batches]]
id = "a"
[[pipelines.default.batches.tasks]]
id = "ta"
type = "exec"
config = { command = "true" }
[[pipelines.default.batches]]
id = "b"
depends_on = ["a"]
[[pipelines.default.batches.tasks]]
id = "tb"
type = "exec"
config = { command = "true" }
[[pipelines.default.batches]]
id = "c"
depends_on = ["b"]
[[pipelines.default.batches.tasks]]
id = "tc"
type = "exec"
config = { command = "true" }
[[pipelines.default.batches]]
id = "d"
[[pipelines.default.batches.tasks]]
id = "td"
type = "exec"
config = { command = "true" }
"#,
        )
        .unwrap();
        let pipeline = &config.pipelines["default"];
        let seeds = HashSet::from(["b".to_string()]);
        assert_eq!(with_dependents(pipeline, &seeds), vec!["b", "c"]);
    }
}
