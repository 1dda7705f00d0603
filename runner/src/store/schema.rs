//! Versioned migrations, applied at open. `PRAGMA user_version` holds the
//! number of migrations applied; a released migration is never edited, later
//! versions only add.

use super::StoreError;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;

const MIGRATIONS: &[&str] = &[
    // 1: events, the projections of seed 003, logs, the connection audit.
    // A log row indexes its event; the text stays in the event's JSON only.
    r#"
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        time TEXT NOT NULL,
        type TEXT NOT NULL,
        run_id TEXT,
        json TEXT NOT NULL
    );
    CREATE INDEX events_by_run ON events (run_id, seq);
    CREATE INDEX events_by_time ON events (time);

    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        pipeline TEXT NOT NULL,
        status TEXT NOT NULL,
        message TEXT,
        error TEXT,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        owner_pid INTEGER,
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL
    );
    CREATE INDEX runs_by_start ON runs (first_seq);

    CREATE TABLE batches (
        run_id TEXT NOT NULL,
        batch_id TEXT NOT NULL,
        first_seq INTEGER NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT,
        summary TEXT,
        branch TEXT,
        worktree TEXT,
        base_commit TEXT,
        head_before TEXT,
        head_after TEXT,
        files_changed INTEGER,
        note TEXT,
        started_at TEXT,
        finished_at TEXT,
        PRIMARY KEY (run_id, batch_id)
    );

    CREATE TABLE executions (
        run_id TEXT NOT NULL,
        execution_id TEXT NOT NULL,
        batch_id TEXT NOT NULL,
        first_seq INTEGER NOT NULL,
        reason TEXT NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        command TEXT,
        status TEXT NOT NULL,
        exit_code INTEGER,
        error TEXT,
        progress TEXT,
        result TEXT,
        started_at TEXT,
        finished_at TEXT,
        duration_ms INTEGER,
        PRIMARY KEY (run_id, execution_id)
    );

    CREATE TABLE logs (
        seq INTEGER PRIMARY KEY,
        time TEXT NOT NULL,
        run_id TEXT,
        task_id TEXT,
        command_id TEXT,
        kind TEXT NOT NULL,
        level TEXT,
        source TEXT,
        stream TEXT,
        chunk INTEGER
    );
    CREATE INDEX logs_by_run ON logs (run_id, seq);
    CREATE INDEX logs_by_time ON logs (time);

    CREATE TABLE agent_turns (
        command_id TEXT PRIMARY KEY,
        run_id TEXT,
        task_id TEXT,
        agent TEXT NOT NULL,
        status TEXT NOT NULL,
        priority TEXT,
        prompt TEXT,
        summary TEXT,
        is_error INTEGER,
        agent_session_id TEXT,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cached_tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL,
        exit_code INTEGER,
        error TEXT,
        owner_pid INTEGER,
        started_at TEXT,
        finished_at TEXT,
        first_seq INTEGER NOT NULL
    );
    CREATE INDEX agent_turns_by_run ON agent_turns (run_id, first_seq);

    CREATE TABLE merges (
        seq INTEGER PRIMARY KEY,
        time TEXT NOT NULL,
        run_id TEXT NOT NULL,
        batch_id TEXT NOT NULL,
        branch TEXT NOT NULL,
        target TEXT NOT NULL,
        status TEXT NOT NULL,
        commit_id TEXT,
        conflicts TEXT,
        error TEXT
    );
    CREATE INDEX merges_by_run ON merges (run_id, seq);

    CREATE TABLE connections (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time TEXT NOT NULL,
        client TEXT NOT NULL,
        peer TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT
    );
    CREATE INDEX connections_by_time ON connections (time);
    "#,
    // 2: a recovered run ended with a `run_status` `aborted` event while
    // `runs.status` said `interrupted`; the event now says `interrupted` too.
    r#"
    UPDATE events SET json = json_set(json, '$.status', 'interrupted')
    WHERE type = 'run_status' AND json_extract(json, '$.status') = 'aborted'
        AND json_extract(json, '$.message') LIKE 'interrupted: %';
    UPDATE runs SET status = 'interrupted'
    WHERE status = 'aborted' AND message LIKE 'interrupted: %';
    "#,
    // 3: what started a run other than a request: `watch`, with the changed
    // files (a JSON array), from the `watch_status` `triggered` event.
    r#"
    CREATE TABLE IF NOT EXISTS run_triggers (
        run_id TEXT PRIMARY KEY,
        trigger TEXT NOT NULL,
        changed TEXT NOT NULL
    );
    "#,
    // 4: an agent command's events found by its id without reading the
    // whole events table (`/api/commands/COMMAND`). Only those types are in
    // the index, so inserting any other event (terminal output above all)
    // costs no JSON parse.
    r#"
    CREATE INDEX IF NOT EXISTS events_by_command
        ON events (json_extract(json, '$.command_id'), seq)
        WHERE type IN ('command_status', 'agent_activity', 'approval_requested', 'approval_decided');
    "#,
    // 5: the batches a batch waited for in its run (a JSON array), from its
    // `pending` `batch_status`; NULL for runs recorded before.
    r#"
    ALTER TABLE batches ADD COLUMN depends_on TEXT;
    "#,
    // 6: cheaper writes (issue 15: the history writer was the longest
    // thread of a run of many small tasks). Retention finds its cutoff by
    // sequence number (events are numbered in the order of their times), so
    // the two indexes by time go; an execution is one B-tree keyed by its
    // primary key instead of a table beside an index of that key; and the
    // command index names its types with `OR`: SQLite tested the `IN` list
    // of migration 4 through a temporary B-tree built at every insert.
    r#"
    DROP INDEX IF EXISTS events_by_time;
    DROP INDEX IF EXISTS logs_by_time;
    DROP INDEX IF EXISTS events_by_command;
    CREATE INDEX events_by_command
        ON events (json_extract(json, '$.command_id'), seq)
        WHERE type = 'command_status' OR type = 'agent_activity'
            OR type = 'approval_requested' OR type = 'approval_decided';
    CREATE TABLE executions_v6 (
        run_id TEXT NOT NULL,
        execution_id TEXT NOT NULL,
        batch_id TEXT NOT NULL,
        first_seq INTEGER NOT NULL,
        reason TEXT NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        command TEXT,
        status TEXT NOT NULL,
        exit_code INTEGER,
        error TEXT,
        progress TEXT,
        result TEXT,
        started_at TEXT,
        finished_at TEXT,
        duration_ms INTEGER,
        PRIMARY KEY (run_id, execution_id)
    ) WITHOUT ROWID;
    INSERT INTO executions_v6 (run_id, execution_id, batch_id, first_seq, reason, name, kind, command,
        status, exit_code, error, progress, result, started_at, finished_at, duration_ms)
    SELECT run_id, execution_id, batch_id, first_seq, reason, name, kind, command,
        status, exit_code, error, progress, result, started_at, finished_at, duration_ms
    FROM executions;
    DROP TABLE executions;
    ALTER TABLE executions_v6 RENAME TO executions;
    "#,
];

/// The schema version this runner writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Applies the migrations the database lacks, in one transaction.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let sqlite = |err| StoreError::from_sqlite(path, err);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    let found: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(sqlite)?;
    if found > VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            known: VERSION,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(migration)
            .map_err(|err| StoreError::Sqlite {
                path: path.to_path_buf(),
                message: format!("migration {} failed: {err}", index + 1),
            })?;
    }
    if found < VERSION {
        tx.pragma_update(None, "user_version", VERSION)
            .map_err(sqlite)?;
    }
    tx.commit().map_err(sqlite)
}
