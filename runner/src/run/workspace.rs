//! A batch's workspace: its git worktree and branch prepared before its
//! tasks, committed, merged and removed after; the plugins' directories as
//! the worktree has them.

use super::RunCtx;
use crate::config::{Batch, Config, DirGrant};
use crate::git::{BatchWorkspace, Project as GitProject};
use protocol::EventKind;
use std::collections::HashMap;
use std::sync::Arc;

impl RunCtx {
    /// Creates the batch's worktree and branch (`None` outside a repository),
    /// publishing where the batch works either way.
    pub(super) async fn prepare_workspace(
        self: &Arc<Self>,
        batch: &Batch,
    ) -> Result<Option<BatchWorkspace>, String> {
        let project = self.project.clone();
        if let GitProject::Plain { reason, .. } = project.as_ref() {
            self.publish(EventKind::WorkspacePrepared {
                run_id: self.run_id.clone(),
                batch_id: batch.id.clone(),
                path: self.config.base_dir.display().to_string(),
                branch: None,
                base_commit: None,
                note: Some(format!("no branch: {reason}")),
            });
            return Ok(None);
        }
        let parents: Vec<String> = {
            let heads = self.heads.lock().expect("heads lock");
            batch
                .depends_on
                .iter()
                .filter_map(|dep| heads.get(dep).cloned())
                .collect()
        };
        let (run_id, batch_id) = (self.run_id.clone(), batch.id.clone());
        let config = self.config.clone();
        let (workspace, dirs) = tokio::task::spawn_blocking(move || {
            let workspaces = project.workspaces().expect("a repository");
            let workspace = workspaces.prepare(&run_id, &batch_id, &parents)?;
            match worktree_dirs(&config, workspaces, &workspace) {
                Ok(dirs) => Ok((workspace, dirs)),
                Err(err) => {
                    let _ = workspaces.remove(&workspace);
                    Err(err)
                }
            }
        })
        .await
        .map_err(|err| err.to_string())?
        .map_err(|err| err.to_string())?;
        self.batch_dirs
            .lock()
            .expect("batch dirs lock")
            .insert(batch.id.clone(), dirs);
        self.publish(EventKind::WorkspacePrepared {
            run_id: self.run_id.clone(),
            batch_id: batch.id.clone(),
            path: workspace.dir.display().to_string(),
            branch: Some(workspace.branch.clone()),
            base_commit: Some(workspace.head_before.clone()),
            note: None,
        });
        Ok(Some(workspace))
    }

    /// Commits what the batch changed, merges it when configured and the
    /// batch completed, and removes the worktree unless it is kept.
    /// `Ok(Some(error))`: the merge did not happen (a conflict, or a target
    /// checkout with uncommitted changes in the way).
    pub(super) async fn finish_workspace(
        self: &Arc<Self>,
        batch: &Batch,
        workspace: &BatchWorkspace,
        completed: bool,
    ) -> Result<Option<String>, String> {
        let (project, ws, name) = (self.project.clone(), workspace.clone(), batch.name.clone());
        let (committed, merged) = tokio::task::spawn_blocking(move || {
            let workspaces = project.workspaces().expect("a repository");
            let committed = ws.commit(&name)?;
            let merged = if completed {
                workspaces.merge(&ws)
            } else {
                None
            };
            if !workspaces.keeps_worktrees() {
                workspaces.remove(&ws)?;
            }
            Ok::<_, crate::git::GitError>((committed, merged))
        })
        .await
        .map_err(|err| err.to_string())?
        .map_err(|err| err.to_string())?;
        self.heads
            .lock()
            .expect("heads lock")
            .insert(batch.id.clone(), committed.head_after.clone());
        self.publish(EventKind::RepoState {
            run_id: self.run_id.clone(),
            batch_id: batch.id.clone(),
            branch: committed.branch.clone(),
            head_before: committed.head_before,
            head_after: committed.head_after,
            files_changed: committed.files_changed,
        });
        let mut merge_error = None;
        if let Some(merge) = merged {
            if !merge.status.is_success() {
                let why = if merge.conflicts.is_empty() {
                    merge.error.clone().unwrap_or_else(|| "failed".into())
                } else {
                    format!(
                        "conflict in {}; {} is untouched",
                        merge.conflicts.join(", "),
                        merge.target
                    )
                };
                merge_error = Some(format!(
                    "merge into {} failed: {why}; the batch's work is on {}",
                    merge.target, merge.branch
                ));
            }
            self.publish(EventKind::MergeStatus {
                run_id: self.run_id.clone(),
                batch_id: batch.id.clone(),
                branch: merge.branch,
                target: merge.target,
                status: merge.status,
                commit: merge.commit,
                conflicts: merge.conflicts,
                error: merge.error,
            });
        }
        Ok(merge_error)
    }

    /// `plugin`'s directories as batch `batch_id`'s worktree has them;
    /// `None`: its own (the batch has no worktree, or the plugin no dirs).
    pub(super) fn granted_dirs(&self, batch_id: &str, plugin: &str) -> Option<Vec<DirGrant>> {
        self.batch_dirs
            .lock()
            .expect("batch dirs lock")
            .get(batch_id)?
            .get(plugin)
            .cloned()
    }
}

/// Every plugin's granted directories, those inside the repository moved
/// into `workspace` (see [`crate::git::Workspaces::dir_in_worktree`]).
fn worktree_dirs(
    config: &Config,
    workspaces: &crate::git::Workspaces,
    workspace: &BatchWorkspace,
) -> Result<HashMap<String, Vec<DirGrant>>, crate::git::GitError> {
    let mut all = HashMap::new();
    for (name, decl) in &config.plugins {
        if decl.capabilities.dirs.is_empty() {
            continue;
        }
        let mut dirs = Vec::with_capacity(decl.capabilities.dirs.len());
        for grant in &decl.capabilities.dirs {
            let host = workspaces
                .dir_in_worktree(workspace, &grant.host)?
                .unwrap_or_else(|| grant.host.clone());
            dirs.push(DirGrant {
                host,
                ..grant.clone()
            });
        }
        all.insert(name.clone(), dirs);
    }
    Ok(all)
}
