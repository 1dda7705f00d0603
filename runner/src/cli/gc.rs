//! `runner gc [--dry-run]`: the retentions of batch branches
//! (`[git] keep_branches`, `keep_branches_for`, `prune_unmerged`), of
//! worktrees left by stopped runs, and of the history's logs
//! (`[history] log_retention_days`, `audit_retention_days`), applied now.

use super::{Error, exit, history};
use crate::config::Config;
use crate::git::Project;

pub fn gc(config: &Config, dry_run: bool) -> Result<i32, Error> {
    let verb = if dry_run { "would remove" } else { "removed" };
    let git_error = |err: crate::git::GitError| Error::Usage(format!("git: {err}"));
    let mut removed = (0, 0);
    match Project::open(&config.base_dir, config.state_dir(), &config.git).map_err(git_error)? {
        Project::Plain { reason, .. } => println!("no branches or worktrees to collect: {reason}"),
        Project::Git(workspaces) => {
            let swept = if dry_run {
                workspaces.orphans()
            } else {
                workspaces.sweep_orphans()
            }
            .map_err(git_error)?;
            for worktree in &swept {
                let saved = match (&worktree.saved, dry_run) {
                    (Some(commit), _) => format!("; its changes are saved as {commit}"),
                    (None, true) => "; its changes would be committed to its branch first".into(),
                    (None, false) => String::new(),
                };
                println!(
                    "{verb} worktree {} (left by a stopped run{saved})",
                    worktree.path.display()
                );
            }
            let pruned = workspaces.prune_branches(dry_run).map_err(git_error)?;
            for branch in &pruned.removed {
                println!("{verb} branch {}: {}", branch.branch, branch.why);
                if let Some(path) = &branch.worktree {
                    println!("{verb} worktree {} with it", path.display());
                }
            }
            for branch in &pruned.kept {
                println!("kept branch {}: {}", branch.branch, branch.why);
            }
            removed = (
                pruned.removed.len(),
                swept.len()
                    + pruned
                        .removed
                        .iter()
                        .filter(|b| b.worktree.is_some())
                        .count(),
            );
        }
    }
    let store = history::open(config)?;
    let rows = if dry_run {
        store.prunable()?
    } else {
        store.prune()?
    };
    println!(
        "{verb} from the history: {} log lines, {} events, {} connection records past their retention",
        rows.logs, rows.events, rows.connections
    );
    println!(
        "{}: {verb} {} branch{}, {} worktree{}",
        if dry_run { "gc --dry-run" } else { "gc" },
        removed.0,
        if removed.0 == 1 { "" } else { "es" },
        removed.1,
        if removed.1 == 1 { "" } else { "s" },
    );
    Ok(exit::OK)
}
