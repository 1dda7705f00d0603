//! The history database: real SQLite files in temp dirs, reopened, locked,
//! corrupted, and written by a process that gets `kill -9`.

use chrono::Utc;
use protocol::{
    Activity, BatchStatus, CommandStatus, EventKind, ExecutionState, LogLevel, MergeOutcome,
    Priority, RunReason, RunStatus, Stream, TaskStatus,
};
use runner::events::EventBus;
use runner::store::{
    ConnectionAudit, LogKind, Recorder, RecorderLock, Retention, Store, StoreError, StoreOptions,
};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn run_status(run: &str, status: RunStatus) -> EventKind {
    EventKind::RunStatus {
        run_id: run.into(),
        pipeline: "default".into(),
        status,
        message: None,
        error: None,
    }
}

fn batch_status(run: &str, batch: &str, status: BatchStatus, branch: Option<&str>) -> EventKind {
    EventKind::BatchStatus {
        run_id: run.into(),
        pipeline: "default".into(),
        batch_id: batch.into(),
        batch_name: format!("Batch {batch}"),
        status,
        branch: branch.map(str::to_string),
        error: None,
        summary: None,
        depends_on: Vec::new(),
    }
}

fn task_started(run: &str, batch: &str, task: &str, task_type: &str) -> EventKind {
    EventKind::TaskStarted {
        run_id: run.into(),
        batch_id: batch.into(),
        task_id: task.into(),
        task_type: task_type.into(),
        name: task.into(),
        priority: Priority::Normal,
        display_text: None,
    }
}

fn task_finished(
    run: &str,
    batch: &str,
    task: &str,
    status: TaskStatus,
    exit_code: Option<i32>,
) -> EventKind {
    let now = Utc::now();
    EventKind::TaskFinished {
        run_id: run.into(),
        batch_id: batch.into(),
        task_id: task.into(),
        task_type: "exec".into(),
        name: task.into(),
        status,
        started_at: Some(now - chrono::Duration::milliseconds(1500)),
        finished_at: now,
        duration_ms: 1500,
        result: Some(serde_json::json!({ "exit_code": exit_code })),
        error: (status != TaskStatus::Completed).then(|| "it failed".to_string()),
        exit_code,
    }
}

fn log(run: &str, task: Option<&str>, message: &str) -> EventKind {
    EventKind::Log {
        run_id: Some(run.into()),
        task_id: task.map(str::to_string),
        level: LogLevel::Info,
        source: "runner".into(),
        stream: None,
        message: message.into(),
    }
}

fn output(run: &str, task: &str, sequence: u64, data: &str) -> EventKind {
    EventKind::TerminalOutput {
        run_id: Some(run.into()),
        task_id: Some(task.into()),
        command_id: None,
        stream: Stream::Stdout,
        sequence,
        data: data.into(),
    }
}

fn command(run: &str, task: &str, id: &str, status: CommandStatus) -> EventKind {
    EventKind::CommandStatus {
        command_id: id.into(),
        agent: "claude".into(),
        status,
        priority: Priority::High,
        run_id: Some(run.into()),
        task_id: Some(task.into()),
        exit_code: (status == CommandStatus::Completed).then_some(0),
        error: None,
        prompt: (status == CommandStatus::Queued).then(|| "review the code".into()),
    }
}

fn activity(run: &str, task: &str, id: &str, activity: Activity) -> EventKind {
    EventKind::AgentActivity {
        command_id: id.into(),
        agent: "claude".into(),
        run_id: Some(run.into()),
        task_id: Some(task.into()),
        activity,
    }
}

fn script(run: &str, batch: &str, status: ExecutionState, exit_code: Option<i32>) -> EventKind {
    EventKind::ExecutionStatus {
        run_id: run.into(),
        batch_id: batch.into(),
        execution_id: format!("setup:{batch}"),
        reason: RunReason::SetupScript,
        command: "npm ci".into(),
        status,
        exit_code,
        error: None,
    }
}

/// Opens the store at `path`, with a bus numbered after it and a recorder.
pub(crate) fn open(path: &Path) -> (Store, Arc<EventBus>, Recorder) {
    let store = Store::open(path).unwrap_or_else(|err| panic!("{err}"));
    let bus = EventBus::new(store.last_seq() + 1);
    let recorder = Recorder::start(&store, &bus);
    (store, bus, recorder)
}

