//! An `exec` payload's `git`: `{"remote": R, "branch": B, "base": C}`.
//!
//! The worker fetches R into its cache ([`Mirror`]), makes a worktree at
//! the tip of B there (at C when R has no B yet) and runs the command in
//! it. When the command succeeds, everything it changed is committed
//! (`runner: task <task> on <worker>`, by the runner's identity) and pushed
//! as B, never forced; when another worker pushed B meanwhile, the commit is
//! rebased onto the new tip and pushed again, up to [`PUSH_ATTEMPTS`]
//! times. A conflict fails the task naming the branch and the files. A
//! failed command pushes nothing. The worktree goes in every case.

use super::Context;
use crate::git::{GitError, Mirror, Worktree};
use serde_json::{Value, json};
use std::path::Path;

/// Pushes one task tries before giving up on a branch others keep moving.
pub(super) const PUSH_ATTEMPTS: u32 = 5;

/// What a payload's `git` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GitTask {
    pub remote: String,
    pub branch: String,
    pub base: Option<String>,
}

impl GitTask {
    /// The payload's `git`, if it has one; an error names the bad field.
    pub(super) fn from_payload(payload: &Value) -> Result<Option<Self>, String> {
        let Some(git) = payload.get("git") else {
            return Ok(None);
        };
        if git.is_null() {
            return Ok(None);
        }
        let Some(fields) = git.as_object() else {
            return Err(
                "`git` must be an object like {\"remote\": R, \"branch\": B, \"base\": C}"
                    .to_string(),
            );
        };
        let text = |key: &str, required: bool| -> Result<Option<String>, String> {
            match fields.get(key) {
                None | Some(Value::Null) if !required => Ok(None),
                Some(Value::String(text)) if !text.trim().is_empty() => Ok(Some(text.clone())),
                _ => Err(format!("`git.{key}` must be a non-empty string")),
            }
        };
        let remote = text("remote", true)?.unwrap_or_default();
        let branch = text("branch", true)?.unwrap_or_default();
        if !git2::Branch::name_is_valid(&branch).unwrap_or(false) {
            return Err(format!(
                "`git.branch`: `{branch}` is not a valid branch name"
            ));
        }
        let base = text("base", false)?;
        if let Some(unknown) = fields
            .keys()
            .find(|key| !["remote", "branch", "base"].contains(&key.as_str()))
        {
            return Err(format!(
                "`git.{unknown}` is not a field; `git` has `remote`, `branch` and `base`"
            ));
        }
        Ok(Some(Self {
            remote,
            branch,
            base,
        }))
    }

    /// Fetches the remote and makes the task's worktree: at the tip of the
    /// branch, else at the base.
    pub(super) async fn checkout(&self, context: &Context) -> Result<Worktree, String> {
        let task = self.clone();
        let cache = context.cache.clone();
        blocking(move || task.checkout_blocking(&cache)).await
    }

    fn checkout_blocking(&self, cache: &Path) -> Result<Worktree, String> {
        let mirror = Mirror::open(cache, &self.remote).map_err(|err| err.to_string())?;
        let start = match (mirror.tip(&self.branch), &self.base) {
            (Err(err), _) => return Err(err.to_string()),
            (Ok(Some(tip)), _) => tip,
            (Ok(None), Some(base)) => match mirror.resolve(base) {
                Ok(Some(commit)) => commit,
                Ok(None) => {
                    return Err(format!(
                        "the remote `{}` has no branch `{}` and no commit `{base}` on any branch; publish the base there first",
                        self.remote, self.branch
                    ));
                }
                Err(err) => return Err(err.to_string()),
            },
            (Ok(None), None) => {
                return Err(format!(
                    "the remote `{}` has no branch `{}`, and `git.base` does not say where to start it",
                    self.remote, self.branch
                ));
            }
        };
        mirror
            .worktree_at(&start)
            .map_err(|err| format!("cannot make a worktree of `{}`: {err}", self.branch))
    }

    /// Commits what the task changed and pushes the branch (see the module
    /// docs); the result's `git`, or why it could not be pushed. The
    /// worktree comes back, for [`remove`].
    pub(super) async fn publish(
        &self,
        worktree: Worktree,
        message: String,
    ) -> (Option<Worktree>, Result<Value, String>) {
        let branch = self.branch.clone();
        let done = tokio::task::spawn_blocking(move || {
            let published = (|| {
                let committed = worktree
                    .commit_all(&message)
                    .map_err(|err| format!("cannot commit the task's changes: {err}"))?;
                let commit =
                    worktree
                        .push_rebasing(&branch, PUSH_ATTEMPTS)
                        .map_err(|err| match err {
                            conflict @ GitError::RebaseConflict { .. } => conflict.to_string(),
                            other => format!("cannot push `{branch}`: {other}"),
                        })?;
                Ok(json!({"branch": branch, "commit": commit, "changed": committed.changed}))
            })();
            (worktree, published)
        })
        .await;
        match done {
            Ok((worktree, published)) => (Some(worktree), published),
            Err(err) => (None, Err(format!("the git step stopped: {err}"))),
        }
    }
}

/// Removes the task's worktree (logged, not failed, when it cannot go).
pub(super) async fn remove(worktree: Worktree) {
    let _ = tokio::task::spawn_blocking(move || {
        let path = worktree.path().to_path_buf();
        if let Err(err) = worktree.remove() {
            tracing::warn!("cannot remove the worktree {}: {err}", path.display());
        }
    })
    .await;
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|err| Err(format!("the git step stopped: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_payloads_git_and_names_what_is_wrong() {
        let payload = json!({"git": {"remote": "/r.git", "branch": "runner/a-b", "base": "abc"}});
        assert_eq!(
            GitTask::from_payload(&payload).unwrap(),
            Some(GitTask {
                remote: "/r.git".into(),
                branch: "runner/a-b".into(),
                base: Some("abc".into()),
            })
        );
        assert_eq!(GitTask::from_payload(&json!({"command": "true"})), Ok(None));
        let err = |payload: Value| GitTask::from_payload(&payload).unwrap_err();
        assert!(err(json!({"git": "x"})).contains("must be an object"));
        assert!(err(json!({"git": {"branch": "b"}})).contains("`git.remote`"));
        assert!(err(json!({"git": {"remote": "r", "branch": "a..b"}})).contains("not a valid"));
        assert!(
            err(json!({"git": {"remote": "r", "branch": "b", "ref": 1}})).contains("`git.ref`")
        );
    }
}
