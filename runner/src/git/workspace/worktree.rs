//! A batch's branch and worktree: where it starts (joining its dependencies' branches), where a plugin's directory lands in it, and its removal.

use super::merge::conflict_paths;
use super::*;
use crate::git::{GitError, git_err, io_err, slug};
use git2::{BranchType, Oid, Repository, WorktreeAddOptions, WorktreePruneOptions};
use std::path::{Path, PathBuf};

impl Workspaces {
    /// Creates the batch's branch and worktree. The branch starts at the
    /// configured base, or, when the batch depends on other batches, at their
    /// heads after (`parents`, joined by a merge commit when there are several).
    pub fn prepare(
        &self,
        run_id: &str,
        batch_id: &str,
        parents: &[String],
    ) -> Result<BatchWorkspace, GitError> {
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let repo = self.open_repo()?;
        let start = self.start_commit(&repo, parents)?;
        let stem = format!("{}-{}", slug(run_id), slug(batch_id));
        self.create(&repo, run_id, batch_id, &stem, start)
    }

    /// A branch and worktree for attempt `number` of `batch` (a batch type
    /// that tries the batch several times): `runner/<run>-<batch>-<number>`,
    /// starting where the batch's own branch started.
    pub fn prepare_attempt(
        &self,
        batch: &BatchWorkspace,
        number: u32,
    ) -> Result<BatchWorkspace, GitError> {
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let repo = self.open_repo()?;
        let start = Oid::from_str(&batch.head_before).map_err(git_err(format!(
            "`{}` is not a commit id",
            batch.head_before
        )))?;
        let stem = format!("{}-{}-{number}", slug(&batch.run_id), slug(&batch.batch_id));
        self.create(&repo, &batch.run_id, &batch.batch_id, &stem, start)
    }

    /// A branch `runner/<stem>` (or `<stem>-2`, … when taken) at `start`
    /// and its worktree. The caller holds the lock.
    fn create(
        &self,
        repo: &Repository,
        run_id: &str,
        batch_id: &str,
        stem: &str,
        start: Oid,
    ) -> Result<BatchWorkspace, GitError> {
        let start_commit = repo
            .find_commit(start)
            .map_err(git_err("cannot read the start commit"))?;
        std::fs::create_dir_all(&self.worktrees_dir).map_err(io_err(format!(
            "cannot create {}",
            self.worktrees_dir.display()
        )))?;
        // The worktrees may live inside the repository's working copy; this
        // keeps `git status` and `git add -A` there from seeing them.
        let ignore = self.worktrees_dir.join(".gitignore");
        if !ignore.exists() {
            std::fs::write(&ignore, "*\n")
                .map_err(io_err(format!("cannot write {}", ignore.display())))?;
        }

        let (name, branch, path) = (1..)
            .map(|n| {
                if n == 1 {
                    stem.to_string()
                } else {
                    format!("{stem}-{n}")
                }
            })
            .map(|name| {
                (
                    format!("{BRANCH_PREFIX}{name}"),
                    self.worktrees_dir.join(&name),
                    name,
                )
            })
            .map(|(branch, path, name)| (name, branch, path))
            .find(|(name, branch, path)| {
                repo.find_branch(branch, BranchType::Local).is_err()
                    && !path.exists()
                    && repo
                        .find_worktree(&format!("{WORKTREE_PREFIX}{name}"))
                        .is_err()
            })
            .expect("some suffix is free");
        let worktree_name = format!("{WORKTREE_PREFIX}{name}");
        let owner_file = self.worktrees_dir.join(format!("{name}.owner"));
        std::fs::write(
            &owner_file,
            format!("{}\n{run_id}\n{batch_id}\n{branch}\n", std::process::id()),
        )
        .map_err(io_err(format!("cannot write {}", owner_file.display())))?;

        let reference = match repo.branch(&branch, &start_commit, false) {
            Ok(branch) => branch.into_reference(),
            Err(err) => {
                let _ = std::fs::remove_file(&owner_file);
                return Err(git_err(format!("cannot create branch `{branch}`"))(err));
            }
        };
        let mut options = WorktreeAddOptions::new();
        options.reference(Some(&reference));
        if let Err(err) = repo.worktree(&worktree_name, &path, Some(&options)) {
            let _ = std::fs::remove_file(&owner_file);
            return Err(git_err(format!(
                "cannot create the worktree {}",
                path.display()
            ))(err));
        }
        crate::git::retention::record_run(repo, &branch, run_id);
        let dir = path.join(&self.project_rel);
        Ok(BatchWorkspace {
            run_id: run_id.to_string(),
            batch_id: batch_id.to_string(),
            branch,
            path,
            dir,
            head_before: start.to_string(),
            worktree_name,
            owner_file,
        })
    }

