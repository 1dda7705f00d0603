//! What the watcher tells: [`WatchEvent`], for the terminal and as `watch_status` events.

use crate::events::EventBus;
use crate::run::RunReport;
use protocol::{EventKind, WatchState};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What the watcher tells its user, besides the runs' own events.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// Watching (again) after a run.
    Watching { files: usize, batches: Vec<String> },
    /// Changed files and the batches they re-run.
    Triggered {
        paths: Vec<String>,
        batches: Vec<String>,
        follow_up: bool,
        /// The run these changes start.
        run_id: String,
    },
    /// Changes seen while a run is going, to inputs of batches it does not
    /// run: re-run after it (`queued`) or dropped (`on_busy = "ignore"`).
    SeenWhileBusy { paths: Vec<String>, queued: bool },
    /// `on_busy = "restart"`: these changes stop the running run; the new
    /// one starts once every process of it is gone.
    Restarting { paths: Vec<String> },
    /// A re-run ended.
    Finished(RunReport),
    /// `runner.toml` changed and checks: the next run uses it.
    ConfigReloaded,
    /// `runner.toml` changed and does not check: the last good one stays.
    ConfigError(String),
    /// Something the user should know (lost events, polling fallback).
    Warning(String),
}

impl std::fmt::Display for WatchEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Watching { files, batches } => {
                write!(f, "watching {files} files for {} batches", batches.len())
            }
            Self::Triggered {
                paths,
                batches,
                follow_up,
                ..
            } => {
                const SHOWN: usize = 10;
                let mut shown = paths
                    .iter()
                    .take(SHOWN)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                if paths.len() > SHOWN {
                    shown.push_str(&format!(" and {} more", paths.len() - SHOWN));
                }
                let what = if *follow_up {
                    "changed while running"
                } else {
                    "changed"
                };
                write!(f, "{what}: {shown} -> batches: {}", batches.join(", "))
            }
            Self::SeenWhileBusy { paths, queued } => write!(
                f,
                "changed while running: {} ({})",
                paths.join(", "),
                if *queued { "queued" } else { "ignored" }
            ),
            Self::Restarting { paths } => {
                write!(f, "changed while running: {}; restarting", paths.join(", "))
            }
            Self::Finished(report) => {
                write!(f, "run {}: {}", report.run_id, report.status.as_str())?;
                if let Some(error) = &report.error {
                    write!(f, " ({error})")?;
                }
                Ok(())
            }
            Self::ConfigReloaded => write!(f, "configuration reloaded; re-running every batch"),
            Self::ConfigError(message) => write!(
                f,
                "the configuration has an error; still using the last good one\n{message}"
            ),
            Self::Warning(message) => write!(f, "warning: {message}"),
        }
    }
}

impl WatchEvent {
    /// The `watch_status` event saying the same (`None`: the run's own
    /// events say it).
    pub fn to_event(&self, pipeline: &str) -> Option<EventKind> {
        let mut kind = WatchStatusFields::default();
        let status = match self {
            Self::Watching { files, batches } => {
                kind.files = Some(*files);
                kind.batches = batches.clone();
                WatchState::Watching
            }
            Self::Triggered {
                paths,
                batches,
                follow_up,
                run_id,
            } => {
                kind.paths = paths.clone();
                kind.batches = batches.clone();
                kind.follow_up = *follow_up;
                kind.run_id = Some(run_id.clone());
                WatchState::Triggered
            }
            Self::Restarting { paths } => {
                kind.paths = paths.clone();
                WatchState::Restarting
            }
            Self::SeenWhileBusy { paths, queued } => {
                kind.paths = paths.clone();
                kind.queued = Some(*queued);
                WatchState::SeenWhileBusy
            }
            Self::Finished(_) => return None,
            Self::ConfigReloaded => WatchState::ConfigReloaded,
            Self::ConfigError(message) => {
                kind.message = Some(message.clone());
                WatchState::ConfigError
            }
            Self::Warning(message) => {
                kind.message = Some(message.clone());
                WatchState::Warning
            }
        };
        Some(EventKind::WatchStatus {
            pipeline: pipeline.to_string(),
            status,
            files: kind.files,
            paths: kind.paths,
            batches: kind.batches,
            run_id: kind.run_id,
            follow_up: kind.follow_up,
            queued: kind.queued,
            message: kind.message,
        })
    }
}

#[derive(Default)]
struct WatchStatusFields {
    files: Option<usize>,
    paths: Vec<String>,
    batches: Vec<String>,
    run_id: Option<String>,
    follow_up: bool,
    queued: Option<bool>,
    message: Option<String>,
}

/// Where watch events go: the caller's channel, and the bus as
/// `watch_status` events (for `--json`, the history and WebSocket clients).
pub(super) struct Tell {
    pub(super) tx: mpsc::UnboundedSender<WatchEvent>,
    pub(super) bus: Arc<EventBus>,
    pub(super) pipeline: String,
}

impl Tell {
    pub(super) fn send(&self, event: WatchEvent) {
        if let Some(kind) = event.to_event(&self.pipeline) {
            self.bus.publish(kind);
        }
        // The caller may have stopped listening; the bus still has it.
        let _ = self.tx.send(event);
    }
}
