//! One queue and one history per project (issue 8.3, 9.12): while a
//! `runner serve` runs, `runner ask` and `runner run` hand their work to it
//! over the WebSocket, and `runner agents` reads its live state with the
//! token. Real processes, a real port.

use crate::ids::{history_db, isolated_project, turns};
use crate::pipelines::{run_binary, runner_binary};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// A port nothing listens on (just now).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `runner serve` of the project in `dir`; killed when dropped.
pub(crate) struct Server {
    child: tokio::process::Child,
}

impl Server {
    /// Starts `runner serve` with `env` and waits until it listens.
    pub(crate) async fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        let log = dir.join("serve.log");
        let mut command = tokio::process::Command::new(runner_binary());
        command
            .arg("serve")
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("runner serve starts");
        for _ in 0..600 {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("serving on") {
                return Self { child };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "runner serve did not listen within a minute: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// `kill -9`: no chance to record anything.
    pub(crate) async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    pub(crate) async fn stop(mut self) {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("runner serve stopped within 30 s of Ctrl-C")
            .unwrap();
    }
}

/// A project whose `[server] listen` is a free port, plus `extra`.
fn served_project(extra: &str) -> (tempfile::TempDir, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let project = isolated_project(&format!(
        "[server]\nlisten = \"{addr}\"\n{extra}\n{PIPELINES}"
    ));
    (project, addr)
}

const PIPELINES: &str = r#"
[[pipelines.default.batches]]
id = "hello"

[[pipelines.default.batches.tasks]]
id = "say"
type = "exec"
config = { command = "echo hello from the server" }

[[pipelines.bad.batches]]
id = "broken"

[[pipelines.bad.batches.tasks]]
id = "fail"
type = "exec"
config = { command = "exit 3" }
"#;

/// Polls `check` every 100 ms for at most 30 s.
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(found) = check() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 30 s");
}

/// (status, started_at, finished_at) of every agent turn, oldest first.
fn turn_times(dir: &Path) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(history_db(dir)).unwrap();
    let mut statement = conn
        .prepare(
            "SELECT status, COALESCE(started_at, ''), COALESCE(finished_at, '') FROM agent_turns ORDER BY first_seq",
        )
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Per command, in the order they started running: the `seq` of its
/// `running` status and of its last agent activity, from the history.
fn command_spans(dir: &Path) -> Vec<(String, u64, u64)> {
    let conn = rusqlite::Connection::open(history_db(dir)).unwrap();
    let mut statement = conn
        .prepare("SELECT seq, json FROM events WHERE type IN ('command_status', 'agent_activity') ORDER BY seq")
        .unwrap();
    let events: Vec<(u64, String)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut spans: Vec<(String, u64, u64)> = Vec::new();
    for (seq, json) in events {
        let event: Value = serde_json::from_str(&json).unwrap();
        let id = event["command_id"].as_str().unwrap().to_string();
        if event["type"] == "command_status" && event["status"] == "running" {
            spans.push((id, seq, seq));
        } else if event["type"] == "agent_activity"
            && let Some(span) = spans.iter_mut().find(|s| s.0 == id)
        {
            span.2 = seq;
        }
    }
    spans
}

#[tokio::test]
async fn ask_hands_its_command_to_the_running_server_which_records_it_and_runs_one_at_a_time() {
    let (project, addr) = served_project("");
    let dir = project.path();
    let server = Server::start(dir, &[("FAKE_AGENT_DELAY", "0.02")]).await;

    let asks = ["first", "second"]
        .map(|prompt| async move { run_binary(dir, &["ask", "reviewer", prompt], &[]).await });
    for (code, stdout, stderr) in futures_util::future::join_all(asks).await {
        assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
        assert!(
            stderr.contains(&format!("handed to runner serve at {addr}")),
            "{stderr}"
        );
        assert!(
            !stderr.contains("waiting"),
            "the ask did not wait for the history: {stderr}"
        );
        assert!(
            stdout.contains("session 65206fb7-610c-417e-89cd-7590603606a1"),
            "the same summary line as in-process: {stdout}"
        );
        assert!(stdout.contains("tokens in "), "{stdout}");
    }
    // The server recorded both turns (the asks did not record anything themselves).
    let times = eventually("two completed turns in the server's history", || {
        let times = turn_times(dir);
        (times.len() == 2 && times.iter().all(|t| t.0 == "completed")).then_some(times)
    })
    .await;
    let prompts: Vec<String> = turns(dir).into_iter().map(|t| t.2).collect();
    let mut sorted = prompts.clone();
    sorted.sort();
    assert_eq!(sorted, ["first", "second"]);
    assert!(
        times.iter().all(|t| !t.1.is_empty() && !t.2.is_empty()),
        "{times:?}"
    );
    // One command at a time: the second ran after the first's last activity.
    let spans = command_spans(dir);
    assert_eq!(spans.len(), 2, "{spans:?}");
    assert!(
        spans[1].1 > spans[0].2,
        "the agent ran two commands at once: {spans:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn run_hands_its_run_to_the_running_server_and_exits_with_the_runs_outcome() {
    let (project, addr) = served_project("");
    let dir = project.path();
    let server = Server::start(dir, &[]).await;

    let (code, stdout, stderr) = run_binary(dir, &["run", "--json"], &[]).await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains(&format!("handed to runner serve at {addr}")),
        "{stderr}"
    );
    let events: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{line}: {err}")))
        .collect();
    let run_id = events[0]["run_id"]
        .as_str()
        .expect("a run's event")
        .to_string();
    assert!(
        events.iter().all(|e| e["run_id"] == run_id.as_str()),
        "{stdout}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "terminal_output" && e["data"] == "hello from the server\n"),
        "{stdout}"
    );
    let last = events.last().unwrap();
    assert_eq!(
        (&last["type"], &last["status"]),
        (&Value::from("run_status"), &Value::from("completed"))
    );

    let (code, stdout, stderr) = run_binary(dir, &["run", "bad"], &[]).await;
    assert_eq!(
        code, 1,
        "a failed run exits 1 as in-process: {stdout}\n{stderr}"
    );
    assert!(stderr.contains("handed to runner serve"), "{stderr}");

    // Both runs are in the server's history.
    let store = runner::store::Store::open(history_db(dir)).unwrap();
    let runs = eventually("two ended runs in the history", || {
        let runs = store.list_runs(10).unwrap();
        (runs.len() == 2 && runs.iter().all(|r| r.status != "running")).then_some(runs)
    })
    .await;
    assert!(
        runs.iter()
            .any(|r| r.id == run_id && r.status == "completed"),
        "{runs:?}"
    );
    assert!(
        runs.iter()
            .any(|r| r.pipeline == "bad" && r.status == "failed"),
        "{runs:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn ctrl_c_on_a_handed_off_ask_interrupts_the_command_on_the_server() {
    let (project, _) = served_project("");
    let dir = project.path();
    let server = Server::start(dir, &[("FAKE_AGENT_DELAY", "1")]).await;
    let mut child = tokio::process::Command::new(runner_binary())
        .args(["ask", "reviewer", "take your time", "--json"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut interrupted = false;
    let follow = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let event: Value = serde_json::from_str(&line).unwrap();
            if !interrupted && event["type"] == "command_status" && event["status"] == "running" {
                let pid = child.id().unwrap().to_string();
                std::process::Command::new("kill")
                    .args(["-INT", &pid])
                    .status()
                    .unwrap();
                interrupted = true;
            }
            if event["type"] == "command_status" && event["status"] == "interrupted" {
                return;
            }
        }
        panic!("the ask ended without the command being interrupted");
    };
    tokio::time::timeout(Duration::from_secs(60), follow)
        .await
        .expect("interrupted within a minute");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130));
    eventually("the interrupted turn in the history", || {
        turn_times(dir)
            .first()
            .filter(|t| t.0 == "interrupted")
            .cloned()
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn without_a_server_ask_and_run_work_in_process() {
    let (project, addr) = served_project("");
    let dir = project.path();
    let (code, stdout, stderr) = run_binary(dir, &["ask", "reviewer", "alone"], &[]).await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(!stderr.contains("handed to"), "{stderr}");
    assert!(
        !stderr.contains(&addr),
        "nothing to say when no server listens: {stderr}"
    );
    let turns = turns(dir);
    assert_eq!(turns.len(), 1, "{turns:?}");
    assert_eq!(turns[0].2, "alone");
    let (code, _, stderr) = run_binary(dir, &["run"], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("handed to"), "{stderr}");
}

#[tokio::test]
async fn agents_shows_live_queues_with_the_right_token_and_says_when_the_token_is_wrong() {
    let (project, addr) = served_project("token_env = \"HANDOFF_TEST_TOKEN\"");
    let dir = project.path();
    let server = Server::start(
        dir,
        &[
            ("HANDOFF_TEST_TOKEN", "right-token"),
            ("FAKE_AGENT_DELAY", "0.5"),
        ],
    )
    .await;
    let right = [("HANDOFF_TEST_TOKEN", "right-token")];
    let ask = tokio::spawn({
        let dir = dir.to_path_buf();
        async move { run_binary(&dir, &["ask", "reviewer", "slowly"], &right).await }
    });
    // Live: the agent is busy with the handed-off command.
    let mut shown = String::new();
    for _ in 0..300 {
        let (code, stdout, stderr) = run_binary(dir, &["agents"], &right).await;
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        if stdout.contains("busy") {
            shown = stdout;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        shown.contains(&format!("live from runner serve at {addr}")),
        "{shown}"
    );
    assert!(
        shown.contains("reviewer") && shown.contains("cmd-"),
        "{shown}"
    );

    let (code, stdout, stderr) =
        run_binary(dir, &["agents"], &[("HANDOFF_TEST_TOKEN", "wrong-token")]).await;
    assert_ne!(code, 0, "{stdout}");
    assert!(stderr.contains("refused the token"), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
    assert!(!stdout.contains("live from"), "{stdout}");

    let (code, _, stderr) = ask.await.unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("handed to runner serve"), "{stderr}");
    server.stop().await;
}

#[tokio::test]
async fn agents_says_no_server_listens_and_shows_the_configuration() {
    let (project, addr) = served_project("");
    let (code, stdout, stderr) = run_binary(project.path(), &["agents"], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("no runner serve listens at {addr}")),
        "{stderr}"
    );
    assert!(
        stdout.contains("reviewer") && stdout.contains("claude"),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_handed_off_ask_resumes_the_session_it_names() {
    let (project, _) = served_project("");
    let dir = project.path();
    let args_log = dir.join("args.log");
    let server = Server::start(dir, &[("FAKE_AGENT_ARGS_LOG", args_log.to_str().unwrap())]).await;
    let (code, stdout, stderr) = run_binary(
        dir,
        &["ask", "reviewer", "go on", "--resume", "sess-to-resume"],
        &[],
    )
    .await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("handed to runner serve"), "{stderr}");
    let line = std::fs::read_to_string(&args_log).unwrap();
    let args: Vec<String> = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    let at = args
        .iter()
        .position(|a| a == "--resume")
        .expect("--resume passed");
    assert_eq!(args[at + 1], "sess-to-resume", "{args:?}");
    server.stop().await;
}

#[tokio::test]
async fn ask_runs_here_when_the_server_at_the_address_serves_another_project() {
    let (other, addr) = served_project("");
    let server = Server::start(other.path(), &[]).await;
    let mine = isolated_project(&format!("[server]\nlisten = \"{addr}\"\n"));
    let (code, stdout, stderr) = run_binary(mine.path(), &["ask", "reviewer", "mine"], &[]).await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(!stderr.contains("handed to"), "{stderr}");
    assert!(
        stderr.contains("runs ") && stderr.contains("running here"),
        "{stderr}"
    );
    assert_eq!(
        turns(mine.path()).len(),
        1,
        "recorded in this project's history"
    );
    assert!(
        turns(other.path()).is_empty(),
        "nothing in the other project's history"
    );
    server.stop().await;
}
