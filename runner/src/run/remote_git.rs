//! Git on workers, the coordinator's side (`runner run --queue` with
//! `[git] remote`).
//!
//! Before a batch's tasks start, its base (the commit its branch starts at)
//! is published on the remote as the batch's branch, never forced; every
//! task of the batch handed to a worker carries `"git": {"remote",
//! "branch", "base"}`, so the worker works in a worktree of that branch and
//! pushes it back (`worker/git.rs`). After the tasks, the branch is fetched
//! into the project's repository and the batch's worktree takes it: the
//! batch is then committed and merged here, in one place, as a local batch
//! is. Work the coordinator's own tasks (agents, plugins) left in the
//! worktree is committed first and the workers' branch merged into it.
//!
//! A batch type that plans attempts (`best_of`) shares each attempt's
//! branch instead of the batch's: the attempt's tasks go to workers on
//! `runner/<run>-<batch>-<n>`, and the attempt's worktree takes their work
//! back before it is committed and checked.
//!
//! Without `[git] remote`, dispatched tasks run in their worker's directory
//! and a note at the start of the run says so.

use super::RunCtx;
use crate::config::Batch;
use crate::git::{BatchWorkspace, GitError, Project as GitProject, fetch_branch, push_branch};
use protocol::LogLevel;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A batch whose branch is on the remote.
#[derive(Debug, Clone)]
pub(super) struct SharedBatch {
    remote: String,
    branch: String,
    base: String,
    /// The project directory inside the worktree (empty at its root).
    subdir: PathBuf,
    /// Where an absolute `cwd` may point on this machine: the batch's
    /// worktree here and the repository's checkout.
    roots: [PathBuf; 2],
}

impl RunCtx {
    /// The note a run gives when its tasks go to workers but batches have
    /// branches only here.
    pub(super) fn remote_git_note(&self) -> Option<String> {
        let no_remote = self.remote.is_some()
            && self.config.git.remote.is_none()
            && matches!(self.project.as_ref(), GitProject::Git(_));
        no_remote.then(|| {
            "git: tasks handed to workers run in the worker's directory, not on their batch's branch; set `[git] remote` to a repository every worker can fetch from and push to for them to work on it".to_string()
        })
    }

    /// Publishes the batch's base as its branch on `[git] remote`, when its
    /// tasks may go to workers; from then on they carry `git`. A batch of
    /// attempts shares each attempt's branch instead ([`Self::share_workspace`]).
    pub(super) async fn share_batch(
        &self,
        batch: &Batch,
        workspace: Option<&BatchWorkspace>,
    ) -> Result<(), String> {
        let Some(ws) = workspace else {
            return Ok(());
        };
        if self
            .plugins
            .get(&batch.batch_type)
            .is_some_and(|plugin| plugin.plans_attempts())
        {
            return Ok(());
        }
        self.share_workspace(&format!("batch `{}`", batch.id), ws)
            .await
    }

    /// Publishes `ws`'s base as its branch on `[git] remote` (when the run
    /// hands tasks to workers and the project is a repository), so the tasks
    /// that run in it carry `git`; `what` names it in messages.
    pub(super) async fn share_workspace(
        &self,
        what: &str,
        ws: &BatchWorkspace,
    ) -> Result<(), String> {
        let (Some(_), Some(remote), GitProject::Git(workspaces)) =
            (&self.remote, &self.config.git.remote, self.project.as_ref())
        else {
            return Ok(());
        };
        let shared = SharedBatch {
            remote: remote.clone(),
            branch: ws.branch.clone(),
            base: ws.head_before.clone(),
            subdir: ws
                .dir
                .strip_prefix(&ws.path)
                .unwrap_or(Path::new(""))
                .into(),
            roots: [ws.path.clone(), workspaces.repo_root().to_path_buf()],
        };
        let (repo, to_push) = (workspaces.repo_root().to_path_buf(), shared.clone());
        tokio::task::spawn_blocking(move || {
            push_branch(&repo, &to_push.remote, &to_push.base, &to_push.branch)
        })
        .await
        .map_err(|err| err.to_string())?
        .map_err(|err| {
            format!("cannot publish {what}'s base on `[git] remote` ({remote}): {err}")
        })?;
        self.log(
            None,
            LogLevel::Debug,
            format!(
                "{what}: published {} as `{}` on {remote}",
                shared.base, shared.branch
            ),
        );
        self.shared_batches
            .lock()
            .expect("shared batches lock")
            .insert(ws.dir.clone(), shared);
        Ok(())
    }

