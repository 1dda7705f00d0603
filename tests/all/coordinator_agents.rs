//! `runner run --queue` with agent tasks: real `runner worker` processes
//! run the agent's turn (the real adapter, a fake CLI replaying a recorded
//! transcript), seen live by the coordinator as a local turn is; the
//! agent's `concurrency` holds across workers and its `queue_limit` across
//! runs. Skipped without PostgreSQL unless
//! `RUNNER_REQUIRE_TOOLCHAINS=1`.

use crate::agents::fake;
use crate::coordinator::{last_run, project, run_on};
use crate::queue::{Db, fresh, url};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;

/// The session the fake claude's transcript reports.
const SESSION: &str = "65206fb7-610c-417e-89cd-7590603606a1";

/// An agent task `id` for agent `agent`, with `extra` config keys.
fn agent_task(id: &str, agent: &str, prompt: &str, extra: &str) -> String {
    format!(
        "[[pipelines.default.batches.tasks]]\nid = \"{id}\"\ntype = \"agent\"\nconfig = {{ agent = \"{agent}\", prompt = \"{prompt}\"{extra} }}\n"
    )
}

/// The task `id` of `runner show last --json`.
fn execution<'a>(detail: &'a Value, id: &str) -> &'a Value {
    detail["executions"]
        .as_array()
        .unwrap_or_else(|| panic!("{detail:#}"))
        .iter()
        .find(|task| task["execution_id"] == id)
        .unwrap_or_else(|| panic!("runner show has task {id}: {detail:#}"))
}

