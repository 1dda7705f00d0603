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
//! task with the reason. `LISTEN/NOTIFY` only wakes idle workers (and, on a
//! second channel, whoever waits for tasks to end); they poll behind it.
//!
//! ## Pools
//! A task may belong to a pool with a `max_running`, and to a second one
//! (an agent task: its run's and its agent's); a claim skips a task whose
//! pools are not both free (see `pools.rs`).
//!
//! ## Cancelling
//! [`Queue::cancel`] fails a queued task at once and marks a running one
//! `cancel_requested`: its worker's next heartbeat sees it, stops the task
//! and completes it failed. A cancelled task is never claimed again.
//!
//! ## Plugins
//! Plugins for workers are kept by the hash of their bytes and handed only
//! to the runs that declared them (`plugins.rs`).
//!
//! ## Output
//! A worker sends its task's output while it runs, fenced by the lease
//! like a heartbeat, and whoever waits for the task takes it as it comes
//! (`output.rs`).

mod lease;
pub mod outbox;
mod output;
mod plugins;
mod pools;
mod schema;
mod spent;
mod status;

pub use output::{KEPT_AFTER_END, OutputRow, Part};
pub use plugins::{PluginError, StoredPlugin};

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
    /// The pool whose `max_running` limits it (see [`Queue::set_pool`]).
    pub pool: Option<String>,
    /// A second pool that limits it too (an agent task: its agent's).
    pub second_pool: Option<String>,
}

impl NewTask {
    pub fn new(priority: i32, payload: Value) -> Self {
        Self {
            priority,
            payload,
            max_attempts: 3,
            pool: None,
            second_pool: None,
        }
    }

    /// The same task, also in `pool`: it runs only when both have room.
    pub fn also_in_pool(self, pool: impl Into<String>) -> Self {
        Self {
            second_pool: Some(pool.into()),
            ..self
        }
    }

    /// The same task, in `pool`.
    pub fn in_pool(self, pool: impl Into<String>) -> Self {
        Self {
            pool: Some(pool.into()),
            ..self
        }
    }
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The lease is extended.
    Held,
    /// The lease is extended, and the task was asked to stop (complete it failed).
    CancelRequested,
    /// The lease is gone (reaped, perhaps claimed by another worker): stop the task.
    Lost,
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

impl ClaimRow {
    /// Reads `SELECT seq, task_id, attempt, worker FROM claims …`.
    fn read(row: &tokio_postgres::Row) -> Self {
        Self {
            seq: row.get(0),
            task: row.get(1),
            attempt: row.get(2),
            worker: row.get(3),
        }
    }
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

    /// Where the end of a task is announced (its id as the payload).
    fn done_channel(&self) -> String {
        format!("{}_done", self.schema)
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

    /// Subscribes to the ends of tasks (completed, failed, cancelled, reaped
    /// for good) instead: [`Queue::woken`] then says a task may have ended.
    pub async fn listen_done(&self) -> Result<(), QueueError> {
        self.client
            .batch_execute(&format!("LISTEN \"{}\"", self.done_channel()))
            .await?;
        Ok(())
    }

    /// Returns when a task may be waiting (a notification came) or the
    /// connection ended; only a hint: callers poll behind it.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Drops the whole schema (tests, benchmarks).
    pub async fn drop_schema(self) -> Result<(), QueueError> {
        self.client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.quoted()))
            .await?;
        Ok(())
    }
}
