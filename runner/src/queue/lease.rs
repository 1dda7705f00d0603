//! Working the queue: enqueueing, claiming under a fresh lease token,
//! heartbeats and completions fenced by that token, releasing, and the
//! reaper that returns expired leases (see the module docs of [`super`]).

use super::{Completion, Lease, NewTask, Outcome, Queue, QueueError, Reaped};
use std::time::Duration;
use uuid::Uuid;

impl Queue {
    /// Enqueues `tasks` in one transaction and wakes the workers; their ids.
    pub async fn enqueue(&mut self, tasks: &[NewTask]) -> Result<Vec<i64>, QueueError> {
        let channel = self.channel();
        let tx = self.client.transaction().await?;
        let insert = tx
            .prepare(
                "INSERT INTO tasks (priority, payload, max_attempts) VALUES ($1, $2, $3) RETURNING id",
            )
            .await?;
        let mut ids = Vec::with_capacity(tasks.len());
        for task in tasks {
            let row = tx
                .query_one(
                    &insert,
                    &[&task.priority, &task.payload, &task.max_attempts],
                )
                .await?;
            ids.push(row.get(0));
        }
        tx.execute("SELECT pg_notify($1, '')", &[&channel]).await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// Claims the first queued task by `(priority, id)` for `worker`, for
    /// `lease`; `None` when none is queued.
    pub async fn claim(&self, worker: &str, lease: Duration) -> Result<Option<Lease>, QueueError> {
        let row = self
            .client
            .query_opt(
                "WITH next AS (
                    SELECT id FROM tasks WHERE state = 'queued'
                    ORDER BY priority, id FOR UPDATE SKIP LOCKED LIMIT 1
                 ), claimed AS (
                    UPDATE tasks t SET state = 'running', attempt = t.attempt + 1,
                        lease_owner = $1, lease_token = gen_random_uuid(),
                        lease_expires = now() + make_interval(secs => $2), updated_at = now()
                    FROM next WHERE t.id = next.id
                    RETURNING t.id, t.priority, t.payload, t.attempt, t.max_attempts, t.lease_token
                 ), logged AS (
                    INSERT INTO claims (task_id, attempt, worker, token)
                    SELECT id, attempt, $1, lease_token FROM claimed
                 )
                 SELECT id, priority, payload, attempt, max_attempts, lease_token FROM claimed",
                &[&worker, &lease.as_secs_f64()],
            )
            .await?;
        Ok(row.map(|row| Lease {
            task: row.get(0),
            priority: row.get(1),
            payload: row.get(2),
            attempt: row.get(3),
            max_attempts: row.get(4),
            token: row.get(5),
            worker: worker.to_string(),
        }))
    }

    /// Extends `lease` by `length` from now; `false` when the lease is gone
    /// (reaped, and perhaps claimed by another worker): stop the task then.
    pub async fn heartbeat(&self, lease: &Lease, length: Duration) -> Result<bool, QueueError> {
        let updated = self
            .client
            .execute(
                "UPDATE tasks SET lease_expires = now() + make_interval(secs => $3), updated_at = now()
                 WHERE id = $1 AND lease_token = $2 AND state = 'running'",
                &[&lease.task, &lease.token, &length.as_secs_f64()],
            )
            .await?;
        Ok(updated == 1)
    }

