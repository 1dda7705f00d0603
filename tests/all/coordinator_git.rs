//! Git on workers, the coordinator's side: `runner run --queue` in a
//! project that is a real git repository with `[git] remote` (a real bare
//! repository), real `runner worker` processes and real PostgreSQL. The
//! batch's base is published on the remote, the workers commit on the
//! batch's branch there, and the coordinator fetches it and merges it.
//! Skipped without PostgreSQL, as `queue.rs` is.

use crate::pipelines::run_binary;
use crate::queue::{Db, fresh, url};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::{Child, Command};

/// `git ARGS` in `dir`, which must succeed; its stdout, trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Test Person")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test Person")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An exec task `id` running `command` (a shell line).
fn task(id: &str, command: &str) -> String {
    format!(
        "[[pipelines.default.batches.tasks]]\nid = \"{id}\"\ntype = \"exec\"\nconfig = {{ command = {command:?} }}\n"
    )
}

/// A project that is a git repository of one commit on `main`, with a
/// bare clone of it beside (the remote), and workers with caches of their own.
struct Setup {
    project: tempfile::TempDir,
    /// Where `runner.toml` is in the repository.
    sub: String,
    dir: tempfile::TempDir,
    base: String,
    workers: Vec<(Child, PathBuf)>,
}

impl Setup {
    /// `git` is the `[git]` table's body; `{remote}` in it becomes the
    /// remote's path.
    fn new(pipeline: &str, git_table: &str) -> Self {
        Self::in_subdir(pipeline, git_table, "")
    }

    /// [`Setup::new`] with `runner.toml` (and its state) in `sub` of the repository.
    fn in_subdir(pipeline: &str, git_table: &str, sub: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("remote.git");
        let table = git_table.replace("{remote}", bare.to_str().unwrap());
        let project = crate::ids::isolated_project(&format!("{pipeline}\n[git]\n{table}\n"));
        let root = project.path();
        let toml = root.join("runner.toml");
        let text = std::fs::read_to_string(&toml).unwrap().replace(
            "state_dir = \"state\"\n",
            "state_dir = \"state\"\nconcurrency = 4\n",
        );
        std::fs::write(&toml, text).unwrap();
        if !sub.is_empty() {
            std::fs::create_dir_all(root.join(sub)).unwrap();
            for name in ["runner.toml", "state"] {
                std::fs::rename(root.join(name), root.join(sub).join(name)).unwrap();
            }
        }
        let state = Path::new(sub).join("state");
        std::fs::write(root.join(".gitignore"), format!("{}/\n", state.display())).unwrap();
        std::fs::write(root.join("seed.txt"), "seed\n").unwrap();
        git(root, &["init", "--quiet", "--initial-branch=main"]);
        git(root, &["add", "-A"]);
        git(root, &["commit", "--quiet", "-m", "seed"]);
        let base = git(root, &["rev-parse", "HEAD"]);
        git(
            dir.path(),
            &[
                "clone",
                "--quiet",
                "--bare",
                root.to_str().unwrap(),
                bare.to_str().unwrap(),
            ],
        );
        Self {
            project,
            sub: sub.to_string(),
            dir,
            base,
            workers: Vec::new(),
        }
    }

    fn bare(&self) -> PathBuf {
        self.dir.path().join("remote.git")
    }

    /// Starts `runner worker` with a cache of its own.
    fn start(&mut self, db: &Db, name: &str) {
        let log = self.dir.path().join(format!("{name}.log"));
        let child = Command::new(crate::pipelines::runner_binary())
            .args(["worker", "--queue", &url(), "--schema", &db.schema])
            .args(["--lease", "30s", "--poll", "200ms"])
            .args(["--name", &format!("{}-{name}", db.schema)])
            .arg("--cache")
            .arg(self.dir.path().join(format!("cache-{name}")))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.workers.push((child, log));
    }

