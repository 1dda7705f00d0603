//! How long batch branches stay: `[git] keep_branches` (the branches of the
//! newest N runs), `keep_branches_for` (no run older than that) and
//! `prune_unmerged`.
//!
//! Each batch branch records its run and when it was made in the
//! repository's config (`branch.<name>.runnerRun`, `.runnerCreated` in
//! milliseconds since 1970; git
//! drops them with the branch), so runs are told apart whatever their ids
//! look like. Branches made before that are read from their name
//! (`runner/YYYYmmdd-HHMMSS-xxxx-<batch>`), else each is a run of its own,
//! as old as its head commit.
//!
//! ## What is never deleted
//! A branch whose commits are not all in the target (the work exists
//! nowhere else) unless `prune_unmerged = true`; a branch checked out in
//! the working copy, in a worktree of a running batch or in a worktree the
//! runner does not own; and a branch whose kept worktree (`keep_worktrees`)
//! holds uncommitted changes. A kept worktree whose branch goes is removed
//! with it.

use super::workspace::{BRANCH_PREFIX, WORKTREE_PREFIX, remove_worktree};
use super::{GitError, Workspaces, git_err};
use crate::config::git::GitSettings;
use git2::{BranchType, ConfigLevel, Oid, Repository, StatusOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The retention of one repository's batch branches.
#[derive(Debug, Clone)]
pub(super) struct Retention {
    keep_runs: usize,
    max_age: Option<Duration>,
    prune_unmerged: bool,
    /// "Merged" means: in this branch (`target`, else `base` when it is a
    /// branch, else the branch checked out when the run started).
    target: Option<String>,
}

impl Retention {
    pub(super) fn new(settings: &GitSettings, repo: &Repository) -> Self {
        let target = settings
            .target
            .clone()
            .or_else(|| {
                settings
                    .base
                    .clone()
                    .filter(|base| repo.find_branch(base, BranchType::Local).is_ok())
            })
            .or_else(|| {
                repo.head()
                    .ok()
                    .filter(|head| head.is_branch())
                    .and_then(|head| head.shorthand().map(str::to_string))
            });
        Self {
            keep_runs: settings.keep_branches(),
            max_age: settings.keep_branches_for,
            prune_unmerged: settings.prune_unmerged,
            target,
        }
    }
}

/// A branch the retention deleted (or would delete, on a dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunedBranch {
    pub branch: String,
    pub run: String,
    /// Why its time is up.
    pub why: String,
    /// Its kept worktree, removed with it.
    pub worktree: Option<PathBuf>,
}

/// A branch whose time is up but which stays, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptBranch {
    pub branch: String,
    pub why: String,
}

/// What [`Workspaces::prune_branches`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BranchPrune {
    pub removed: Vec<PrunedBranch>,
    pub kept: Vec<KeptBranch>,
}

fn run_key(branch: &str) -> String {
    format!("branch.{branch}.runnerRun")
}

fn created_key(branch: &str) -> String {
    format!("branch.{branch}.runnerCreated")
}

