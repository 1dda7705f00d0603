//! Ids the runner mints are unique across processes and time (issue 8.2):
//! concurrent `runner ask` and `runner run` processes keep every command
//! and agent turn apart in the history, and old ids stay readable.

use crate::pipelines::run_binary;
use crate::support::shared_state_dir;
use runner::store::Store;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// The fake Claude Code CLI that replays a real transcript.
pub(crate) fn fake_claude() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("examples/fake-agents/claude")
        .display()
        .to_string()
}

/// A project with its own history (`state/`) but the shared compile cache,
/// and an agent `reviewer` driving the fake Claude CLI; `extra` is appended
/// to `runner.toml`.
pub(crate) fn isolated_project(extra: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let cache = Path::new(&shared_state_dir()).join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::os::unix::fs::symlink(&cache, state.join("cache")).unwrap();
    let toml = format!(
        "version = 1\n[defaults]\nstate_dir = \"state\"\n\n[agents.reviewer]\nadapter = \"claude\"\ncommand = {:?}\n{extra}\n",
        fake_claude()
    );
    std::fs::write(dir.path().join("runner.toml"), toml).unwrap();
    dir
}

pub(crate) fn history_db(project: &Path) -> PathBuf {
    project.join("state/history.db")
}

/// Every recorded agent turn: (command id, run id, prompt, in, out, cached tokens).
pub(crate) fn turns(project: &Path) -> Vec<(String, Option<String>, String, i64, i64, i64)> {
    let conn = rusqlite::Connection::open(history_db(project)).unwrap();
    let mut statement = conn
        .prepare(
            "SELECT command_id, run_id, prompt, input_tokens, output_tokens, cached_tokens
             FROM agent_turns ORDER BY first_seq",
        )
        .unwrap();
    statement
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn three_concurrent_asks_record_three_distinct_commands_each_with_its_prompt_and_tokens() {
    let project = isolated_project("");
    let dir = project.path();
    let asks = (1..=3).map(|n| async move {
        let prompt = format!("prompt number {n}");
        run_binary(dir, &["ask", "reviewer", &prompt], &[]).await
    });
    for (code, stdout, stderr) in futures_util::future::join_all(asks).await {
        assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    }
    let turns = turns(dir);
    assert_eq!(turns.len(), 3, "one agent turn per ask: {turns:?}");
    let ids: HashSet<&str> = turns.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(ids.len(), 3, "distinct command ids: {turns:?}");
    for id in &ids {
        assert!(id.starts_with("cmd-"), "{id}");
    }
    let prompts: HashSet<&str> = turns.iter().map(|t| t.2.as_str()).collect();
    let expected: HashSet<&str> = ["prompt number 1", "prompt number 2", "prompt number 3"]
        .into_iter()
        .collect();
    assert_eq!(prompts, expected);
    // The same transcript each time: each turn has one transcript's tokens, not a sum.
    let tokens: HashSet<(i64, i64, i64)> = turns.iter().map(|t| (t.3, t.4, t.5)).collect();
    assert_eq!(tokens.len(), 1, "{turns:?}");
    assert!(turns[0].4 > 0, "{turns:?}");
}

#[tokio::test]
async fn two_concurrent_runs_keep_both_runs_agent_turns() {
    let project = isolated_project(
        r#"
[[pipelines.default.batches]]
id = "review"

[[pipelines.default.batches.tasks]]
id = "ask"
type = "agent"
config = { agent = "reviewer", prompt = "review it" }
"#,
    );
    let dir = project.path();
    let runs = (0..2).map(|_| run_binary(dir, &["run"], &[]));
    for (code, stdout, stderr) in futures_util::future::join_all(runs).await {
        assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    }
    let store = Store::open(history_db(dir)).unwrap();
    let runs = store.list_runs(10).unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_ne!(runs[0].id, runs[1].id);
    for run in &runs {
        let detail = store.run_detail(&run.id).unwrap();
        assert_eq!(detail.agent_turns.len(), 1, "run {}: {detail:?}", run.id);
        assert_eq!(detail.agent_turns[0].status, "completed");
        assert!(detail.agent_turns[0].output_tokens > 0);
    }
    let turns = turns(dir);
    assert_eq!(turns.len(), 2, "{turns:?}");
    assert_ne!(turns[0].0, turns[1].0);
    assert_ne!(turns[0].1, turns[1].1, "each turn belongs to its own run");
}

#[tokio::test]
async fn old_ids_stay_readable_and_new_runs_are_found_by_the_tail_of_their_id() {
    let project = isolated_project(
        r#"
[[pipelines.default.batches]]
id = "hello"

[[pipelines.default.batches.tasks]]
id = "say"
type = "exec"
config = { command = "echo hi" }
"#,
    );
    let dir = project.path();
    {
        // A history written by an earlier runner, with the old id forms.
        let (_store, bus, recorder) = crate::store::open(&history_db(dir));
        crate::store::publish_a_run(&bus, "20261122-101010-ab12");
        recorder.flush().unwrap();
    }
    let (code, stdout, stderr) = run_binary(dir, &["run"], &[]).await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");

    let (code, history, _) = run_binary(dir, &["history"], &[]).await;
    assert_eq!(code, 0, "{history}");
    assert!(history.contains("20261122-101010-ab12"), "{history}");
    let store = Store::open(history_db(dir)).unwrap();
    let new = store.list_runs(1).unwrap().remove(0).id;
    assert!(history.contains(&new), "{history}");
    let tail = new.rsplit('-').next().unwrap();
    assert_eq!(tail.len(), 12, "{new}");

    let (code, shown, stderr) = run_binary(dir, &["show", "20261122"], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(shown.contains("20261122-101010-ab12"), "{shown}");
    assert!(
        shown.contains("fixed the test"),
        "the old agent turn: {shown}"
    );

    let (code, shown, stderr) = run_binary(dir, &["show", &tail[..8]], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(shown.contains(&new), "{shown}");
    let (code, shown, _) = run_binary(dir, &["show", "last", "--json"], &[]).await;
    assert_eq!(code, 0);
    assert!(shown.contains(&new), "{shown}");
}
