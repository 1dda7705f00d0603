//! Worktrees, commits, merges and the sweep of orphans.

mod commit;
mod merge;
mod sweep;
mod worktree;

pub(super) use worktree::remove_worktree;

use super::{GitError, GitSettings, MergeMode, Project, git_err, io_err};
use git2::{BranchType, ErrorCode, Oid, Repository, Signature, StatusOptions};
use protocol::MergeOutcome;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Worktree names (in `.git/worktrees/`) of the runner start with this.
pub(super) const WORKTREE_PREFIX: &str = "runner-";
/// Branches of batches start with this.
pub const BRANCH_PREFIX: &str = "runner/";

/// The batches of one run in one repository.
pub struct Workspaces {
    repo_root: PathBuf,
    /// The project directory relative to the repository root.
    project_rel: PathBuf,
    pub(super) worktrees_dir: PathBuf,
    /// `<state_dir>`, whose contents never go into a worktree.
    state_dir: PathBuf,
    base_commit: Oid,
    base_name: String,
    merge: MergeMode,
    target: Option<String>,
    keep: bool,
    warnings: Vec<String>,
    /// Worktree and ref changes go one at a time.
    pub(super) lock: Arc<Mutex<()>>,
    /// How long batch branches stay.
    pub(super) retention: super::retention::Retention,
}

/// One batch's branch and worktree.
#[derive(Debug, Clone)]
pub struct BatchWorkspace {
    pub run_id: String,
    pub batch_id: String,
    /// `runner/<run>-<batch>`.
    pub branch: String,
    /// The worktree's root.
    pub path: PathBuf,
    /// Where the batch's tasks run: the project directory inside the worktree.
    pub dir: PathBuf,
    /// The commit the branch started at (the head before the batch).
    pub head_before: String,
    worktree_name: String,
    owner_file: PathBuf,
}

/// What [`BatchWorkspace::commit`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub branch: String,
    pub head_before: String,
    /// Equal to `head_before` when nothing changed and no task committed.
    pub head_after: String,
    /// Files added, changed or deleted by the runner's commit (0: no commit).
    pub files_changed: usize,
}

/// How a merge ended; failures are reports, not errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeReport {
    pub branch: String,
    pub target: String,
    pub status: MergeOutcome,
    /// The target's new commit, when the merge happened.
    pub commit: Option<String>,
    /// Files both sides changed, for `conflict`.
    pub conflicts: Vec<String>,
    pub error: Option<String>,
}

/// A worktree left by a dead runner, swept at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swept {
    pub path: PathBuf,
    pub branch: Option<String>,
    /// The commit that saved what the worktree still held, if it held anything.
    pub saved: Option<String>,
}