/// A whole run of two batches: tasks, scripts, logs, an agent turn, git.
pub(crate) fn publish_a_run(bus: &EventBus, run: &str) {
    bus.publish(run_status(run, RunStatus::Running));
    bus.publish(batch_status(run, "build", BatchStatus::Pending, None));
    bus.publish(batch_status(run, "agent", BatchStatus::Pending, None));
    bus.publish(batch_status(run, "build", BatchStatus::Running, None));
    bus.publish(EventKind::WorkspacePrepared {
        run_id: run.into(),
        batch_id: "build".into(),
        path: "/tmp/wt/build".into(),
        branch: Some(format!("runner/{run}-build")),
        base_commit: Some("a".repeat(40)),
        note: None,
    });
    bus.publish(script(run, "build", ExecutionState::Running, None));
    bus.publish(script(run, "build", ExecutionState::Completed, Some(0)));
    bus.publish(task_started(run, "build", "compile", "exec"));
    bus.publish(log(run, Some("compile"), "compiling"));
    bus.publish(output(run, "compile", 0, "line one\n"));
    bus.publish(output(run, "compile", 1, "line two\n"));
    bus.publish(task_finished(
        run,
        "build",
        "compile",
        TaskStatus::Completed,
        Some(0),
    ));
    bus.publish(task_started(run, "build", "test", "exec"));
    bus.publish(output(run, "test", 0, "1 failed\n"));
    bus.publish(task_finished(
        run,
        "build",
        "test",
        TaskStatus::Failed,
        Some(101),
    ));
    bus.publish(EventKind::RepoState {
        run_id: run.into(),
        batch_id: "build".into(),
        branch: format!("runner/{run}-build"),
        head_before: "a".repeat(40),
        head_after: "b".repeat(40),
        files_changed: 3,
    });
    bus.publish(batch_status(
        run,
        "build",
        BatchStatus::Completed,
        Some(&format!("runner/{run}-build")),
    ));
    bus.publish(EventKind::MergeStatus {
        run_id: run.into(),
        batch_id: "build".into(),
        branch: format!("runner/{run}-build"),
        target: "main".into(),
        status: MergeOutcome::Conflict,
        commit: None,
        conflicts: vec!["src/lib.rs".into()],
        error: Some("both changed src/lib.rs".into()),
    });
    bus.publish(batch_status(run, "agent", BatchStatus::Running, None));
    bus.publish(task_started(run, "agent", "fix", "agent"));
    bus.publish(command(run, "fix", "c1", CommandStatus::Queued));
    bus.publish(command(run, "fix", "c1", CommandStatus::Running));
    bus.publish(activity(
        run,
        "fix",
        "c1",
        Activity::SessionStarted {
            session_id: "sess-42".into(),
        },
    ));
    bus.publish(activity(
        run,
        "fix",
        "c1",
        Activity::AssistantMessage {
            text: "looking".into(),
        },
    ));
    bus.publish(activity(
        run,
        "fix",
        "c1",
        Activity::Usage {
            input_tokens: 1200,
            output_tokens: 300,
            cached_tokens: 800,
            cost_usd: Some(0.0125),
        },
    ));
    bus.publish(activity(
        run,
        "fix",
        "c1",
        Activity::FinalResult {
            summary: "fixed the test".into(),
            is_error: false,
        },
    ));
    bus.publish(command(run, "fix", "c1", CommandStatus::Completed));
    bus.publish(task_finished(
        run,
        "agent",
        "fix",
        TaskStatus::Completed,
        Some(0),
    ));
    bus.publish(batch_status(run, "agent", BatchStatus::Completed, None));
    bus.publish(run_status(run, RunStatus::Completed));
}

#[test]
fn shows_a_run_with_batches_executions_agent_turns_and_merges_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/history.db");
    {
        let (_store, bus, recorder) = open(&path);
        publish_a_run(&bus, "20260101-000000-aaaa");
        recorder.flush().unwrap();
    }
    let store = Store::open(&path).unwrap();
    let runs = store.list_runs(10).unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(
        (run.id.as_str(), run.status.as_str()),
        ("20260101-000000-aaaa", "completed")
    );
    assert_eq!((run.batches, run.tasks, run.tasks_failed), (2, 3, 1));
    assert!(run.duration().is_some());

    let detail = store.run_detail("20260101").unwrap();
    let build = &detail.batches[0];
    assert_eq!(build.batch_id, "build");
    assert_eq!(build.status, "completed");
    assert_eq!(
        build.branch.as_deref(),
        Some("runner/20260101-000000-aaaa-build")
    );
    assert_eq!(build.worktree.as_deref(), Some("/tmp/wt/build"));
    assert_eq!(build.head_before, Some("a".repeat(40)));
    assert_eq!(build.head_after, Some("b".repeat(40)));
    assert_eq!(build.files_changed, Some(3));

    let ids: Vec<(&str, &str, &str)> = detail
        .executions
        .iter()
        .map(|e| {
            (
                e.execution_id.as_str(),
                e.reason.as_str(),
                e.status.as_str(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        vec![
            ("setup:build", "setup_script", "completed"),
            ("compile", "task", "completed"),
            ("test", "task", "failed"),
            ("fix", "coding_agent", "completed"),
        ]
    );
    let test = &detail.executions[2];
    assert_eq!((test.exit_code, test.duration_ms), (Some(101), Some(1500)));
    assert_eq!(detail.executions[0].command.as_deref(), Some("npm ci"));

    let turn = &detail.agent_turns[0];
    assert_eq!(turn.agent_session_id.as_deref(), Some("sess-42"));
    assert_eq!(turn.summary.as_deref(), Some("fixed the test"));
    assert_eq!(
        turn.prompt.as_deref(),
        Some("review the code"),
        "the turn records its prompt"
    );
    assert_eq!(
        (turn.input_tokens, turn.output_tokens, turn.cached_tokens),
        (1200, 300, 800)
    );
    assert_eq!(turn.cost_usd, Some(0.0125));
    assert_eq!(turn.status, "completed");
    assert_eq!(detail.agent_totals(), (1200, 300, 800, Some(0.0125)));

    assert_eq!(detail.merges.len(), 1);
    assert_eq!(detail.merges[0].status, "conflict");
    assert_eq!(detail.merges[0].conflicts, vec!["src/lib.rs".to_string()]);

    let logs = store.logs(&run.id, None, 0, 100).unwrap();
    let texts: Vec<&str> = logs.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts,
        vec!["compiling", "line one\n", "line two\n", "1 failed\n"]
    );
    assert!(logs.windows(2).all(|w| w[0].seq < w[1].seq));
    let test_logs = store.logs(&run.id, Some("test"), 0, 100).unwrap();
    assert_eq!(test_logs.len(), 1);
    assert_eq!(test_logs[0].kind, LogKind::Output);
}

#[test]
fn resumes_events_by_sequence_number_after_reopening_and_numbers_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let first_last = {
        let (store, bus, recorder) = open(&path);
        publish_a_run(&bus, "run-one");
        recorder.flush().unwrap();
        store.last_seq()
    };
    assert_eq!(first_last, 30);
    let (store, bus, recorder) = open(&path);
    assert_eq!(store.last_seq(), first_last);
    assert_eq!(bus.publish(log("run-two", None, "hello")), first_last + 1);
    recorder.flush().unwrap();

    let resumed = store.events_after(25, 1000).unwrap();
    let seqs: Vec<u64> = resumed.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (26..=first_last + 1).collect::<Vec<_>>());
    assert!(
        matches!(resumed.last().unwrap().kind, EventKind::Log { ref message, .. } if message == "hello")
    );
    assert_eq!(store.events_after(0, 5).unwrap().len(), 5);
}

