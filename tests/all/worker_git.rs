//! Git on workers: `exec` tasks with a `git` payload, run by real
//! `runner worker` processes against a real bare repository (the remote),
//! with real PostgreSQL as the queue; and the coordinator's side
//! (`push_branch`, `fetch_branch`). Skips without PostgreSQL, as
//! `queue.rs` does.

use super::queue::{Db, fresh};
use super::queue_support::{Cache, Workers, all_finished, git, seed_repository, wait_for};
use runner::git::{fetch_branch, push_branch};
use runner::queue::{NewTask, TaskRow};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// How long any wait below may last (a bound on a hang, not a measurement).
const DEADLINE: Duration = Duration::from_secs(120);
const BRANCH: &str = "runner/run1-build";

/// A temp dir with a repository of one commit (`seed.txt`, on `main`) and
/// a bare clone of it, the remote every worker uses.
struct Setup {
    dir: tempfile::TempDir,
    work: PathBuf,
    remote: String,
    seed: String,
    workers: Workers,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let bare = dir.path().join("remote.git");
        let seed = seed_repository(&work, &bare);
        Self {
            remote: bare.to_str().unwrap().to_string(),
            workers: Workers::in_dir(dir.path()),
            dir,
            work,
            seed,
        }
    }

    fn bare(&self) -> PathBuf {
        PathBuf::from(&self.remote)
    }

    /// A shared directory outside every worktree, for tasks to meet in.
    fn meet(&self) -> PathBuf {
        let meet = self.dir.path().join("meet");
        std::fs::create_dir_all(&meet).unwrap();
        meet
    }

    /// Starts `runner worker` with a cache of its own.
    fn start(&mut self, db: &Db, name: &str) {
        self.workers.start(&db.schema, name, "30s", Cache::Own);
    }

    fn logs(&self) -> String {
        self.workers.logs()
    }

    /// An exec task running `command` (sh) with `git` on [`BRANCH`].
    fn task(&self, name: &str, command: &str) -> NewTask {
        NewTask::new(
            0,
            json!({
                "kind": "exec",
                "task": name,
                "command": ["sh", "-c", command],
                "git": {"remote": self.remote, "branch": BRANCH, "base": self.seed},
            }),
        )
    }

    /// Waits until every task completed or failed.
    async fn finished(&self, db: &Db) -> Vec<TaskRow> {
        wait_for(db, "finished", DEADLINE, || self.logs(), all_finished).await
    }

    /// Enqueues the task `name` running `command` (see [`Setup::task`]),
    /// starts the worker `w1` and waits until the task has finished.
    async fn on_one_worker(&mut self, db: &mut Db, name: &str, command: &str) -> Vec<TaskRow> {
        db.queue.enqueue(&[self.task(name, command)]).await.unwrap();
        self.start(db, "w1");
        self.finished(db).await
    }

    /// Where the remote's [`BRANCH`] is, if it has one.
    fn remote_branch(&self) -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(self.bare())
            .args(["rev-parse", "--verify", "--quiet"])
            .arg(format!("refs/heads/{BRANCH}"))
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `git log` of the remote's branch: (sha, parent, author, subject).
    fn history(&self) -> Vec<(String, String, String, String)> {
        git(
            &self.bare(),
            &["log", "--format=%H %P|%an <%ae>|%s", BRANCH],
        )
        .lines()
        .map(|line| {
            let mut parts = line.split('|');
            let mut ids = parts.next().unwrap().split(' ');
            let sha = ids.next().unwrap().to_string();
            let parent = ids.next().unwrap_or_default().to_string();
            (
                sha,
                parent,
                parts.next().unwrap().to_string(),
                parts.next().unwrap().to_string(),
            )
        })
        .collect()
    }

    fn file_on_branch(&self, path: &str) -> String {
        git(&self.bare(), &["show", &format!("{BRANCH}:{path}")])
    }

    /// The worktrees a worker's cache still holds.
    fn worktrees_left(&self, name: &str) -> Vec<PathBuf> {
        std::fs::read_dir(self.workers.own_cache(name).join("worktrees"))
            .map(|dir| dir.map(|entry| entry.unwrap().path()).collect())
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_commits_its_file_on_the_branch_by_the_runner_identity() {
    let Some(mut db) = fresh("wgit_one").await else {
        return;
    };
    let mut setup = Setup::new();
    assert_eq!(setup.remote_branch(), None);
    let tasks = setup
        .on_one_worker(&mut db, "build", "echo built > out.txt")
        .await;
    assert_eq!(tasks[0].state, "completed", "{tasks:#?}\n{}", setup.logs());

    let history = setup.history();
    assert_eq!(history.len(), 2, "the seed and one commit: {history:?}");
    let (sha, parent, author, subject) = &history[0];
    assert_eq!(parent, &setup.seed, "the commit sits on the base");
    assert_eq!(author, "runner <runner@localhost>");
    let worker = format!("{}-w1", db.schema);
    assert_eq!(subject, &format!("runner: task build on {worker}"));
    assert_eq!(setup.file_on_branch("out.txt"), "built");
    assert_eq!(
        git(&setup.bare(), &["diff", "--name-only", &setup.seed, sha]),
        "out.txt"
    );
    let result = tasks[0].result.as_ref().unwrap();
    assert_eq!(
        result["git"],
        json!({"branch": BRANCH, "commit": sha, "changed": 1}),
        "task {}: {result}",
        tasks[0].id
    );
    assert_eq!(result["exit_code"], 0);
    assert!(
        setup.worktrees_left("w1").is_empty(),
        "the worktree is gone"
    );
}

/// Two tasks that both start from the base before either pushes: the
/// second push is refused and rebased, or conflicts when they wrote the
/// same file.
async fn race(db: &mut Db, setup: &mut Setup, files: [&str; 2]) -> Vec<TaskRow> {
    let meet = setup.meet();
    let tasks: Vec<NewTask> = files
        .iter()
        .enumerate()
        .map(|(i, file)| {
            // Each says where it started, then waits (bounded) for the other
            // to have started too, so both begin at the same commit.
            let command = format!(
                "git rev-parse HEAD > {meet}/start-{i} && \
                 n=0; while [ $(ls {meet} | wc -l) -lt 2 ]; do n=$((n+1)); \
                 [ $n -gt 1200 ] && echo 'the other task never started' && exit 9; sleep 0.05; done; \
                 echo task{i} > {file}",
                meet = meet.display()
            );
            setup.task(&format!("t{i}"), &command)
        })
        .collect();
    db.queue.enqueue(&tasks).await.unwrap();
    setup.start(db, "w1");
    setup.start(db, "w2");
    let tasks = setup.finished(db).await;
    for i in 0..2 {
        let start = std::fs::read_to_string(meet.join(format!("start-{i}"))).unwrap();
        assert_eq!(start.trim(), setup.seed, "task {i} started at the base");
    }
    let owners: Vec<_> = db.queue.claims().await.unwrap();
    assert_eq!(owners.len(), 2, "{owners:?}");
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_branch_both_land_the_second_rebased() {
    let Some(mut db) = fresh("wgit_two").await else {
        return;
    };
    let mut setup = Setup::new();
    let tasks = race(&mut db, &mut setup, ["a.txt", "b.txt"]).await;
    for task in &tasks {
        assert_eq!(task.state, "completed", "{tasks:#?}\n{}", setup.logs());
    }
    let history = setup.history();
    assert_eq!(history.len(), 3, "the seed and two commits: {history:?}");
    assert_eq!(history[1].1, setup.seed);
    assert_eq!(history[0].1, history[1].0, "one line of history");
    assert_eq!(setup.file_on_branch("a.txt"), "task0");
    assert_eq!(setup.file_on_branch("b.txt"), "task1");
    let mut pushed: Vec<String> = tasks
        .iter()
        .map(|t| {
            t.result.as_ref().unwrap()["git"]["commit"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    pushed.sort();
    let mut commits = vec![history[0].0.clone(), history[1].0.clone()];
    commits.sort();
    assert_eq!(pushed, commits, "each result names the commit it pushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tasks_writing_one_file_on_one_branch_the_second_fails_naming_it() {
    let Some(mut db) = fresh("wgit_clash").await else {
        return;
    };
    let mut setup = Setup::new();
    let tasks = race(&mut db, &mut setup, ["same.txt", "same.txt"]).await;
    let failed: Vec<&TaskRow> = tasks.iter().filter(|t| t.state == "failed").collect();
    assert_eq!(failed.len(), 1, "{tasks:#?}\n{}", setup.logs());
    let error = failed[0].error.as_deref().unwrap();
    assert!(
        error.contains(BRANCH) && error.contains("same.txt") && error.contains("conflict"),
        "{error}"
    );
    assert_eq!(setup.history().len(), 2, "only the first landed");
    assert!(setup.worktrees_left("w1").is_empty() && setup.worktrees_left("w2").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_reports_its_exit_and_pushes_nothing() {
    let Some(mut db) = fresh("wgit_fail").await else {
        return;
    };
    let mut setup = Setup::new();
    let tasks = setup
        .on_one_worker(&mut db, "broken", "echo half > half.txt; exit 3")
        .await;
    assert_eq!(tasks[0].state, "failed", "{tasks:#?}");
    let result: &Value = tasks[0].result.as_ref().unwrap();
    assert_eq!(result["exit_code"], 3, "{result}");
    assert!(result.get("git").is_none(), "{result}");
    assert_eq!(setup.remote_branch(), None, "nothing was pushed");
    assert!(
        setup.worktrees_left("w1").is_empty(),
        "the worktree is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_task_whose_cwd_leaves_its_worktree_is_refused_and_nothing_runs() {
    let Some(mut db) = fresh("wgit_cwd").await else {
        return;
    };
    let mut setup = Setup::new();
    let meet = setup.meet();
    let marker = meet.join("ran");
    // A link in the branch that leads out of the worktree.
    std::os::unix::fs::symlink(&meet, setup.work.join("out")).unwrap();
    git(&setup.work, &["add", "out"]);
    git(&setup.work, &["commit", "--quiet", "-m", "link"]);
    git(&setup.work, &["push", "--quiet", &setup.remote, "main"]);
    setup.seed = git(&setup.work, &["rev-parse", "HEAD"]);
    let command = format!("pwd >> {}", marker.display());
    let escapes = [
        (
            "absolute",
            meet.to_str().unwrap().to_string(),
            "is absolute",
        ),
        (
            "climbing",
            "sub/../../..".to_string(),
            "leaves the task's worktree",
        ),
        ("linked", "out".to_string(), "through a symlink"),
    ];
    for (name, cwd, _) in &escapes {
        let mut task = setup.task(name, &command);
        task.payload["cwd"] = json!(cwd);
        db.queue.enqueue(&[task]).await.unwrap();
    }
    setup.start(&db, "w1");
    let tasks = setup.finished(&db).await;
    for (task, (name, cwd, why)) in tasks.iter().zip(&escapes) {
        assert_eq!(task.state, "failed", "{name}: {task:#?}");
        let error = task.error.as_deref().unwrap_or_default();
        assert!(
            error.contains(&format!("`cwd` = {cwd:?}")) && error.contains(why),
            "{name}: {error}"
        );
    }
    assert!(!marker.exists(), "no command ran outside its worktree");
    assert_eq!(setup.remote_branch(), None, "nothing was pushed");
    assert!(
        setup.worktrees_left("w1").is_empty(),
        "the worktrees are gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_publishes_a_base_and_fetches_what_a_worker_pushed() {
    let Some(mut db) = fresh("wgit_coord").await else {
        return;
    };
    let mut setup = Setup::new();
    // The coordinator's base is a commit the remote does not have yet.
    std::fs::write(setup.work.join("base.txt"), "base\n").unwrap();
    git(&setup.work, &["add", "-A"]);
    git(&setup.work, &["commit", "--quiet", "-m", "base"]);
    let base = git(&setup.work, &["rev-parse", "HEAD"]);
    push_branch(&setup.work, &setup.remote, &base, BRANCH).unwrap();
    assert_eq!(setup.remote_branch().as_deref(), Some(base.as_str()));

    // The task's `base` is the seed, but the branch exists: it starts there.
    let tasks = setup
        .on_one_worker(
            &mut db,
            "check",
            "test -f base.txt && echo ok > checked.txt",
        )
        .await;
    assert_eq!(tasks[0].state, "completed", "{tasks:#?}\n{}", setup.logs());
    let pushed = tasks[0].result.as_ref().unwrap()["git"]["commit"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(setup.history()[0].1, base);

    let clone = setup.dir.path().join("coordinator");
    git(
        setup.dir.path(),
        &["clone", "--quiet", &setup.remote, "coordinator"],
    );
    let fetched = fetch_branch(&clone, &setup.remote, BRANCH).unwrap();
    assert_eq!(fetched, pushed);
    assert_eq!(
        git(&clone, &["show", &format!("{fetched}:checked.txt")]),
        "ok"
    );
    // Publishing an older base over the worker's work is refused.
    let err = push_branch(&setup.work, &setup.remote, &setup.seed, BRANCH).unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
}
