//! Worktrees, commits, merges and the sweep of orphans.

use super::{GitError, GitSettings, MergeMode, Project, git_err, io_err, slug};
use git2::{
    BranchType, Commit, ErrorCode, IndexAddOption, Oid, Repository, Signature, StatusOptions,
    WorktreeAddOptions, WorktreePruneOptions, build::CheckoutBuilder,
};
use protocol::MergeOutcome;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Worktree names (in `.git/worktrees/`) of the runner start with this.
pub(super) const WORKTREE_PREFIX: &str = "runner-";
/// Branches of batches start with this.
pub const BRANCH_PREFIX: &str = "runner/";

/// The batches of one run in one repository.
pub struct Workspaces {
    repo_root: PathBuf,
    /// The project directory relative to the repository root.
    project_rel: PathBuf,
    pub(super) worktrees_dir: PathBuf,
    /// `<state_dir>`, whose contents never go into a worktree.
    state_dir: PathBuf,
    base_commit: Oid,
    base_name: String,
    merge: MergeMode,
    target: Option<String>,
    keep: bool,
    warnings: Vec<String>,
    /// Worktree and ref changes go one at a time.
    pub(super) lock: Arc<Mutex<()>>,
    /// How long batch branches stay.
    pub(super) retention: super::retention::Retention,
}

/// One batch's branch and worktree.
#[derive(Debug, Clone)]
pub struct BatchWorkspace {
    pub run_id: String,
    pub batch_id: String,
    /// `runner/<run>-<batch>`.
    pub branch: String,
    /// The worktree's root.
    pub path: PathBuf,
    /// Where the batch's tasks run: the project directory inside the worktree.
    pub dir: PathBuf,
    /// The commit the branch started at (the head before the batch).
    pub head_before: String,
    worktree_name: String,
    owner_file: PathBuf,
}

/// What [`BatchWorkspace::commit`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub branch: String,
    pub head_before: String,
    /// Equal to `head_before` when nothing changed and no task committed.
    pub head_after: String,
    /// Files added, changed or deleted by the runner's commit (0: no commit).
    pub files_changed: usize,
}

/// How a merge ended; failures are reports, not errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeReport {
    pub branch: String,
    pub target: String,
    pub status: MergeOutcome,
    /// The target's new commit, when the merge happened.
    pub commit: Option<String>,
    /// Files both sides changed, for `conflict`.
    pub conflicts: Vec<String>,
    pub error: Option<String>,
}

/// A worktree left by a dead runner, swept at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swept {
    pub path: PathBuf,
    pub branch: Option<String>,
    /// The commit that saved what the worktree still held, if it held anything.
    pub saved: Option<String>,
}

pub(super) fn open(
    project_dir: &Path,
    state_dir: &Path,
    settings: &GitSettings,
) -> Result<Project, GitError> {
    let plain = |reason: String| {
        Ok(Project::Plain {
            dir: project_dir.to_path_buf(),
            reason,
        })
    };
    if !settings.enabled() {
        return plain(
            "`[git] enabled = false`: batches run in the project directory, without branches"
                .into(),
        );
    }
    let repo = match Repository::discover(project_dir) {
        Ok(repo) => repo,
        Err(err) if err.code() == ErrorCode::NotFound => {
            return plain(format!(
                "{} is not in a git repository, so batches have no branches; they run in the project directory",
                project_dir.display()
            ));
        }
        Err(err) => {
            return Err(git_err(format!(
                "cannot open the repository at {}",
                project_dir.display()
            ))(err));
        }
    };
    let Some(root) = repo.workdir().map(Path::to_path_buf) else {
        return plain(format!(
            "{} is a bare repository, so batches have no branches; they run in the project directory",
            repo.path().display()
        ));
    };
    let canonical = |p: &Path| {
        p.canonicalize()
            .map_err(io_err(format!("cannot resolve {}", p.display())))
    };
    let root = canonical(&root)?;
    let project_rel = canonical(project_dir)?
        .strip_prefix(&root)
        .map(Path::to_path_buf)
        .unwrap_or_default();

    let head = repo.head();
    let unborn = matches!(&head, Err(err) if err.code() == ErrorCode::UnbornBranch || err.code() == ErrorCode::NotFound);
    let (base_commit, base_name) = match &settings.base {
        Some(base) => {
            let commit = repo
                .revparse_single(base)
                .and_then(|object| object.peel_to_commit())
                .map_err(|_| GitError::NoBase {
                    base: base.clone(),
                    repo: root.clone(),
                })?;
            (commit.id(), base.clone())
        }
        None if unborn => {
            return plain(format!(
                "the git repository at {} has no commits yet, so batches cannot have branches of their own; they run in the project directory. Make a first commit to give each batch a branch",
                root.display()
            ));
        }
        None => {
            let head = head.map_err(git_err("cannot read HEAD"))?;
            let commit = head
                .peel_to_commit()
                .map_err(git_err("cannot read HEAD's commit"))?;
            let name = head
                .shorthand()
                .filter(|_| head.is_branch())
                .map_or("HEAD".into(), |b| format!("HEAD ({b})"));
            (commit.id(), name)
        }
    };

    let target = match settings.merge {
        MergeMode::None => None,
        _ => {
            let target = match (&settings.target, &settings.base) {
                (Some(target), _) => target.clone(),
                (None, Some(base)) if repo.find_branch(base, BranchType::Local).is_ok() => {
                    base.clone()
                }
                _ => match repo.head() {
                    Ok(head) if head.is_branch() => head.shorthand().unwrap_or("HEAD").to_string(),
                    _ => return Err(GitError::DetachedTarget { repo: root.clone() }),
                },
            };
            if repo.find_branch(&target, BranchType::Local).is_err() {
                return Err(GitError::NoTarget {
                    target,
                    repo: root.clone(),
                });
            }
            Some(target)
        }
    };

    let state_abs = if state_dir.is_absolute() {
        state_dir.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(state_dir)
    };
    let worktrees_dir = state_abs.join("worktrees");
    let mut warnings = Vec::new();
    if let Some(warning) = dirty_warning(&repo, &root, &state_abs, &base_name, base_commit) {
        warnings.push(warning);
    }
    Ok(Project::Git(Workspaces {
        repo_root: root,
        project_rel,
        worktrees_dir,
        state_dir: state_abs.canonicalize().unwrap_or(state_abs),
        base_commit,
        base_name,
        merge: settings.merge,
        target,
        keep: settings.keep_worktrees,
        retention: super::retention::Retention::new(settings, &repo),
        warnings,
        lock: Arc::new(Mutex::new(())),
    }))
}