#[test]
fn a_file_that_is_not_a_database_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let err = Store::open(&path).err().expect("garbage must not open");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()) && text.contains("corrupt"),
        "{text}"
    );
}

#[test]
fn a_database_locked_by_another_connection_is_reported_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; CREATE TABLE mine (x);")
        .unwrap();
    let options = StoreOptions {
        busy_timeout: Duration::from_millis(50),
        ..StoreOptions::default()
    };
    let err = Store::open_with(&path, options.clone())
        .err()
        .expect("a locked database must not open");
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string().contains("locked by another process"),
        "{err}"
    );

    other
        .execute_batch("COMMIT; PRAGMA locking_mode = NORMAL;")
        .unwrap();
    drop(other);
    Store::open_with(&path, options).unwrap_or_else(|err| panic!("after the lock is gone: {err}"));
}

#[test]
fn a_writer_holding_the_lock_of_an_open_history_makes_a_second_open_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    drop(Store::open(&path).unwrap());
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE; INSERT INTO connections (time, client, peer, action) VALUES ('t', 'c', 'p', 'a');").unwrap();
    let options = StoreOptions {
        busy_timeout: Duration::from_millis(50),
        ..StoreOptions::default()
    };
    let err = Store::open_with(&path, options).err().expect("locked");
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
}

#[test]
fn prunes_old_logs_and_the_connection_audit_but_keeps_the_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let store = Store::open_with(
        &path,
        StoreOptions {
            retention: Retention {
                log_days: Some(7),
                audit_days: 30,
                max_bytes: None,
            },
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let bus = EventBus::new(store.last_seq() + 1);
    let recorder = Recorder::start(&store, &bus);
    publish_a_run(&bus, "old-run");
    store.audit_connection(ConnectionAudit {
        client: "dashboard".into(),
        peer: "127.0.0.1:5000".into(),
        action: "connected".into(),
        detail: None,
    });
    recorder.flush().unwrap();
    store.flush().unwrap();
    assert_eq!(store.connections(10).unwrap().len(), 1);

    let pruned = store
        .prune_at(Utc::now() + chrono::Duration::days(8))
        .unwrap();
    assert_eq!((pruned.logs, pruned.connections), (4, 0));
    assert!(store.logs("old-run", None, 0, 100).unwrap().is_empty());
    assert_eq!(store.list_runs(10).unwrap().len(), 1);

    let pruned = store
        .prune_at(Utc::now() + chrono::Duration::days(31))
        .unwrap();
    assert_eq!(pruned.connections, 1);
    assert!(store.connections(10).unwrap().is_empty());
    assert_eq!(store.run_detail("old-run").unwrap().executions.len(), 4);
}

/// A history (logs kept the default 30 days) with `old-run` recorded 10
/// days ago (its rows' times moved back by SQL) and `new-run` now.
fn a_history_with_an_old_and_a_new_run(path: &Path) -> Store {
    {
        let (_store, bus, recorder) = open(path);
        publish_a_run(&bus, "old-run");
        recorder.flush().unwrap();
        let conn = rusqlite::Connection::open(path).unwrap();
        let ten_days_ago = protocol::format_time(&(Utc::now() - chrono::Duration::days(10)));
        conn.execute("UPDATE events SET time = ?1", [&ten_days_ago])
            .unwrap();
        conn.execute("UPDATE logs SET time = ?1", [&ten_days_ago])
            .unwrap();
        publish_a_run(&bus, "new-run");
        recorder.flush().unwrap();
    }
    Store::open(path).unwrap()
}

/// 25 days on, the 30 days of `[history]` reach back to 5 days ago.
fn in_25_days() -> chrono::DateTime<Utc> {
    Utc::now() + chrono::Duration::days(25)
}

#[test]
fn retention_prunes_the_logs_of_the_run_past_it_and_keeps_the_newer_runs_logs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let store = a_history_with_an_old_and_a_new_run(&path);
    assert_eq!(store.logs("old-run", None, 0, 100).unwrap().len(), 4);
    assert_eq!(store.logs("new-run", None, 0, 100).unwrap().len(), 4);
    // Not yet: 10 days is within 30.
    assert_eq!(store.prunable().unwrap().logs, 0);

    // Its log line, three chunks of output and four of the agent's activity.
    let prunable = store.prunable_at(in_25_days()).unwrap();
    assert_eq!((prunable.logs, prunable.events), (4, 8), "{prunable:?}");
    let pruned = store.prune_at(in_25_days()).unwrap();
    assert_eq!((pruned.logs, pruned.events), (4, 8), "{pruned:?}");
    assert!(store.logs("old-run", None, 0, 100).unwrap().is_empty());
    assert_eq!(store.logs("new-run", None, 0, 100).unwrap().len(), 4);
    // The runs themselves stay, with their executions.
    assert_eq!(store.run_detail("old-run").unwrap().executions.len(), 4);
    assert_eq!(store.prune_at(in_25_days()).unwrap().logs, 0);
    // 31 days on, the newer run's logs are past it too.
    let later = Utc::now() + chrono::Duration::days(31);
    assert_eq!(store.prune_at(later).unwrap().logs, 4);
}

