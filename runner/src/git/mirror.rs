//! A worker's cache of a remote: a bare repository under
//! `<cache>/git/<remote-slug>.git`, fetched on every use, and short-lived
//! worktrees of it under `<cache>/worktrees/`.
//!
//! Worker processes may share a cache: fetches and worktree changes take an
//! exclusive lock on `<cache>/git/<remote-slug>.lock` for their duration.

use super::remote::{self, run};
use super::{GitError, io_err};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The remote's name inside a mirror.
const ORIGIN: &str = "origin";

/// A bare repository caching one remote.
#[derive(Debug, Clone)]
pub struct Mirror {
    remote: String,
    dir: PathBuf,
    lock: PathBuf,
    worktrees: PathBuf,
}

/// `/srv/git/project.git` → `srv-git-project-git-1a2b3c4d`: readable, and
/// distinct for distinct remotes.
fn remote_slug(remote: &str) -> String {
    let hash = hex::encode(&Sha256::digest(remote.as_bytes())[..4]);
    format!("{}-{hash}", super::slug(remote))
}

impl Mirror {
    /// The mirror of `remote` in `cache_dir`, made (`git init --bare`) the
    /// first time and fetched (`git fetch --prune`) every time.
    pub fn open(cache_dir: &Path, remote: &str) -> Result<Self, GitError> {
        if remote.trim().is_empty() {
            return Err(GitError::Git {
                context: "the git remote".to_string(),
                message: "is empty; name a URL or a path every worker can reach".to_string(),
            });
        }
        let git_dir = cache_dir.join("git");
        std::fs::create_dir_all(&git_dir)
            .map_err(io_err(format!("cannot create {}", git_dir.display())))?;
        let slug = remote_slug(remote);
        let mirror = Self {
            remote: remote.to_string(),
            dir: git_dir.join(format!("{slug}.git")),
            lock: git_dir.join(format!("{slug}.lock")),
            worktrees: cache_dir.join("worktrees"),
        };
        {
            let _lock = mirror.locked()?;
            if !mirror.dir.join("HEAD").exists() {
                std::fs::create_dir_all(&mirror.dir)
                    .map_err(io_err(format!("cannot create {}", mirror.dir.display())))?;
                run(&mirror.dir, &["init", "--quiet", "--bare"])?;
                run(&mirror.dir, &["remote", "add", ORIGIN, remote])?;
            } else {
                run(&mirror.dir, &["remote", "set-url", ORIGIN, remote])?;
            }
        }
        mirror.fetch()?;
        Ok(mirror)
    }

    /// The bare repository.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The remote this mirrors.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    fn locked(&self) -> Result<File, GitError> {
        let file = File::create(&self.lock)
            .map_err(io_err(format!("cannot open {}", self.lock.display())))?;
        file.lock()
            .map_err(io_err(format!("cannot lock {}", self.lock.display())))?;
        Ok(file)
    }

    /// Brings the mirror up to date with the remote's branches (deleted
    /// ones go too).
    pub fn fetch(&self) -> Result<(), GitError> {
        let _lock = self.locked()?;
        run(
            &self.dir,
            &["fetch", "--prune", "--no-tags", "--quiet", ORIGIN],
        )
        .map(drop)
        .map_err(|err| match err {
            GitError::Git { message, .. } => GitError::Git {
                context: format!("cannot fetch from the remote `{}`", self.remote),
                message,
            },
            other => other,
        })
    }

    /// Where `branch` was on the remote at the last fetch.
    pub fn tip(&self, branch: &str) -> Result<Option<String>, GitError> {
        let reference = format!("refs/remotes/{ORIGIN}/{branch}^{{commit}}");
        let out = remote::output(&self.dir, &["rev-parse", "--verify", "--quiet", &reference])?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()))
    }

    /// The full sha of `commit` when the mirror has it.
    pub fn resolve(&self, commit: &str) -> Result<Option<String>, GitError> {
        let reference = format!("{commit}^{{commit}}");
        let out = remote::output(&self.dir, &["rev-parse", "--verify", "--quiet", &reference])?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()))
    }

    /// A new worktree, detached at `commit`, in a directory of its own
    /// under `<cache>/worktrees/`; [`Worktree::remove`] (or dropping it)
    /// removes it.
    pub fn worktree_at(&self, commit: &str) -> Result<Worktree, GitError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(&self.worktrees).map_err(io_err(format!(
            "cannot create {}",
            self.worktrees.display()
        )))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let name = format!(
            "{}-{}-{nanos:x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.worktrees.join(name);
        let _lock = self.locked()?;
        let path_arg = path.to_string_lossy();
        run(
            &self.dir,
            &["worktree", "add", "--quiet", "--detach", &path_arg, commit],
        )?;
        Ok(Worktree {
            path,
            mirror: self.clone(),
            removed: false,
        })
    }
}