/// A warning when the working copy holds changes the branches will not.
fn dirty_warning(
    repo: &Repository,
    root: &Path,
    state_dir: &Path,
    base_name: &str,
    base: Oid,
) -> Option<String> {
    let state_rel = state_dir
        .canonicalize()
        .ok()
        .and_then(|s| s.strip_prefix(root).ok().map(Path::to_path_buf));
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(false)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo.statuses(Some(&mut options)).ok()?;
    let changed: Vec<String> = statuses
        .iter()
        .filter_map(|entry| entry.path().map(str::to_string))
        .filter(|path| {
            state_rel
                .as_ref()
                .is_none_or(|state| !Path::new(path.trim_end_matches('/')).starts_with(state))
        })
        .collect();
    let first = changed.first()?;
    Some(format!(
        "the working copy at {} has {} uncommitted change{} (for example `{first}`); batch branches start from {base_name} ({}) and do not include them",
        root.display(),
        changed.len(),
        if changed.len() == 1 { "" } else { "s" },
        short(base)
    ))
}

fn short(oid: Oid) -> String {
    oid.to_string()[..10].to_string()
}

fn signature(repo: &Repository) -> Signature<'static> {
    repo.signature()
        .map(|s| s.to_owned())
        .or_else(|_| Signature::now("runner", "runner@localhost"))
        .expect("a fixed signature is valid")
}

impl Workspaces {
    /// The repository's working directory.
    pub fn repo_root(&self) -> &Path {
        &self.repo_root
    }

    /// The commit batches without dependencies branch from.
    pub fn base_commit(&self) -> String {
        self.base_commit.to_string()
    }

    /// What the base is, for messages: `main`, `HEAD (main)`, ...
    pub fn base_name(&self) -> &str {
        &self.base_name
    }

    /// Things the user should know, such as uncommitted changes that the
    /// branches do not include. Publish them as warnings.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The branch completed batches are merged into, when merging is on.
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    pub fn keeps_worktrees(&self) -> bool {
        self.keep
    }

    pub(super) fn open_repo(&self) -> Result<Repository, GitError> {
        Repository::open(&self.repo_root).map_err(git_err(format!(
            "cannot open the repository at {}",
            self.repo_root.display()
        )))
    }

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

        let stem = format!("{}-{}", slug(run_id), slug(batch_id));
        let (name, branch, path) = (1..)
            .map(|n| {
                if n == 1 {
                    stem.clone()
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
        super::retention::record_run(&repo, &branch, run_id);
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

impl BatchWorkspace {
    /// Commits everything that changed in the worktree (ignored files
    /// excepted) on the batch's branch, with a message naming the run and
    /// the batch. No commit when nothing changed.
    pub fn commit(&self, batch_name: &str) -> Result<Committed, GitError> {
        let mut message = format!("runner: batch {} of run {}", self.batch_id, self.run_id);
        if batch_name != self.batch_id && !batch_name.is_empty() {
            message.push_str(&format!("\n\n{batch_name}"));
        }
        let mut committed = commit_worktree(&self.path, &message)?;
        committed.head_before = self.head_before.clone();
        Ok(committed)
    }
}

/// Stages everything in the worktree at `path` and commits it on its branch.
fn commit_worktree(path: &Path, message: &str) -> Result<Committed, GitError> {
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

pub(super) fn remove_worktree(repo: &Repository, name: &str, path: &Path) -> Result<(), GitError> {
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

fn conflict_paths(index: &git2::Index) -> Vec<String> {
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