pub(super) fn open(
    project_dir: &Path,
    state_dir: &Path,
    settings: &GitSettings,
) -> Result<Project, GitError> {
    let plain = |reason: String| {
        Ok(Project::Plain {
            dir: project_dir.to_path_buf(),
            reason,
        })
    };
    if !settings.enabled() {
        return plain(
            "`[git] enabled = false`: batches run in the project directory, without branches"
                .into(),
        );
    }
    let repo = match Repository::discover(project_dir) {
        Ok(repo) => repo,
        Err(err) if err.code() == ErrorCode::NotFound => {
            return plain(format!(
                "{} is not in a git repository, so batches have no branches; they run in the project directory",
                project_dir.display()
            ));
        }
        Err(err) => {
            return Err(git_err(format!(
                "cannot open the repository at {}",
                project_dir.display()
            ))(err));
        }
    };
    let Some(root) = repo.workdir().map(Path::to_path_buf) else {
        return plain(format!(
            "{} is a bare repository, so batches have no branches; they run in the project directory",
            repo.path().display()
        ));
    };
    let canonical = |p: &Path| {
        p.canonicalize()
            .map_err(io_err(format!("cannot resolve {}", p.display())))
    };
    let root = canonical(&root)?;
    let project_rel = canonical(project_dir)?
        .strip_prefix(&root)
        .map(Path::to_path_buf)
        .unwrap_or_default();

    let head = repo.head();
    let unborn = matches!(&head, Err(err) if err.code() == ErrorCode::UnbornBranch || err.code() == ErrorCode::NotFound);
    let (base_commit, base_name) = match &settings.base {
        Some(base) => {
            let commit = repo
                .revparse_single(base)
                .and_then(|object| object.peel_to_commit())
                .map_err(|_| GitError::NoBase {
                    base: base.clone(),
                    repo: root.clone(),
                })?;
            (commit.id(), base.clone())
        }
        None if unborn => {
            return plain(format!(
                "the git repository at {} has no commits yet, so batches cannot have branches of their own; they run in the project directory. Make a first commit to give each batch a branch",
                root.display()
            ));
        }
        None => {
            let head = head.map_err(git_err("cannot read HEAD"))?;
            let commit = head
                .peel_to_commit()
                .map_err(git_err("cannot read HEAD's commit"))?;
            let name = head
                .shorthand()
                .filter(|_| head.is_branch())
                .map_or("HEAD".into(), |b| format!("HEAD ({b})"));
            (commit.id(), name)
        }
    };

    let target = match settings.merge {
        MergeMode::None => None,
        _ => {
            let target = match (&settings.target, &settings.base) {
                (Some(target), _) => target.clone(),
                (None, Some(base)) if repo.find_branch(base, BranchType::Local).is_ok() => {
                    base.clone()
                }
                _ => match repo.head() {
                    Ok(head) if head.is_branch() => head.shorthand().unwrap_or("HEAD").to_string(),
                    _ => return Err(GitError::DetachedTarget { repo: root.clone() }),
                },
            };
            if repo.find_branch(&target, BranchType::Local).is_err() {
                return Err(GitError::NoTarget {
                    target,
                    repo: root.clone(),
                });
            }
            Some(target)
        }
    };

    let state_abs = if state_dir.is_absolute() {
        state_dir.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(state_dir)
    };
    let worktrees_dir = state_abs.join("worktrees");
    let mut warnings = Vec::new();
    if let Some(warning) = dirty_warning(&repo, &root, &state_abs, &base_name, base_commit) {
        warnings.push(warning);
    }
    Ok(Project::Git(Workspaces {
        repo_root: root,
        project_rel,
        worktrees_dir,
        state_dir: state_abs.canonicalize().unwrap_or(state_abs),
        base_commit,
        base_name,
        merge: settings.merge,
        target,
        keep: settings.keep_worktrees,
        retention: super::retention::Retention::new(settings, &repo),
        warnings,
        lock: Arc::new(Mutex::new(())),
    }))
}

/// A warning when the working copy holds changes the branches will not.
fn dirty_warning(
    repo: &Repository,
    root: &Path,
    state_dir: &Path,
    base_name: &str,
    base: Oid,
) -> Option<String> {
    let state_rel = state_dir
        .canonicalize()
        .ok()
        .and_then(|s| s.strip_prefix(root).ok().map(Path::to_path_buf));
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(false)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo.statuses(Some(&mut options)).ok()?;
    let changed: Vec<String> = statuses
        .iter()
        .filter_map(|entry| entry.path().map(str::to_string))
        .filter(|path| {
            state_rel
                .as_ref()
                .is_none_or(|state| !Path::new(path.trim_end_matches('/')).starts_with(state))
        })
        .collect();
    let first = changed.first()?;
    Some(format!(
        "the working copy at {} has {} uncommitted change{} (for example `{first}`); batch branches start from {base_name} ({}) and do not include them",
        root.display(),
        changed.len(),
        if changed.len() == 1 { "" } else { "s" },
        short(base)
    ))
}

fn short(oid: Oid) -> String {
    oid.to_string()[..10].to_string()
}

fn signature(repo: &Repository) -> Signature<'static> {
    repo.signature()
        .map(|s| s.to_owned())
        .or_else(|_| Signature::now("runner", "runner@localhost"))
        .expect("a fixed signature is valid")
}

impl Workspaces {
    /// The repository's working directory.
    pub fn repo_root(&self) -> &Path {
        &self.repo_root
    }

    /// The commit batches without dependencies branch from.
    pub fn base_commit(&self) -> String {
        self.base_commit.to_string()
    }

    /// What the base is, for messages: `main`, `HEAD (main)`, ...
    pub fn base_name(&self) -> &str {
        &self.base_name
    }

    /// Things the user should know, such as uncommitted changes that the
    /// branches do not include. Publish them as warnings.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The branch completed batches are merged into, when merging is on.
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    pub fn keeps_worktrees(&self) -> bool {
        self.keep
    }

    pub(super) fn open_repo(&self) -> Result<Repository, GitError> {
        Repository::open(&self.repo_root).map_err(git_err(format!(
            "cannot open the repository at {}",
            self.repo_root.display()
        )))
    }
}