    fn logs(&self) -> String {
        self.workers
            .iter()
            .map(|(_, log)| std::fs::read_to_string(log).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---\n")
    }

    async fn run(&self, db: &Db) -> (i32, String, String) {
        let args = ["run", "--queue", &url(), "--schema", &db.schema];
        run_binary(&self.project.path().join(&self.sub), &args, &[]).await
    }

    /// The `runner/…` branches of the remote.
    fn remote_branches(&self) -> Vec<String> {
        git(
            &self.bare(),
            &[
                "for-each-ref",
                "--format=%(refname:short)",
                "refs/heads/runner/",
            ],
        )
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// `git log base..branch` of the remote: (parent, author, subject), oldest first.
    fn commits_on(&self, branch: &str) -> Vec<(String, String, String)> {
        git(
            &self.bare(),
            &[
                "log",
                "--reverse",
                "--format=%P|%an|%s",
                &format!("{}..{branch}", self.base),
            ],
        )
        .lines()
        .map(|line| {
            let mut parts = line.split('|').map(str::to_string);
            (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            )
        })
        .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_commit_on_the_batch_branch_and_the_coordinator_merges_it() {
    let Some(db) = fresh("cgit_merge").await else {
        return;
    };
    let pipeline = format!(
        "[[pipelines.default.batches]]\nid = \"build\"\ntype = \"parallel\"\n{}{}",
        task("one", "test -f seed.txt && echo one > one.txt"),
        task("two", "test -f seed.txt && echo two > two.txt"),
    );
    let mut setup = Setup::new(&pipeline, "remote = \"{remote}\"\nmerge = \"ff\"");
    setup.start(&db, "w1");
    setup.start(&db, "w2");

    let (code, stdout, stderr) = setup.run(&db).await;
    assert_eq!(
        code,
        0,
        "stdout: {stdout}\nstderr: {stderr}\n{}",
        setup.logs()
    );

    let branches = setup.remote_branches();
    assert_eq!(
        branches.len(),
        1,
        "one batch branch on the remote: {branches:?}"
    );
    let branch = &branches[0];
    assert!(branch.ends_with("-build"), "{branch}");
    let commits = setup.commits_on(branch);
    assert_eq!(commits.len(), 2, "both tasks' commits: {commits:?}");
    assert_eq!(commits[0].0, setup.base, "the first is on the base");
    let mut subjects: Vec<&str> = commits.iter().map(|c| c.2.as_str()).collect();
    subjects.sort_unstable();
    assert!(
        subjects[0].starts_with("runner: task one on ")
            && subjects[1].starts_with("runner: task two on "),
        "{subjects:?}"
    );
    assert!(commits.iter().all(|c| c.1 == "runner"), "{commits:?}");

    // Merged here, into the branch checked out (`merge = "ff"`).
    let root = setup.project.path();
    assert_eq!(git(root, &["show", "main:one.txt"]), "one");
    assert_eq!(git(root, &["show", "main:two.txt"]), "two");
    let tip = git(&setup.bare(), &["rev-parse", branch]);
    assert_eq!(git(root, &["rev-parse", "main"]), tip, "fast-forwarded");
    assert_eq!(
        git(root, &["rev-parse", branch]),
        tip,
        "the local branch too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_a_failing_task_on_a_worker_is_not_merged() {
    let Some(db) = fresh("cgit_fail").await else {
        return;
    };
    let pipeline = format!(
        "[[pipelines.default.batches]]\nid = \"build\"\ntype = \"parallel\"\n{}{}",
        task("good", "echo good > good.txt"),
        task("broken", "echo about to fail; exit 3"),
    );
    let mut setup = Setup::new(&pipeline, "remote = \"{remote}\"\nmerge = \"ff\"");
    setup.start(&db, "w1");

    let (code, stdout, stderr) = setup.run(&db).await;
    assert_eq!(
        code,
        1,
        "stdout: {stdout}\nstderr: {stderr}\n{}",
        setup.logs()
    );
    let root = setup.project.path();
    assert_eq!(
        git(root, &["rev-parse", "main"]),
        setup.base,
        "the target is untouched"
    );
    let branches = setup.remote_branches();
    assert_eq!(branches.len(), 1, "{branches:?}");
    let pushed: Vec<String> = setup
        .commits_on(&branches[0])
        .into_iter()
        .map(|c| c.2)
        .collect();
    assert!(
        pushed.iter().all(|s| !s.contains("task broken")),
        "the failed task pushed nothing: {pushed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_git_remote_the_run_says_tasks_run_in_the_workers_directory() {
    let Some(db) = fresh("cgit_none").await else {
        return;
    };
    let pipeline = format!(
        "[[pipelines.default.batches]]\nid = \"build\"\ntype = \"parallel\"\n{}",
        task("one", "echo ran"),
    );
    let mut setup = Setup::new(&pipeline, "merge = \"ff\"");
    setup.start(&db, "w1");

    let (code, stdout, stderr) = setup.run(&db).await;
    assert_eq!(
        code,
        0,
        "stdout: {stdout}\nstderr: {stderr}\n{}",
        setup.logs()
    );
    let said = format!("{stdout}\n{stderr}");
    assert!(
        said.contains("run in the worker's directory") && said.contains("set `[git] remote`"),
        "the run names what to set: {said}"
    );
    assert!(setup.remote_branches().is_empty(), "nothing was published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_coordinator_changed_in_the_worktree_is_merged_with_the_workers_branch() {
    let Some(db) = fresh("cgit_both").await else {
        return;
    };
    let pipeline = format!(
        "[[pipelines.default.batches]]\nid = \"build\"\ntype = \"parallel\"\n{}",
        task("one", "echo one > one.txt"),
    );
    // The setup script runs here, in the batch's worktree.
    let table = "remote = \"{remote}\"\nmerge = \"ff\"\nsetup = \"echo here > here.txt\"";
    let mut setup = Setup::new(&pipeline, table);
    setup.start(&db, "w1");

    let (code, stdout, stderr) = setup.run(&db).await;
    assert_eq!(
        code,
        0,
        "stdout: {stdout}\nstderr: {stderr}\n{}",
        setup.logs()
    );
    let root = setup.project.path();
    assert_eq!(git(root, &["show", "main:one.txt"]), "one");
    assert_eq!(git(root, &["show", "main:here.txt"]), "here");
    let branch = &setup.remote_branches()[0];
    let worker_tip = git(&setup.bare(), &["rev-parse", branch]);
    let parents = git(root, &["log", "-1", "--format=%P", "main"]);
    assert!(
        parents.split(' ').count() == 2 && parents.contains(&worker_tip),
        "main's tip merges the workers' branch ({worker_tip}): {parents}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_batch_starts_on_workers_from_what_its_dependency_pushed() {
    let Some(db) = fresh("cgit_deps").await else {
        return;
    };
    let pipeline = format!(
        "[[pipelines.default.batches]]\nid = \"first\"\ntype = \"parallel\"\n{}\
         [[pipelines.default.batches]]\nid = \"second\"\ntype = \"parallel\"\ndepends_on = [\"first\"]\n{}",
        task("make", "echo made > made.txt"),
        task("check", "test -f made.txt && echo checked > checked.txt"),
    );
    // No merge: the branches stay for review, the second on the first's head.
    let mut setup = Setup::new(&pipeline, "remote = \"{remote}\"");
    setup.start(&db, "w1");

    let (code, stdout, stderr) = setup.run(&db).await;
    assert_eq!(
        code,
        0,
        "stdout: {stdout}\nstderr: {stderr}\n{}",
        setup.logs()
    );
    let root = setup.project.path();
    assert_eq!(git(root, &["rev-parse", "main"]), setup.base, "not merged");
    let branches = setup.remote_branches();
    let second = branches.iter().find(|b| b.ends_with("-second")).unwrap();
    assert_eq!(
        git(&setup.bare(), &["show", &format!("{second}:made.txt")]),
        "made"
    );
    assert_eq!(
        git(root, &["show", &format!("{second}:checked.txt")]),
        "checked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_in_a_subdirectory_runs_its_tasks_in_that_subdirectory_on_workers() {
    let Some(db) = fresh("cgit_sub").await else {
        return;
    };
    let pipeline = format!(
        "[[pipelines.default.batches]]\nid = \"build\"\ntype = \"parallel\"\n{}",
        task("one", "test -f runner.toml && echo one > one.txt"),
    );
    let mut setup = Setup::in_subdir(&pipeline, "remote = \"{remote}\"\nmerge = \"ff\"", "app");
    setup.start(&db, "w1");

    let (code, stdout, stderr) = setup.run(&db).await;
    assert_eq!(
        code,
        0,
        "stdout: {stdout}\nstderr: {stderr}\n{}",
        setup.logs()
    );
    assert_eq!(
        git(setup.project.path(), &["show", "main:app/one.txt"]),
        "one"
    );
}