    fn start_commit(&self, repo: &Repository, parents: &[String]) -> Result<Oid, GitError> {
        let mut heads: Vec<Oid> = Vec::new();
        for parent in parents {
            let oid =
                Oid::from_str(parent).map_err(git_err(format!("`{parent}` is not a commit id")))?;
            if !heads.contains(&oid) {
                heads.push(oid);
            }
        }
        // A head that another head already contains adds nothing.
        let snapshot = heads.clone();
        heads.retain(|&oid| {
            !snapshot
                .iter()
                .any(|&other| other != oid && repo.graph_descendant_of(other, oid).unwrap_or(false))
        });
        match heads.as_slice() {
            [] => Ok(self.base_commit),
            [one] => Ok(*one),
            [first, rest @ ..] => {
                let mut joined = repo
                    .find_commit(*first)
                    .map_err(git_err("cannot read a dependency's head"))?;
                for oid in rest {
                    let next = repo
                        .find_commit(*oid)
                        .map_err(git_err("cannot read a dependency's head"))?;
                    let mut index = repo
                        .merge_commits(&joined, &next, None)
                        .map_err(git_err("cannot join the dependencies' branches"))?;
                    if index.has_conflicts() {
                        return Err(GitError::JoinConflict {
                            paths: conflict_paths(&index),
                        });
                    }
                    let tree_id = index
                        .write_tree_to(repo)
                        .map_err(git_err("cannot write the joined tree"))?;
                    let tree = repo
                        .find_tree(tree_id)
                        .map_err(git_err("cannot read the joined tree"))?;
                    let sig = signature(repo);
                    let oid = repo
                        .commit(
                            None,
                            &sig,
                            &sig,
                            "runner: join the branches of the batches this one depends on",
                            &tree,
                            &[&joined, &next],
                        )
                        .map_err(git_err("cannot commit the join"))?;
                    joined = repo
                        .find_commit(oid)
                        .map_err(git_err("cannot read the join"))?;
                }
                Ok(joined.id())
            }
        }
    }

    /// Where a directory granted to a plugin is for `batch`: a directory in
    /// the repository's working copy maps to the same place in the batch's
    /// worktree (created there when the branch lacks it), so what a plugin
    /// writes lands on the batch's branch. `None` (use `host` as it is) for
    /// a directory outside the working copy, one git ignores (its contents
    /// would never be on a branch), and the state directory.
    pub fn dir_in_worktree(
        &self,
        batch: &BatchWorkspace,
        host: &Path,
    ) -> Result<Option<PathBuf>, GitError> {
        let Ok(host) = host.canonicalize() else {
            return Ok(None);
        };
        let Ok(relative) = host.strip_prefix(&self.repo_root) else {
            return Ok(None);
        };
        if host.starts_with(&self.state_dir) || relative.starts_with(".git") {
            return Ok(None);
        }
        let repo = self.open_repo()?;
        if !relative.as_os_str().is_empty()
            && repo.is_path_ignored(relative).map_err(git_err(format!(
                "cannot tell whether git ignores {}",
                host.display()
            )))?
        {
            return Ok(None);
        }
        let mapped = batch.path.join(relative);
        std::fs::create_dir_all(&mapped)
            .map_err(io_err(format!("cannot create {}", mapped.display())))?;
        Ok(Some(mapped))
    }

    /// Removes the batch's worktree (the branch stays), unless
    /// `keep_worktrees` is set.
    pub fn remove(&self, batch: &BatchWorkspace) -> Result<(), GitError> {
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !self.keep {
            let repo = self.open_repo()?;
            remove_worktree(&repo, &batch.worktree_name, &batch.path)?;
        }
        // Without an owner file the sweep leaves a kept worktree alone.
        let _ = std::fs::remove_file(&batch.owner_file);
        Ok(())
    }
}

pub(in crate::git) fn remove_worktree(
    repo: &Repository,
    name: &str,
    path: &Path,
) -> Result<(), GitError> {
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(io_err(format!(
            "cannot remove the worktree {}",
            path.display()
        )))?;
    }
    if let Ok(worktree) = repo.find_worktree(name) {
        worktree
            .prune(Some(
                WorktreePruneOptions::new()
                    .valid(true)
                    .locked(false)
                    .working_tree(true),
            ))
            .map_err(git_err(format!("cannot unregister the worktree {name}")))?;
    }
    Ok(())
}
