//! A task queue in PostgreSQL, shared by `runner worker` processes on any
//! number of machines (beside `store`: it needs only the leaves).
//!
//! A claim takes the first queued task by `(priority, id)` with
//! `FOR UPDATE SKIP LOCKED` and mints a fresh lease token. The token is the
//! fence: a heartbeat extends the lease only while it matches, and a
//! completion is applied only while it matches, in one transaction; a
//! completion that arrives without it is recorded in `rejected_completions`
//! and never applied. The reaper (one at a time, under an advisory lock)
//! returns expired leases to the queue until `max_attempts`, then fails the
//! task with the reason. `LISTEN/NOTIFY` only wakes idle workers; they poll
//! behind it.

pub mod outbox;
mod schema;

use futures_util::StreamExt;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use uuid::Uuid;

/// What went wrong, in words that say what to fix.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(
        "`{url}` is not a PostgreSQL URL ({message}); write postgres://USER@HOST:PORT/DATABASE"
    )]
    BadUrl { url: String, message: String },
    #[error(
        "cannot reach PostgreSQL at {url} ({message}); is the server running, and the host, port, user and database right?"
    )]
    Unreachable { url: String, message: String },
    #[error(
        "`{name}` is not a queue schema name: use lowercase letters, digits and `_`, at most 63, not starting with a digit"
    )]
    BadSchema { name: String },
    #[error(
        "schema `{schema}` holds queue version {found}, newer than this runner knows ({known}); use a newer runner"
    )]
    TooNew {
        schema: String,
        found: i64,
        known: i64,
    },
    #[error("the connection to PostgreSQL was lost ({message})")]
    Disconnected { message: String },
    #[error("PostgreSQL refused a queue statement: {message}")]
    Database { message: String },
}

impl QueueError {
    /// Whether reconnecting may cure it (the server went away, or this
    /// connection was ended).
    pub fn is_disconnect(&self) -> bool {
        matches!(self, Self::Disconnected { .. } | Self::Unreachable { .. })
    }
}

impl From<tokio_postgres::Error> for QueueError {
    fn from(err: tokio_postgres::Error) -> Self {
        let message = describe(&err);
        // Class 57 (operator intervention: terminated, shutting down) and
        // 08 (connection exception) end the connection.
        let ended = err.is_closed()
            || err.as_db_error().is_none()
            || err
                .code()
                .is_some_and(|c| c.code().starts_with("57") || c.code().starts_with("08"));
        if ended {
            Self::Disconnected { message }
        } else {
            Self::Database { message }
        }
    }
}

/// A task to enqueue.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Lower runs first.
    pub priority: i32,
    pub payload: Value,
    pub max_attempts: i32,
}

impl NewTask {
    pub fn new(priority: i32, payload: Value) -> Self {
        Self {
            priority,
            payload,
            max_attempts: 3,
        }
    }
}

/// A claimed task, held while its token is the task's.
#[derive(Debug, Clone)]
pub struct Lease {
    pub task: i64,
    pub token: Uuid,
    pub worker: String,
    pub priority: i32,
    pub attempt: i32,
    pub max_attempts: i32,
    pub payload: Value,
}

/// How a task ended on its worker.
#[derive(Debug, Clone)]
pub enum Outcome {
    Completed(Value),
    Failed { error: String, result: Value },
}

/// What became of a completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    Applied,
    /// The lease was gone: recorded in `rejected_completions`, not applied.
    Rejected {
        reason: String,
    },
}

/// What the reaper did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reaped {
    pub requeued: u64,
    pub failed: u64,
}

/// One row of `tasks`, for status and tests.
#[derive(Debug, Clone)]
pub struct TaskRow {
    pub id: i64,
    pub priority: i32,
    pub state: String,
    pub attempt: i32,
    pub max_attempts: i32,
    pub lease_owner: Option<String>,
    pub completions: i32,
    pub result: Option<Value>,
    pub error: Option<String>,
}

/// One claim, in the order the claims were made.
#[derive(Debug, Clone)]
pub struct ClaimRow {
    pub seq: i64,
    pub task: i64,
    pub attempt: i32,
    pub worker: String,
}

/// A completion that arrived without its lease.
#[derive(Debug, Clone)]
pub struct RejectedRow {
    pub task: i64,
    pub worker: String,
    pub attempt: i32,
    pub reason: String,
}

