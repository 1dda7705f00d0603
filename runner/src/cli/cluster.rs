//! `runner serve --queue`: a node of a cluster. Its runner's events go to
//! the queue's outbox, and its clients are served the cluster's events from
//! the outbox, numbered by it (see `queue::outbox`).

use super::Error;
use crate::events::EventBus;
use crate::queue::outbox::{self, Outbox};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub(super) struct Node {
    /// The cluster's events, as this node's clients see them.
    pub events: Arc<EventBus>,
    /// The queue's outbox, for resumes older than `events` holds.
    pub outbox: Arc<Outbox>,
    cancel: CancellationToken,
    appender: tokio::task::JoinHandle<()>,
    tailer: tokio::task::JoinHandle<()>,
}

/// Connects to the queue at `url` (schema `schema`) and starts appending
/// `local`'s events and tailing the outbox. Clients see the events appended
/// from now on, by any node.
pub(super) async fn join(url: &str, schema: &str, local: &EventBus) -> Result<Node, Error> {
    let name = super::worker::default_name();
    let connect = |role: &str| {
        let application = format!("runner serve {role} {name}");
        async move { Outbox::connect(url, schema, &application).await }
    };
    let fail = |err: crate::queue::QueueError| Error::Usage(format!("--queue: {err}"));
    let writer = Arc::new(connect("outbox").await.map_err(fail)?);
    let reader = Arc::new(connect("tail").await.map_err(fail)?);
    // Subscribe before reading where the outbox is, so nothing this node
    // publishes is missed by its own clients.
    let subscription = local.subscribe();
    let last = reader
        .queue()
        .await
        .map_err(fail)?
        .last_event_id()
        .await
        .map_err(fail)?;
    let events = EventBus::new(last as u64 + 1);
    let cancel = CancellationToken::new();
    let appender = tokio::spawn(outbox::append_from(
        writer,
        name.clone(),
        subscription,
        cancel.clone(),
    ));
    let tailer = tokio::spawn(outbox::tail_into(
        reader.clone(),
        last,
        events.clone(),
        cancel.clone(),
    ));
    eprintln!("joined the cluster at {schema} (node {name}); events after {last}");
    Ok(Node {
        events,
        outbox: reader,
        cancel,
        appender,
        tailer,
    })
}

impl Node {
    /// Appends what this node published, then stops.
    pub(super) async fn leave(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.appender).await;
        self.tailer.abort();
    }
}