#[test]
fn a_history_of_schema_5_keeps_its_executions_and_its_retention_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let before = {
        let store = a_history_with_an_old_and_a_new_run(&path);
        (
            store.run_detail("old-run").unwrap().executions,
            store.run_detail("new-run").unwrap().executions,
        )
    };
    // Back to what version 5 had: executions beside an index of its key,
    // and the indexes by time.
    let old = rusqlite::Connection::open(&path).unwrap();
    old.execute_batch(
        "CREATE TABLE executions_v5 AS SELECT * FROM executions;
         DROP TABLE executions;
         CREATE TABLE executions (
            run_id TEXT NOT NULL, execution_id TEXT NOT NULL, batch_id TEXT NOT NULL,
            first_seq INTEGER NOT NULL, reason TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
            command TEXT, status TEXT NOT NULL, exit_code INTEGER, error TEXT, progress TEXT,
            result TEXT, started_at TEXT, finished_at TEXT, duration_ms INTEGER,
            PRIMARY KEY (run_id, execution_id));
         INSERT INTO executions SELECT * FROM executions_v5;
         DROP TABLE executions_v5;
         CREATE INDEX events_by_time ON events (time);
         CREATE INDEX logs_by_time ON logs (time);
         PRAGMA user_version = 5;",
    )
    .unwrap();
    drop(old);

    let (store, bus, recorder) = open(&path);
    let after = (
        store.run_detail("old-run").unwrap().executions,
        store.run_detail("new-run").unwrap().executions,
    );
    assert_eq!(after, before);
    assert_eq!(after.0.len(), 4);
    let pruned = store.prune_at(in_25_days()).unwrap();
    assert_eq!(pruned.logs, 4, "{pruned:?}");
    assert_eq!(store.logs("new-run", None, 0, 100).unwrap().len(), 4);
    // A run recorded after the upgrade lands in the rebuilt table.
    publish_a_run(&bus, "third-run");
    recorder.flush().unwrap();
    assert_eq!(store.run_detail("third-run").unwrap().executions.len(), 4);
}

/// Four tasks of run `r`: `a` and `b` overlap (`b` finishes first), `c`
/// has a progress text between its start and its finish, `d` runs twice.
/// `flush` is called after each event.
fn publish_four_tasks(bus: &EventBus, flush: &dyn Fn()) {
    let started = |task: &str, text: &str| EventKind::TaskStarted {
        run_id: "r".into(),
        batch_id: "all".into(),
        task_id: task.into(),
        task_type: "exec".into(),
        name: task.into(),
        priority: Priority::Normal,
        display_text: Some(text.into()),
    };
    let events = [
        run_status("r", RunStatus::Running),
        started("a", "building a"),
        started("b", "building b"),
        task_finished("r", "all", "b", TaskStatus::Completed, Some(0)),
        task_finished("r", "all", "a", TaskStatus::Failed, Some(2)),
        started("c", "building c"),
        EventKind::TaskProgress {
            run_id: "r".into(),
            batch_id: "all".into(),
            task_id: "c".into(),
            display_text: "linking c".into(),
            percent: None,
        },
        task_finished("r", "all", "c", TaskStatus::Completed, Some(0)),
        // Run twice under the same id: the second attempt's words stay.
        started("d", "first try of d"),
        task_finished("r", "all", "d", TaskStatus::Failed, Some(1)),
        started("d", "second try of d"),
        task_finished("r", "all", "d", TaskStatus::Completed, Some(0)),
        run_status("r", RunStatus::Completed),
    ];
    for event in events {
        bus.publish(event);
        flush();
    }
}

#[test]
fn executions_read_the_same_whether_a_tasks_start_and_finish_are_written_together_or_apart() {
    let dir = tempfile::tempdir().unwrap();
    let executions = |together: bool| {
        let path = dir.path().join(format!("history-{together}.db"));
        let (store, bus, recorder) = open(&path);
        publish_four_tasks(&bus, &|| {
            if !together {
                recorder.flush().unwrap();
            }
        });
        recorder.flush().unwrap();
        store.run_detail("r").unwrap().executions
    };
    let apart = executions(false);
    let together = executions(true);
    let summary = |e: &runner::store::ExecutionRecord| {
        (
            e.execution_id.clone(),
            e.status.clone(),
            e.exit_code,
            e.progress.clone(),
        )
    };
    let expected = [
        ("a", "failed", Some(2), "building a"),
        ("b", "completed", Some(0), "building b"),
        ("c", "completed", Some(0), "linking c"),
        ("d", "completed", Some(0), "second try of d"),
    ]
    .map(|(id, status, code, progress)| {
        (
            id.to_string(),
            status.to_string(),
            code,
            Some(progress.to_string()),
        )
    });
    // In the order the tasks started, with what each start and finish said.
    assert_eq!(together.iter().map(summary).collect::<Vec<_>>(), expected);
    assert!(
        together
            .iter()
            .all(|e| e.started_at.is_some() && e.finished_at.is_some())
    );
    // The same rows but for the times, which each publishing took anew.
    let timeless = |executions: Vec<runner::store::ExecutionRecord>| {
        executions
            .into_iter()
            .map(|e| runner::store::ExecutionRecord {
                started_at: None,
                finished_at: None,
                ..e
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(timeless(together), timeless(apart));
}

#[test]
fn pruning_waits_for_another_connection_that_is_writing_and_then_prunes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let store = a_history_with_an_old_and_a_new_run(&path);
    // Another process's writer (a `runner serve` on the same history)
    // holds the write lock for a moment, then commits.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE;").unwrap();
    let (locked, wait) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        locked.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        other
            .execute(
                "INSERT INTO connections (time, client, peer, action) VALUES (?1, 'c', 'p', 'connected')",
                [protocol::format_time(&Utc::now())],
            )
            .unwrap();
        other.execute_batch("COMMIT;").unwrap();
    });
    wait.recv().unwrap();
    let pruned = store
        .prune_at(in_25_days())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(pruned.logs, 4, "{pruned:?}");
    writer.join().unwrap();
    assert_eq!(store.connections(10).unwrap().len(), 1);
}