/// A connection to the queue in one schema.
pub struct Queue {
    client: Client,
    schema: String,
    wake: Arc<Notify>,
}

/// `url` without its password, for messages.
fn shown(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if scheme + 3 < at => {
            let user = &url[scheme + 3..at];
            match user.find(':') {
                Some(colon) => {
                    format!("{}{}:***{}", &url[..scheme + 3], &user[..colon], &url[at..])
                }
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// An error with its causes: "error connecting to server: Connection refused".
fn describe(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return db.message().to_string();
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn check_schema(name: &str) -> Result<(), QueueError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(QueueError::BadSchema {
            name: name.to_string(),
        })
    }
}

impl Queue {
    /// Connects, as `application` (what `pg_stat_activity` shows), and
    /// brings `schema` to this runner's version, creating it if needed.
    pub async fn connect(url: &str, schema: &str, application: &str) -> Result<Self, QueueError> {
        check_schema(schema)?;
        let mut config: tokio_postgres::Config =
            url.parse()
                .map_err(|err: tokio_postgres::Error| QueueError::BadUrl {
                    url: shown(url),
                    message: err.to_string(),
                })?;
        config.application_name(application);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        let (client, mut connection) =
            config
                .connect(NoTls)
                .await
                .map_err(|err| QueueError::Unreachable {
                    url: shown(url),
                    message: describe(&err),
                })?;
        let wake = Arc::new(Notify::new());
        let on_message = wake.clone();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => on_message.notify_one(),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            // A worker waiting for work notices the connection is gone.
            on_message.notify_one();
        });
        let mut queue = Self {
            client,
            schema: schema.to_string(),
            wake,
        };
        queue.migrate().await?;
        Ok(queue)
    }

    fn quoted(&self) -> String {
        format!("\"{}\"", self.schema)
    }

    fn channel(&self) -> String {
        format!("{}_tasks", self.schema)
    }

    /// The schema this queue lives in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The connection, for what this API does not cover (tests, tools).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the connection has ended (reconnect then).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    async fn migrate(&mut self) -> Result<(), QueueError> {
        let quoted = self.quoted();
        self.client
            .batch_execute(&format!("SET search_path TO {quoted}"))
            .await?;
        let known = schema::MIGRATIONS.len() as i64;
        let tx = self.client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[&format!("runner-queue-migrate:{}", self.schema)],
        )
        .await?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {quoted};
             CREATE TABLE IF NOT EXISTS {quoted}.schema_version (version BIGINT NOT NULL);"
        ))
        .await?;
        let found: i64 = tx
            .query_one(
                &format!("SELECT coalesce(max(version), 0) FROM {quoted}.schema_version"),
                &[],
            )
            .await?
            .get(0);
        if found > known {
            return Err(QueueError::TooNew {
                schema: self.schema.clone(),
                found,
                known,
            });
        }
        for (index, sql) in schema::MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.batch_execute(sql).await?;
            tx.execute(
                &format!("INSERT INTO {quoted}.schema_version (version) VALUES ($1)"),
                &[&(index as i64 + 1)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Subscribes to the schema's wake-ups (see [`Queue::woken`]).
    pub async fn listen(&self) -> Result<(), QueueError> {
        self.client
            .batch_execute(&format!("LISTEN \"{}\"", self.channel()))
            .await?;
        Ok(())
    }

    /// Returns when a task may be waiting (a notification came) or the
    /// connection ended; only a hint: callers poll behind it.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

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
        Ok(rows
            .iter()
            .map(|row| TaskRow {
                id: row.get(0),
                priority: row.get(1),
                state: row.get(2),
                attempt: row.get(3),
                max_attempts: row.get(4),
                lease_owner: row.get(5),
                completions: row.get(6),
                result: row.get(7),
                error: row.get(8),
            })
            .collect())
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
        Ok(rows
            .iter()
            .map(|row| ClaimRow {
                seq: row.get(0),
                task: row.get(1),
                attempt: row.get(2),
                worker: row.get(3),
            })
            .collect())
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

    /// Drops the whole schema (tests, benchmarks).
    pub async fn drop_schema(self) -> Result<(), QueueError> {
        self.client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.quoted()))
            .await?;
        Ok(())
    }
}
