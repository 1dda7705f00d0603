//! The dashboard (issue 13) in a real browser: headless Chromium from
//! Debian's `chromium`, driven by `tests/browser/dashboard.mjs` with
//! `playwright-core`, against a real `runner serve` on a free loopback port
//! in a real git repository. Screenshots go to `<target>/dashboard-artifacts/`.
//!
//! Without Chromium or `tests/browser/node_modules` the tests print why and
//! pass, unless `RUNNER_REQUIRE_TOOLCHAINS=1` (as `.ci/run` sets), when they
//! fail naming what to install.

use crate::dashboard_support::{
    Driver, base_url, browser_tools, get, get_json, newest_run, project, project_with, run_status,
};
use crate::handoff::{Server, free_port};
use crate::ids::{history_db, isolated_project};
use crate::pipelines::run_binary;
use serde_json::Value;
use std::time::Duration;

#[tokio::test]
async fn serves_the_page_with_a_policy_and_answers_the_json_endpoints_from_the_history() {
    let project = project();
    let dir = project.path();
    let server = Server::start(dir, &[]).await;
    let mut ids = Vec::new();
    for (args, code) in [
        (&["run"][..], 0),
        (&["run", "bad"][..], 1),
        (&["run"][..], 0),
    ] {
        let (exit, _, stderr) = run_binary(dir, args, &[]).await;
        assert_eq!(exit, code, "{stderr}");
        ids.push(newest_run(dir));
    }

    // The page and its modules, with the policy.
    let (status, head, body) = get(dir, "/", "").await;
    assert_eq!(status, 200);
    assert!(body.contains("/assets/app.js"), "{body}");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    let (status, head, _) = get(dir, "/assets/app.js", "").await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/javascript"),
        "{head}"
    );

    // Runs: newest first, paged, filtered.
    let page = get_json(dir, "/api/runs?limit=2").await;
    assert_eq!(page["total"], 3);
    let listed: Vec<&str> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()]);
    let failed = get_json(dir, "/api/runs?status=failed").await;
    assert_eq!(failed["total"], 1);
    assert_eq!(failed["runs"][0]["id"], ids[1]);
    assert_eq!(failed["runs"][0]["pipeline"], "bad");
    let older = get_json(dir, "/api/runs?pipeline=default&limit=1&offset=1").await;
    assert_eq!(older["total"], 2);
    assert_eq!(older["runs"][0]["id"], ids[0]);
    let (status, _, body) = get(dir, "/api/runs?limit=ten", "").await;
    assert_eq!(status, 400);
    assert!(body.contains("`limit` must be a whole number"), "{body}");

    // A run, its logs as JSON and as text, a batch's diff.
    let detail = get_json(dir, &format!("/api/runs/{}", ids[0])).await;
    assert_eq!(detail["run"]["status"], "completed");
    let logs = get_json(dir, &format!("/api/runs/{}/logs?task=compile", ids[0])).await;
    let text: String = logs["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert!(
        text.contains("\u{1b}[32mbuilt ok\u{1b}[0m\ndashboard-log-marker\n"),
        "{text:?}"
    );
    let (status, _, raw) = get(
        dir,
        &format!("/api/runs/{}/logs.txt?task=compile", ids[0]),
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(raw.contains("dashboard-log-marker"), "{raw}");
    let diff = get_json(dir, &format!("/api/runs/{}/batches/write/diff", ids[0])).await;
    assert_eq!(diff["files"][0]["path"], "notes.txt", "{diff}");
    assert_eq!(diff["files"][0]["status"], "added");
    assert_eq!(diff["files"][0]["additions"], 1);
    assert!(
        diff["files"][0]["patch"]
            .as_str()
            .unwrap()
            .contains("+a line from the batch")
    );
    let (status, _, body) = get(dir, &format!("/api/runs/{}/batches/nope/diff", ids[0]), "").await;
    assert_eq!(status, 404);
    assert!(body.contains("no batch `nope`"), "{body}");
    let pipelines = get_json(dir, "/api/pipelines").await;
    let default = pipelines["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "default")
        .unwrap();
    assert_eq!(
        default["batches"][2]["depends_on"],
        serde_json::json!(["build", "write"])
    );

    // Another origin gets nothing.
    let (status, _, _) = get(dir, "/api/runs", "Origin: http://evil.example\r\n").await;
    assert_eq!(status, 403);
    let (status, _, _) = get(dir, "/", "Origin: http://evil.example\r\n").await;
    assert_eq!(status, 403);
    server.stop().await;
}

#[tokio::test]
async fn a_batch_of_more_tasks_than_a_page_lists_them_all_page_by_page() {
    let Some(tools) = browser_tools() else { return };
    let values: Vec<String> = (0..1200).map(|i| format!("\"v{i}\"")).collect();
    let many = format!(
        "\n[[pipelines.many.batches]]\nid = \"wide\"\ntype = \"matrix\"\nwith = {{ parameter = \"n\", values = [{}] }}\n[[pipelines.many.batches.tasks]]\nid = \"t\"\ntype = \"exec\"\nconfig = {{ command = \"true\" }}\n",
        values.join(", ")
    );
    let project = project_with(&format!("\n{many}"));
    let dir = project.path();
    let server = Server::start(dir, &[]).await;
    let printed = Driver::start(&tools, "pager", &base_url(dir), &[("DASH_TASKS", "1200")])
        .finish()
        .await;
    server.stop().await;
    let shown = printed
        .iter()
        .find(|v| v["pages"].is_array())
        .expect("the script paged");
    let pages: Vec<(u64, String)> = shown["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        pages,
        [
            (500, "tasks 1–500 of 1200".to_string()),
            (500, "tasks 501–1000 of 1200".to_string()),
            (200, "tasks 1001–1200 of 1200".to_string()),
        ]
    );
    assert_eq!(shown["back"], "tasks 501–1000 of 1200");
}

#[tokio::test]
async fn a_past_run_keeps_the_edges_it_ran_with_after_runner_toml_changes() {
    let project = project();
    let dir = project.path();
    let (exit, _, stderr) = run_binary(dir, &["run"], &[]).await;
    assert_eq!(exit, 0, "{stderr}");
    let run = newest_run(dir);
    // `report` no longer waits for `build` and `write`.
    let toml = std::fs::read_to_string(dir.join("runner.toml")).unwrap();
    let changed = toml.replace("depends_on = [\"build\", \"write\"]\n", "");
    assert_ne!(changed, toml);
    std::fs::write(dir.join("runner.toml"), changed).unwrap();
    let server = Server::start(dir, &[]).await;
    let pipelines = get_json(dir, "/api/pipelines").await;
    let default = pipelines["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "default")
        .unwrap();
    assert!(
        default["batches"][2]["depends_on"]
            .as_array()
            .is_none_or(|deps| deps.is_empty()),
        "the configuration changed: {pipelines}"
    );
    let detail = get_json(dir, &format!("/api/runs/{run}")).await;
    let edges: Vec<(String, Value)> = detail["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["batch_id"].as_str().unwrap().to_string(),
                b["depends_on"].clone(),
            )
        })
        .collect();
    assert_eq!(
        edges,
        [
            ("build".to_string(), serde_json::json!([])),
            ("write".to_string(), serde_json::json!([])),
            ("report".to_string(), serde_json::json!(["build", "write"])),
        ],
        "the run's own edges: {detail}"
    );
    server.stop().await;
}

