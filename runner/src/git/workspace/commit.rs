//! Committing what a batch changed in its worktree to its branch.

use super::*;
use crate::git::{GitError, git_err};
use git2::{Commit, IndexAddOption, Repository};
use std::path::Path;

impl BatchWorkspace {
    /// Commits everything that changed in the worktree (ignored files
    /// excepted) on the batch's branch, with a message naming the run and
    /// the batch. No commit when nothing changed.
    pub fn commit(&self, batch_name: &str) -> Result<Committed, GitError> {
        let mut message = format!("runner: batch {} of run {}", self.batch_id, self.run_id);
        if batch_name != self.batch_id && !batch_name.is_empty() {
            message.push_str(&format!("\n\n{batch_name}"));
        }
        self.commit_with(&message)
    }

    /// [`BatchWorkspace::commit`] with this commit message.
    pub fn commit_with(&self, message: &str) -> Result<Committed, GitError> {
        let mut committed = commit_worktree(&self.path, message)?;
        committed.head_before = self.head_before.clone();
        Ok(committed)
    }

    /// Points the branch (and the worktree) at `commit`, dropping what the
    /// worktree holds: a batch that tried its work on other branches takes
    /// the winning attempt's head as its own.
    pub fn adopt(&self, commit: &str) -> Result<(), GitError> {
        let repo = Repository::open(&self.path).map_err(git_err(format!(
            "cannot open the worktree {}",
            self.path.display()
        )))?;
        let object = repo
            .revparse_single(commit)
            .map_err(git_err(format!("no commit `{commit}`")))?;
        repo.reset(&object, git2::ResetType::Hard, None)
            .map_err(git_err(format!(
                "cannot move `{}` to {commit}",
                self.branch
            )))
    }
}

/// Stages everything in the worktree at `path` and commits it on its branch.
pub(super) fn commit_worktree(path: &Path, message: &str) -> Result<Committed, GitError> {
    let repo = Repository::open(path).map_err(git_err(format!(
        "cannot open the worktree {}",
        path.display()
    )))?;
    let head = repo
        .head()
        .map_err(git_err("cannot read the worktree's HEAD"))?;
    let branch = head.shorthand().unwrap_or("HEAD").to_string();
    let parent = head
        .peel_to_commit()
        .map_err(git_err("cannot read the worktree's commit"))?;
    let mut index = repo
        .index()
        .map_err(git_err("cannot read the worktree's index"))?;
    index
        .add_all(["*"], IndexAddOption::DEFAULT, None)
        .map_err(git_err("cannot stage the batch's changes"))?;
    index
        .update_all(["*"], None)
        .map_err(git_err("cannot stage deleted files"))?;
    index.write().map_err(git_err("cannot write the index"))?;
    let tree_id = index
        .write_tree()
        .map_err(git_err("cannot write the tree"))?;
    let head_id = parent.id().to_string();
    if tree_id == parent.tree_id() {
        return Ok(Committed {
            branch,
            head_before: head_id.clone(),
            head_after: head_id,
            files_changed: 0,
        });
    }
    let tree = repo
        .find_tree(tree_id)
        .map_err(git_err("cannot read the tree"))?;
    let parent_tree = parent
        .tree()
        .map_err(git_err("cannot read the parent tree"))?;
    let files_changed = repo
        .diff_tree_to_tree(Some(&parent_tree), Some(&tree), None)
        .map(|diff| diff.deltas().len())
        .map_err(git_err("cannot diff the batch's changes"))?;
    let sig = signature(&repo);
    let oid = repo
        .commit(
            Some("HEAD"),
            &sig,
            &sig,
            message,
            &tree,
            &[&parent as &Commit],
        )
        .map_err(git_err(format!("cannot commit on `{branch}`")))?;
    Ok(Committed {
        branch,
        head_before: head_id,
        head_after: oid.to_string(),
        files_changed,
    })
}
