//! Set-up for the dashboard tests (`dashboard.rs`): the browser tools,
//! a served git project, the node driver and plain HTTP reads.

use crate::handoff::free_port;
use crate::ids::{history_db, isolated_project};
use crate::pipelines::runner_binary;
use crate::server_support::{get_request, raw_request};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";

/// The folder with the node script, when Chromium, Node.js and
/// playwright-core are all there.
pub(crate) fn browser_tools() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push("Chromium (`apt-get install -y chromium`)");
    }
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        missing.push("Node.js (`apt-get install -y nodejs npm`)");
    }
    if !dir.join("node_modules/playwright-core").exists() {
        missing.push("playwright-core (`cd tests/browser && npm install`)");
    }
    if missing.is_empty() {
        return Some(dir);
    }
    let what = missing.join(", ");
    if std::env::var("RUNNER_REQUIRE_TOOLCHAINS").as_deref() == Ok("1") {
        panic!(
            "the dashboard tests need {what}; RUNNER_REQUIRE_TOOLCHAINS=1 forbids skipping them"
        );
    }
    eprintln!("skipped: the dashboard tests need {what}");
    None
}

/// `<target>/dashboard-artifacts/<scenario>`.
pub(crate) fn artifacts(scenario: &str) -> PathBuf {
    let target = runner_binary()
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let dir = target.join("dashboard-artifacts").join(scenario);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) const PIPELINES: &str = r#"
[[pipelines.default.batches]]
id = "build"
name = "Build"

[[pipelines.default.batches.tasks]]
id = "compile"
type = "exec"
config = { command = "printf '\\033[32mbuilt ok\\033[0m\\n'; echo dashboard-log-marker; echo '--- details'; echo folded-detail-line; echo '+++ summary'; echo open-summary-line" }

[[pipelines.default.batches]]
id = "write"
name = "Write notes"

[[pipelines.default.batches.tasks]]
id = "note"
type = "exec"
config = { command = "echo 'a line from the batch' >> notes.txt" }

[[pipelines.default.batches]]
id = "report"
name = "Report"
depends_on = ["build", "write"]

[[pipelines.default.batches.tasks]]
id = "sum"
type = "exec"
config = { command = "echo done" }

[[pipelines.bad.batches]]
id = "broken"

[[pipelines.bad.batches.tasks]]
id = "fail"
type = "exec"
config = { command = "exit 3" }

[[pipelines.slow.batches]]
id = "wait"
name = "Wait"

[[pipelines.slow.batches.tasks]]
id = "sleep"
type = "exec"
config = { command = "sleep 30" }
"#;

/// A git repository with one commit whose `runner.toml` serves on a free port.
pub(crate) fn project() -> tempfile::TempDir {
    project_with("")
}

/// [`project`] with more `[server]` keys.
pub(crate) fn project_with(server: &str) -> tempfile::TempDir {
    let addr = format!("127.0.0.1:{}", free_port());
    let dir = isolated_project(&format!(
        "[server]\nlisten = \"{addr}\"\n{server}\n{PIPELINES}"
    ));
    std::fs::write(dir.path().join(".gitignore"), "state/\n").unwrap();
    let repo = git2::Repository::init(dir.path()).unwrap();
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let who = git2::Signature::now("test", "test@example.com").unwrap();
    repo.commit(Some("HEAD"), &who, &who, "start", &tree, &[])
        .unwrap();
    dir
}

pub(crate) fn base_url(dir: &Path) -> String {
    let toml = std::fs::read_to_string(dir.join("runner.toml")).unwrap();
    let addr = toml
        .lines()
        .find_map(|l| l.strip_prefix("listen = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    format!("http://{addr}")
}

/// The node script for one scenario: its requests (`{"wait": …}`) are
/// answered by the test.
pub(crate) struct Driver {
    child: tokio::process::Child,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stdin: tokio::process::ChildStdin,
    printed: Vec<Value>,
    stderr: PathBuf,
}

impl Driver {
    pub(crate) fn start(tools: &Path, scenario: &str, base: &str, env: &[(&str, &str)]) -> Self {
        let out = artifacts(scenario);
        let stderr = out.join("driver.stderr");
        let mut command = tokio::process::Command::new("node");
        command
            .arg(tools.join("dashboard.mjs"))
            .args([scenario, base])
            .arg(&out)
            .env("DASH_CHROMIUM", CHROMIUM)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("node starts");
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let stdin = child.stdin.take().unwrap();
        Self {
            child,
            stdout,
            stdin,
            printed: Vec::new(),
            stderr,
        }
    }

    /// The next thing the script waits for, or `None` once it has ended.
    pub(crate) async fn next_wait(&mut self) -> Option<String> {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(180), self.stdout.next_line())
                .await
                .expect("the browser script printed something within 3 minutes")
                .unwrap()?;
            eprintln!("browser: {line}");
            let value: Value = serde_json::from_str(&line).unwrap_or(Value::String(line));
            if let Some(wait) = value["wait"].as_str() {
                return Some(wait.to_string());
            }
            self.printed.push(value);
        }
    }

    pub(crate) async fn answer(&mut self, text: &str) {
        self.stdin
            .write_all(format!("{text}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Waits for the script to end; panics with its report when a check failed.
    pub(crate) async fn finish(mut self) -> Vec<Value> {
        if let Some(wait) = self.next_wait().await {
            panic!("the browser script waits for `{wait}`, which this test does not do");
        }
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("the browser script ended")
            .unwrap();
        let report = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        assert!(status.success(), "in the browser: {report}");
        self.printed
    }
}

pub(crate) fn newest_run(dir: &Path) -> String {
    let conn = rusqlite::Connection::open(history_db(dir)).unwrap();
    conn.query_row(
        "SELECT id FROM runs ORDER BY first_seq DESC LIMIT 1",
        [],
        |row| row.get(0),
    )
    .unwrap()
}

pub(crate) fn run_status(dir: &Path, run: &str) -> String {
    let conn = rusqlite::Connection::open(history_db(dir)).unwrap();
    conn.query_row("SELECT status FROM runs WHERE id = ?1", [run], |row| {
        row.get(0)
    })
    .unwrap()
}

/// GET `path` from the server of `dir` with extra header lines: (status, head, body).
pub(crate) async fn get(dir: &Path, path: &str, headers: &str) -> (u16, String, String) {
    let base = base_url(dir);
    let host = base.trim_start_matches("http://");
    let response = raw_request(host.parse().unwrap(), &get_request(path, host, headers)).await;
    (response.status, response.head, response.body)
}

pub(crate) async fn get_json(dir: &Path, path: &str) -> Value {
    let (status, _, body) = get(dir, path, "").await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}
