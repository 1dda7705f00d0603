//! Budgets: a command, a task or a run past its `max_cost_usd` or
//! `max_tokens` is stopped and fails, naming the cap; a run over its cap
//! starts nothing more. Fake CLIs replay the recorded transcripts (the
//! claude one reports $0.0455704; the codex one 20,643 input and 239
//! output tokens), through the real adapters.

use crate::agents::{agent_project, none_left, request, unique};
use crate::pipelines::run_binary;
use crate::support::finished;
use protocol::{CommandStatus, EventKind, Priority, TaskStatus};
use std::time::Duration;

/// The status and error of `task` in `events`.
fn task_end(events: &[std::sync::Arc<protocol::Event>], task: &str) -> (TaskStatus, String) {
    match finished(events, task) {
        EventKind::TaskFinished { status, error, .. } => {
            (*status, error.clone().unwrap_or_default())
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_command_past_its_agents_cost_cap_is_stopped_while_it_runs_and_fails() {
    let marker = unique("budget");
    let (key, value) = marker.split_once('=').unwrap();
    // The CLI prints its transcript (cost included), then hangs with a
    // child: only the budget can end it before the minute's timeout.
    let project = agent_project(
        "claude",
        &format!(
            "timeout = \"60s\"\nmax_cost_usd = 0.01\n\
             env = {{ FAKE_AGENT_HANG = \"1\", {key} = \"{value}\" }}"
        ),
    );
    let runner = project.runner().await;
    let handle = runner
        .agents()
        .submit(request("a", "spend", Priority::Normal))
        .await
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), handle.done)
        .await
        .expect("stopped long before its timeout")
        .unwrap();
    assert_eq!(result.status, CommandStatus::Failed, "{result:?}");
    assert_eq!(
        result.error.as_deref(),
        Some("budget exceeded: $0.0456 of $0.0100 (max_cost_usd of agent `a`)")
    );
    assert_eq!(result.usage.cost_usd, Some(0.0455704));
    none_left(&marker).await;
}

#[tokio::test]
async fn a_task_past_its_token_cap_fails_and_the_history_records_why() {
    let project = agent_project(
        "codex",
        "[[pipelines.default.batches]]\nid = \"b\"\n\
         [[pipelines.default.batches.tasks]]\nid = \"review\"\ntype = \"agent\"\n\
         config = { agent = \"a\", prompt = \"review\", max_tokens = 10000 }\n",
    );
    let (code, stdout, stderr) = run_binary(project.dir.path(), &["run"], &[]).await;
    assert_ne!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let why = "budget exceeded: 20,882 tokens of 10,000 (max_tokens of task `review`)";
    assert!(
        format!("{stdout}{stderr}").contains(why),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let (code, shown, stderr) = run_binary(project.dir.path(), &["show", "last"], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(shown.contains(why), "runner show says why:\n{shown}");
}

#[tokio::test]
async fn a_run_past_its_cap_stops_the_command_and_starts_no_other() {
    let log = tempfile::NamedTempFile::new().unwrap();
    // One command at a time: whichever task goes first spends $0.0456 of
    // the run's $0.04; the other must not start its CLI at all.
    let project = agent_project(
        "claude",
        &format!(
            "concurrency = 1\nenv = {{ FAKE_AGENT_ARGS_LOG = \"{}\" }}\n\
             [[pipelines.p.batches]]\nid = \"one\"\n\
             [[pipelines.p.batches.tasks]]\nid = \"first\"\ntype = \"agent\"\nconfig = {{ agent = \"a\", prompt = \"go\" }}\n\
             [[pipelines.p.batches]]\nid = \"two\"\n\
             [[pipelines.p.batches.tasks]]\nid = \"second\"\ntype = \"agent\"\nconfig = {{ agent = \"a\", prompt = \"go\" }}\n",
            log.path().display()
        ),
    );
    let file = project.dir.path().join("runner.toml");
    let toml = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        toml.replace("[defaults]\n", "[defaults]\nmax_cost_usd = 0.04\n"),
    )
    .unwrap();
    let (report, events) = project.run("p").await;
    assert_eq!(report.status, protocol::RunStatus::Failed, "{report:?}");
    let mut ends = [task_end(&events, "first"), task_end(&events, "second")];
    ends.sort_by_key(|(_, error)| error.contains("did not start"));
    assert_eq!(ends[0].0, TaskStatus::Failed);
    assert!(
        ends[0].1.contains(
            "budget exceeded: $0.0456 of $0.0400 (max_cost_usd of the run, in [defaults])"
        ),
        "{ends:?}"
    );
    assert_eq!(ends[1].0, TaskStatus::Failed);
    assert!(
        ends[1]
            .1
            .contains("budget exceeded: the run has spent $0.0456 of $0.0400"),
        "{ends:?}"
    );
    let calls = std::fs::read_to_string(log.path()).unwrap();
    assert_eq!(calls.lines().count(), 1, "one CLI ran: {calls}");
}

#[tokio::test]
async fn a_cap_that_is_not_a_positive_number_is_refused_at_its_line() {
    let project = agent_project("claude", "max_cost_usd = -1\n");
    let (code, _, stderr) = run_binary(project.dir.path(), &["check"], &[]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("agents.a.max_cost_usd"), "{stderr}");
    assert!(
        stderr.contains("must be a positive number of dollars"),
        "{stderr}"
    );
}