    /// Adds the `git` of the shared worktree a task runs in (`dir`) to its
    /// payload. A relative `cwd` is taken from the project directory, as
    /// here; an absolute one inside the repository (its checkout, or the
    /// worktree here) becomes the same place in the worker's worktree. Any
    /// other absolute `cwd` is left as it is, and the worker refuses it: a
    /// task with `git` never runs outside its worktree.
    pub(super) fn add_git(&self, dir: &Path, payload: &mut Value) {
        let Some(shared) = self
            .shared_batches
            .lock()
            .expect("shared batches lock")
            .get(dir)
            .cloned()
        else {
            return;
        };
        payload["git"] = json!({
            "remote": shared.remote,
            "branch": shared.branch,
            "base": shared.base,
        });
        let cwd = PathBuf::from(payload.get("cwd").and_then(Value::as_str).unwrap_or(""));
        let inside = if cwd.is_absolute() {
            shared
                .roots
                .iter()
                .find_map(|root| cwd.strip_prefix(root).ok())
                .map(Path::to_path_buf)
        } else {
            Some(shared.subdir.join(&cwd))
        };
        match inside {
            Some(dir) if dir.as_os_str().is_empty() => {
                if let Some(fields) = payload.as_object_mut() {
                    fields.remove("cwd");
                }
            }
            Some(dir) => payload["cwd"] = json!(dir.display().to_string()),
            None => {}
        }
    }

    /// After the tasks of a shared worktree (a batch's, or an attempt's):
    /// fetches the branch the workers pushed and makes the worktree hold it.
    /// Nothing changes when no worker pushed anything.
    pub(super) async fn take_back(
        &self,
        batch: &Batch,
        workspace: &BatchWorkspace,
    ) -> Result<(), String> {
        let Some(shared) = self
            .shared_batches
            .lock()
            .expect("shared batches lock")
            .remove(&workspace.dir)
        else {
            return Ok(());
        };
        let GitProject::Git(workspaces) = self.project.as_ref() else {
            return Ok(());
        };
        let repo = workspaces.repo_root().to_path_buf();
        let (ws, name, fetching) = (workspace.clone(), batch.name.clone(), shared.clone());
        let fetched = tokio::task::spawn_blocking(move || take(&repo, &ws, &name, &fetching))
            .await
            .map_err(|err| err.to_string())?
            .map_err(|err| {
                format!(
                    "cannot take the workers' work from `{}` on {}: {err}",
                    shared.branch, shared.remote
                )
            })?;
        if let Some(commit) = fetched {
            self.log(
                None,
                LogLevel::Info,
                format!(
                    "batch `{}`: took the workers' work, {commit} of `{}` on {}",
                    workspace.batch_id, shared.branch, shared.remote
                ),
            );
        }
        Ok(())
    }
}

/// Fetches the batch's branch and moves the worktree to it (merging what
/// the coordinator's tasks left there); the fetched commit, `None` when it
/// is still the base.
fn take(
    repo: &Path,
    ws: &BatchWorkspace,
    batch_name: &str,
    shared: &SharedBatch,
) -> Result<Option<String>, GitError> {
    let fetched = fetch_branch(repo, &shared.remote, &shared.branch)?;
    if fetched == shared.base {
        return Ok(None);
    }
    let message = format!(
        "runner: batch {} of run {}, its tasks run here",
        ws.batch_id, ws.run_id
    );
    let message = if batch_name == ws.batch_id || batch_name.is_empty() {
        message
    } else {
        format!("{message}\n\n{batch_name}")
    };
    let local = ws.commit_with(&message)?;
    if local.head_after == shared.base {
        ws.adopt(&fetched)?;
        return Ok(Some(fetched));
    }
    let merge_message = format!("runner: merge the workers' work on {}", shared.branch);
    let merged = crate::git::remote::output(
        &ws.path,
        &[
            "merge",
            "--no-edit",
            "--no-ff",
            "-m",
            &merge_message,
            &fetched,
        ],
    )?;
    if !merged.status.success() {
        let _ = crate::git::remote::output(&ws.path, &["merge", "--abort"]);
        return Err(GitError::Git {
            context: format!("merging {fetched} into `{}`", ws.branch),
            message: "what the workers pushed conflicts with what the coordinator's tasks changed"
                .to_string(),
        });
    }
    Ok(Some(fetched))
}
