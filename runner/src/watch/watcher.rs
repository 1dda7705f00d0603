//! The file watcher (inotify, or polling where it runs out): events collected
//! between two checks, and what makes the next check re-hash everything.

use super::*;

use notify::{PollWatcher, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, NoCache, RecommendedCache};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Paths remembered between two checks; past this the next check re-hashes
/// everything anyway.
pub(super) const MAX_PENDING_PATHS: usize = 10_000;

/// Poll interval when inotify runs out of watches and no `--poll` is given.
pub(super) const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// Events gathered by the watcher thread until the loop takes them.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) paths: HashSet<PathBuf>,
    pub(super) rescan: bool,
    pub(super) errors: Vec<String>,
}

pub(super) struct Shared {
    pub(super) pending: Mutex<Pending>,
    pub(super) wake: Notify,
}

impl Shared {
    pub(super) fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().expect("pending lock"))
    }

    pub(super) fn record(&self, result: DebounceEventResult) {
        let mut pending = self.pending.lock().expect("pending lock");
        match result {
            Ok(events) => {
                for event in events {
                    if event.need_rescan() {
                        pending.rescan = true;
                    } else if only_read(&event.kind) {
                        // Reading a file or listing a directory changes
                        // nothing, and the re-check itself reads the tree:
                        // counting these would re-check forever.
                        continue;
                    }
                    for path in &event.paths {
                        if pending.paths.len() >= MAX_PENDING_PATHS {
                            pending.rescan = true;
                        } else {
                            pending.paths.insert(path.clone());
                        }
                    }
                }
            }
            Err(errors) => {
                pending.rescan = true;
                for error in errors {
                    if pending.errors.len() < 16 {
                        pending.errors.push(error.to_string());
                    }
                }
            }
        }
        drop(pending);
        self.wake.notify_one();
    }
}

/// What is watched outside the project.
pub(super) struct Outside {
    /// Directories granted to plugins: watched with everything under them.
    pub(super) granted: Vec<PathBuf>,
    /// Directories holding component files: watched alone.
    pub(super) parents: Vec<PathBuf>,
}

/// Whether an event says only that something was opened, read or closed
/// without writing (inotify's `IN_OPEN`, `IN_ACCESS`, `IN_CLOSE_NOWRITE`).
pub(super) fn only_read(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    matches!(kind, notify::EventKind::Access(access)
        if !matches!(access, AccessKind::Close(AccessMode::Write)))
}

/// Keeps the kernel (or polling) watcher alive.
pub(super) enum Handle {
    Native(Debouncer<RecommendedWatcher, RecommendedCache>),
    Poll(Debouncer<PollWatcher, NoCache>),
}

impl Handle {
    /// Also watches what `outside` names and is not watched yet:
    /// directories outside the project.
    pub(super) fn watch_outside(
        &mut self,
        outside: Outside,
        watched: &mut Vec<(PathBuf, bool)>,
        events: &Tell,
    ) {
        let granted = outside.granted.into_iter().map(|dir| (dir, true));
        let parents = outside.parents.into_iter().map(|dir| (dir, false));
        for (dir, recursive) in granted.chain(parents) {
            if watched.iter().any(|(d, r)| *d == dir && (*r || !recursive)) {
                continue;
            }
            let mode = if recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            let result = match self {
                Self::Native(debouncer) => debouncer.watch(&dir, mode),
                Self::Poll(debouncer) => debouncer.watch(&dir, mode),
            };
            let what = if recursive {
                "a directory granted to a plugin"
            } else {
                "a plugin's component file is there"
            };
            match result {
                Ok(()) => watched.push((dir, recursive)),
                Err(err) => events.send(WatchEvent::Warning(format!(
                    "cannot watch {} ({what}): {err}",
                    dir.display()
                ))),
            }
        }
    }
}

pub(super) fn start_watcher(
    root: &std::path::Path,
    options: &WatchOptions,
    shared: &Arc<Shared>,
    events: &Tell,
) -> Result<Handle, WatchError> {
    let error = |err: notify::Error| WatchError::Watcher {
        path: root.to_path_buf(),
        message: err.to_string(),
    };
    let poll = |interval: Duration| -> Result<Handle, WatchError> {
        let sink = shared.clone();
        let mut debouncer = notify_debouncer_full::new_debouncer_opt::<_, PollWatcher, NoCache>(
            options.debounce,
            None,
            move |result| sink.record(result),
            NoCache,
            notify::Config::default().with_poll_interval(interval),
        )
        .map_err(error)?;
        debouncer
            .watch(root, RecursiveMode::Recursive)
            .map_err(error)?;
        Ok(Handle::Poll(debouncer))
    };
    if let Some(interval) = options.poll {
        return poll(interval);
    }
    let sink = shared.clone();
    let mut debouncer =
        notify_debouncer_full::new_debouncer(options.debounce, None, move |result| {
            sink.record(result)
        })
        .map_err(error)?;
    match debouncer.watch(root, RecursiveMode::Recursive) {
        Ok(()) => Ok(Handle::Native(debouncer)),
        Err(err) if out_of_watches(&err) => {
            events.send(WatchEvent::Warning(format!(
                "the kernel ran out of inotify watches ({err}); raise fs.inotify.max_user_watches \
                 (sysctl fs.inotify.max_user_watches=524288); polling every {} meanwhile",
                crate::units::format_duration(FALLBACK_POLL)
            )));
            drop(debouncer);
            poll(FALLBACK_POLL)
        }
        Err(err) => Err(error(err)),
    }
}

pub(super) fn out_of_watches(err: &notify::Error) -> bool {
    match &err.kind {
        notify::ErrorKind::MaxFilesWatch => true,
        notify::ErrorKind::Io(io) => io.raw_os_error() == Some(nix::libc::ENOSPC),
        _ => false,
    }
}
