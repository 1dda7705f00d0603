//! The loop of `runner watch`: the first run, then waiting for changes,
//! deciding what re-runs, and what happens to changes seen while a run is
//! going (see the module docs of [`super`]).

use super::events::Tell;
use super::files::{self, Snapshot, Tree, changed};
use super::inputs::{Inputs, with_dependents};
use super::watcher::{Outside, Pending, Shared, start_watcher};
use super::{WatchError, WatchEvent, WatchOptions, for_watch, plugins};
use crate::config::{Config, OnBusy};
use crate::events::EventBus;
use crate::plugin::Plugins;
use crate::run::{RunReport, RunScope, Runner, new_run_id};
use protocol::{BatchStatus, RunStatus};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// How many runs in a row each path stopped (`restart`), so a task
/// rewriting its own input with new content every time cannot restart its
/// run forever.
#[derive(Default)]
pub(super) struct Restarts {
    /// Paths that stopped the last run, with how many runs in a row they stopped.
    streak: Vec<(PathBuf, usize)>,
}

/// Runs in a row one path may stop; past this it waits for a run to end.
pub(super) const MAX_RESTARTS_IN_A_ROW: usize = 10;

impl Restarts {
    pub(super) fn record(&mut self, paths: &[PathBuf]) {
        self.streak = paths
            .iter()
            .map(|path| {
                let before = self
                    .streak
                    .iter()
                    .find(|(p, _)| p == path)
                    .map_or(0, |(_, n)| *n);
                (path.clone(), before + 1)
            })
            .collect();
    }

    pub(super) fn exhausted(&self, path: &PathBuf) -> bool {
        self.streak
            .iter()
            .any(|(p, n)| p == path && *n >= MAX_RESTARTS_IN_A_ROW)
    }
}

/// The last outcome of every batch, for the next scoped run.
#[derive(Default)]
struct Last {
    outputs: Map<String, Value>,
    not_completed: HashSet<String>,
}

impl Last {
    fn update(&mut self, report: &RunReport) {
        self.outputs = report.outputs.clone();
        self.not_completed = report
            .batches
            .iter()
            .filter(|(_, status)| *status != BatchStatus::Completed)
            .map(|(id, _)| id.clone())
            .collect();
    }
}

/// Reads `path` again into a runner publishing on `bus`; the error text is
/// what `runner check` would print.
async fn reload(
    path: &std::path::Path,
    pipeline: &str,
    bus: Arc<EventBus>,
) -> Result<Arc<Runner>, String> {
    let config = Config::load(path).map_err(|err| err.to_string())?;
    let config = Arc::new(for_watch(&config));
    let used = config.plugins_used_by(config.pipeline(Some(pipeline))?);
    let plugins = Plugins::load(&config, Some(&used))
        .await
        .map_err(|err| err.to_string())?;
    Runner::new(config, Arc::new(plugins), bus)
        .map(Arc::new)
        .map_err(|err| err.to_string())
}

