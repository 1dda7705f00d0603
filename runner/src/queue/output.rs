//! The output of running tasks, on its way from their workers to whoever
//! waits for them (the coordinator of a run).
//!
//! A worker adds rows to `task_output` in batches while its task runs,
//! under the same fence as a heartbeat: a row is written only while the
//! lease token is the task's, and the task's row is share-locked meanwhile,
//! so the reaper cannot hand the task to another worker between the check
//! and the write. Each row is one part of the output (`stdout`, `stderr`, a
//! block's `log` line as JSON, an agent task's `event` as JSON), or the `cut` marker a worker writes once
//! when it reached the task's output limit and stopped sending.
//!
//! ## Nothing grows without bound
//! A worker sends at most the task's output limit per attempt. The reader
//! takes rows (they are deleted as they are read); rows nobody took are
//! deleted by the reaper once their task ended [`KEPT_AFTER_END`] ago.

use super::{ClaimRow, Lease, Queue, QueueError};
use std::time::Duration;

/// How long the output of an ended task waits for a reader before the
/// reaper deletes it.
pub const KEPT_AFTER_END: Duration = Duration::from_secs(600);

/// What one output row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Stdout,
    Stderr,
    /// A block's log line: `{"level": "info", "message": "..."}`.
    Log,
    /// One event of an agent task's command, as the worker's event bus
    /// published it (a `protocol::EventKind`'s JSON, with the worker's ids).
    Event,
    /// The worker reached the output limit here and sent no more.
    Cut,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
            Self::Log => "log",
            Self::Event => "event",
            Self::Cut => "cut",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "stdout" => Self::Stdout,
            "stderr" => Self::Stderr,
            "log" => Self::Log,
            "event" => Self::Event,
            _ => Self::Cut,
        }
    }
}

/// One row of a task's output, as taken.
#[derive(Debug, Clone)]
pub struct OutputRow {
    pub seq: i64,
    pub attempt: i32,
    pub part: Part,
    pub chunk: Vec<u8>,
}

impl Queue {
    /// Adds `rows` to the output of `lease`'s task, in order, while the
    /// lease holds; `false` (nothing written) when it is gone.
    pub async fn put_output(
        &self,
        lease: &Lease,
        rows: &[(Part, Vec<u8>)],
    ) -> Result<bool, QueueError> {
        if rows.is_empty() {
            return Ok(true);
        }
        let parts: Vec<&str> = rows.iter().map(|(part, _)| part.as_str()).collect();
        let chunks: Vec<&[u8]> = rows.iter().map(|(_, chunk)| chunk.as_slice()).collect();
        let written = self
            .client
            .execute(
                "WITH held AS (
                    SELECT attempt FROM tasks
                    WHERE id = $1 AND lease_token = $2 AND state = 'running' FOR SHARE
                 )
                 INSERT INTO task_output (task_id, attempt, stream, chunk)
                 SELECT $1, held.attempt, s.stream, s.chunk
                 FROM held, unnest($3::text[], $4::bytea[]) WITH ORDINALITY AS s (stream, chunk, n)
                 ORDER BY s.n",
                &[&lease.task, &lease.token, &parts, &chunks],
            )
            .await?;
        Ok(written > 0)
    }

    /// Takes what was written of `task`'s output so far: deleted, and
    /// returned in the order it was written.
    pub async fn take_output(&self, task: i64) -> Result<Vec<OutputRow>, QueueError> {
        let rows = self
            .client
            .query(
                "WITH taken AS (
                    DELETE FROM task_output WHERE task_id = $1
                    RETURNING seq, attempt, stream, chunk
                 )
                 SELECT seq, attempt, stream, chunk FROM taken ORDER BY seq",
                &[&task],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| OutputRow {
                seq: row.get(0),
                attempt: row.get(1),
                part: Part::parse(row.get(2)),
                chunk: row.get(3),
            })
            .collect())
    }

    /// How many output rows `task` has waiting (tests, tools).
    pub async fn output_rows(&self, task: i64) -> Result<i64, QueueError> {
        let row = self
            .client
            .query_one(
                "SELECT count(*) FROM task_output WHERE task_id = $1",
                &[&task],
            )
            .await?;
        Ok(row.get(0))
    }

    /// The claims of `task` made after the claim numbered `after`, in order.
    pub async fn claims_of(&self, task: i64, after: i64) -> Result<Vec<ClaimRow>, QueueError> {
        let rows = self
            .client
            .query(
                "SELECT seq, task_id, attempt, worker FROM claims
                 WHERE task_id = $1 AND seq > $2 ORDER BY seq",
                &[&task, &after],
            )
            .await?;
        Ok(rows.iter().map(ClaimRow::read).collect())
    }
}

/// The reaper's statement: deletes the output of tasks that ended more
/// than [`KEPT_AFTER_END`] ago (its first parameter, in seconds).
pub(super) const FORGET_ENDED: &str = "DELETE FROM task_output o USING tasks t
     WHERE t.id = o.task_id AND t.state IN ('completed', 'failed')
       AND t.finished_at < now() - make_interval(secs => $1)";