#[test]
fn names_a_run_by_prefix_or_last_and_says_when_it_is_unknown_or_ambiguous() {
    let dir = tempfile::tempdir().unwrap();
    let (store, bus, recorder) = open(&dir.path().join("history.db"));
    bus.publish(run_status("20260101-aaaa", RunStatus::Completed));
    bus.publish(run_status("20260102-bbbb", RunStatus::Failed));
    recorder.flush().unwrap();
    assert_eq!(store.resolve_run("last").unwrap(), "20260102-bbbb");
    assert_eq!(store.resolve_run("20260101").unwrap(), "20260101-aaaa");
    assert!(matches!(
        store.resolve_run("2026"),
        Err(StoreError::AmbiguousRun { .. })
    ));
    let err = store.resolve_run("nope").unwrap_err();
    assert!(err.to_string().contains("no run `nope`"), "{err}");
}

#[tokio::test]
async fn follows_the_logs_of_a_run_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (store, bus, recorder) = open(&dir.path().join("history.db"));
    bus.publish(run_status("r", RunStatus::Running));
    bus.publish(output("r", "t", 0, "first\n"));
    recorder.flush_async().await.unwrap();

    let mut follow = store
        .follow_logs("r", None, 0)
        .poll_every(Duration::from_millis(20));
    let first = follow.next().await.unwrap().unwrap();
    assert_eq!(
        first.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
        vec!["first\n"]
    );

    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for i in 0..5 {
                bus.publish(output("r", "t", i + 1, &format!("more {i}\n")));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            bus.publish(run_status("r", RunStatus::Completed));
        })
    };
    let mut rest = Vec::new();
    for _ in 0..1000 {
        match follow.next().await.unwrap() {
            Some(lines) => rest.extend(lines.into_iter().map(|l| l.text)),
            None => break,
        }
    }
    publisher.await.unwrap();
    assert_eq!(
        rest,
        (0..5).map(|i| format!("more {i}\n")).collect::<Vec<_>>()
    );
    assert!(follow.next().await.unwrap().is_none());
}

#[test]
fn recovery_marks_nothing_when_nothing_was_left_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    {
        let (_store, bus, recorder) = open(&path);
        publish_a_run(&bus, "done");
        recorder.flush().unwrap();
    }
    let store = Store::open(&path).unwrap();
    let before = store.last_seq();
    let recovery = store.recover("the runner stopped").unwrap();
    assert!(recovery.runs.is_empty() && recovery.seqs.is_none());
    assert_eq!(store.last_seq(), before);
}

#[test]
fn recovering_after_the_recorder_started_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _bus, _recorder) = open(&dir.path().join("history.db"));
    assert!(matches!(
        store.recover("x"),
        Err(StoreError::RecoverTooLate)
    ));
}

/// The env variable that puts [`child_records_events_until_killed`] to work.
const CHILD_DB: &str = "RUNNER_TEST_STORE_CHILD_DB";