/// Milliseconds since 1970: runs a moment apart must still be ordered.
fn unix_ms(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Notes in the repository's config which run made `branch`, and when.
/// Best effort: without it the branch's age is read from its name or head.
pub(super) fn record_run(repo: &Repository, branch: &str, run_id: &str) {
    let Ok(mut config) = repo.config().and_then(|c| c.open_level(ConfigLevel::Local)) else {
        return;
    };
    let _ = config.set_str(&run_key(branch), run_id);
    let _ = config.set_i64(&created_key(branch), unix_ms(SystemTime::now()));
}

/// The run of a branch made before runs were recorded, from a name
/// `runner/YYYYmmdd-HHMMSS-xxxx-<batch>`: (run id, unix milliseconds).
fn legacy_run(branch: &str) -> Option<(String, i64)> {
    let stem = branch.strip_prefix(BRANCH_PREFIX)?;
    let run = stem.get(..20)?;
    let bytes = run.as_bytes();
    let shaped = bytes[8] == b'-'
        && bytes[15] == b'-'
        && bytes[..8]
            .iter()
            .chain(&bytes[9..15])
            .all(u8::is_ascii_digit)
        && bytes[16..].iter().all(u8::is_ascii_hexdigit);
    if !shaped {
        return None;
    }
    let time = chrono::NaiveDateTime::parse_from_str(&run[..15], "%Y%m%d-%H%M%S").ok()?;
    Some((run.to_string(), time.and_utc().timestamp_millis()))
}

struct Candidate {
    name: String,
    head: Oid,
    run: String,
    created: i64,
}

impl Workspaces {
    /// Deletes the batch branches the retention no longer keeps (only
    /// reports them when `dry_run`).
    pub fn prune_branches(&self, dry_run: bool) -> Result<BranchPrune, GitError> {
        self.prune_branches_at(dry_run, SystemTime::now())
    }

    /// [`Workspaces::prune_branches`] as if it were `now`.
    pub fn prune_branches_at(
        &self,
        dry_run: bool,
        now: SystemTime,
    ) -> Result<BranchPrune, GitError> {
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let repo = self.open_repo()?;
        let config = repo
            .config()
            .and_then(|mut c| c.snapshot())
            .map_err(git_err("cannot read the repository's config"))?;
        let mut candidates = Vec::new();
        for entry in repo
            .branches(Some(BranchType::Local))
            .map_err(git_err("cannot list branches"))?
        {
            let (branch, _) = entry.map_err(git_err("cannot list branches"))?;
            let Some(name) = branch.name().ok().flatten().map(str::to_string) else {
                continue;
            };
            let Some(head) = branch.get().target() else {
                continue;
            };
            if !name.starts_with(BRANCH_PREFIX) {
                continue;
            }
            let recorded = config.get_string(&run_key(&name)).ok().and_then(|run| {
                let created = config.get_i64(&created_key(&name)).ok()?;
                Some((run, created))
            });
            let (run, created) = recorded.or_else(|| legacy_run(&name)).unwrap_or_else(|| {
                let time = repo
                    .find_commit(head)
                    .map_or(0, |c| c.time().seconds().saturating_mul(1000));
                (name.clone(), time)
            });
            candidates.push(Candidate {
                name,
                head,
                run,
                created,
            });
        }

        // Runs, newest first.
        let mut runs: HashMap<&str, i64> = HashMap::new();
        for c in &candidates {
            let newest = runs.entry(c.run.as_str()).or_insert(c.created);
            *newest = (*newest).max(c.created);
        }
        let mut order: Vec<(&str, i64)> = runs.into_iter().collect();
        order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(a.0)));
        let now_ms = unix_ms(now);
        let keep = self.retention.keep_runs;
        let expired: HashMap<String, String> = order
            .iter()
            .enumerate()
            .filter_map(|(index, (run, created))| {
                let why = if index >= keep {
                    format!(
                        "its run is not one of the {keep} newest (`[git] keep_branches = {keep}`)"
                    )
                } else if let Some(age) = self.retention.max_age
                    && now_ms.saturating_sub(*created)
                        > i64::try_from(age.as_millis()).unwrap_or(i64::MAX)
                {
                    "its run is older than `[git] keep_branches_for`".to_string()
                } else {
                    return None;
                };
                Some((run.to_string(), why))
            })
            .collect();

        let checked_out = checked_out_branches(&repo);
        let worktrees_dir = self
            .worktrees_dir
            .canonicalize()
            .unwrap_or_else(|_| self.worktrees_dir.clone());
        let main_head = repo
            .head()
            .ok()
            .filter(|h| h.is_branch())
            .and_then(|h| h.name().map(str::to_string));
        let target = self.retention.target.as_deref();
        let target_head = target
            .and_then(|t| repo.find_branch(t, BranchType::Local).ok())
            .and_then(|b| b.get().target());

        let mut report = BranchPrune::default();
        for c in candidates {
            let Some(why) = expired.get(&c.run) else {
                continue;
            };
            let refname = format!("refs/heads/{}", c.name);
            let keep = |why: String| KeptBranch {
                branch: c.name.clone(),
                why,
            };
            if main_head.as_deref() == Some(refname.as_str()) {
                report
                    .kept
                    .push(keep("it is checked out in the working copy".into()));
                continue;
            }
            let mut worktree = None;
            if let Some(path) = checked_out.get(&refname) {
                let ours = path.parent() == Some(worktrees_dir.as_path());
                let owner = path.with_extension("owner");
                if !ours {
                    report.kept.push(keep(format!(
                        "it is checked out in the worktree {}",
                        path.display()
                    )));
                    continue;
                }
                if owner.exists() {
                    report.kept.push(keep("a running batch works on it".into()));
                    continue;
                }
                if has_changes(path) {
                    report.kept.push(keep(format!(
                        "its kept worktree {} has uncommitted changes",
                        path.display()
                    )));
                    continue;
                }
                worktree = Some(path.clone());
            }
            let merged = target_head.is_some_and(|t| {
                t == c.head || repo.graph_descendant_of(t, c.head).unwrap_or(false)
            });
            if !merged && !self.retention.prune_unmerged {
                report.kept.push(keep(format!(
                    "it holds commits that {} does not (`[git] prune_unmerged = true` deletes it anyway)",
                    target.unwrap_or("no target branch")
                )));
                continue;
            }
            if !dry_run {
                if let Some(path) = &worktree {
                    let name = format!(
                        "{WORKTREE_PREFIX}{}",
                        path.file_name()
                            .and_then(|n| n.to_str())
                            .unwrap_or_default()
                    );
                    remove_worktree(&repo, &name, path)?;
                }
                repo.find_branch(&c.name, BranchType::Local)
                    .and_then(|mut branch| branch.delete())
                    .map_err(git_err(format!("cannot delete the branch `{}`", c.name)))?;
            }
            report.removed.push(PrunedBranch {
                branch: c.name,
                run: c.run,
                why: why.clone(),
                worktree,
            });
        }
        report.removed.sort_by(|a, b| a.branch.cmp(&b.branch));
        report.kept.sort_by(|a, b| a.branch.cmp(&b.branch));
        Ok(report)
    }
}

/// `refs/heads/...` checked out in a linked worktree, with its path.
fn checked_out_branches(repo: &Repository) -> HashMap<String, PathBuf> {
    let mut found = HashMap::new();
    let Ok(names) = repo.worktrees() else {
        return found;
    };
    for name in names.iter().flatten() {
        let Ok(worktree) = repo.find_worktree(name) else {
            continue;
        };
        let path = worktree.path().to_path_buf();
        let head = Repository::open_from_worktree(&worktree)
            .ok()
            .and_then(|wt| wt.head().ok().and_then(|h| h.name().map(str::to_string)));
        if let Some(head) = head {
            let path = path.canonicalize().unwrap_or(path);
            found.insert(head, path);
        }
    }
    found
}

/// Whether the worktree at `path` holds changes not committed (ignored
/// files aside).
fn has_changes(path: &Path) -> bool {
    let Ok(repo) = Repository::open(path) else {
        return true;
    };
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .include_ignored(false)
        .exclude_submodules(true);
    repo.statuses(Some(&mut options))
        .map_or(true, |statuses| !statuses.is_empty())
}
