//! Branches on a shared remote, for batches that run on other machines.
//!
//! A coordinator publishes a batch's base on the `[git] remote` as the
//! batch's branch ([`push_branch`]); workers fetch it into a cache of their
//! own ([`Mirror`]), work in a worktree of it and push the branch back; the
//! coordinator fetches the result ([`fetch_branch`]) and merges it in one
//! place.
//!
//! These run the `git` program rather than libgit2: libgit2 is built here
//! without network transports, and the `git` program talks to every remote
//! the user's git can reach (ssh, https, a path) with the user's own
//! credentials. Prompts are off (`GIT_TERMINAL_PROMPT=0`), hooks do not run,
//! and commits carry the runner's identity, `runner <runner@localhost>`, as
//! the local runner's do when the repository has none.
//!
//! Everything here blocks: call it from `spawn_blocking`.

use super::GitError;
use std::path::Path;
use std::process::{Command, Output};

/// Who the commits made on workers are by.
pub const IDENTITY_NAME: &str = "runner";
/// The e-mail of [`IDENTITY_NAME`].
pub const IDENTITY_EMAIL: &str = "runner@localhost";

/// `git -C dir ARGS`, in the C locale, with no prompts, no hooks, no signing
/// and the runner's identity.
pub(crate) fn command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(dir)
        .args(["-c", "core.hooksPath=/dev/null"])
        .args(["-c", "commit.gpgsign=false"])
        .args(["-c", "advice.detachedHead=false"])
        .args(args)
        .env("LC_ALL", "C")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", IDENTITY_NAME)
        .env("GIT_AUTHOR_EMAIL", IDENTITY_EMAIL)
        .env("GIT_COMMITTER_NAME", IDENTITY_NAME)
        .env("GIT_COMMITTER_EMAIL", IDENTITY_EMAIL)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdin(std::process::Stdio::null());
    command
}

/// Runs `git` and hands back its output, whatever its exit status.
pub(crate) fn output(dir: &Path, args: &[&str]) -> Result<Output, GitError> {
    command(dir, args).output().map_err(|source| GitError::Io {
        context: "cannot run `git` (is git installed and on PATH?)".to_string(),
        source,
    })
}

/// Runs `git`; its stdout, trimmed, or an error naming the command and
/// quoting git's message.
pub(crate) fn run(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    let out = output(dir, args)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(failure(dir, args, &out))
    }
}

fn failure(dir: &Path, args: &[&str], out: &Output) -> GitError {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let message = stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    GitError::Git {
        context: format!("`git {}` in {}", args.join(" "), dir.display()),
        message: if message.is_empty() {
            format!("exited with {}", out.status)
        } else {
            message
        },
    }
}

fn check_branch(branch: &str) -> Result<(), GitError> {
    if git2::Branch::name_is_valid(branch).unwrap_or(false) {
        Ok(())
    } else {
        Err(GitError::Git {
            context: format!("branch `{branch}`"),
            message: "not a valid branch name".to_string(),
        })
    }
}

/// Publishes `commit` (a sha, or anything `git rev-parse` takes in
/// `repo_dir`) as `refs/heads/<branch>` on `remote`, without force: a branch
/// there that `commit` does not contain is [`GitError::PushRejected`].
pub fn push_branch(
    repo_dir: &Path,
    remote: &str,
    commit: &str,
    branch: &str,
) -> Result<(), GitError> {
    check_branch(branch)?;
    let sha = run(
        repo_dir,
        &["rev-parse", "--verify", &format!("{commit}^{{commit}}")],
    )?;
    let refspec = format!("{sha}:refs/heads/{branch}");
    let args = ["push", "--porcelain", "--no-verify", remote, &refspec];
    let out = output(repo_dir, &args)?;
    if out.status.success() {
        return Ok(());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    if stdout.lines().any(moved_on) {
        Err(GitError::PushRejected {
            branch: branch.to_string(),
            remote: remote.to_string(),
        })
    } else {
        Err(failure(repo_dir, &args, &out))
    }
}

/// Whether a `git push --porcelain` line says the branch moved on: `!`,
/// then `[rejected] (fetch first)` or `(non-fast-forward)` when git saw it
/// before sending; `[remote rejected] (cannot lock ref …)` when another push
/// updated or created it while this one was under way. Any other
/// `[remote rejected]` is the remote refusing (a hook, permissions).
fn moved_on(line: &str) -> bool {
    let mut fields = line.split('\t');
    if fields.next() != Some("!") {
        return false;
    }
    let summary = fields.nth(1).unwrap_or_default();
    summary.starts_with("[rejected]")
        || (summary.starts_with("[remote rejected]")
            && ["cannot lock ref", "failed to update ref", "already exists"]
                .iter()
                .any(|why| summary.contains(why)))
}

/// The commit `refs/heads/<branch>` points at on `remote`, if it exists.
pub fn remote_tip(repo_dir: &Path, remote: &str, branch: &str) -> Result<Option<String>, GitError> {
    check_branch(branch)?;
    let reference = format!("refs/heads/{branch}");
    let args = ["ls-remote", "--exit-code", remote, &reference];
    let out = output(repo_dir, &args)?;
    match out.status.code() {
        Some(0) => Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .map(str::to_string)),
        // `--exit-code`: 2 when no ref matched.
        Some(2) => Ok(None),
        _ => Err(failure(repo_dir, &args, &out)),
    }
}