/// Runs `options.pipeline`, then re-runs what changes affect until `cancel`.
/// Returns the status of the last run (`Aborted` when `cancel` stopped one).
pub async fn watch(
    runner: Arc<Runner>,
    options: WatchOptions,
    cancel: CancellationToken,
    events: mpsc::UnboundedSender<WatchEvent>,
) -> Result<RunStatus, WatchError> {
    let mut runner = runner;
    let config = runner.config().clone();
    let events = Tell {
        tx: events,
        bus: runner.bus().clone(),
        pipeline: options.pipeline.clone(),
    };
    let mut pipeline = config
        .pipelines
        .get(&options.pipeline)
        .cloned()
        .ok_or_else(|| WatchError::Ignore(format!("no pipeline `{}`", options.pipeline)))?;
    let root = config.base_dir.clone();
    let mut inputs = Inputs::new(&config, &pipeline, &root)?;
    let config_path = std::path::absolute(&config.path).unwrap_or_else(|_| config.path.clone());
    let config_rel = config_path
        .strip_prefix(&root)
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("runner.toml"));
    let ignores = |patterns: &[String]| -> Vec<String> {
        let own = options.own_output.iter().filter_map(|path| {
            let path = std::fs::canonicalize(path).ok()?;
            let root = std::fs::canonicalize(&root).ok()?;
            let rel = path.strip_prefix(root).ok()?;
            Some(format!("/{}", rel.display()))
        });
        patterns.iter().cloned().chain(own).collect()
    };
    let component_files = plugins::component_files(&config, &pipeline);
    let granted = plugins::outside_granted_dirs(&config, &pipeline, &root);
    let mut tree = Tree::new(&root, config.state_dir(), &ignores(&config.watch.ignore))
        .and_then(|tree| tree.with_dirs(granted.clone()))
        .map_err(WatchError::Ignore)?
        .with_files(component_files.clone());
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending::default()),
        wake: Notify::new(),
    });
    let mut handle = start_watcher(&root, &options, &shared, &events)?;
    let mut outside_watched = Vec::new();
    handle.watch_outside(
        Outside {
            granted,
            parents: plugins::outside_dirs(&root, &component_files),
        },
        &mut outside_watched,
        &events,
    );

    let all: HashSet<String> = pipeline.batches.iter().map(|b| b.id.clone()).collect();
    let mut last = Last::default();
    let mut status;
    // The first run: everything, and what it writes is absorbed.
    let mut selection = with_dependents(&pipeline, &all);
    let mut follow_up = false;
    let mut baseline = Snapshot::new();
    let mut restarts = Restarts::default();
    let mut next_run = new_run_id();
    // The history records the first run as started by `watch` too.
    events.publish(WatchEvent::Triggered {
        paths: Vec::new(),
        batches: selection.clone(),
        follow_up: false,
        run_id: next_run.clone(),
    });
    if options.on_busy == OnBusy::Restart {
        // What the first run writes must be told from the user's edits.
        let (t, now) = hash(tree).await;
        tree = t;
        baseline = now;
    }
    loop {
        let scope = RunScope {
            only: selection.iter().cloned().collect(),
            reused_outputs: last.outputs.clone(),
        };
        let run_cancel = cancel.child_token();
        // Changed paths seen while running that are inputs of batches this
        // run does not run: what `queue` re-runs afterwards.
        let mut outside: Vec<PathBuf> = Vec::new();
        // `restart`: the changed inputs that stopped this run.
        let mut stopped_by: Vec<PathBuf> = Vec::new();
        let mut warned: HashSet<PathBuf> = HashSet::new();
        let ran: HashSet<String> = selection.iter().cloned().collect();
        let report = {
            let run = runner.run_scoped(
                next_run.clone(),
                &pipeline.name,
                run_cancel.clone(),
                Some(scope),
            );
            tokio::pin!(run);
            loop {
                tokio::select! {
                    report = &mut run => break report,
                    _ = shared.wake.notified() => {
                        let changed_now: Vec<PathBuf> = shared
                            .take()
                            .paths
                            .into_iter()
                            .filter(|p| !tree.ignores_event(p))
                            .filter_map(|p| tree.key(&p))
                            // A late event for a file this run started with
                            // (the same content) is no change.
                            .filter(|p| {
                                files::hash_file(&root.join(p)).ok().as_ref() != baseline.get(p)
                            })
                            .collect();
                        if options.on_busy == OnBusy::Restart {
                            let fresh: Vec<PathBuf> = changed_now
                                .into_iter()
                                .filter(|p| !inputs.reading(std::slice::from_ref(p)).is_empty())
                                .filter(|p| !stopped_by.contains(p))
                                .filter(|p| {
                                    let exhausted = restarts.exhausted(p);
                                    if exhausted && warned.insert(p.clone()) {
                                        events.send(WatchEvent::Warning(format!(
                                            "{} changed during {MAX_RESTARTS_IN_A_ROW} runs in a row \
                                             (does a task write it?); not restarting for it until \
                                             a run ends",
                                            p.display()
                                        )));
                                    }
                                    !exhausted
                                })
                                .collect();
                            if fresh.is_empty() {
                                continue;
                            }
                            if stopped_by.is_empty() {
                                events.send(WatchEvent::Restarting {
                                    paths: fresh.iter().map(|p| p.display().to_string()).collect(),
                                });
                                run_cancel.cancel();
                            }
                            stopped_by.extend(fresh);
                            continue;
                        }
                        let fresh: Vec<PathBuf> = changed_now
                            .into_iter()
                            .filter(|p| !outside.contains(p))
                            .filter(|p| {
                                inputs
                                    .reading(std::slice::from_ref(p))
                                    .iter()
                                    .any(|b| !ran.contains(b))
                            })
                            .collect();
                        if !fresh.is_empty() && !follow_up {
                            events.send(WatchEvent::SeenWhileBusy {
                                paths: fresh.iter().map(|p| p.display().to_string()).collect(),
                                queued: options.on_busy == OnBusy::Queue,
                            });
                            outside.extend(fresh);
                        }
                    }
                }
            }
        };
        status = report.status;
        // The run the next trigger starts.
        next_run = new_run_id();
        last.update(&report);
        if cancel.is_cancelled() {
            return Ok(status);
        }
        events.send(WatchEvent::Finished(report));
        // Settle: what the run wrote becomes the baseline.
        let _ = shared.take();
        let (t, now) = hash(tree).await;
        tree = t;
        let before = std::mem::replace(&mut baseline, now);
        let mut queued: Vec<PathBuf> = if options.on_busy == OnBusy::Queue && !follow_up {
            outside
                .into_iter()
                .filter(|p| before.get(p) != baseline.get(p))
                .collect()
        } else {
            Vec::new()
        };
        if !queued.is_empty() {
            let broken = plugins::reload_changed(&mut runner, &root, &queued, &events).await;
            queued.retain(|p| !broken.contains(p));
        }
        if !stopped_by.is_empty() {
            // Every process of the stopped run is gone: the new run starts
            // with every change seen, what the old one wrote absorbed.
            let broken = plugins::reload_changed(&mut runner, &root, &stopped_by, &events).await;
            stopped_by.retain(|p| !broken.contains(p));
        }
        if !stopped_by.is_empty() {
            restarts.record(&stopped_by);
            let seeds: HashSet<String> = inputs
                .reading(&stopped_by)
                .into_iter()
                .chain(last.not_completed.iter().cloned())
                .collect();
            selection = with_dependents(&pipeline, &seeds);
            follow_up = false;
            events.send(WatchEvent::Triggered {
                paths: stopped_by.iter().map(|p| p.display().to_string()).collect(),
                batches: selection.clone(),
                follow_up: false,
                run_id: next_run.clone(),
            });
            continue;
        }
        restarts = Restarts::default();
        events.send(WatchEvent::Watching {
            files: inputs.watched(&baseline),
            batches: pipeline.batches.iter().map(|b| b.id.clone()).collect(),
        });
        if !queued.is_empty() {
            let seeds: HashSet<String> = inputs
                .reading(&queued)
                .into_iter()
                .filter(|b| !ran.contains(b))
                .chain(last.not_completed.iter().cloned())
                .collect();
            selection = with_dependents(&pipeline, &seeds);
            follow_up = true;
            events.send(WatchEvent::Triggered {
                paths: queued.iter().map(|p| p.display().to_string()).collect(),
                batches: selection.clone(),
                follow_up: true,
                run_id: next_run.clone(),
            });
            continue;
        }
        follow_up = false;
        // Wait for a change that alters some batch's inputs.
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(status),
                _ = shared.wake.notified() => {}
            }
            let pending = shared.take();
            for error in &pending.errors {
                events.send(WatchEvent::Warning(format!(
                    "the file watcher reported an error ({error}); re-checking every input"
                )));
            }
            if pending.rescan && pending.errors.is_empty() {
                events.send(WatchEvent::Warning(
                    "file events may have been lost; re-checking every input".into(),
                ));
            }
            let relevant = pending.paths.iter().any(|p| !tree.ignores_event(p));
            if !relevant && !pending.rescan {
                continue;
            }
            let (t, now) = hash(tree).await;
            tree = t;
            let mut paths = changed(&baseline, &now);
            baseline = now;
            if paths.contains(&config_rel) {
                match reload(&config_path, &pipeline.name, runner.bus().clone()).await {
                    Ok(reloaded) => {
                        let next = reloaded.config().pipelines[&pipeline.name].clone();
                        let next_inputs = Inputs::new(reloaded.config(), &next, &root)?;
                        let next_files = plugins::component_files(reloaded.config(), &next);
                        let next_granted =
                            plugins::outside_granted_dirs(reloaded.config(), &next, &root);
                        match Tree::new(
                            &root,
                            reloaded.config().state_dir(),
                            &ignores(&reloaded.config().watch.ignore),
                        )
                        .and_then(|tree| tree.with_dirs(next_granted.clone()))
                        {
                            Ok(next_tree) => {
                                events.send(WatchEvent::ConfigReloaded);
                                handle.watch_outside(
                                    Outside {
                                        granted: next_granted,
                                        parents: plugins::outside_dirs(&root, &next_files),
                                    },
                                    &mut outside_watched,
                                    &events,
                                );
                                let next_tree = next_tree.with_files(next_files);
                                runner = reloaded;
                                pipeline = next;
                                inputs = next_inputs;
                                // Hashed again (with the new ignores) when the run ends.
                                tree = next_tree;
                                last = Last::default();
                                let all: HashSet<String> =
                                    pipeline.batches.iter().map(|b| b.id.clone()).collect();
                                selection = with_dependents(&pipeline, &all);
                                events.send(WatchEvent::Triggered {
                                    paths: paths.iter().map(|p| p.display().to_string()).collect(),
                                    batches: selection.clone(),
                                    follow_up: false,
                                    run_id: next_run.clone(),
                                });
                                break;
                            }
                            Err(message) => {
                                events.send(WatchEvent::ConfigError(message));
                            }
                        }
                    }
                    Err(message) => {
                        events.send(WatchEvent::ConfigError(message));
                    }
                }
            }
            let broken = plugins::reload_changed(&mut runner, &root, &paths, &events).await;
            paths.retain(|p| !broken.contains(p));
            let seeds = inputs.reading(&paths);
            if seeds.is_empty() {
                continue;
            }
            let seeds: HashSet<String> = seeds
                .into_iter()
                .chain(last.not_completed.iter().cloned())
                .collect();
            selection = with_dependents(&pipeline, &seeds);
            events.send(WatchEvent::Triggered {
                paths: paths.iter().map(|p| p.display().to_string()).collect(),
                batches: selection.clone(),
                follow_up: false,
                run_id: next_run.clone(),
            });
            break;
        }
    }
}

/// Hashes the tree off the async threads.
async fn hash(mut tree: Tree) -> (Tree, Snapshot) {
    tokio::task::spawn_blocking(move || {
        let snapshot = tree.snapshot();
        (tree, snapshot)
    })
    .await
    .expect("hashing the tree does not panic")
}
