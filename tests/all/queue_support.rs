//! What the queue tests share: real `runner worker` processes (started,
//! signalled, stopped, their logs), waiting on the queue's tasks with a
//! deadline, and a git repository of one commit with a bare clone beside it
//! (the remote workers push to).

use crate::queue::{Db, url};
use runner::queue::TaskRow;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// Where a worker keeps its plugins and git mirrors.
#[derive(Clone, Copy)]
pub(crate) enum Cache {
    /// No `--cache`.
    None,
    /// `cache-<name>` in the workers' directory, one per worker.
    Own,
    /// `cache` in the workers' directory, for every worker.
    Shared,
}

/// `runner worker` processes in one directory (their working directory,
/// logs and caches), each killed when this is dropped.
pub(crate) struct Workers {
    dir: PathBuf,
    /// The directory, when these workers made it themselves.
    _owned: Option<tempfile::TempDir>,
    /// (full name, process, stderr file).
    started: Vec<(String, Child, PathBuf)>,
}

impl Workers {
    /// Workers in a temp dir of their own.
    pub(crate) fn new() -> Self {
        let owned = tempfile::tempdir().unwrap();
        Self {
            dir: owned.path().to_path_buf(),
            _owned: Some(owned),
            started: Vec::new(),
        }
    }

    /// Workers in `dir`, which the caller keeps.
    pub(crate) fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            _owned: None,
            started: Vec::new(),
        }
    }

    /// [`Cache::Own`]'s directory for the worker `name`.
    pub(crate) fn own_cache(&self, name: &str) -> PathBuf {
        self.dir.join(format!("cache-{name}"))
    }

    /// [`Cache::Shared`]'s directory.
    pub(crate) fn shared_cache(&self) -> PathBuf {
        self.dir.join("cache")
    }

    /// Starts `runner worker` on `schema`, named `<schema>-<name>`, polling
    /// every 200ms; its stderr goes to `<name>.log`. Its full name.
    pub(crate) fn start(&mut self, schema: &str, name: &str, lease: &str, cache: Cache) -> String {
        let full = format!("{schema}-{name}");
        let log = self.dir.join(format!("{name}.log"));
        let mut command = Command::new(crate::pipelines::runner_binary());
        command
            .args(["worker", "--queue", &url(), "--schema", schema])
            .args(["--lease", lease, "--name", &full, "--poll", "200ms"]);
        match cache {
            Cache::None => {}
            Cache::Own => {
                command.arg("--cache").arg(self.own_cache(name));
            }
            Cache::Shared => {
                command.arg("--cache").arg(self.shared_cache());
            }
        }
        let child = command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.started.push((full.clone(), child, log));
        full
    }

    /// How many were started.
    pub(crate) fn count(&self) -> usize {
        self.started.len()
    }

    /// The stderr of the `index`th worker started.
    pub(crate) fn log(&self, index: usize) -> String {
        std::fs::read_to_string(&self.started[index].2).unwrap_or_default()
    }

    /// Every worker's stderr, each under its name.
    pub(crate) fn logs(&self) -> String {
        (0..self.started.len())
            .map(|index| format!("--- {}\n{}", self.started[index].0, self.log(index)))
            .collect()
    }

    /// Sends `signal` (`KILL`, `STOP`, …) to the worker of full name `name`.
    pub(crate) fn signal(&self, name: &str, signal: &str) {
        let (_, child, _) = self.started.iter().find(|(n, _, _)| n == name).unwrap();
        let pid = child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {name}");
    }

    /// SIGTERM to the `index`th worker, then waits (at most `within`) for it to end.
    pub(crate) async fn stop(&mut self, index: usize, within: Duration) {
        let name = self.started[index].0.clone();
        self.signal(&name, "TERM");
        tokio::time::timeout(within, self.started[index].1.wait())
            .await
            .expect("the worker never exited after SIGTERM")
            .unwrap();
    }

    /// Kills every worker without waiting.
    pub(crate) fn kill_all(&mut self) {
        for (_, child, _) in &mut self.started {
            let _ = child.start_kill();
        }
    }
}

/// Polls `db`'s tasks until `done` holds; fails past `within`, with `logs()`.
pub(crate) async fn wait_for(
    db: &Db,
    what: &str,
    within: Duration,
    logs: impl Fn() -> String,
    mut done: impl FnMut(&[TaskRow]) -> bool,
) -> Vec<TaskRow> {
    let deadline = Instant::now() + within;
    loop {
        let tasks = db.queue.tasks().await.unwrap();
        if done(&tasks) {
            return tasks;
        }
        assert!(
            Instant::now() < deadline,
            "never {what}; tasks: {tasks:#?}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every task completed or failed.
pub(crate) fn all_finished(tasks: &[TaskRow]) -> bool {
    tasks
        .iter()
        .all(|t| t.state == "completed" || t.state == "failed")
}

/// `git ARGS` in `dir` as "Test Person", which must succeed; its stdout, trimmed.
pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
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

/// Makes `work` (an existing directory, with whatever files it holds) a
/// repository on `main` of one commit, "seed", that adds `seed.txt` and
/// the rest; clones it bare to `bare`. The commit's sha.
pub(crate) fn seed_repository(work: &Path, bare: &Path) -> String {
    std::fs::write(work.join("seed.txt"), "seed\n").unwrap();
    git(work, &["init", "--quiet", "--initial-branch=main"]);
    git(work, &["add", "-A"]);
    git(work, &["commit", "--quiet", "-m", "seed"]);
    let seed = git(work, &["rev-parse", "HEAD"]);
    let (work_path, bare_path) = (work.to_str().unwrap(), bare.to_str().unwrap());
    git(work, &["clone", "--quiet", "--bare", work_path, bare_path]);
    seed
}
