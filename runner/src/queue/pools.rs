//! Claiming, under the pools' limits.
//!
//! A pool (a row of `pools`) lets at most `max_running` of its tasks run at
//! once, across every worker; a task in no pool, or in a pool without a
//! row, is limited by nothing. A task may be in two pools (`pool` and
//! `second_pool`: an agent task is in its run's and its agent's) and runs
//! only when both have room; a pool's tasks are those naming it in either.
//! There is no running count to drift: a claimer of a pooled task locks
//! the pool's row (`FOR UPDATE`), so the claimers of one pool take turns (a
//! task's two pools are locked in name order), and then counts the pool's
//! running tasks, which under READ COMMITTED sees every claim committed
//! before the lock was granted. A full pool is skipped and the next task
//! tried.

use super::{Lease, Queue, QueueError};
use std::time::Duration;

impl Queue {
    /// Creates `pool`, or changes its limit.
    pub async fn set_pool(&self, pool: &str, max_running: i32) -> Result<(), QueueError> {
        self.client
            .execute(
                "INSERT INTO pools (name, max_running) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET max_running = EXCLUDED.max_running",
                &[&pool, &max_running],
            )
            .await?;
        Ok(())
    }

    /// Removes `pool`'s limit (its tasks, if any are left, run unlimited).
    pub async fn drop_pool(&self, pool: &str) -> Result<(), QueueError> {
        self.client
            .execute("DELETE FROM pools WHERE name = $1", &[&pool])
            .await?;
        Ok(())
    }

    /// Claims the first queued task by `(priority, id)` whose pool has room,
    /// for `worker`, for `lease`; `None` when there is none.
    pub async fn claim(
        &mut self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Lease>, QueueError> {
        // Pools found full in this claim; each is tried once at most.
        let mut full: Vec<String> = Vec::new();
        loop {
            let tx = self.client.transaction().await?;
            // The pool test here only saves trips; the one under the locks decides.
            let next = tx
                .query_opt(
                    &format!(
                        // The claim's number is taken as its task is locked
                        // (once, for the row locked), so claims are numbered in
                        // the order they chose, however late a claimer commits.
                        "WITH next AS MATERIALIZED (
                            SELECT t.id, t.pool, t.second_pool FROM tasks t
                            WHERE t.state = 'queued' AND NOT t.cancel_requested
                              AND (t.pool IS NULL OR NOT (t.pool = ANY($1) OR {}))
                              AND (t.second_pool IS NULL OR NOT (t.second_pool = ANY($1) OR {}))
                            ORDER BY t.priority, t.id FOR UPDATE OF t SKIP LOCKED LIMIT 1
                         )
                         SELECT id, pool, second_pool, nextval(pg_get_serial_sequence('claims', 'seq')) FROM next",
                        full_pool("t.pool"),
                        full_pool("t.second_pool")
                    ),
                    &[&full],
                )
                .await?;
            // Dropping `tx` rolls it back.
            let Some(next) = next else {
                return Ok(None);
            };
            let id: i64 = next.get(0);
            let seq: i64 = next.get(3);
            // Locked in name order, so two claimers never wait on each other in a ring.
            let mut pools: Vec<String> = [next.get::<_, Option<String>>(1), next.get(2)]
                .into_iter()
                .flatten()
                .collect();
            pools.sort();
            pools.dedup();
            let mut room = true;
            for pool in pools {
                let max = tx
                    .query_opt(
                        "SELECT max_running FROM pools WHERE name = $1 FOR UPDATE",
                        &[&pool],
                    )
                    .await?;
                if let Some(max) = max {
                    let max: i32 = max.get(0);
                    let running: i64 = tx
                        .query_one(
                            "SELECT count(*) FROM tasks
                             WHERE (pool = $1 OR second_pool = $1) AND state = 'running'",
                            &[&pool],
                        )
                        .await?
                        .get(0);
                    if running >= i64::from(max) {
                        full.push(pool);
                        room = false;
                        break;
                    }
                }
            }
            if !room {
                continue;
            }
            let row = tx
                .query_one(
                    "WITH claimed AS (
                        UPDATE tasks t SET state = 'running', attempt = t.attempt + 1,
                            lease_owner = $1, lease_token = gen_random_uuid(),
                            lease_expires = now() + make_interval(secs => $2), updated_at = now()
                        WHERE t.id = $3
                        RETURNING t.id, t.priority, t.payload, t.attempt, t.max_attempts, t.lease_token
                     ), logged AS (
                        INSERT INTO claims (seq, task_id, attempt, worker, token)
                        SELECT $4, id, attempt, $1, lease_token FROM claimed
                     )
                     SELECT id, priority, payload, attempt, max_attempts, lease_token FROM claimed",
                    &[&worker, &lease.as_secs_f64(), &id, &seq],
                )
                .await?;
            tx.commit().await?;
            return Ok(Some(Lease {
                task: row.get(0),
                priority: row.get(1),
                payload: row.get(2),
                attempt: row.get(3),
                max_attempts: row.get(4),
                token: row.get(5),
                worker: worker.to_string(),
            }));
        }
    }
}

/// SQL: whether the pool named by `column` has no room now.
fn full_pool(column: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pools p WHERE p.name = {column} AND p.max_running <= (
            SELECT count(*) FROM tasks r
            WHERE (r.pool = {column} OR r.second_pool = {column}) AND r.state = 'running'))"
    )
}
