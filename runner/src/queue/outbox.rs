//! The cluster's one event sequence: every `runner serve --queue` node
//! appends the events its own runner publishes to the `outbox` table, and
//! tails the table into the bus its WebSocket clients are served from, with
//! each event renumbered by its outbox id. Every node therefore serves the
//! same events under the same numbers, and a client may resume from any
//! number on any node.
//!
//! ## No gap, no reordering
//! An append takes the next ids from the one row of `outbox_head` in the
//! same statement that inserts the events; the row lock holds other
//! appenders until it commits, so ids grow by one with no gap and become
//! visible in id order. A tailer that has read up to id `n` never finds a
//! smaller id appear later.
//!
//! ## Waiting
//! The tailer reads what is new, then waits [`TAIL_PAUSE`] before it looks
//! again (a poll bounded per round by [`TAIL_BATCH`] rows).
//!
//! ## The database going away
//! The appender and the tailer each hold an [`Outbox`]: a connection made
//! again when it ended (PostgreSQL restarted, say), with backoff between
//! tries; the tailer goes on from the last id it read, so nothing is missed.
//!
//! ## Old numbers
//! The table keeps every event, so a client resuming from a number older
//! than a node's memory is served from it ([`Queue::numbered_after`]), one
//! read of [`TAIL_BATCH`] rows at a time.

use super::{Queue, QueueError};
use crate::events::EventBus;
use protocol::Event;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long the tailer waits when it found nothing new.
pub const TAIL_PAUSE: Duration = Duration::from_millis(20);
/// The most rows one read takes.
pub const TAIL_BATCH: i64 = 2_000;
/// The most events one append writes.
pub const APPEND_BATCH: usize = 1_000;
/// Events waiting for the database beyond this many are dropped (oldest
/// first, with a warning): a node cut off from PostgreSQL does not grow
/// without bound.
pub const MAX_PENDING: usize = 100_000;

/// A connection to the outbox, made again when it ended.
pub struct Outbox {
    url: String,
    schema: String,
    application: String,
    queue: tokio::sync::Mutex<Arc<Queue>>,
}

impl Outbox {
    /// Connects as `application` (see [`Queue::connect`]).
    pub async fn connect(url: &str, schema: &str, application: &str) -> Result<Self, QueueError> {
        let queue = Queue::connect(url, schema, application).await?;
        Ok(Self {
            url: url.to_string(),
            schema: schema.to_string(),
            application: application.to_string(),
            queue: tokio::sync::Mutex::new(Arc::new(queue)),
        })
    }

    /// The connection, made again first when it ended.
    pub async fn queue(&self) -> Result<Arc<Queue>, QueueError> {
        let mut queue = self.queue.lock().await;
        if queue.is_closed() {
            *queue = Arc::new(Queue::connect(&self.url, &self.schema, &self.application).await?);
        }
        Ok(queue.clone())
    }
}

impl Queue {
    /// Appends `events` (as JSON) from `node`; the id of the last one.
    pub async fn append_events(&self, node: &str, events: &[String]) -> Result<i64, QueueError> {
        let count = events.len() as i64;
        let row = self
            .client
            .query_one(
                "WITH head AS (
                     UPDATE outbox_head SET last_id = last_id + $1 RETURNING last_id
                 ), inserted AS (
                     INSERT INTO outbox (id, node, event)
                     SELECT (SELECT last_id FROM head) - $1 + t.ord, $2, t.event
                     FROM unnest($3::text[]) WITH ORDINALITY AS t(event, ord)
                 )
                 SELECT last_id FROM head",
                &[&count, &node, &events],
            )
            .await?;
        Ok(row.get(0))
    }

    /// The events after id `after` (at most `limit`), in id order.
    pub async fn events_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, QueueError> {
        let rows = self
            .client
            .query(
                "SELECT id, event FROM outbox WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &limit],
            )
            .await?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    /// The events after id `after` (reading at most `limit` rows), each
    /// numbered by its id. A row this runner cannot read (an event of a
    /// newer runner) is skipped with a warning, as the tailer skips it.
    pub async fn numbered_after(&self, after: i64, limit: i64) -> Result<Numbered, QueueError> {
        let rows = self.events_after(after, limit).await?;
        let mut read = Numbered {
            events: Vec::with_capacity(rows.len()),
            through: after,
            rows: rows.len(),
        };
        for (id, json) in rows {
            read.through = id;
            match serde_json::from_str::<Event>(&json) {
                Ok(mut event) => {
                    event.seq = id as u64;
                    read.events.push(event);
                }
                Err(err) => tracing::warn!(id, "skipping an outbox event: {err}"),
            }
        }
        Ok(read)
    }

    /// The id of the newest event (0: none yet).
    pub async fn last_event_id(&self) -> Result<i64, QueueError> {
        Ok(self
            .client
            .query_one("SELECT last_id FROM outbox_head", &[])
            .await?
            .get(0))
    }
}