#[tokio::test]
async fn starts_the_default_pipeline_from_the_page_and_shows_its_graph_logs_and_diff() {
    let Some(tools) = browser_tools() else { return };
    let project = project();
    let dir = project.path();
    let server = Server::start(dir, &[]).await;
    let driver = Driver::start(
        &tools,
        "pipeline",
        &base_url(dir),
        &[
            ("DASH_PIPELINE", "default"),
            ("DASH_BATCHES", "3"),
            ("DASH_LOG_BATCH", "build"),
            ("DASH_LOG_TASK", "compile"),
            ("DASH_LOG_TEXT", "dashboard-log-marker"),
            ("DASH_DIFF_BATCH", "write"),
            ("DASH_DIFF_PATH", "notes.txt"),
            ("DASH_DIFF_TEXT", "+a line from the batch"),
        ],
    );
    let printed = driver.finish().await;
    let run = printed
        .iter()
        .find_map(|v| v["completed"].as_str())
        .expect("the script saw the run complete")
        .to_string();
    // What the page showed is what the history holds.
    assert_eq!(newest_run(dir), run);
    assert_eq!(run_status(dir, &run), "completed");
    server.stop().await;
}

#[tokio::test]
async fn sends_an_agent_prompt_from_the_page_and_shows_the_conversation_and_its_cost() {
    let Some(tools) = browser_tools() else { return };
    let project = project();
    let dir = project.path();
    let server = Server::start(dir, &[]).await;
    let driver = Driver::start(
        &tools,
        "agent",
        &base_url(dir),
        &[("DASH_AGENT", "reviewer")],
    );
    let printed = driver.finish().await;
    let shown = printed
        .iter()
        .find(|v| v["cost"].is_string())
        .expect("the script read the cost");
    // The cost on the page is the recorded turn's.
    let conn = rusqlite::Connection::open(history_db(dir)).unwrap();
    let (prompt, cost): (String, f64) = conn
        .query_row(
            "SELECT prompt, cost_usd FROM agent_turns ORDER BY first_seq DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(prompt, "Say hello from the dashboard.");
    assert_eq!(shown["cost"], format!("${cost:.4}"));
    server.stop().await;
}

#[tokio::test]
async fn a_permission_prompt_shows_on_every_open_dashboard_and_one_answer_reaches_the_agent() {
    let Some(tools) = browser_tools() else { return };
    let log = tempfile::NamedTempFile::new().unwrap();
    let transcript = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/agents/claude/stdio-permission-allow-write.jsonl");
    let agent = format!(
        "\n[agents.approver]\nadapter = \"claude\"\ncommand = {:?}\noptions = {{ permission_prompts = true }}\nenv = {{ FAKE_AGENT_TRANSCRIPT = {:?}, FAKE_AGENT_STDIN_LOG = {:?} }}\n",
        crate::ids::fake_claude(),
        transcript.display().to_string(),
        log.path().display().to_string()
    );
    let project = project_with(&agent);
    let dir = project.path();
    let server = Server::start(dir, &[]).await;
    let printed = Driver::start(
        &tools,
        "approval",
        &base_url(dir),
        &[("DASH_AGENT", "approver")],
    )
    .finish()
    .await;
    assert!(printed.iter().any(|v| v["approved"] == true), "{printed:?}");
    server.stop().await;
    // What the CLI read: the prompt, then the allow the second tab sent.
    let input: Vec<Value> = std::fs::read_to_string(log.path())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(input.len(), 2, "{input:?}");
    assert_eq!(input[0]["message"]["content"], "Write hello.txt.");
    assert_eq!(input[1]["response"]["response"]["behavior"], "allow");
    // The history keeps who answered.
    let conn = rusqlite::Connection::open(history_db(dir)).unwrap();
    let decided: String = conn
        .query_row(
            "SELECT json FROM events WHERE type = 'approval_decided'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(
        decided.contains("\"decided_by\":\"runner dashboard\""),
        "{decided}"
    );
}

#[tokio::test]
async fn shows_an_agents_queue_by_priority_and_interrupts_its_commands_from_the_page() {
    let Some(tools) = browser_tools() else { return };
    let project = project();
    let dir = project.path();
    // Slow enough that the first command is still running when the second is queued.
    let server = Server::start(dir, &[("FAKE_AGENT_DELAY", "1")]).await;
    let printed = Driver::start(
        &tools,
        "interrupt",
        &base_url(dir),
        &[("DASH_AGENT", "reviewer")],
    )
    .finish()
    .await;
    let ids: Vec<String> = printed
        .iter()
        .find_map(|v| v["interrupted"].as_array().cloned())
        .expect("the script interrupted both")
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect();
    // Stopping flushes the history.
    server.stop().await;
    let conn = rusqlite::Connection::open(history_db(dir)).unwrap();
    for id in &ids {
        let status: String = conn
            .query_row(
                "SELECT status FROM agent_turns WHERE command_id = ?1",
                [id],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(status, "interrupted", "{id}");
    }
}

#[tokio::test]
async fn aborts_a_long_run_from_the_page_and_shows_it_aborted() {
    let Some(tools) = browser_tools() else { return };
    let project = project();
    let dir = project.path();
    let server = Server::start(dir, &[]).await;
    let driver = Driver::start(
        &tools,
        "abort",
        &base_url(dir),
        &[("DASH_PIPELINE", "slow")],
    );
    let printed = driver.finish().await;
    let run = printed
        .iter()
        .find_map(|v| v["aborted"].as_str())
        .expect("the script saw the run aborted")
        .to_string();
    assert_eq!(run_status(dir, &run), "aborted");
    server.stop().await;
}

#[tokio::test]
async fn reconnects_after_the_server_is_killed_and_restarted_and_misses_no_event() {
    let Some(tools) = browser_tools() else { return };
    let project = project();
    let dir = project.path();
    let mut server = Some(Server::start(dir, &[]).await);
    let mut driver = Driver::start(
        &tools,
        "reconnect",
        &base_url(dir),
        &[("DASH_PIPELINE", "default"), ("DASH_BATCHES", "3")],
    );
    while let Some(wait) = driver.next_wait().await {
        match wait.as_str() {
            "kill" => {
                server.take().unwrap().kill().await;
                driver.answer("killed").await;
            }
            "restart and run while the page is away" => {
                server = Some(Server::start(dir, &[]).await);
                // Handed to the restarted server: its events happen while
                // the page waits to reconnect.
                let (code, _, stderr) = run_binary(dir, &["run"], &[]).await;
                assert_eq!(code, 0, "{stderr}");
                assert!(stderr.contains("handed to runner serve"), "{stderr}");
                driver.answer(&newest_run(dir)).await;
            }
            other => panic!("the browser script waits for `{other}`"),
        }
    }
    let printed = driver.finish().await;
    let after = printed
        .iter()
        .find(|v| v["after"].is_object())
        .expect("the script reported what it saw");
    assert_eq!(after["after"]["gaps"], 0, "{after}");
    assert!(after["after"]["connects"].as_u64().unwrap() >= 2, "{after}");
    server.unwrap().stop().await;
}

#[tokio::test]
async fn asks_for_the_token_and_keeps_it_for_the_tab_only() {
    let Some(tools) = browser_tools() else { return };
    let project =
        project_with("token_env = \"DASH_TEST_TOKEN\"\nallow_loopback_without_token = false");
    let dir = project.path();
    let server = Server::start(dir, &[("DASH_TEST_TOKEN", "s3cret-token")]).await;
    let printed = Driver::start(
        &tools,
        "token",
        &base_url(dir),
        &[("DASH_TOKEN", "s3cret-token")],
    )
    .finish()
    .await;
    let seen = printed
        .iter()
        .find(|v| v["stored"].is_string())
        .expect("the script read the storage");
    assert_eq!(seen["stored"], "s3cret-token");
    assert_eq!(seen["local"], Value::Null, "{seen}");
    assert!(!seen["url"].as_str().unwrap().contains("s3cret"), "{seen}");
    server.stop().await;
}

#[tokio::test]
async fn a_page_from_another_origin_cannot_reach_the_server() {
    let Some(tools) = browser_tools() else { return };
    let project = project();
    let dir = project.path();
    let server = Server::start(dir, &[]).await;
    let printed = Driver::start(&tools, "foreign", &base_url(dir), &[])
        .finish()
        .await;
    let seen = printed
        .iter()
        .find(|v| v["ws"].is_string())
        .expect("the script tried the WebSocket");
    assert_ne!(seen["ws"], "open", "{seen}");
    // The refusal is in the connection audit.
    let conn = rusqlite::Connection::open(history_db(dir)).unwrap();
    let mut rejected = 0;
    for _ in 0..100 {
        rejected = conn
            .query_row(
                "SELECT COUNT(*) FROM connections WHERE action = 'rejected' AND detail LIKE '403%'",
                [],
                |row| row.get::<_, i64>(0),
            )
            .unwrap();
        if rejected > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rejected > 0, "no refused connection in the audit");
    server.stop().await;
}

/// The benchmark: prints figures, asserts nothing about time.
/// `cargo test -p runner-tests --test all -- --ignored --nocapture dashboard::benchmark`
#[tokio::test]
#[ignore = "a benchmark: prints figures (run with --ignored --nocapture)"]
async fn benchmark_the_run_view_of_2000_tasks_and_a_log_of_100000_lines() {
    use std::fmt::Write as _;
    let Some(tools) = browser_tools() else { return };
    let addr = format!("127.0.0.1:{}", free_port());
    let mut toml = format!(
        "version = 1\n\n[defaults]\nstate_dir = \"state\"\nconcurrency = 8\n\n[plugins.chaos]\npath = {:?}\n\n\
         [server]\nlisten = \"{addr}\"\n\n[[pipelines.big.batches]]\nid = \"lines\"\n\n\
         [[pipelines.big.batches.tasks]]\nid = \"print\"\ntype = \"exec\"\nconfig = {{ command = \"seq 100000\" }}\n",
        crate::support::plugin("chaos")
    );
    for batch in 0..4 {
        write!(
            toml,
            "\n[[pipelines.big.batches]]\nid = \"part{batch}\"\ntype = \"parallel\"\ndepends_on = [\"lines\"]\n"
        )
        .unwrap();
        for task in 0..500 {
            write!(
                toml,
                "\n[[pipelines.big.batches.tasks]]\nid = \"t{batch}-{task}\"\ntype = \"chaos\"\n"
            )
            .unwrap();
        }
    }
    // A project with the shared compile cache, and this file instead of its own.
    let project = isolated_project("");
    let dir = project.path();
    std::fs::write(dir.join("runner.toml"), toml).unwrap();
    let server = Server::start(dir, &[]).await;
    let printed = Driver::start(
        &tools,
        "bench",
        &format!("http://{addr}"),
        &[
            ("DASH_PIPELINE", "big"),
            ("DASH_BATCHES", "5"),
            ("DASH_LOG_TASK", "print"),
            ("DASH_LOG_LINES", "100000"),
        ],
    )
    .finish()
    .await;
    println!("dashboard benchmark (2,000 tasks, 100,000 log lines):");
    for figure in printed.iter().filter(|v| v["figure"].is_string()) {
        println!("  {figure}");
    }
    server.stop().await;
}