/// Every queue task with its kind and the worker that ran it last.
async fn ran_by(db: &Db) -> Vec<(String, String, Option<String>)> {
    let rows = db
        .queue
        .client()
        .query(
            "SELECT payload->>'kind', state, lease_owner FROM tasks ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// A CLI that notes its start and end (nanoseconds) in a file of its own
/// under `dir`, around the fake claude.
fn noting_cli(dir: &Path) -> String {
    let cli = dir.join("claude-noting");
    std::fs::write(
        &cli,
        format!(
            "#!/bin/sh\nf={dir}/span-$$\ndate +%s%N > $f\n{fake} \"$@\"\ncode=$?\ndate +%s%N >> $f\nexit $code\n",
            dir = dir.display(),
            fake = fake("claude")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cli, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    cli.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_task_runs_on_a_worker_and_the_next_task_resumes_its_session() {
    let Some(mut db) = fresh("coord_agent").await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let args = logs.path().join("args");
    let mut pipeline = format!(
        "[agents.a]\nadapter = \"claude\"\ncommand = {:?}\nenv = {{ FAKE_AGENT_ARGS_LOG = {:?} }}\n\
         [[pipelines.default.batches]]\nid = \"b\"\n",
        fake("claude"),
        args.display().to_string()
    );
    pipeline.push_str(&agent_task("first", "a", "start", ""));
    pipeline.push_str(&agent_task("second", "a", "go on", ", resume = \"first\""));
    let project = project(&pipeline, 2);
    let worker = db.start("w1", "3s");

    let (code, stdout, stderr) = run_on(&db, project.path()).await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}\n{}", db.logs());

    let ran = ran_by(&db).await;
    assert_eq!(
        ran.len(),
        2,
        "both agent tasks went through the queue: {ran:?}"
    );
    for (kind, state, owner) in &ran {
        assert_eq!(kind, "agent");
        assert_eq!(state, "completed");
        assert_eq!(owner.as_deref(), Some(worker.as_str()), "{ran:?}");
    }
    let calls: Vec<Vec<String>> = std::fs::read_to_string(&args)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(calls.len(), 2, "the CLI ran twice: {calls:?}");
    assert!(!calls[0].contains(&"--resume".to_string()), "{calls:?}");
    let at = calls[1]
        .iter()
        .position(|a| a == "--resume")
        .expect("the second call resumes");
    assert_eq!(calls[1][at + 1], SESSION);
    assert_eq!(calls[1].last().unwrap(), "go on");

    let detail = last_run(project.path()).await;
    assert_eq!(detail["run"]["status"], "completed", "{detail:#}");
    for id in ["first", "second"] {
        let result = &execution(&detail, id)["result"];
        assert_eq!(result["session_id"], SESSION, "{detail:#}");
        assert_eq!(result["agent"], "a", "{detail:#}");
        assert!(
            result["usage"]["output_tokens"].as_u64().unwrap_or(0) > 0,
            "the tokens the agent reported: {detail:#}"
        );
        assert!(
            result["tools_used"]
                .as_array()
                .is_some_and(|tools| tools.iter().any(|t| t == "Write")),
            "{detail:#}"
        );
    }
}

/// A CLI that prints the first line of the recorded claude transcript,
/// waits for `gate` to exist, then prints the rest of it.
fn gated_cli(dir: &Path, gate: &Path) -> String {
    let transcript = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/agents/claude/success-bash-write-read.jsonl");
    let cli = dir.join("claude-gated");
    std::fs::write(
        &cli,
        format!(
            "#!/bin/sh
t={t}
head -n 1 \"$t\"
{wait}
tail -n +2 \"$t\"
",
            t = transcript.display(),
            wait = crate::coordinator_output::wait_for_file(gate),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cli, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    cli.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_turn_on_a_worker_is_seen_live_by_the_coordinator_and_kept_in_its_history() {
    let Some(mut db) = fresh("coord_agent_live").await else {
        return;
    };
    let marks = tempfile::tempdir().unwrap();
    let gate = marks.path().join("go");
    let pipeline = format!(
        "[agents.a]\nadapter = \"claude\"\ncommand = {:?}\n\
         [[pipelines.default.batches]]\nid = \"b\"\n{}",
        gated_cli(marks.path(), &gate),
        agent_task("gated", "a", "go", ""),
    );
    let project = project(&pipeline, 1);
    let worker = db.start("w1", "3s");
    let out = marks.path().join("run.out");
    let coordinator = crate::coordinator_output::coordinate(&db, project.path(), &out);

    // The CLI goes on only once its first line's activity reached the coordinator.
    let session = format!("gated: session {SESSION}");
    crate::coordinator_output::until_printed(&out, &session, || db.logs()).await;
    let printed = std::fs::read_to_string(&out).unwrap();
    assert!(
        !printed.contains("says: I'll complete these tasks"),
        "the CLI is still waiting: {printed}"
    );
    let running = printed
        .lines()
        .find(|line| line.contains("→ a: running"))
        .unwrap_or_else(|| panic!("the command's start is said: {printed}"));
    std::fs::write(&gate, "").unwrap();
    let code = crate::coordinator_output::exits(coordinator).await;
    let printed = std::fs::read_to_string(&out).unwrap();
    assert_eq!(code, Some(0), "{printed}\n{}", db.logs());
    assert!(
        printed.contains("gated: says: I'll complete these tasks for you."),
        "{printed}"
    );
    assert!(printed.contains("gated: uses Write"), "{printed}");
    let ran = ran_by(&db).await;
    assert_eq!(
        ran,
        [("agent".into(), "completed".into(), Some(worker))],
        "it ran on the worker"
    );

    let detail = last_run(project.path()).await;
    let turns = detail["agent_turns"].as_array().expect("agent_turns");
    assert_eq!(turns.len(), 1, "one turn: {detail:#}");
    let turn = &turns[0];
    assert_eq!(turn["task_id"], "gated", "{detail:#}");
    assert_eq!(turn["agent"], "a", "{detail:#}");
    assert_eq!(turn["status"], "completed", "{detail:#}");
    assert_eq!(turn["prompt"], "go", "{detail:#}");
    assert_eq!(turn["agent_session_id"], SESSION, "{detail:#}");
    assert!(
        turn["output_tokens"].as_u64().unwrap_or(0) > 0,
        "the usage it reported: {detail:#}"
    );
    assert!(
        turn["summary"].as_str().is_some_and(|s| !s.is_empty()),
        "{detail:#}"
    );
    let command = turn["command_id"].as_str().unwrap();
    assert!(
        running.contains(&format!("command {command} → a: running")),
        "the command said live is the one in the history: {running}"
    );
    let result = &execution(&detail, "gated")["result"];
    assert_eq!(result["command_id"], command, "{detail:#}");
    assert_eq!(result["session_id"], SESSION, "{detail:#}");
    assert!(result.get("streamed").is_none(), "{detail:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_turn_whose_worker_died_ends_failed_and_the_retry_is_a_turn_of_its_own() {
    let Some(mut db) = fresh("coord_agent_retry").await else {
        return;
    };
    let marks = tempfile::tempdir().unwrap();
    let never = marks.path().join("never");
    // The first call prints its first line and waits; the next replays it all.
    let transcript = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/agents/claude/success-bash-write-read.jsonl");
    let cli = marks.path().join("claude-once");
    std::fs::write(
        &cli,
        format!(
            "#!/bin/sh\nt={t}\nif mkdir {first} 2>/dev/null; then head -n 1 \"$t\"; {wait}; exit 1; fi\ncat \"$t\"\n",
            t = transcript.display(),
            first = marks.path().join("first").display(),
            wait = crate::coordinator_output::wait_for_file(&never),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cli, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pipeline = format!(
        "[agents.a]\nadapter = \"claude\"\ncommand = {:?}\n\
         [[pipelines.default.batches]]\nid = \"b\"\n{}",
        cli.display().to_string(),
        agent_task("retried", "a", "go", ""),
    );
    let project = project(&pipeline, 1);
    let first = db.start("w1", "1s");
    let out = marks.path().join("run.out");
    let coordinator = crate::coordinator_output::coordinate(&db, project.path(), &out);
    let session = format!("retried: session {SESSION}");
    crate::coordinator_output::until_printed(&out, &session, || db.logs()).await;

    // The first worker dies; the second takes the task once its lease expired.
    db.kill(&first);
    let second = db.start("w2", "1s");
    let code = crate::coordinator_output::exits(coordinator).await;
    // Should the first call have outlived its worker.
    std::fs::write(&never, "").unwrap();
    let printed = std::fs::read_to_string(&out).unwrap();
    assert_eq!(code, Some(0), "{printed}\n{}", db.logs());

    let detail = last_run(project.path()).await;
    let turns = detail["agent_turns"].as_array().expect("agent_turns");
    assert_eq!(turns.len(), 2, "a turn per attempt: {detail:#}");
    assert_eq!(turns[0]["status"], "failed", "{detail:#}");
    assert_eq!(
        turns[0]["error"],
        format!("its worker was lost (attempt 1): attempt 2 was claimed by worker {second}"),
        "{detail:#}"
    );
    assert_eq!(turns[1]["status"], "completed", "{detail:#}");
    assert_eq!(turns[1]["agent_session_id"], SESSION, "{detail:#}");
    assert_ne!(turns[0]["command_id"], turns[1]["command_id"]);
    assert_eq!(
        execution(&detail, "retried")["result"]["command_id"],
        turns[1]["command_id"],
        "{detail:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_concurrency_of_one_holds_across_three_workers() {
    let Some(mut db) = fresh("coord_agent_pool").await else {
        return;
    };
    let spans = tempfile::tempdir().unwrap();
    let cli = noting_cli(spans.path());
    let mut pipeline = format!(
        "[agents.solo]\nadapter = \"claude\"\ncommand = {cli:?}\nconcurrency = 1\n\
         env = {{ FAKE_AGENT_DELAY = \"0.02\" }}\n\
         [[pipelines.default.batches]]\nid = \"wide\"\ntype = \"parallel\"\n"
    );
    for n in 1..=4 {
        pipeline.push_str(&agent_task(&format!("t{n}"), "solo", "go", ""));
    }
    let project = project(&pipeline, 4);
    for name in ["w1", "w2", "w3"] {
        db.start(name, "3s");
    }

    let (code, stdout, stderr) = run_on(&db, project.path()).await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}\n{}", db.logs());

    let mut intervals: Vec<(u128, u128)> = std::fs::read_dir(spans.path())
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("span-"))
        .map(|entry| {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let times: Vec<u128> = text.lines().map(|l| l.parse().unwrap()).collect();
            assert_eq!(times.len(), 2, "the CLI started and ended: {text}");
            (times[0], times[1])
        })
        .collect();
    assert_eq!(intervals.len(), 4, "the CLI ran once per task");
    intervals.sort();
    for pair in intervals.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "two commands of agent `solo` ran at once under concurrency = 1: {intervals:?}"
        );
    }
    let ran = ran_by(&db).await;
    assert_eq!(ran.len(), 4, "{ran:?}");
    assert!(
        ran.iter()
            .all(|(kind, state, owner)| kind == "agent" && state == "completed" && owner.is_some())
    );
    // All four were queued at once: the queue held them back, not the coordinator.
    let row = db
        .queue
        .client()
        .query_one("SELECT max(created_at) < min(finished_at) FROM tasks", &[])
        .await
        .unwrap();
    assert!(
        row.get::<_, bool>(0),
        "every task was queued before the first ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_agent_queue_refuses_a_task_of_another_run_with_the_local_message() {
    let Some(mut db) = fresh("coord_agent_limit").await else {
        return;
    };
    let agent = format!(
        "[agents.q]\nadapter = \"claude\"\ncommand = {:?}\nqueue_limit = 1\n\
         [[pipelines.default.batches]]\nid = \"b\"\n",
        fake("claude")
    );
    let holding = project(
        &format!("{agent}{}", agent_task("hold", "q", "wait", "")),
        1,
    );
    let refused = project(
        &format!("{agent}{}", agent_task("late", "q", "me too", "")),
        1,
    );

    // No worker yet: the first run's task waits in agent `q`'s queue.
    let mut first = tokio::process::Command::new(crate::pipelines::runner_binary())
        .args(["run", "--queue", &url(), "--schema", &db.schema])
        .current_dir(holding.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    db.until("the first run's agent task is queued", |tasks| {
        tasks.len() == 1 && tasks[0].state == "queued"
    })
    .await;

    let (code, stdout, stderr) = run_on(&db, refused.path()).await;
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    let detail = last_run(refused.path()).await;
    let late = execution(&detail, "late");
    assert_eq!(late["status"], "failed", "{detail:#}");
    assert_eq!(
        late["error"], "agent `q` has 1 commands waiting, its `queue_limit`; try again later",
        "{detail:#}"
    );
    assert_eq!(
        db.queue.tasks().await.unwrap().len(),
        1,
        "nothing more was queued"
    );

    // A worker takes the waiting one, and the first run completes.
    db.start("w1", "3s");
    let status = first.wait().await.unwrap();
    assert!(status.success(), "{}", db.logs());
    let detail = last_run(holding.path()).await;
    assert_eq!(execution(&detail, "hold")["result"]["session_id"], SESSION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_cli_the_worker_lacks_fails_as_offline() {
    let Some(mut db) = fresh("coord_agent_offline").await else {
        return;
    };
    let pipeline = format!(
        "[agents.gone]\nadapter = \"claude\"\ncommand = \"no-such-agent-cli-3f9\"\n\
         [[pipelines.default.batches]]\nid = \"b\"\n{}",
        agent_task("ask", "gone", "hello", "")
    );
    let project = project(&pipeline, 1);
    let worker = db.start("w1", "3s");

    let (code, stdout, stderr) = run_on(&db, project.path()).await;
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}\n{}", db.logs());
    let detail = last_run(project.path()).await;
    let ask = execution(&detail, "ask");
    assert_eq!(ask["status"], "failed", "{detail:#}");
    assert_eq!(
        ask["error"],
        "agent `gone` is offline: its command `no-such-agent-cli-3f9` was not found (set `command` in [agents.gone] or put it on PATH)",
        "{detail:#}"
    );
    let ran = ran_by(&db).await;
    assert_eq!(
        ran,
        [("agent".to_string(), "failed".to_string(), Some(worker))],
        "the worker found the CLI missing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_worker_reports_spent_counts_against_the_runs_budget() {
    let Some(mut db) = fresh("coord_agent_budget").await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let args = logs.path().join("args");
    // One command at a time: whichever task goes first spends $0.0456 of
    // the run's $0.04 on its worker; the other must not start its CLI at all.
    let pipeline = format!(
        "[agents.a]\nadapter = \"claude\"\ncommand = {:?}\nconcurrency = 1\n\
         env = {{ FAKE_AGENT_ARGS_LOG = {:?} }}\n\
         [[pipelines.default.batches]]\nid = \"one\"\n{}\
         [[pipelines.default.batches]]\nid = \"two\"\n{}",
        fake("claude"),
        args.display().to_string(),
        agent_task("first", "a", "go", ""),
        agent_task("second", "a", "go", ""),
    );
    let project = project(&pipeline, 2);
    let toml = project.path().join("runner.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace("[defaults]\n", "[defaults]\nmax_cost_usd = 0.04\n"),
    )
    .unwrap();
    db.start("w1", "3s");
    db.start("w2", "3s");

    let (code, stdout, stderr) = run_on(&db, project.path()).await;
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}\n{}", db.logs());
    let detail = last_run(project.path()).await;
    let mut ends = [execution(&detail, "first"), execution(&detail, "second")];
    ends.sort_by_key(|task| {
        task["error"]
            .as_str()
            .is_some_and(|error| error.contains("did not start"))
    });
    assert_eq!(ends[0]["status"], "failed", "{detail:#}");
    assert_eq!(
        ends[0]["error"],
        "agent `a`: budget exceeded: $0.0456 of $0.0400 (max_cost_usd of the run, in [defaults])",
        "{detail:#}"
    );
    assert_eq!(
        ends[0]["result"]["usage"]["cost_usd"], 0.0455704,
        "{detail:#}"
    );
    assert_eq!(ends[1]["status"], "failed", "{detail:#}");
    let error = ends[1]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("budget exceeded: the run has spent $0.0456 of $0.0400"),
        "{detail:#}"
    );
    let calls = std::fs::read_to_string(&args).unwrap();
    assert_eq!(calls.lines().count(), 1, "one CLI ran: {calls}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_of_the_coordinator_stops_an_agent_on_its_worker_and_its_process_group() {
    let Some(mut db) = fresh("coord_agent_abort").await else {
        return;
    };
    let marker = crate::agents::unique("RUNNER_TEST_COORD_AGENT");
    let (key, value) = marker.split_once('=').unwrap();
    let pipeline = format!(
        "[agents.a]\nadapter = \"claude\"\ncommand = {:?}\nenv = {{ FAKE_AGENT_HANG = \"1\", {key} = \"{value}\" }}\n\
         [[pipelines.default.batches]]\nid = \"b\"\n{}",
        fake("claude"),
        agent_task("hang", "a", "wait", ""),
    );
    let project = project(&pipeline, 1);
    db.start("w1", "3s");

    let mut coordinator = tokio::process::Command::new(crate::pipelines::runner_binary())
        .args(["run", "--queue", &url(), "--schema", &db.schema])
        .current_dir(project.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + crate::coordinator::DEADLINE;
    while crate::agents::processes_with(&marker).len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the CLI and its child never started\n{}",
            db.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let pid = coordinator.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = tokio::time::timeout(crate::coordinator::DEADLINE, coordinator.wait())
        .await
        .expect("the coordinator exits after Ctrl-C")
        .unwrap();
    assert_eq!(
        exited.code(),
        Some(130),
        "aborted runs exit 130\n{}",
        db.logs()
    );
    crate::agents::none_left(&marker).await;
    let tasks = db
        .until("the task ended", |tasks| {
            tasks.len() == 1 && tasks[0].state == "failed"
        })
        .await;
    assert!(
        tasks[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .starts_with("cancelled"),
        "{tasks:?}"
    );
    let detail = last_run(project.path()).await;
    assert_eq!(detail["run"]["status"], "aborted", "{detail:#}");
    let turns = detail["agent_turns"].as_array().expect("agent_turns");
    assert_eq!(turns.len(), 1, "{detail:#}");
    assert_eq!(
        turns[0]["status"], "interrupted",
        "the turn on the worker ends as a local one: {detail:#}"
    );
    assert_eq!(turns[0]["agent_session_id"], SESSION, "{detail:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_relays_permission_prompts_runs_on_the_coordinator() {
    let Some(mut db) = fresh("coord_agent_prompts").await else {
        return;
    };
    let pipeline = format!(
        "[agents.asking]\nadapter = \"claude\"\ncommand = {:?}\n\
         options = {{ permission_prompts = true, permission_mode = \"default\" }}\n\
         [[pipelines.default.batches]]\nid = \"b\"\n{}",
        fake("claude"),
        agent_task("ask", "asking", "hello", "")
    );
    let project = project(&pipeline, 1);
    db.start("w1", "3s");

    let (code, stdout, stderr) = run_on(&db, project.path()).await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}\n{}", db.logs());
    let detail = last_run(project.path()).await;
    assert_eq!(
        execution(&detail, "ask")["result"]["session_id"],
        SESSION,
        "{detail:#}"
    );
    assert!(
        ran_by(&db).await.is_empty(),
        "its prompts are answered here, so it never went to the queue"
    );
}
