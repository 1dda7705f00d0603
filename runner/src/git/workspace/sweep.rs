//! Worktrees of runners that died: committed to their branches, then removed.

use super::commit::commit_worktree;
use super::*;
use crate::git::{GitError, io_err};
use git2::{Repository, WorktreePruneOptions};

impl Workspaces {
    /// Worktrees of runners that died: what they held is committed to their
    /// branches, then they are removed. Worktrees of live runners, and kept
    /// ones, stay.
    pub fn sweep_orphans(&self) -> Result<Vec<Swept>, GitError> {
        self.sweep(false)
    }

    /// The worktrees [`Workspaces::sweep_orphans`] would remove, left as they are.
    pub fn orphans(&self) -> Result<Vec<Swept>, GitError> {
        self.sweep(true)
    }

    fn sweep(&self, dry_run: bool) -> Result<Vec<Swept>, GitError> {
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let repo = self.open_repo()?;
        let mut swept = Vec::new();
        let entries = match std::fs::read_dir(&self.worktrees_dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(swept),
            Err(err) => {
                return Err(io_err(format!(
                    "cannot list {}",
                    self.worktrees_dir.display()
                ))(err));
            }
        };
        let me = std::process::id();
        for entry in entries.flatten() {
            let owner_file = entry.path();
            if owner_file.extension().and_then(|e| e.to_str()) != Some("owner") {
                continue;
            }
            let text = std::fs::read_to_string(&owner_file).unwrap_or_default();
            let mut lines = text.lines();
            let pid: Option<u32> = lines.next().and_then(|l| l.trim().parse().ok());
            if pid.is_some_and(|pid| pid != me && crate::process::process_alive(pid as i64)) {
                continue;
            }
            let (run_id, batch_id) = (
                lines.next().unwrap_or("?").to_string(),
                lines.next().unwrap_or("?").to_string(),
            );
            let name = owner_file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            let path = self.worktrees_dir.join(&name);
            let worktree_name = format!("{WORKTREE_PREFIX}{name}");
            let mut item = Swept {
                path: path.clone(),
                branch: None,
                saved: None,
            };
            if dry_run {
                item.branch = Repository::open(&path).ok().and_then(|wt| {
                    wt.head()
                        .ok()
                        .and_then(|h| h.shorthand().map(str::to_string))
                });
                swept.push(item);
                continue;
            }
            let message = format!(
                "runner: changes left in the worktree of batch {batch_id} of run {run_id}, which was interrupted"
            );
            if path.exists()
                && let Ok(committed) = commit_worktree(&path, &message)
            {
                item.branch = Some(committed.branch.clone());
                if committed.files_changed > 0 {
                    item.saved = Some(committed.head_after);
                }
            }
            remove_worktree(&repo, &worktree_name, &path)?;
            let _ = std::fs::remove_file(&owner_file);
            swept.push(item);
        }
        // Registrations whose directories are gone.
        if let Ok(names) = repo.worktrees()
            && !dry_run
        {
            for name in names
                .iter()
                .flatten()
                .filter(|n| n.starts_with(WORKTREE_PREFIX))
            {
                if let Ok(worktree) = repo.find_worktree(name)
                    && worktree.validate().is_err()
                {
                    let _ = worktree.prune(Some(
                        WorktreePruneOptions::new().valid(true).working_tree(true),
                    ));
                }
            }
        }
        Ok(swept)
    }
}