/// Not a test of its own: the process that
/// [`keeps_every_written_event_through_kill_9_and_marks_the_run_interrupted`]
/// starts and kills. It records a run that never ends, printing how far the
/// store has written.
#[test]
#[ignore = "started by another test"]
fn child_records_events_until_killed() {
    let Some(path) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let (_store, bus, recorder) = open(Path::new(&path));
    bus.publish(run_status("doomed", RunStatus::Running));
    bus.publish(batch_status("doomed", "work", BatchStatus::Pending, None));
    bus.publish(batch_status("doomed", "work", BatchStatus::Running, None));
    bus.publish(script("doomed", "work", ExecutionState::Running, None));
    bus.publish(task_started("doomed", "work", "spin", "exec"));
    bus.publish(command("doomed", "spin", "c9", CommandStatus::Running));
    let mut stdout = std::io::stdout();
    let started = std::time::Instant::now();
    for i in 0..1_000_000u64 {
        bus.publish(output("doomed", "spin", i, &format!("chunk {i}\n")));
        if i % 25 == 0 {
            recorder.flush().unwrap();
            writeln!(stdout, "written {}", bus.next_seq() - 1).unwrap();
            stdout.flush().unwrap();
        }
        // Never outlive a parent that failed to kill us.
        if started.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
}

#[test]
fn keeps_every_written_event_through_kill_9_and_marks_the_run_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "store::child_records_events_until_killed",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut confirmed = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(seq) = line.strip_prefix("written ") {
            confirmed = seq.trim().parse().unwrap();
            if confirmed >= 500 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no flush.
    let status = child.wait().unwrap();
    assert!(
        confirmed >= 500,
        "the child stopped early ({status}); it confirmed {confirmed}"
    );

    let store = Store::open(&path).unwrap_or_else(|err| panic!("{err}"));
    let last = store.last_seq();
    assert!(last >= confirmed, "confirmed {confirmed}, found {last}");
    let events = store.events_after(0, 10_000_000).unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=last).collect::<Vec<_>>()
    );
    // Before any recovery, the reads already say the runner is gone.
    let unrecovered = store.run_detail("doomed").unwrap();
    assert_eq!(
        (unrecovered.run.status.as_str(), unrecovered.run.owner_gone),
        ("interrupted", true)
    );
    assert!(
        unrecovered
            .executions
            .iter()
            .all(|e| e.status == "interrupted"),
        "{:?}",
        unrecovered.executions
    );
    assert_eq!(unrecovered.agent_turns[0].status, "interrupted");
    assert_eq!(store.list_runs(1).unwrap()[0].tasks_ok, 0);

    let recovery = store
        .recover("the runner stopped without finishing (crash or kill)")
        .unwrap();
    assert_eq!(recovery.runs, vec!["doomed".to_string()]);
    assert_eq!(
        (recovery.executions, recovery.batches, recovery.agent_turns),
        (2, 1, 1)
    );
    let (first, end) = recovery.seqs.unwrap();
    assert_eq!(first, last + 1);
    assert_eq!(store.last_seq(), end);

    let detail = store.run_detail("doomed").unwrap();
    assert_eq!(detail.run.status, "interrupted");
    assert!(!detail.run.owner_gone, "recorded now");
    assert!(
        detail
            .run
            .error
            .as_deref()
            .unwrap()
            .contains("crash or kill")
    );
    assert!(
        detail.executions.iter().all(|e| e.status == "interrupted"),
        "{:?}",
        detail.executions
    );
    assert_eq!(detail.batches[0].status, "failed");
    assert_eq!(detail.agent_turns[0].status, "interrupted");

    let recovered = store.events_after(last, 100).unwrap();
    assert_eq!(recovered.len() as u64, end - last);
    assert!(
        matches!(
            &recovered.last().unwrap().kind,
            EventKind::RunStatus {
                status: RunStatus::Interrupted,
                error: Some(error),
                ..
            } if error.contains("crash or kill")
        ),
        "the event says what the table says: {:?}",
        recovered.last()
    );
    drop(store);

    // A second recovery finds nothing; the next runner numbers on.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.recover("again").unwrap(), Default::default());
    let bus = EventBus::new(store.last_seq() + 1);
    let recorder = Recorder::start(&store, &bus);
    assert_eq!(
        bus.publish(run_status("next", RunStatus::Completed)),
        end + 1
    );
    recorder.flush().unwrap();
    assert_eq!(store.list_runs(10).unwrap().len(), 2);
}

#[test]
fn an_older_history_that_recorded_a_recovered_run_as_aborted_reads_interrupted_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    {
        let (_store, bus, recorder) = open(&path);
        bus.publish(run_status("crashed", RunStatus::Running));
        // What recovery recorded before `interrupted` was a run status.
        bus.publish(EventKind::RunStatus {
            run_id: "crashed".into(),
            pipeline: "default".into(),
            status: RunStatus::Aborted,
            message: Some("interrupted: the runner stopped".into()),
            error: Some("the runner stopped".into()),
        });
        bus.publish(run_status("stopped", RunStatus::Running));
        bus.publish(EventKind::RunStatus {
            run_id: "stopped".into(),
            pipeline: "default".into(),
            status: RunStatus::Aborted,
            message: Some("aborted after 2s".into()),
            error: Some("the run was aborted".into()),
        });
        recorder.flush().unwrap();
    }
    let old = rusqlite::Connection::open(&path).unwrap();
    old.execute_batch(
        // Back to what version 1 had: without the later index and column.
        "UPDATE runs SET status = 'interrupted' WHERE id = 'crashed';
         DROP INDEX events_by_command; ALTER TABLE batches DROP COLUMN depends_on;
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(old);

    let store = Store::open(&path).unwrap();
    let statuses: Vec<(String, RunStatus)> = store
        .events_after(0, 100)
        .unwrap()
        .into_iter()
        .filter_map(|event| match event.kind {
            EventKind::RunStatus { run_id, status, .. } if status.is_final() => {
                Some((run_id, status))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("crashed".to_string(), RunStatus::Interrupted),
            ("stopped".to_string(), RunStatus::Aborted),
        ]
    );
    assert_eq!(
        store.run_detail("crashed").unwrap().run.status,
        "interrupted"
    );
    assert_eq!(store.run_detail("stopped").unwrap().run.status, "aborted");
}

/// A project whose only task sleeps for five minutes, with a history of
/// its own (and the shared compile cache, so nothing compiles again).
fn sleeping_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let cache = Path::new(&crate::support::shared_state_dir()).join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::os::unix::fs::symlink(&cache, state.join("cache")).unwrap();
    let toml = format!(
        r#"version = 1
[defaults]
state_dir = "{state}"

[[pipelines.default.batches]]
id = "wait"

[[pipelines.default.batches.tasks]]
id = "sleeper"
type = "exec"
config = {{ command = "echo $$ > '{pid}'; exec sleep 300" }}
"#,
        state = state.display(),
        pid = dir.path().join("sleeper.pid").display()
    );
    std::fs::write(dir.path().join("runner.toml"), toml).unwrap();
    dir
}

/// Runs the `runner` binary in `dir` and returns (exit code, stdout).
fn runner_in(dir: &Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(crate::pipelines::runner_binary())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "runner {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap(), stdout)
}

fn json_of(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"))
}