    /// Records how `lease`'s task ended, in one transaction guarded by the
    /// lease token: without it the completion is recorded as rejected.
    pub async fn complete(
        &mut self,
        lease: &Lease,
        outcome: &Outcome,
    ) -> Result<Completion, QueueError> {
        let tx = self.client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT state, lease_token, attempt, lease_owner FROM tasks WHERE id = $1 FOR UPDATE",
                &[&lease.task],
            )
            .await?;
        let (state, result, error) = match outcome {
            Outcome::Completed(result) => ("completed", result.clone(), None),
            Outcome::Failed { error, result } => ("failed", result.clone(), Some(error.clone())),
        };
        let refusal = match &row {
            None => Some(format!("task {} does not exist", lease.task)),
            Some(row) => {
                let (now_state, token, attempt, owner): (
                    String,
                    Option<Uuid>,
                    i32,
                    Option<String>,
                ) = (row.get(0), row.get(1), row.get(2), row.get(3));
                if now_state == "running" && token == Some(lease.token) {
                    None
                } else {
                    Some(format!(
                        "the lease of attempt {} was lost: the task is {now_state} at attempt {attempt}{}",
                        lease.attempt,
                        owner.map_or_else(String::new, |o| format!(" (last leased to {o})"))
                    ))
                }
            }
        };
        let completion = match refusal {
            None => {
                tx.execute(
                    "UPDATE tasks SET state = $2, result = $3, error = $4,
                        completions = completions + 1, lease_expires = NULL,
                        finished_at = now(), updated_at = now()
                     WHERE id = $1",
                    &[&lease.task, &state, &result, &error],
                )
                .await?;
                Completion::Applied
            }
            Some(reason) => {
                let recorded =
                    serde_json::json!({"state": state, "result": result, "error": error});
                tx.execute(
                    "INSERT INTO rejected_completions (task_id, worker, token, attempt, outcome, reason)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &lease.task,
                        &lease.worker,
                        &lease.token,
                        &lease.attempt,
                        &recorded,
                        &reason,
                    ],
                )
                .await?;
                Completion::Rejected { reason }
            }
        };
        tx.commit().await?;
        Ok(completion)
    }

    /// Hands `lease` back unfinished (the worker is stopping): the task is
    /// queued again and this attempt does not count.
    pub async fn release(&self, lease: &Lease) -> Result<bool, QueueError> {
        let updated = self
            .client
            .execute(
                "UPDATE tasks SET state = 'queued', attempt = attempt - 1, lease_token = NULL,
                    lease_expires = NULL, updated_at = now()
                 WHERE id = $1 AND lease_token = $2 AND state = 'running'",
                &[&lease.task, &lease.token],
            )
            .await?;
        if updated == 1 {
            self.client
                .execute("SELECT pg_notify($1, '')", &[&self.channel()])
                .await?;
        }
        Ok(updated == 1)
    }

    /// Returns expired leases to the queue, or fails their tasks once
    /// `max_attempts` ran out. One reaper at a time: when another holds the
    /// lock this does nothing.
    pub async fn reap(&mut self) -> Result<Reaped, QueueError> {
        let channel = self.channel();
        let tx = self.client.transaction().await?;
        let locked: bool = tx
            .query_one(
                "SELECT pg_try_advisory_xact_lock(hashtext($1))",
                &[&format!("runner-queue-reaper:{}", self.schema)],
            )
            .await?
            .get(0);
        let mut reaped = Reaped::default();
        if locked {
            let rows = tx
                .query(
                    "WITH expired AS (
                        SELECT id FROM tasks WHERE state = 'running' AND lease_expires < now()
                        FOR UPDATE SKIP LOCKED
                     )
                     UPDATE tasks t SET
                        state = CASE WHEN t.attempt >= t.max_attempts THEN 'failed' ELSE 'queued' END,
                        error = CASE WHEN t.attempt >= t.max_attempts THEN format(
                            'the lease of %s expired on attempt %s of %s: the worker stopped heartbeating (killed, stopped or cut off from the database)',
                            t.lease_owner, t.attempt, t.max_attempts) ELSE t.error END,
                        finished_at = CASE WHEN t.attempt >= t.max_attempts THEN now() END,
                        lease_token = NULL, lease_expires = NULL, updated_at = now()
                     FROM expired WHERE t.id = expired.id
                     RETURNING t.state",
                    &[],
                )
                .await?;
            for row in rows {
                match row.get::<_, &str>(0) {
                    "queued" => reaped.requeued += 1,
                    _ => reaped.failed += 1,
                }
            }
            if reaped.requeued > 0 {
                tx.execute("SELECT pg_notify($1, '')", &[&channel]).await?;
            }
        }
        tx.commit().await?;
        Ok(reaped)
    }
}
