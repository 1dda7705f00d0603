//! Reading the queue as `runner queue status` shows it: tasks, claims,
//! rejected completions and counts per state.

use super::{ClaimRow, Queue, QueueError, RejectedRow, TaskRow};

impl Queue {
    /// Every task, by id.
    pub async fn tasks(&self) -> Result<Vec<TaskRow>, QueueError> {
        let rows = self
            .client
            .query(
                "SELECT id, priority, state, attempt, max_attempts, lease_owner, completions, result, error
                 FROM tasks ORDER BY id",
                &[],
            )
            .await?;
        Ok(rows.iter().map(task_row).collect())
    }

    /// One task, when it exists.
    pub async fn task(&self, id: i64) -> Result<Option<TaskRow>, QueueError> {
        let row = self
            .client
            .query_opt(
                "SELECT id, priority, state, attempt, max_attempts, lease_owner, completions, result, error
                 FROM tasks WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(task_row))
    }

    /// The task whose payload's `dispatch` is `key` (an enqueuer's mark,
    /// to find a task whose enqueue committed but whose answer was lost).
    pub async fn task_dispatched_as(&self, key: &str) -> Result<Option<i64>, QueueError> {
        let row = self
            .client
            .query_opt(
                "SELECT id FROM tasks WHERE payload->>'dispatch' = $1 ORDER BY id LIMIT 1",
                &[&key],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    /// Every claim, in order.
    pub async fn claims(&self) -> Result<Vec<ClaimRow>, QueueError> {
        let rows = self
            .client
            .query(
                "SELECT seq, task_id, attempt, worker FROM claims ORDER BY seq",
                &[],
            )
            .await?;
        Ok(rows.iter().map(ClaimRow::read).collect())
    }

    /// Every rejected completion, in order.
    pub async fn rejected(&self) -> Result<Vec<RejectedRow>, QueueError> {
        let rows = self
            .client
            .query(
                "SELECT task_id, worker, attempt, reason FROM rejected_completions ORDER BY id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| RejectedRow {
                task: row.get(0),
                worker: row.get(1),
                attempt: row.get(2),
                reason: row.get(3),
            })
            .collect())
    }

    /// How many tasks are in each state, and how many completions were rejected.
    pub async fn counts(&self) -> Result<Vec<(String, i64)>, QueueError> {
        let rows = self
            .client
            .query(
                "SELECT state, count(*) FROM tasks GROUP BY state
                 UNION ALL SELECT 'rejected completions', count(*) FROM rejected_completions
                 ORDER BY 1",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }
}

fn task_row(row: &tokio_postgres::Row) -> TaskRow {
    TaskRow {
        id: row.get(0),
        priority: row.get(1),
        state: row.get(2),
        attempt: row.get(3),
        max_attempts: row.get(4),
        lease_owner: row.get(5),
        completions: row.get(6),
        result: row.get(7),
        error: row.get(8),
    }
}
