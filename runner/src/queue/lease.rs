//! Working the queue: enqueueing, heartbeats and completions fenced by the
//! lease token (claiming is in `pools.rs`), cancelling, releasing, and the
//! reaper that returns expired leases (see the module docs of [`super`]).

use super::{Completion, Heartbeat, Lease, NewTask, Outcome, Queue, QueueError, Reaped};
use std::time::Duration;
use uuid::Uuid;

impl Queue {
    /// Enqueues `tasks` in one transaction and wakes the workers; their ids.
    pub async fn enqueue(&mut self, tasks: &[NewTask]) -> Result<Vec<i64>, QueueError> {
        let channel = self.channel();
        let tx = self.client.transaction().await?;
        let ids = insert(&tx, tasks).await?;
        tx.execute("SELECT pg_notify($1, '')", &[&channel]).await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// Enqueues `task` unless its second pool already holds `queue_limit`
    /// queued tasks (`None` then): checked and inserted under the pool's
    /// row lock, so two enqueuers cannot both take the last place. The
    /// pool's row must exist ([`Queue::set_pool`]); a task with no second
    /// pool is enqueued as [`Queue::enqueue`] does.
    pub async fn enqueue_within(
        &mut self,
        task: &NewTask,
        queue_limit: usize,
    ) -> Result<Option<i64>, QueueError> {
        let Some(pool) = &task.second_pool else {
            return Ok(Some(self.enqueue(std::slice::from_ref(task)).await?[0]));
        };
        let channel = self.channel();
        let tx = self.client.transaction().await?;
        tx.execute("SELECT 1 FROM pools WHERE name = $1 FOR UPDATE", &[pool])
            .await?;
        let queued: i64 = tx
            .query_one(
                "SELECT count(*) FROM tasks WHERE second_pool = $1 AND state = 'queued'",
                &[pool],
            )
            .await?
            .get(0);
        if queued >= i64::try_from(queue_limit).unwrap_or(i64::MAX) {
            return Ok(None);
        }
        let ids = insert(&tx, std::slice::from_ref(task)).await?;
        tx.execute("SELECT pg_notify($1, '')", &[&channel]).await?;
        tx.commit().await?;
        Ok(ids.first().copied())
    }

    /// Extends `lease` by `length` from now, and says whether the task was
    /// asked to stop; [`Heartbeat::Lost`] when the lease is gone.
    pub async fn heartbeat(
        &self,
        lease: &Lease,
        length: Duration,
    ) -> Result<Heartbeat, QueueError> {
        let row = self
            .client
            .query_opt(
                "UPDATE tasks SET lease_expires = now() + make_interval(secs => $3), updated_at = now()
                 WHERE id = $1 AND lease_token = $2 AND state = 'running'
                 RETURNING cancel_requested",
                &[&lease.task, &lease.token, &length.as_secs_f64()],
            )
            .await?;
        Ok(match row {
            None => Heartbeat::Lost,
            Some(row) if row.get::<_, bool>(0) => Heartbeat::CancelRequested,
            Some(_) => Heartbeat::Held,
        })
    }

    /// Cancels `task`: a queued one fails at once with `reason`, a running
    /// one is marked so its worker's next heartbeat stops it. The state it
    /// is in now; `None` when it had already ended (or does not exist).
    pub async fn cancel(&self, task: i64, reason: &str) -> Result<Option<String>, QueueError> {
        let row = self
            .client
            .query_opt(
                "UPDATE tasks SET cancel_requested = true,
                    state = CASE WHEN state = 'queued' THEN 'failed' ELSE state END,
                    error = CASE WHEN state = 'queued' THEN $2 ELSE error END,
                    finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END,
                    updated_at = now()
                 WHERE id = $1 AND state IN ('queued', 'running')
                 RETURNING state",
                &[&task, &reason],
            )
            .await?;
        let state: Option<String> = row.map(|row| row.get(0));
        if state.as_deref() == Some("failed") {
            self.announce_end(task).await?;
        }
        Ok(state)
    }

    /// Wakes whoever waits for `task` to end.
    async fn announce_end(&self, task: i64) -> Result<(), QueueError> {
        self.client
            .execute(
                "SELECT pg_notify($1, $2)",
                &[&self.done_channel(), &task.to_string()],
            )
            .await?;
        Ok(())
    }

    /// Records how `lease`'s task ended, in one transaction guarded by the
    /// lease token: without it the completion is recorded as rejected.
    pub async fn complete(
        &mut self,
        lease: &Lease,
        outcome: &Outcome,
    ) -> Result<Completion, QueueError> {
        let done = self.done_channel();
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
                super::spent::charge(&tx, &lease.payload, &result).await?;
                tx.execute(
                    "SELECT pg_notify($1, $2)",
                    &[&done, &lease.task.to_string()],
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
    /// queued again and this attempt does not count (a task asked to stop
    /// fails instead).
    pub async fn release(&self, lease: &Lease) -> Result<bool, QueueError> {
        let row = self
            .client
            .query_opt(
                "UPDATE tasks SET
                    state = CASE WHEN cancel_requested THEN 'failed' ELSE 'queued' END,
                    error = CASE WHEN cancel_requested THEN 'cancelled' ELSE error END,
                    finished_at = CASE WHEN cancel_requested THEN now() END,
                    attempt = attempt - 1, lease_token = NULL, lease_expires = NULL,
                    updated_at = now()
                 WHERE id = $1 AND lease_token = $2 AND state = 'running'
                 RETURNING state",
                &[&lease.task, &lease.token],
            )
            .await?;
        match row.as_ref().map(|row| row.get::<_, &str>(0)) {
            Some("queued") => {
                self.client
                    .execute("SELECT pg_notify($1, '')", &[&self.channel()])
                    .await?;
            }
            Some(_) => self.announce_end(lease.task).await?,
            None => {}
        }
        Ok(row.is_some())
    }

    /// Returns expired leases to the queue, or fails their tasks once
    /// `max_attempts` ran out, and deletes the output nobody took of tasks
    /// that ended long ago. One reaper at a time: when another holds the
    /// lock this does nothing.
    pub async fn reap(&mut self) -> Result<Reaped, QueueError> {
        let channel = self.channel();
        let done = self.done_channel();
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
                        state = CASE WHEN t.attempt >= t.max_attempts OR t.cancel_requested
                            THEN 'failed' ELSE 'queued' END,
                        error = CASE WHEN t.cancel_requested THEN 'cancelled'
                            WHEN t.attempt >= t.max_attempts THEN format(
                            'the lease of %s expired on attempt %s of %s: the worker stopped heartbeating (killed, stopped or cut off from the database)',
                            t.lease_owner, t.attempt, t.max_attempts) ELSE t.error END,
                        finished_at = CASE WHEN t.attempt >= t.max_attempts OR t.cancel_requested
                            THEN now() END,
                        lease_token = NULL, lease_expires = NULL, updated_at = now()
                     FROM expired WHERE t.id = expired.id
                     RETURNING t.state, t.id",
                    &[],
                )
                .await?;
            for row in rows {
                match row.get::<_, &str>(0) {
                    "queued" => reaped.requeued += 1,
                    _ => {
                        reaped.failed += 1;
                        let id: i64 = row.get(1);
                        tx.execute("SELECT pg_notify($1, $2)", &[&done, &id.to_string()])
                            .await?;
                    }
                }
            }
            if reaped.requeued > 0 {
                tx.execute("SELECT pg_notify($1, '')", &[&channel]).await?;
            }
            let kept = super::KEPT_AFTER_END.as_secs_f64();
            tx.execute(super::output::FORGET_ENDED, &[&kept]).await?;
        }
        tx.commit().await?;
        Ok(reaped)
    }
}

/// Inserts `tasks` in `tx`; their ids.
async fn insert(
    tx: &tokio_postgres::Transaction<'_>,
    tasks: &[NewTask],
) -> Result<Vec<i64>, QueueError> {
    let statement = tx
        .prepare(
            "INSERT INTO tasks (priority, payload, max_attempts, pool, second_pool)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .await?;
    let mut ids = Vec::with_capacity(tasks.len());
    for task in tasks {
        let row = tx
            .query_one(
                &statement,
                &[
                    &task.priority,
                    &task.payload,
                    &task.max_attempts,
                    &task.pool,
                    &task.second_pool,
                ],
            )
            .await?;
        ids.push(row.get(0));
    }
    Ok(ids)
}