/// The row of `runner history` text for `run`, split at the header's columns.
fn history_row(table: &str, run: &str) -> Vec<(String, String)> {
    let mut lines = table.lines();
    let header = lines.next().expect("a header");
    let row = lines
        .find(|line| line.starts_with(run))
        .unwrap_or_else(|| panic!("no row for {run}: {table}"));
    let starts: Vec<usize> = [
        "RUN", "PIPELINE", "STATUS", "STARTED", "BATCHES", "TASKS", "ERROR",
    ]
    .iter()
    .map(|name| {
        header
            .find(name)
            .unwrap_or_else(|| panic!("{name}: {header}"))
    })
    .collect();
    // BATCHES and TASKS are right-aligned: their cells end where the headers end.
    let cell = |from: usize, to: usize| row.get(from..to.min(row.len())).unwrap_or("").trim();
    vec![
        ("run".into(), cell(starts[0], starts[1]).into()),
        ("status".into(), cell(starts[2], starts[3]).into()),
        ("started".into(), cell(starts[3], starts[3] + 19).into()),
        (
            "tasks".into(),
            cell(starts[4] + "BATCHES".len(), starts[5] + "TASKS".len()).into(),
        ),
        ("error".into(), cell(starts[6], row.len()).into()),
    ]
}

fn cell<'a>(row: &'a [(String, String)], name: &str) -> &'a str {
    &row.iter().find(|(n, _)| n == name).unwrap().1
}

#[test]
fn a_run_whose_runner_was_killed_reads_interrupted_and_its_running_task_never_counts_as_ok() {
    let project = sleeping_project();
    let dir = project.path();
    let mut child = Command::new(crate::pipelines::runner_binary())
        .args(["run"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let db = dir.join("state/history.db");
    let pid_file = dir.join("sleeper.pid");
    let mut run_id = None;
    for _ in 0..600 {
        if pid_file.exists()
            && let Ok(store) = Store::open(&db)
            && let Ok(detail) = store.run_detail("last")
            && detail.executions.iter().any(|e| e.status == "running")
        {
            run_id = Some(detail.run.id.clone());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let run_id = run_id.expect("the sleeper task runs within a minute");

    // While its runner lives, the run is running and its task is not ok.
    let (_, table) = runner_in(dir, &["history"]);
    let row = history_row(&table, &run_id);
    assert_eq!(cell(&row, "status"), "running", "{table}");
    assert_eq!(cell(&row, "tasks"), "0/1 ok, 1 running", "{table}");

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let (_, table) = runner_in(dir, &["history"]);
    let row = history_row(&table, &run_id);
    assert_eq!(cell(&row, "run"), run_id, "{table}");
    assert_eq!(cell(&row, "status"), "interrupted (runner gone)", "{table}");
    assert!(
        chrono::NaiveDateTime::parse_from_str(cell(&row, "started"), "%Y-%m-%d %H:%M:%S").is_ok(),
        "the columns line up: {table}"
    );
    assert_eq!(cell(&row, "tasks"), "0/1 ok", "{table}");
    assert!(cell(&row, "error").contains("crash or kill"), "{table}");

    let (_, json) = runner_in(dir, &["history", "--json"]);
    let runs = json_of(&json);
    let run = &runs[0];
    assert_eq!(run["id"], run_id.as_str());
    assert_eq!(run["status"], "interrupted", "{run}");
    assert_eq!(run["owner_gone"], true, "{run}");
    assert_eq!(
        (
            &run["tasks"],
            &run["tasks_ok"],
            &run["tasks_failed"],
            &run["tasks_running"]
        ),
        (&1.into(), &0.into(), &1.into(), &0.into()),
        "{run}"
    );

    let (_, text) = runner_in(dir, &["show", "last"]);
    assert!(text.contains("interrupted (runner gone)"), "{text}");
    assert!(text.contains("sleeper [exec · task] interrupted"), "{text}");
    assert!(text.contains("tasks 0/1 ok"), "{text}");
    let (_, json) = runner_in(dir, &["show", "last", "--json"]);
    let detail = json_of(&json);
    assert_eq!(detail["run"]["status"], "interrupted", "{detail}");
    assert_eq!(detail["executions"][0]["status"], "interrupted", "{detail}");
    assert_eq!(detail["batches"][0]["status"], "failed", "{detail}");

    // `runner logs --follow` of the run ends instead of waiting forever.
    let (_, _) = runner_in(dir, &["logs", "last", "--follow"]);

    // The sleeper outlived its runner (issue 8.7): stop it.
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", pid.trim())])
            .status();
    }

    // The next run records what the read commands said, and says no more
    // that the runner is gone.
    let store = Store::open(&db).unwrap();
    let recovery = store.recover("the runner stopped (crash or kill)").unwrap();
    assert_eq!(recovery.runs, vec![run_id.clone()]);
    drop(store);
    let (_, json) = runner_in(dir, &["history", "--json"]);
    let run = &json_of(&json)[0];
    assert_eq!(
        (&run["status"], &run["owner_gone"], &run["tasks_failed"]),
        (&"interrupted".into(), &false.into(), &1.into()),
        "{run}"
    );
    let (_, table) = runner_in(dir, &["history"]);
    assert_eq!(
        cell(&history_row(&table, &run_id), "status"),
        "interrupted",
        "{table}"
    );
}

#[test]
fn keeps_an_older_history_within_its_max_size_by_pruning_the_oldest_logs_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    // A history from before the budget: pages are never given back.
    let old = rusqlite::Connection::open(&path).unwrap();
    old.execute_batch("PRAGMA auto_vacuum = NONE; CREATE TABLE leftover (x);")
        .unwrap();
    drop(old);
    let max: u64 = 2 << 20;
    let store = Store::open_with(
        &path,
        StoreOptions {
            retention: Retention {
                max_bytes: Some(max),
                ..Retention::default()
            },
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let bus = EventBus::new(store.last_seq() + 1);
    let recorder = Recorder::start(&store, &bus);
    let chunk = "x".repeat(10_000);
    for run in 0..8 {
        let run = format!("run-{run}");
        bus.publish(run_status(&run, RunStatus::Running));
        for i in 0..40 {
            bus.publish(output(&run, "noisy", i, &chunk));
        }
        bus.publish(run_status(&run, RunStatus::Completed));
        recorder.flush().unwrap();
    }

    let check = rusqlite::Connection::open(&path).unwrap();
    let pragma = |name: &str| -> u64 {
        check
            .query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, i64>(0))
            .unwrap() as u64
    };
    assert_eq!(pragma("auto_vacuum"), 2, "converted to incremental vacuum");
    let pages = pragma("page_count");
    assert!(
        pages * pragma("page_size") <= max,
        "{pages} pages: over the budget"
    );
    assert_eq!(
        pragma("freelist_count"),
        0,
        "freed pages went back to the file system"
    );
    assert_eq!(store.list_runs(10).unwrap().len(), 8, "every run is kept");
    assert_eq!(store.logs("run-7", None, 0, 1000).unwrap().len(), 40);
    assert!(store.logs("run-0", None, 0, 1000).unwrap().is_empty());
}

#[test]
fn the_lock_holder_recovers_a_run_whose_process_id_now_belongs_to_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    {
        let (_store, bus, recorder) = open(&path);
        bus.publish(run_status("reused", RunStatus::Running));
        recorder.flush().unwrap();
    }
    // The id of the runner that recorded it now names an unrelated process.
    let mut other = Command::new("sleep").arg("60").spawn().unwrap();
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute("UPDATE runs SET owner_pid = ?1", [other.id()])
        .unwrap();
    drop(db);

    let store = Store::open(&path).unwrap();
    assert!(
        store.recover("gone").unwrap().runs.is_empty(),
        "without a lock file, a live process counts as the owner"
    );
    let _lock = RecorderLock::try_acquire(&path)
        .unwrap()
        .expect("a free lock");
    assert_eq!(
        store.recover("gone").unwrap().runs,
        vec!["reused".to_string()]
    );
    assert_eq!(
        store.run_detail("reused").unwrap().run.status,
        "interrupted"
    );
    other.kill().unwrap();
    other.wait().unwrap();
}

#[test]
fn a_commands_events_are_read_through_its_index_and_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let (store, bus, recorder) = open(&path);
    // Two commands interleaved with unrelated events.
    for i in 0..50 {
        bus.publish(log("r1", Some("t"), &format!("line {i}")));
        let id = if i % 2 == 0 { "cmd-a" } else { "cmd-b" };
        bus.publish(activity(
            "r1",
            "t",
            id,
            Activity::AssistantMessage {
                text: format!("turn {i}"),
            },
        ));
    }
    bus.publish(command("r1", "t", "cmd-a", CommandStatus::Completed));
    recorder.flush().unwrap();
    let events = store.command_events("cmd-a", 1000).unwrap();
    assert_eq!(events.len(), 26, "25 turns and the status of cmd-a");
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq), "in order");
    assert!(events.iter().all(|e| matches!(
        &e.kind,
        EventKind::AgentActivity { command_id, .. } | EventKind::CommandStatus { command_id, .. }
            if command_id == "cmd-a"
    )));
    let plan = store.command_events_plan().unwrap();
    assert!(plan.contains("events_by_command"), "{plan}");
}

