//! What the queue tests share: real `runner worker` processes (started,
//! signalled, stopped, their logs), waiting on the queue's tasks with a
//! deadline, a git repository of one commit with a bare clone beside it
//! (the remote workers push to), and a PostgreSQL server of a test's own
//! (to restart it without touching the one the other tests share).

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
    /// The queue they serve.
    url: String,
}

impl Workers {
    /// Workers in a temp dir of their own.
    pub(crate) fn new() -> Self {
        let owned = tempfile::tempdir().unwrap();
        Self {
            dir: owned.path().to_path_buf(),
            _owned: Some(owned),
            started: Vec::new(),
            url: url(),
        }
    }

    /// The same workers, serving the queue at `url` instead.
    pub(crate) fn on(self, url: String) -> Self {
        Self { url, ..self }
    }

    /// Workers in `dir`, which the caller keeps.
    pub(crate) fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            _owned: None,
            started: Vec::new(),
            url: url(),
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
            .args(["worker", "--queue", &self.url, "--schema", schema])
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

/// A PostgreSQL server of the test's own, in a temp dir, on a free loopback
/// port with trust auth; stopped (`-m immediate`) when dropped, whatever
/// the test did. Run as the `postgres` OS user when the tests run as root
/// (initdb refuses root).
pub(crate) struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl OwnPostgres {
    /// Creates and starts one; `None` (after saying why) when the server's
    /// programs are not installed and `RUNNER_REQUIRE_TOOLCHAINS` is not `1`.
    pub(crate) fn start(test: &str) -> Option<Self> {
        let Some(bin) = postgres_bin() else {
            let why = "no PostgreSQL server programs (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or `pg_config --bindir`";
            if std::env::var("RUNNER_REQUIRE_TOOLCHAINS").as_deref() == Ok("1") {
                panic!("RUNNER_REQUIRE_TOOLCHAINS=1 but there are {why}");
            }
            eprintln!("skipping {test}: {why}");
            return None;
        };
        use std::os::unix::fs::MetadataExt;
        let as_postgres = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let dir = tempfile::tempdir().unwrap();
        let server = Self {
            dir,
            bin,
            port: crate::handoff::free_port(),
            as_postgres,
        };
        if as_postgres {
            let status = std::process::Command::new("chown")
                .arg("postgres:")
                .arg(server.dir.path())
                .status()
                .unwrap();
            assert!(
                status.success(),
                "chown postgres {}",
                server.dir.path().display()
            );
        }
        server.run(
            "initdb",
            &[
                "-D",
                &server.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        server.pg_ctl(&[
            "start",
            "-w",
            "-t",
            "60",
            "-l",
            &server.log_file(),
            "-o",
            &server.options(),
        ]);
        Some(server)
    }

    /// postgres://postgres@127.0.0.1:PORT/postgres
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A real stop (fast: sessions are ended) and start, on the same port.
    pub(crate) fn restart(&self) {
        self.pg_ctl(&[
            "restart",
            "-w",
            "-t",
            "60",
            "-m",
            "fast",
            "-l",
            &self.log_file(),
            "-o",
            &self.options(),
        ]);
    }

    /// The server's own log.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_str().unwrap().to_string()
    }

    fn log_file(&self) -> String {
        self.dir
            .path()
            .join("server.log")
            .to_str()
            .unwrap()
            .to_string()
    }

    fn options(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        )
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data();
        let mut all = vec!["-D", data.as_str()];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all);
    }

    /// Runs the server program `program` (as `postgres` when root); it must succeed.
    fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program, args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    fn command(&self, program: &str, args: &[&str]) -> std::process::Command {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            std::process::Command::new(path)
        };
        command.args(args).stdin(Stdio::null());
        command
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl", &["-D", &data, "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Where `initdb` and `pg_ctl` are: the newest /usr/lib/postgresql/*/bin,
/// else `pg_config --bindir`.
fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Some(bin);
    }
    let out = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()?;
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .then_some(bin)
}