/// Fetches `refs/heads/<branch>` of `remote` into the repository at
/// `repo_dir`, kept as `refs/runner/fetched/<branch>`, and gives the commit
/// it points at: what a worker pushed, for the coordinator to merge.
/// A branch the remote lacks is [`GitError::NoRemoteBranch`].
pub fn fetch_branch(repo_dir: &Path, remote: &str, branch: &str) -> Result<String, GitError> {
    if remote_tip(repo_dir, remote, branch)?.is_none() {
        return Err(GitError::NoRemoteBranch {
            branch: branch.to_string(),
            remote: remote.to_string(),
        });
    }
    let local = format!("refs/runner/fetched/{branch}");
    let refspec = format!("+refs/heads/{branch}:{local}");
    run(
        repo_dir,
        &["fetch", "--no-tags", "--quiet", remote, &refspec],
    )?;
    run(
        repo_dir,
        &["rev-parse", "--verify", &format!("{local}^{{commit}}")],
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A repository with one commit (`seed.txt`) and a bare clone of it,
    /// the remote; the seed commit's sha.
    pub(crate) fn seeded(dir: &Path) -> (PathBuf, PathBuf, String) {
        let work = dir.join("work");
        let bare = dir.join("remote.git");
        std::fs::create_dir_all(&work).unwrap();
        run(&work, &["init", "--quiet", "--initial-branch=main"]).unwrap();
        std::fs::write(work.join("seed.txt"), "seed\n").unwrap();
        run(&work, &["add", "-A"]).unwrap();
        run(&work, &["commit", "--quiet", "-m", "seed"]).unwrap();
        let bare_arg = bare.to_str().unwrap();
        run(dir, &["clone", "--quiet", "--bare", "work", bare_arg]).unwrap();
        let seed = run(&work, &["rev-parse", "HEAD"]).unwrap();
        (work, bare, seed)
    }

    #[test]
    fn a_push_refused_because_the_branch_moved_is_told_apart_from_a_refusal() {
        assert!(moved_on("!\tabc:refs/heads/b\t[rejected] (fetch first)"));
        assert!(moved_on(
            "!\tabc:refs/heads/b\t[rejected] (non-fast-forward)"
        ));
        assert!(moved_on(
            "!\tabc:refs/heads/b\t[remote rejected] (cannot lock ref 'refs/heads/b': reference already exists)"
        ));
        assert!(moved_on(
            "!\tabc:refs/heads/b\t[remote rejected] (failed to update ref)"
        ));
        assert!(!moved_on(
            "!\tabc:refs/heads/b\t[remote rejected] (pre-receive hook declined)"
        ));
        assert!(!moved_on("*\tabc:refs/heads/b\t[new branch]"));
    }

    #[test]
    fn pushes_a_base_refuses_to_rewind_it_and_fetches_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let (work, bare, seed) = seeded(dir.path());
        let remote = bare.to_str().unwrap();
        assert_eq!(remote_tip(&work, remote, "runner/b").unwrap(), None);
        push_branch(&work, remote, &seed, "runner/b").unwrap();
        assert_eq!(
            remote_tip(&work, remote, "runner/b").unwrap(),
            Some(seed.clone())
        );

        std::fs::write(work.join("next.txt"), "next\n").unwrap();
        run(&work, &["add", "-A"]).unwrap();
        run(&work, &["commit", "--quiet", "-m", "next"]).unwrap();
        push_branch(&work, remote, "HEAD", "runner/b").unwrap();
        let next = run(&work, &["rev-parse", "HEAD"]).unwrap();
        let err = push_branch(&work, remote, &seed, "runner/b").unwrap_err();
        assert!(matches!(err, GitError::PushRejected { .. }), "{err}");

        let other = dir.path().join("other");
        run(dir.path(), &["clone", "--quiet", remote, "other"]).unwrap();
        assert_eq!(fetch_branch(&other, remote, "runner/b").unwrap(), next);
        let err = fetch_branch(&other, remote, "runner/none").unwrap_err();
        assert!(err.to_string().contains("no branch `runner/none`"), "{err}");
        let err = push_branch(&work, remote, &seed, "bad..name").unwrap_err();
        assert!(err.to_string().contains("not a valid branch name"), "{err}");
    }
}
