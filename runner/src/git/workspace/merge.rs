//! Merging a batch's branch into the target, never leaving it half-done.

use super::*;
use crate::git::{GitError, MergeMode, git_err};
use git2::{BranchType, Oid, Repository, build::CheckoutBuilder};
use protocol::MergeOutcome;

impl Workspaces {
    /// Merges the batch's branch into the target, as `[git] merge` says;
    /// `None` when merging is off.
    pub fn merge(&self, batch: &BatchWorkspace) -> Option<MergeReport> {
        let target = self.target.clone()?;
        Some(self.merge_into(
            &batch.branch,
            &target,
            self.merge,
            &format!("batch {} of run {}", batch.batch_id, batch.run_id),
        ))
    }

    /// Merges `branch` into the local branch `target`. A conflict, or a
    /// checked-out target whose local changes the merge would overwrite,
    /// leaves the target as it was.
    pub fn merge_into(
        &self,
        branch: &str,
        target: &str,
        mode: MergeMode,
        what: &str,
    ) -> MergeReport {
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut report = MergeReport {
            branch: branch.to_string(),
            target: target.to_string(),
            status: MergeOutcome::Failed,
            commit: None,
            conflicts: Vec::new(),
            error: None,
        };
        match self.try_merge(branch, target, mode, what) {
            Ok((status, commit, conflicts)) => {
                report.status = status;
                report.commit = commit.map(|c| c.to_string());
                if !conflicts.is_empty() {
                    report.error = Some(format!(
                        "{branch} and {target} both changed {}; {target} is untouched",
                        conflicts.join(", ")
                    ));
                }
                report.conflicts = conflicts;
            }
            Err(err) => report.error = Some(format!("{err}; {target} is untouched")),
        }
        report
    }

    fn try_merge(
        &self,
        branch: &str,
        target: &str,
        mode: MergeMode,
        what: &str,
    ) -> Result<(MergeOutcome, Option<Oid>, Vec<String>), GitError> {
        let repo = self.open_repo()?;
        let head_of = |name: &str| -> Result<Oid, GitError> {
            repo.find_branch(name, BranchType::Local)
                .map_err(git_err(format!("no branch `{name}`")))?
                .get()
                .target()
                .ok_or_else(|| GitError::Git {
                    context: format!("branch `{name}`"),
                    message: "points nowhere".into(),
                })
        };
        let (ours, theirs) = (head_of(target)?, head_of(branch)?);
        if ours == theirs
            || repo
                .graph_descendant_of(ours, theirs)
                .map_err(git_err("cannot compare the branches"))?
        {
            return Ok((MergeOutcome::UpToDate, Some(ours), Vec::new()));
        }
        let ff = mode == MergeMode::Ff
            && repo
                .graph_descendant_of(theirs, ours)
                .map_err(git_err("cannot compare the branches"))?;
        let (outcome, new) = if ff {
            (MergeOutcome::FastForward, theirs)
        } else {
            let (our_commit, their_commit) = (
                repo.find_commit(ours)
                    .map_err(git_err("cannot read the target"))?,
                repo.find_commit(theirs)
                    .map_err(git_err("cannot read the branch"))?,
            );
            let mut index = repo
                .merge_commits(&our_commit, &their_commit, None)
                .map_err(git_err("cannot merge"))?;
            if index.has_conflicts() {
                return Ok((MergeOutcome::Conflict, None, conflict_paths(&index)));
            }
            let tree_id = index
                .write_tree_to(&repo)
                .map_err(git_err("cannot write the merged tree"))?;
            let tree = repo
                .find_tree(tree_id)
                .map_err(git_err("cannot read the merged tree"))?;
            let sig = signature(&repo);
            let message = format!("runner: merge {branch} into {target}\n\n{what}");
            let oid = repo
                .commit(
                    None,
                    &sig,
                    &sig,
                    &message,
                    &tree,
                    &[&our_commit, &their_commit],
                )
                .map_err(git_err("cannot commit the merge"))?;
            (MergeOutcome::Merged, oid)
        };
        self.update_checked_out(&repo, target, ours, new)?;
        let refname = format!("refs/heads/{target}");
        repo.reference_matching(
            &refname,
            new,
            true,
            ours,
            &format!("runner: merge {branch} ({})", outcome.as_str()),
        )
        .map_err(git_err(format!(
            "cannot move `{target}` (did it move meanwhile?)"
        )))?;
        Ok((outcome, Some(new), Vec::new()))
    }

    /// When `target` is checked out in the main working copy, brings its
    /// files to `new` first; refuses (changing nothing) when that would
    /// overwrite uncommitted changes.
    fn update_checked_out(
        &self,
        repo: &Repository,
        target: &str,
        old: Oid,
        new: Oid,
    ) -> Result<(), GitError> {
        let checked_out = repo
            .head()
            .ok()
            .filter(|h| h.is_branch())
            .and_then(|h| h.shorthand().map(str::to_string));
        if checked_out.as_deref() != Some(target) {
            return Ok(());
        }
        let head = repo.head().ok().and_then(|h| h.target());
        if head != Some(old) {
            return Ok(());
        }
        let tree = repo
            .find_commit(new)
            .and_then(|c| c.tree())
            .map_err(git_err("cannot read the merged tree"))?;
        let mut checkout = CheckoutBuilder::new();
        checkout.safe();
        repo.checkout_tree(tree.as_object(), Some(&mut checkout)).map_err(|err| GitError::Git {
            context: format!("`{target}` is checked out in {} and the merge would overwrite uncommitted changes there", self.repo_root.display()),
            message: err.message().to_string(),
        })
    }
}

pub(super) fn conflict_paths(index: &git2::Index) -> Vec<String> {
    let mut paths: Vec<String> = index
        .conflicts()
        .map(|conflicts| {
            conflicts
                .flatten()
                .filter_map(|c| c.our.or(c.their).or(c.ancestor))
                .map(|entry| String::from_utf8_lossy(&entry.path).into_owned())
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths.dedup();
    paths
}
