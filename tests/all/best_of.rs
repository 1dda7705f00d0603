//! `best_of`: one batch tried by several fake agents (real processes
//! replaying real transcripts, each writing its own files) in real git
//! worktrees; the check, the diff and the cost pick the winner.

use crate::agents::fake;
use git2::{BranchType, Repository, RepositoryInitOptions, Signature};
use protocol::{AttemptResult, BatchStatus, Event, EventKind, RunStatus};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use tempfile::TempDir;

fn fixture(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("shared/fixtures/agents")
        .join(path)
        .display()
        .to_string()
}

/// A stand-in agent CLI: writes `$FILES` files (`out-1.txt`, … one line
/// each, the same whoever writes them), `broken.txt` when `$BREAK` is set,
/// then replays its transcript through the fake `claude`.
const AGENT: &str = r#"#!/bin/sh
i=1
while [ "$i" -le "${FILES:-0}" ]; do
    echo "line $i" > "out-$i.txt"
    i=$((i + 1))
done
if [ -n "${BREAK:-}" ]; then echo broken > broken.txt; fi
exec "$FAKE" "$@"
"#;

/// A repository on `main` whose one commit holds `runner.toml` and the
/// stand-in agent; the state dir `.runner` is ignored and starts with the
/// shared compile cache.
struct Repo {
    dir: TempDir,
}

impl Repo {
    fn new(toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut options = RepositoryInitOptions::new();
        options.initial_head("main");
        let repo = Repository::init_opts(dir.path(), &options).unwrap();
        let agent = dir.path().join("agent.sh");
        let toml = toml
            .replace("{agent}", &agent.display().to_string())
            .replace("{fake}", &fake("claude"));
        std::fs::write(dir.path().join("runner.toml"), toml).unwrap();
        std::fs::write(dir.path().join(".gitignore"), ".runner/\n").unwrap();
        std::fs::write(&agent, AGENT).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = Signature::now("Test", "test@example.com").unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "initial", &tree, &[])
            .unwrap();
        let shared = Path::new(&crate::support::shared_state_dir()).join("cache");
        if let Ok(entries) = std::fs::read_dir(&shared) {
            let cache = dir.path().join(".runner/cache");
            std::fs::create_dir_all(&cache).unwrap();
            for entry in entries.flatten() {
                let _ = std::fs::copy(entry.path(), cache.join(entry.file_name()));
            }
        }
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn git(&self) -> Repository {
        Repository::open(self.path()).unwrap()
    }

    fn head_of(&self, branch: &str) -> Option<git2::Oid> {
        self.git()
            .find_branch(branch, BranchType::Local)
            .ok()?
            .get()
            .target()
    }

    /// The paths committed on `branch`, sorted.
    fn files_on(&self, branch: &str) -> Vec<String> {
        let repo = self.git();
        let tree = repo
            .find_commit(self.head_of(branch).expect("the branch"))
            .unwrap()
            .tree()
            .unwrap();
        let mut files: Vec<String> = tree
            .iter()
            .filter_map(|e| e.name().map(str::to_string))
            .collect();
        files.sort();
        files
    }

    async fn runner(&self, args: &[&str]) -> (i32, String, String) {
        crate::pipelines::run_binary(self.path(), args, &[]).await
    }

    /// The `default` pipeline, in-process, with every event it published.
    async fn run(&self) -> (runner::run::RunReport, Vec<Arc<Event>>) {
        crate::support::run_config(&self.path().join("runner.toml"), "default").await
    }
}