#[tokio::test]
async fn the_wal_a_runner_leaves_goes_into_the_file_with_the_next_one_and_stays_bounded() {
    let project = crate::ids::isolated_project(
        "[[pipelines.default.batches]]\nid = \"a\"\n[[pipelines.default.batches.tasks]]\nid = \"t\"\ntype = \"exec\"\nconfig = { command = \"seq 1 2000\" }\n",
    );
    let dir = project.path();
    let wal = dir.join("state/history.db-wal");
    let wal_size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let mut sizes = Vec::new();
    for _ in 0..6 {
        let (exit, _, stderr) = crate::pipelines::run_binary(dir, &["run"], &[]).await;
        assert_eq!(exit, 0, "{stderr}");
        sizes.push(wal_size());
    }
    // An exit leaves its run in the WAL; the next runner writes it into the
    // file before its own run's events, which then start the WAL over:
    // six runs leave about what one did, not six times as much.
    assert!(
        sizes[0] > 0,
        "the first run's events are in the WAL: {sizes:?}"
    );
    assert!(
        sizes[5] <= sizes[0] * 3 / 2,
        "the WAL grew run after run: {sizes:?}"
    );
    let store = Store::open(dir.join("state/history.db")).unwrap();
    let runs = store.list_runs(10).unwrap();
    assert_eq!(runs.len(), 6, "every run is in the history");
    for run in &runs {
        let detail = store.run_detail(&run.id).unwrap();
        assert_eq!(detail.run.status, "completed", "{}", run.id);
        let statuses: Vec<&str> = detail
            .executions
            .iter()
            .map(|e| e.status.as_str())
            .collect();
        assert_eq!(statuses, ["completed"], "{}", run.id);
    }
    drop(store);

    // A run that writes more than the WAL may keep (4 MiB) leaves it cut
    // back: the next open never reads more than that.
    let toml = std::fs::read_to_string(dir.join("runner.toml")).unwrap();
    let big = toml.replace("seq 1 2000", "yes big | head -c 6000000");
    assert_ne!(big, toml);
    std::fs::write(dir.join("runner.toml"), big).unwrap();
    let (exit, _, stderr) = crate::pipelines::run_binary(dir, &["run"], &[]).await;
    assert_eq!(exit, 0, "{stderr}");
    assert!(
        wal_size() <= runner::store::KEEP_WAL,
        "a WAL of {} bytes was left",
        wal_size()
    );
}
