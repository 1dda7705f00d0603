//! What a batch changed on its branch, file by file: the dashboard's diff
//! view (`GET /api/runs/RUN/batches/BATCH/diff`).
//!
//! The diff goes from the commit the batch's branch started at (its base,
//! the head before it ran) to the branch's head after it ran; without a
//! recorded base it is the branch head's own commit against its parent.
//!
//! ## Limits
//! A file's patch text stops at [`MAX_PATCH_BYTES`] and a diff at
//! [`MAX_FILES`] files; `truncated` says so. Binary files have no text.
//!
//! Blocks (libgit2): call it from `spawn_blocking`.

use super::GitError;
use git2::{Delta, DiffFindOptions, DiffOptions, Repository};
use serde::Serialize;
use std::path::Path;

/// Patch text kept per file.
pub const MAX_PATCH_BYTES: usize = 256 * 1024;
/// Files listed per diff.
pub const MAX_FILES: usize = 1000;

/// The changes between two commits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BranchDiff {
    /// The commit the diff starts from (`None`: the empty tree).
    pub from: Option<String>,
    /// The commit it ends at.
    pub to: String,
    pub files: Vec<FileDiff>,
    /// More than [`MAX_FILES`] files changed; the rest are left out.
    pub truncated: bool,
}

/// One file of a [`BranchDiff`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileDiff {
    /// The path after the change (before it, for a deleted file).
    pub path: String,
    /// The path before a rename or copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    /// `added`, `deleted`, `modified`, `renamed`, `copied` or `type_changed`.
    pub status: &'static str,
    pub additions: usize,
    pub deletions: usize,
    pub binary: bool,
    /// The unified diff of the file (`diff --git` header and hunks).
    pub patch: String,
    /// The patch was longer than [`MAX_PATCH_BYTES`] and was cut.
    pub truncated: bool,
}

fn git(context: impl Into<String>) -> impl FnOnce(git2::Error) -> GitError {
    let context = context.into();
    move |err| GitError::Git {
        context,
        message: err.message().to_string(),
    }
}

/// The diff from `from` (a commit; `None`: the parent of `to`) to `to` (a
/// commit or branch name) in the repository that contains `dir`.
pub fn diff_between(dir: &Path, from: Option<&str>, to: &str) -> Result<BranchDiff, GitError> {
    let repo = Repository::discover(dir)
        .map_err(git(format!("no git repository at {}", dir.display())))?;
    let to_commit = repo
        .revparse_single(to)
        .and_then(|object| object.peel_to_commit())
        .map_err(git(format!("no commit `{to}`")))?;
    let from_commit = match from {
        Some(from) => Some(
            repo.revparse_single(from)
                .and_then(|object| object.peel_to_commit())
                .map_err(git(format!("no commit `{from}`")))?,
        ),
        None => to_commit.parent(0).ok(),
    };
    let from_tree = match &from_commit {
        Some(commit) => Some(commit.tree().map_err(git("reading a tree"))?),
        None => None,
    };
    let to_tree = to_commit.tree().map_err(git("reading a tree"))?;
    let mut options = DiffOptions::new();
    options.context_lines(3);
    let mut diff = repo
        .diff_tree_to_tree(from_tree.as_ref(), Some(&to_tree), Some(&mut options))
        .map_err(git("computing the diff"))?;
    diff.find_similar(Some(DiffFindOptions::new().renames(true)))
        .map_err(git("finding renames"))?;

    let count = diff.deltas().len();
    let mut files = Vec::new();
    for index in 0..count.min(MAX_FILES) {
        let Some(delta) = diff.get_delta(index) else {
            continue;
        };
        let path_of = |file: git2::DiffFile| file.path().map(|p| p.to_string_lossy().into_owned());
        let new_path = path_of(delta.new_file());
        let old_path = path_of(delta.old_file());
        let status = match delta.status() {
            Delta::Added => "added",
            Delta::Deleted => "deleted",
            Delta::Renamed => "renamed",
            Delta::Copied => "copied",
            Delta::Typechange => "type_changed",
            _ => "modified",
        };
        let path = if status == "deleted" {
            old_path.clone()
        } else {
            new_path.clone()
        }
        .unwrap_or_default();
        let mut file = FileDiff {
            old_path: (matches!(status, "renamed" | "copied"))
                .then(|| old_path.clone())
                .flatten(),
            path,
            status,
            additions: 0,
            deletions: 0,
            binary: delta.flags().is_binary(),
            patch: String::new(),
            truncated: false,
        };
        if let Some(mut patch) =
            git2::Patch::from_diff(&diff, index).map_err(git("computing a file's patch"))?
        {
            let (_, additions, deletions) = patch.line_stats().map_err(git("counting lines"))?;
            file.additions = additions;
            file.deletions = deletions;
            file.binary |= patch.delta().flags().is_binary();
            if !file.binary {
                let buf = patch.to_buf().map_err(git("printing a patch"))?;
                let text = String::from_utf8_lossy(&buf);
                if text.len() > MAX_PATCH_BYTES {
                    let mut end = MAX_PATCH_BYTES;
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    file.patch = text[..end].to_string();
                    file.truncated = true;
                } else {
                    file.patch = text.into_owned();
                }
            }
        }
        files.push(file);
    }
    Ok(BranchDiff {
        from: from_commit.map(|c| c.id().to_string()),
        to: to_commit.id().to_string(),
        files,
        truncated: count > MAX_FILES,
    })
}
