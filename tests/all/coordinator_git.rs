//! Git on workers, the coordinator's side: `runner run --queue` in a
//! project that is a real git repository with `[git] remote` (a real bare
//! repository), real `runner worker` processes and real PostgreSQL. The
//! batch's base is published on the remote, the workers commit on the
//! batch's branch there, and the coordinator fetches it and merges it.
//! Skipped without PostgreSQL, as `queue.rs` is.

use crate::pipelines::run_binary;
use crate::queue::{Db, fresh, url};
use crate::queue_support::{Cache, Workers, git, seed_repository};
use std::path::{Path, PathBuf};

/// An exec task `id` running `command` (a shell line).
fn task(id: &str, command: &str) -> String {
    format!(
        "[[pipelines.default.batches.tasks]]\nid = \"{id}\"\ntype = \"exec\"\nconfig = {{ command = {command:?} }}\n"
    )
}

/// A parallel batch `id` after `depends_on` (a TOML list, or empty), of
/// the exec `tasks` (id, command).
fn batch(id: &str, depends_on: &str, tasks: &[(&str, &str)]) -> String {
    let mut text = format!("[[pipelines.default.batches]]\nid = \"{id}\"\ntype = \"parallel\"\n");
    if !depends_on.is_empty() {
        text.push_str(&format!("depends_on = {depends_on}\n"));
    }
    for (id, command) in tasks {
        text.push_str(&task(id, command));
    }
    text
}

/// A project that is a git repository of one commit on `main`, with a
/// bare clone of it beside (the remote), and workers with caches of their own.
struct Setup {
    project: tempfile::TempDir,
    /// Where `runner.toml` is in the repository.
    sub: String,
    dir: tempfile::TempDir,
    base: String,
    workers: Workers,
    /// Dropped after the workers are killed.
    db: Db,
}

impl Setup {
    /// In `db`'s schema; `git` is the `[git]` table's body, `{remote}` in it
    /// becomes the remote's path (and `{root}` in the pipeline the
    /// repository's); `runner.toml` (and its state) in `sub` of the
    /// repository (empty: its root).
    fn new(db: Db, pipeline: &str, git_table: &str, sub: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("remote.git");
        let table = git_table.replace("{remote}", bare.to_str().unwrap());
        let project = crate::ids::isolated_project(&format!("{pipeline}\n[git]\n{table}\n"));
        let root = project.path();
        let toml = root.join("runner.toml");
        let text = std::fs::read_to_string(&toml)
            .unwrap()
            .replace(
                "state_dir = \"state\"\n",
                "state_dir = \"state\"\nconcurrency = 4\n",
            )
            .replace("{root}", root.to_str().unwrap());
        std::fs::write(&toml, text).unwrap();
        if !sub.is_empty() {
            std::fs::create_dir_all(root.join(sub)).unwrap();
            for name in ["runner.toml", "state"] {
                std::fs::rename(root.join(name), root.join(sub).join(name)).unwrap();
            }
        }
        let state = Path::new(sub).join("state");
        std::fs::write(root.join(".gitignore"), format!("{}/\n", state.display())).unwrap();
        let base = seed_repository(root, &bare);
        Self {
            project,
            sub: sub.to_string(),
            workers: Workers::in_dir(dir.path()),
            dir,
            base,
            db,
        }
    }

    /// In a fresh schema (`None` without PostgreSQL, as `fresh` says),
    /// starts a worker with a cache of its own for each of `workers`, runs
    /// the pipeline with `runner run --queue`, and checks that it exited `code`; what it said
    /// (stdout, then stderr).
    async fn ran(
        test: &str,
        pipeline: &str,
        git_table: &str,
        sub: &str,
        workers: &[&str],
        code: i32,
    ) -> Option<(Self, String)> {
        let db = fresh(test).await?;
        let mut setup = Self::new(db, pipeline, git_table, sub);
        for name in workers {
            setup
                .workers
                .start(&setup.db.schema, name, "30s", Cache::Own);
        }
        let args = ["run", "--queue", &url(), "--schema", &setup.db.schema];
        let (exit, stdout, stderr) =
            run_binary(&setup.project.path().join(&setup.sub), &args, &[]).await;
        assert_eq!(
            exit,
            code,
            "stdout: {stdout}\nstderr: {stderr}\n{}",
            setup.workers.logs()
        );
        Some((setup, format!("{stdout}\n{stderr}")))
    }