/// A worktree of a [`Mirror`], removed when done with.
#[derive(Debug)]
pub struct Worktree {
    path: PathBuf,
    mirror: Mirror,
    removed: bool,
}

/// What [`Worktree::commit_all`] committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeCommit {
    /// HEAD afterwards (the commit before when nothing changed).
    pub commit: String,
    /// Files added, changed or deleted.
    pub changed: usize,
}

impl Worktree {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    /// HEAD's sha.
    pub fn head(&self) -> Result<String, GitError> {
        run(&self.path, &["rev-parse", "HEAD"])
    }

    /// Commits every change (ignored files excepted) with `message`, by
    /// the runner's identity; no commit when nothing changed.
    pub fn commit_all(&self, message: &str) -> Result<WorktreeCommit, GitError> {
        run(&self.path, &["add", "--all"])?;
        let staged = run(&self.path, &["diff", "--cached", "--name-only", "-z"])?;
        let changed = staged.split('\0').filter(|name| !name.is_empty()).count();
        if changed > 0 {
            run(
                &self.path,
                &["commit", "--quiet", "--no-verify", "-m", message],
            )?;
        }
        Ok(WorktreeCommit {
            commit: self.head()?,
            changed,
        })
    }

    /// Replays HEAD's commits that `onto` lacks on top of it. A conflict
    /// leaves HEAD as it was and is [`GitError::RebaseConflict`] naming
    /// the files.
    pub fn rebase_onto(&self, onto: &str, branch: &str) -> Result<(), GitError> {
        let out = remote::output(&self.path, &["rebase", "--quiet", onto])?;
        if out.status.success() {
            return Ok(());
        }
        let conflicted = run(
            &self.path,
            &["diff", "--name-only", "--diff-filter=U", "-z"],
        )
        .unwrap_or_default();
        let _ = run(&self.path, &["rebase", "--abort"]);
        let paths: Vec<String> = conflicted
            .split('\0')
            .filter(|name| !name.is_empty())
            .map(str::to_string)
            .collect();
        if paths.is_empty() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(GitError::Git {
                context: format!("cannot rebase onto the new tip of `{branch}`"),
                message: stderr.trim().to_string(),
            });
        }
        Err(GitError::RebaseConflict {
            branch: branch.to_string(),
            paths,
        })
    }

    /// Pushes HEAD as `branch` on the mirror's remote (never forced). When
    /// another push moved the branch meanwhile: fetches, rebases onto its
    /// new tip and tries again, up to `attempts` pushes in all. The commit
    /// pushed.
    pub fn push_rebasing(&self, branch: &str, attempts: u32) -> Result<String, GitError> {
        let mut attempt = 1;
        loop {
            let head = self.head()?;
            match remote::push_branch(&self.path, ORIGIN, &head, branch) {
                Ok(()) => return Ok(head),
                Err(GitError::PushRejected { .. }) if attempt < attempts => {
                    attempt += 1;
                    self.mirror.fetch()?;
                    if let Some(tip) = self.mirror.tip(branch)? {
                        self.rebase_onto(&tip, branch)?;
                    }
                }
                Err(GitError::PushRejected { branch, .. }) => {
                    return Err(GitError::Git {
                        context: format!("cannot push `{branch}` to `{}`", self.mirror.remote),
                        message: format!(
                            "other pushes moved it on {attempts} times in a row; nothing was pushed"
                        ),
                    });
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Removes the worktree (what it holds goes with it).
    pub fn remove(mut self) -> Result<(), GitError> {
        self.removed = true;
        self.remove_now()
    }

    fn remove_now(&self) -> Result<(), GitError> {
        let _lock = self.mirror.locked()?;
        let path_arg = self.path.to_string_lossy();
        let removed = run(
            &self.mirror.dir,
            &["worktree", "remove", "--force", "--force", &path_arg],
        );
        if removed.is_err() {
            if self.path.exists() {
                std::fs::remove_dir_all(&self.path)
                    .map_err(io_err(format!("cannot remove {}", self.path.display())))?;
            }
            run(&self.mirror.dir, &["worktree", "prune"])?;
        }
        Ok(())
    }
}

impl Drop for Worktree {
    fn drop(&mut self) {
        if !self.removed
            && let Err(err) = self.remove_now()
        {
            tracing::warn!("worktree {}: {err}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::remote::tests::seeded;

    #[test]
    fn a_mirror_follows_the_remote_and_its_worktrees_go_when_done() {
        let dir = tempfile::tempdir().unwrap();
        let (work, bare, seed) = seeded(dir.path());
        let remote = bare.to_str().unwrap();
        let cache = dir.path().join("cache");
        let mirror = Mirror::open(&cache, remote).unwrap();
        assert!(mirror.dir().starts_with(cache.join("git")));
        assert!(mirror.dir().to_string_lossy().ends_with(".git"));
        assert_eq!(mirror.tip("main").unwrap(), Some(seed.clone()));
        assert_eq!(mirror.tip("runner/x").unwrap(), None);

        // A branch made on the remote shows at the next open; a deleted one goes.
        remote::push_branch(&work, remote, &seed, "runner/x").unwrap();
        let mirror = Mirror::open(&cache, remote).unwrap();
        assert_eq!(mirror.tip("runner/x").unwrap(), Some(seed.clone()));
        run(&bare, &["branch", "-D", "runner/x"]).unwrap();
        mirror.fetch().unwrap();
        assert_eq!(mirror.tip("runner/x").unwrap(), None);

        let worktree = mirror.worktree_at(&seed).unwrap();
        let path = worktree.path().to_path_buf();
        assert!(path.starts_with(cache.join("worktrees")));
        assert_eq!(
            std::fs::read_to_string(path.join("seed.txt")).unwrap(),
            "seed\n"
        );
        let unchanged = worktree.commit_all("nothing").unwrap();
        assert_eq!(
            (unchanged.commit.as_str(), unchanged.changed),
            (seed.as_str(), 0)
        );
        std::fs::write(path.join("new.txt"), "new\n").unwrap();
        std::fs::remove_file(path.join("seed.txt")).unwrap();
        let committed = worktree.commit_all("two files").unwrap();
        assert_eq!(committed.changed, 2);
        let author = run(&path, &["log", "-1", "--format=%an <%ae>"]).unwrap();
        assert_eq!(author, "runner <runner@localhost>");
        drop(worktree);
        assert!(!path.exists(), "dropping a worktree removes it");
        let listed = run(mirror.dir(), &["worktree", "list", "--porcelain"]).unwrap();
        assert!(!listed.contains(&*path.to_string_lossy()), "{listed}");

        let err = Mirror::open(&cache, " ").unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
        let err = Mirror::open(&cache, &dir.path().join("nowhere").to_string_lossy()).unwrap_err();
        assert!(
            err.to_string().contains("cannot fetch from the remote"),
            "{err}"
        );
    }
}