/// The one `best_of_result` among `events`: (winner, reason, attempts).
fn best_of_result(events: &[Arc<Event>]) -> (Option<u32>, String, Vec<AttemptResult>) {
    let found: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::BestOfResult {
                winner,
                reason,
                attempts,
                ..
            } => Some((*winner, reason.clone(), attempts.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "one best_of_result");
    found.into_iter().next().unwrap()
}

/// One agent per attempt: `name` writes `files` files (and `broken.txt`
/// when `broken`) and replays `transcript`.
fn agent(name: &str, files: u32, broken: bool, transcript: &str) -> String {
    format!(
        r#"
[agents.{name}]
adapter = "claude"
command = "{{agent}}"
env = {{ FILES = "{files}", BREAK = "{}", FAKE = "{{fake}}", FAKE_AGENT_TRANSCRIPT = "{}" }}
"#,
        if broken { "1" } else { "" },
        fixture(transcript)
    )
}

const CHEAP: &str = "claude/success-bash-write-read.jsonl";
const DEAR: &str = "claude/partial-messages-multimodel-background-task.jsonl";
const CHECK: &str = "test ! -e broken.txt";

fn pipeline(agents: &[&str], merge: &str) -> String {
    let list: Vec<String> = agents.iter().map(|a| format!("{a:?}")).collect();
    format!(
        r#"
[git]
merge = "{merge}"
target = "main"

[[pipelines.default.batches]]
id = "try"
type = "best_of"
with = {{ agents = [{}], check = "{CHECK}", pick = "check,diff,cost" }}

[[pipelines.default.batches.tasks]]
id = "fix"
type = "agent"
config = {{ agent = "{}", prompt = "fix the bug" }}
"#,
        list.join(", "),
        agents[0]
    )
}

#[tokio::test]
async fn the_attempt_that_passes_the_check_with_the_smallest_diff_wins_and_is_merged() {
    // Attempt 1 changes least but breaks the check; 2 and 3 pass, 3 with
    // one file more.
    let toml = format!(
        "version = 1\n{}{}{}{}",
        agent("breaks", 0, true, CHEAP),
        agent("two", 2, false, CHEAP),
        agent("three", 3, false, CHEAP),
        pipeline(&["breaks", "two", "three"], "ff")
    );
    let repo = Repo::new(&toml);
    let (code, stdout, stderr) = repo.runner(&["run"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let reason = "smaller diff: 2 files, +2 -0 (attempt 3: 3 files, +3 -0)";
    assert!(
        stdout.contains(&format!("batch try: attempt 2 of 3 won: {reason}")),
        "the run prints the verdict: {stdout}"
    );

    let (code, json, _) = repo.runner(&["show", "last", "--json"]).await;
    assert_eq!(code, 0);
    let detail: Value = serde_json::from_str(&json).unwrap();
    let run = detail["run"]["id"].as_str().unwrap().to_string();
    let branch = |n: u32| format!("runner/{run}-try-{n}");

    // The winner is merged into main; the batch's branch is the winner's.
    let mut on_main = repo.files_on("main");
    on_main.retain(|f| f.starts_with("out-") || f == "broken.txt");
    assert_eq!(on_main, ["out-1.txt", "out-2.txt"]);
    assert!(
        repo.path().join("out-2.txt").exists(),
        "the checkout followed"
    );
    assert_eq!(
        repo.head_of(&format!("runner/{run}-try")),
        repo.head_of(&branch(2))
    );
    assert_eq!(repo.head_of("main"), repo.head_of(&branch(2)));
    // The losers stay for review, with their work.
    assert!(
        repo.files_on(&branch(1))
            .contains(&"broken.txt".to_string())
    );
    assert!(repo.files_on(&branch(3)).contains(&"out-3.txt".to_string()));

    let best = &detail["best_of"][0];
    assert_eq!(best["batch_id"], "try");
    assert_eq!(best["winner"], 2);
    assert_eq!(best["winner_branch"], branch(2));
    assert_eq!(best["reason"], reason);
    assert_eq!(best["check"], CHECK);
    let attempts = best["attempts"].as_array().unwrap();
    let field = |key: &str| -> Vec<Value> { attempts.iter().map(|a| a[key].clone()).collect() };
    assert_eq!(field("agent"), ["breaks", "two", "three"]);
    assert_eq!(field("rank"), [3, 1, 2]);
    assert_eq!(field("files_changed"), [1, 2, 3]);
    assert_eq!(field("additions"), [1, 2, 3]);
    assert_eq!(
        attempts
            .iter()
            .map(|a| a["check"]["passed"].clone())
            .collect::<Vec<_>>(),
        [false, true, true]
    );
    assert_eq!(attempts[0]["check"]["exit_code"], 1);
    // The transcript's own figures: $0.0455704, 6 + 300 tokens.
    for attempt in attempts {
        assert_eq!(attempt["completed"], true);
        assert!((attempt["cost_usd"].as_f64().unwrap() - 0.0455704).abs() < 1e-9);
        assert!(attempt["input_tokens"].as_u64().unwrap() > 0);
    }
    assert_eq!(
        attempts[2]["note"],
        "bigger diff than attempt 2: 3 files, +3 -0 vs 2 files, +2 -0"
    );

    let (code, show, _) = repo.runner(&["show", "last"]).await;
    assert_eq!(code, 0);
    assert!(
        show.contains(&format!("best of batch try: attempt 2 of 3 won: {reason}")),
        "{show}"
    );
    assert!(show.contains(&format!("check: {CHECK}")), "{show}");
    assert!(
        show.contains(&format!(
            "failed the check `{CHECK}`: `{CHECK}` exited with code 1"
        )),
        "{show}"
    );
    for n in 1..=3 {
        assert!(show.contains(&branch(n)), "{show}");
    }
    // Each attempt's check is an execution of its own.
    assert!(
        show.contains("check:try#1 [script · check] failed exit 1"),
        "{show}"
    );
}

#[tokio::test]
async fn with_equal_diffs_the_lower_cost_wins_and_a_full_tie_keeps_the_earlier_attempt() {
    // Every attempt writes the same one file; the first replays a dearer
    // transcript, the second and third the same cheaper one.
    let toml = format!(
        "version = 1\n{}{}{}{}",
        agent("dear", 1, false, DEAR),
        agent("cheap", 1, false, CHEAP),
        agent("same", 1, false, CHEAP),
        pipeline(&["dear", "cheap", "same"], "none")
    );
    let repo = Repo::new(&toml);
    let (report, events) = repo.run().await;
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
    let (winner, reason, attempts) = best_of_result(&events);
    assert_eq!(winner, Some(2));
    assert_eq!(
        reason,
        "it ties with attempt 3 on diff and cost, and the earlier attempt is kept"
    );
    let costs: Vec<f64> = attempts.iter().map(|a| a.cost_usd.unwrap()).collect();
    assert!(costs[0] > costs[1], "{costs:?}");
    assert_eq!(costs[1], costs[2]);
    assert_eq!(
        attempts.iter().map(|a| a.rank).collect::<Vec<_>>(),
        [3, 1, 2]
    );
    assert_eq!(
        attempts[0].note,
        format!(
            "higher cost than attempt 2: ${:.4} vs ${:.4}",
            costs[0], costs[1]
        )
    );
    assert!(
        attempts[2]
            .note
            .starts_with("ties with attempt 2, which came earlier"),
        "{}",
        attempts[2].note
    );
    // Later tasks read the winner's output under the declared task id.
    assert_eq!(report.outputs["fix"]["agent"], "cheap");
    assert_eq!(report.outputs["fix#1"]["agent"], "dear");
    // No merge: main is untouched, the batch's branch is the winner's.
    assert!(!repo.files_on("main").contains(&"out-1.txt".to_string()));
    let completed = events.iter().find_map(|e| match &e.kind {
        EventKind::BatchStatus {
            status: BatchStatus::Completed,
            branch,
            summary,
            ..
        } => Some((branch.clone().unwrap(), summary.clone().unwrap())),
        _ => None,
    });
    let (branch, summary) = completed.expect("the batch completed");
    assert_eq!(repo.head_of(&branch), repo.head_of(&format!("{branch}-2")));
    assert!(
        summary.starts_with(&format!("attempt 2 of 3 won ({branch}-2): ")),
        "{summary}"
    );
}

#[tokio::test]
async fn when_no_attempt_passes_the_check_the_batch_fails_and_main_is_untouched() {
    let toml = format!(
        "version = 1\n{}{}{}",
        agent("one", 1, true, CHEAP),
        agent("two", 2, true, CHEAP),
        pipeline(&["one", "two"], "ff")
    );
    let repo = Repo::new(&toml);
    let main = repo.head_of("main");
    let (report, events) = repo.run().await;
    assert_eq!(report.status, RunStatus::Failed);
    let error = report.error.unwrap();
    assert!(
        error.contains(&format!(
            "no attempt can be kept: no attempt passed the check `{CHECK}`"
        )),
        "{error}"
    );
    let (winner, _, attempts) = best_of_result(&events);
    assert_eq!(winner, None);
    assert_eq!(repo.head_of("main"), main, "main is untouched");
    for attempt in &attempts {
        assert!(
            repo.files_on(&attempt.branch)
                .contains(&"broken.txt".to_string())
        );
    }
}

#[tokio::test]
async fn a_plan_naming_an_undeclared_agent_fails_the_batch_before_any_attempt_runs() {
    let toml = format!(
        "version = 1\n{}{}",
        agent("one", 1, false, CHEAP),
        pipeline(&["one", "ghost"], "none")
    );
    let repo = Repo::new(&toml);
    let (report, events) = repo.run().await;
    assert_eq!(report.status, RunStatus::Failed);
    let error = report.error.unwrap();
    assert!(
        error.contains("attempt 2 names agent `ghost`, which runner.toml does not declare"),
        "{error}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::TaskStarted { .. })),
        "no attempt ran"
    );
}

#[tokio::test]
async fn the_dashboard_shows_the_attempts_side_by_side_live_and_from_the_history() {
    use crate::dashboard_support::{Driver, base_url, browser_tools};
    let Some(tools) = browser_tools() else { return };
    let addr = format!("127.0.0.1:{}", crate::handoff::free_port());
    let toml = format!(
        "version = 1\n[server]\nlisten = \"{addr}\"\n{}{}{}{}",
        agent("breaks", 0, true, CHEAP),
        agent("two", 2, false, CHEAP),
        agent("three", 3, false, CHEAP),
        pipeline(&["breaks", "two", "three"], "none")
    );
    let repo = Repo::new(&toml);
    let server = crate::handoff::Server::start(repo.path(), &[]).await;
    let printed = Driver::start(&tools, "best_of", &base_url(repo.path()), &[])
        .finish()
        .await;
    server.stop().await;
    let shown = printed
        .iter()
        .find(|v| v["recorded"].is_array())
        .expect("the script read the table");
    // What the page shows is what the history recorded.
    let (_, json, _) = repo.runner(&["show", "last", "--json"]).await;
    let detail: Value = serde_json::from_str(&json).unwrap();
    let attempts = detail["best_of"][0]["attempts"].as_array().unwrap();
    let rows = shown["recorded"].as_array().unwrap();
    assert_eq!(rows.len(), attempts.len());
    for (row, attempt) in rows.iter().zip(attempts) {
        assert_eq!(row["attempt"], attempt["number"]);
        assert_eq!(row["rank"], attempt["rank"]);
        assert_eq!(row["note"], attempt["note"]);
        let files = attempt["files_changed"].as_u64().unwrap();
        assert!(
            row["diff"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{files} files")),
            "{row}"
        );
    }
    let winners: Vec<u64> = rows
        .iter()
        .filter(|r| r["winner"] == true)
        .map(|r| r["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(winners, [2], "the winner is marked: {rows:?}");
    assert_eq!(rows[0]["check"], "failed");
    assert!(
        shown["reason"]
            .as_str()
            .unwrap()
            .contains("attempt 2 won: smaller diff"),
        "{shown}"
    );
}
