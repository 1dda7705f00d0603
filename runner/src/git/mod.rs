//! A git branch and worktree for every batch (seed 003's workspace).
//!
//! [`Project::open`] looks at the directory `runner.toml` is in. In a git
//! repository with at least one commit it gives [`Workspaces`]: each batch
//! then gets a branch `runner/<run>-<batch>` starting at the configured base
//! (HEAD by default) and a worktree of it under `<state_dir>/worktrees/`;
//! its tasks run there, so parallel batches never see each other's edits.
//! When the batch ends, [`BatchWorkspace::commit`] commits what changed on its
//! branch, [`Workspaces::merge`] merges it into the target branch if asked
//! to, and [`Workspaces::remove`] removes the worktree (the branch stays).
//!
//! Everything here blocks (libgit2): call it from `spawn_blocking`.
//!
//! ## Without git
//! A directory that is not in a git repository, a bare repository, or one
//! without commits still runs: [`Project::Plain`] says why, batches run in the
//! project directory and have no branch.
//!
//! ## A dirty working copy
//! Branches start from a commit, so uncommitted changes in the working copy
//! are not in them. That is a warning ([`Workspaces::warnings`]), not an
//! error: the run goes on from the last commit.
//!
//! ## Merging
//! A merge never leaves the target half-done: a conflict, or a checked-out
//! target whose uncommitted changes the merge would overwrite, reports a
//! failed merge and leaves the target branch and its working copy as they
//! were. The batch's branch keeps its changes either way.
//!
//! ## Plugin directories
//! A directory granted to a plugin inside the working copy is granted as
//! the same directory of the batch's worktree
//! ([`Workspaces::dir_in_worktree`]); one outside it, one git ignores, or
//! the state directory stays as it is.
//!
//! ## Retention
//! Branches stay after their batch; `[git] keep_branches` (runs, default
//! 20) and `keep_branches_for` (age) bound them, applied when a run starts
//! and by `runner gc` ([`Workspaces::prune_branches`]). A branch with work
//! that is not in the target stays unless `prune_unmerged`.
//!
//! ## Remotes
//! For batches that run on workers, `remote.rs` publishes and fetches
//! branches on the `[git] remote`, and [`Mirror`] is a worker's cache of
//! that remote, with a [`Worktree`] per task (run by the `git` program).
//!
//! ## Crashes
//! Every worktree has an owner file naming the runner process. At the next
//! start, [`Workspaces::sweep_orphans`] commits what a dead runner's
//! worktrees still held to their branches and removes them.

mod diff;
mod mirror;
pub(crate) mod remote;
mod retention;
mod workspace;

pub use crate::config::git::{DEFAULT_KEEP_BRANCHES, GitSettings, MergeMode};
pub use diff::{BranchDiff, FileDiff, diff_between};
pub use mirror::{Mirror, Worktree, WorktreeCommit};
pub use remote::{IDENTITY_EMAIL, IDENTITY_NAME, fetch_branch, push_branch, remote_tip};
pub use retention::{BranchPrune, KeptBranch, PrunedBranch};
pub use workspace::{BatchWorkspace, Committed, MergeReport, Swept, Workspaces};

use std::path::{Path, PathBuf};

/// A git problem the user can fix.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("`[git] base = \"{base}\"`: no branch, tag or commit `{base}` in the repository at {}", repo.display())]
    NoBase { base: String, repo: PathBuf },
    #[error("`[git] target = \"{target}\"`: no local branch `{target}` in the repository at {}", repo.display())]
    NoTarget { target: String, repo: PathBuf },
    #[error(
        "`[git] merge` is on, but HEAD of the repository at {} is detached, so there is no branch to merge into; set `[git] target = \"main\"`",
        repo.display()
    )]
    DetachedTarget { repo: PathBuf },
    #[error(
        "the branches this batch depends on conflict ({}); it cannot start from all of them. Make the batches edit different lines, or make one depend on the other",
        paths.join(", ")
    )]
    JoinConflict { paths: Vec<String> },
    #[error(
        "the remote `{remote}` refused `{branch}`: it holds commits this push lacks (someone else pushed it meanwhile)"
    )]
    PushRejected { branch: String, remote: String },
    #[error("the remote `{remote}` has no branch `{branch}`")]
    NoRemoteBranch { branch: String, remote: String },
    #[error(
        "`{branch}` moved on while this task ran, and this task's changes conflict with the new commits there in {}; nothing was pushed. Make the tasks on one branch edit different files, or run them one after the other",
        paths.join(", ")
    )]
    RebaseConflict { branch: String, paths: Vec<String> },
    #[error("git: {context}: {message}")]
    Git { context: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

pub(crate) fn git_err(context: impl Into<String>) -> impl FnOnce(git2::Error) -> GitError {
    let context = context.into();
    move |err| GitError::Git {
        context,
        message: err.message().to_string(),
    }
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> GitError {
    let context = context.into();
    move |source| GitError::Io { context, source }
}

/// Where a pipeline's batches run.
// One per run, so the size of the `Git` variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Project {
    /// In a git repository: a branch and a worktree per batch.
    Git(Workspaces),
    /// In the project directory itself, without branches; `reason` says why
    /// (not a repository, a bare one, no commits yet, branches turned off).
    Plain { dir: PathBuf, reason: String },
}

impl Project {
    /// Looks at `project_dir` (where `runner.toml` is). Worktrees go under
    /// `<state_dir>/worktrees`. Errors are settings that name something the
    /// repository lacks.
    pub fn open(
        project_dir: &Path,
        state_dir: &Path,
        settings: &GitSettings,
    ) -> Result<Self, GitError> {
        workspace::open(project_dir, state_dir, settings)
    }

    /// The workspaces, when batches get branches.
    pub fn workspaces(&self) -> Option<&Workspaces> {
        match self {
            Self::Git(workspaces) => Some(workspaces),
            Self::Plain { .. } => None,
        }
    }
}

/// `runner/<run>-<batch>` as a branch-safe slug of the batch id.
pub fn slug(text: &str) -> String {
    let mut slug = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_matches('-').chars().take(40).collect();
    let slug = slug.trim_end_matches('-').to_string();
    if slug.is_empty() {
        "batch".into()
    } else {
        slug
    }
}