/// One read of the outbox (see [`Queue::numbered_after`]).
#[derive(Debug)]
pub struct Numbered {
    /// The events read, numbered by their ids, in order.
    pub events: Vec<Event>,
    /// The id of the last row read (`after` when none was).
    pub through: i64,
    /// How many rows were read (skipped ones included).
    pub rows: usize,
}

/// Appends every event of `local` to the outbox as `node`, in batches; a
/// failed append is retried (the events wait, at most [`MAX_PENDING`] of
/// them). Once `cancel` fires it appends what is already published and
/// returns (giving up on a database that does not answer).
pub async fn append_from(
    outbox: Arc<Outbox>,
    node: String,
    mut local: crate::events::Subscription,
    cancel: CancellationToken,
) {
    let mut pending: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut dropped = 0usize;
    let mut backoff = Duration::from_millis(50);
    let mut closing = false;
    loop {
        if pending.is_empty() && !closing {
            tokio::select! {
                event = local.recv() => match event {
                    Some(event) => pending.push_back(serde_json::to_string(&*event).expect("events serialize")),
                    None => return,
                },
                () = cancel.cancelled() => closing = true,
            }
        }
        while let Ok(event) = local.try_recv() {
            pending.push_back(serde_json::to_string(&*event).expect("events serialize"));
        }
        while pending.len() > MAX_PENDING {
            pending.pop_front();
            dropped += 1;
        }
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "the outbox is unreachable: dropped the oldest events"
            );
            dropped = 0;
        }
        if pending.is_empty() {
            return; // closing, and everything is written
        }
        let take = pending.len().min(APPEND_BATCH);
        let batch: Vec<String> = pending.iter().take(take).cloned().collect();
        let appended = match outbox.queue().await {
            Ok(queue) => queue.append_events(&node, &batch).await,
            Err(err) => Err(err),
        };
        match appended {
            Ok(_) => {
                pending.drain(..take);
                backoff = Duration::from_millis(50);
            }
            Err(err) if closing => {
                tracing::warn!("cannot append the last events to the outbox: {err}");
                return;
            }
            Err(err) => {
                tracing::warn!("cannot append to the outbox: {err}; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = cancel.cancelled() => closing = true,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Feeds `cluster` with every outbox event after id `after`, each numbered
/// by its id, until `cancel`.
pub async fn tail_into(
    outbox: Arc<Outbox>,
    mut after: i64,
    cluster: Arc<EventBus>,
    cancel: CancellationToken,
) {
    let mut backoff = TAIL_PAUSE;
    loop {
        let read = match outbox.queue().await {
            Ok(queue) => queue.numbered_after(after, TAIL_BATCH).await,
            Err(err) => Err(err),
        };
        let read = match read {
            Ok(read) => {
                backoff = TAIL_PAUSE;
                read
            }
            Err(err) => {
                tracing::warn!("cannot read the outbox: {err}; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = cancel.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        after = read.through;
        for event in read.events {
            cluster.publish_numbered(event);
        }
        if read.rows as i64 == TAIL_BATCH {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(TAIL_PAUSE) => {}
            () = cancel.cancelled() => return,
        }
    }
}