    fn bare(&self) -> PathBuf {
        self.dir.path().join("remote.git")
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
    let pipeline = batch(
        "build",
        "",
        &[
            ("one", "test -f seed.txt && echo one > one.txt"),
            ("two", "test -f seed.txt && echo two > two.txt"),
        ],
    );
    let table = "remote = \"{remote}\"\nmerge = \"ff\"";
    let Some((setup, _)) = Setup::ran("cgit_merge", &pipeline, table, "", &["w1", "w2"], 0).await
    else {
        return;
    };

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
    let pipeline = batch(
        "build",
        "",
        &[
            ("good", "echo good > good.txt"),
            ("broken", "echo about to fail; exit 3"),
        ],
    );
    let table = "remote = \"{remote}\"\nmerge = \"ff\"";
    let Some((setup, _)) = Setup::ran("cgit_fail", &pipeline, table, "", &["w1"], 1).await else {
        return;
    };
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
    let pipeline = batch("build", "", &[("one", "echo ran")]);
    let table = "merge = \"ff\"";
    let Some((setup, said)) = Setup::ran("cgit_none", &pipeline, table, "", &["w1"], 0).await
    else {
        return;
    };
    assert!(
        said.contains("run in the worker's directory") && said.contains("set `[git] remote`"),
        "the run names what to set: {said}"
    );
    assert!(setup.remote_branches().is_empty(), "nothing was published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_coordinator_changed_in_the_worktree_is_merged_with_the_workers_branch() {
    let pipeline = batch("build", "", &[("one", "echo one > one.txt")]);
    // The setup script runs here, in the batch's worktree.
    let table = "remote = \"{remote}\"\nmerge = \"ff\"\nsetup = \"echo here > here.txt\"";
    let Some((setup, _)) = Setup::ran("cgit_both", &pipeline, table, "", &["w1"], 0).await else {
        return;
    };
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
    let pipeline = batch("first", "", &[("make", "echo made > made.txt")])
        + &batch(
            "second",
            "[\"first\"]",
            &[("check", "test -f made.txt && echo checked > checked.txt")],
        );
    // No merge: the branches stay for review, the second on the first's head.
    let table = "remote = \"{remote}\"";
    let Some((setup, _)) = Setup::ran("cgit_deps", &pipeline, table, "", &["w1"], 0).await else {
        return;
    };
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
    let pipeline = batch(
        "build",
        "",
        &[("one", "test -f runner.toml && echo one > one.txt")],
    );
    let table = "remote = \"{remote}\"\nmerge = \"ff\"";
    let Some((setup, _)) = Setup::ran("cgit_sub", &pipeline, table, "app", &["w1"], 0).await else {
        return;
    };
    assert_eq!(
        git(setup.project.path(), &["show", "main:app/one.txt"]),
        "one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attempt_of_a_best_of_batch_works_on_its_own_branch_on_workers() {
    // The check passes only where the worker's file came back into the
    // attempt's worktree before it was committed and checked.
    let pipeline = r#"
[[pipelines.default.batches]]
id = "try"
type = "best_of"
with = { attempts = 2, check = "test -f out.txt" }

[[pipelines.default.batches.tasks]]
id = "make"
type = "exec"
config = { command = "test -f seed.txt && echo from-worker > out.txt" }
"#;
    let table = "remote = \"{remote}\"\nmerge = \"ff\"";
    let Some((setup, said)) =
        Setup::ran("cgit_best_of", pipeline, table, "", &["w1", "w2"], 0).await
    else {
        return;
    };
    let mut branches = setup.remote_branches();
    branches.sort();
    assert_eq!(branches.len(), 2, "one branch per attempt: {branches:?}");
    for (n, branch) in branches.iter().enumerate() {
        let n = n + 1;
        assert!(branch.ends_with(&format!("-try-{n}")), "{branch}");
        let commits = setup.commits_on(branch);
        assert_eq!(commits.len(), 1, "{branch}: {commits:?}");
        assert_eq!(commits[0].0, setup.base, "attempt {n} starts at the base");
        assert_eq!(commits[0].1, "runner", "committed by the worker");
        assert!(
            commits[0]
                .2
                .starts_with(&format!("runner: task make#{n} on ")),
            "{commits:?}"
        );
    }
    assert!(said.contains("attempt 1 of 2 won"), "{said}");
    let root = setup.project.path();
    assert_eq!(git(root, &["show", "main:out.txt"]), "from-worker");
    let winner = git(&setup.bare(), &["rev-parse", &branches[0]]);
    assert_eq!(
        git(root, &["rev-parse", "main^{tree}"]),
        git(root, &["rev-parse", &format!("{winner}^{{tree}}")]),
        "main holds the winning attempt's work"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_cwd_inside_the_repository_is_that_place_in_the_workers_worktree() {
    let pipeline = "[[pipelines.default.batches]]\nid = \"build\"\ntype = \"parallel\"\n\
        [[pipelines.default.batches.tasks]]\nid = \"one\"\ntype = \"exec\"\n\
        config = { command = \"test -f runner.toml && echo one > one.txt\", cwd = \"{root}/app\" }\n";
    let table = "remote = \"{remote}\"\nmerge = \"ff\"";
    let Some((setup, _)) = Setup::ran("cgit_abs", pipeline, table, "app", &["w1"], 0).await else {
        return;
    };
    // Written in the worker's worktree, committed there and merged: not in
    // the coordinator's own checkout behind git's back.
    assert_eq!(
        git(setup.project.path(), &["show", "main:app/one.txt"]),
        "one"
    );
}
