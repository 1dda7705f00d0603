//! The hub: one bus subscriber that keeps the [`State`] projection and turns
//! each event into a [`Frame`] (serialized once) for every connection.
//!
//! ## Never blocking the run
//! The hub reads the bus's (unbounded) channel and hands frames to a
//! `tokio::sync::broadcast` ring of `client_queue` frames: sending never
//! waits. A connection that falls more than the ring behind gets
//! `RecvError::Lagged` and replays from the bus's own ring of recent events.
//!
//! ## No gap, no duplicate
//! The state is updated and the frame broadcast under one lock, so a
//! receiver taken together with a snapshot receives exactly the frames after
//! the snapshot's `seq`. Connections still skip any frame whose `seq` they
//! have passed, which makes replay-then-live seamless.
//!
//! ## Older than the ring
//! A resume from a number the bus's ring no longer holds is read from
//! [`Older`] (a single server's history, or a cluster node's outbox) one
//! batch at a time: the connection sends a batch, then resumes after its
//! last event, until the ring holds what follows. No more than one batch
//! is held per connection, however old the number.

use super::state::State;
use crate::events::EventBus;
use crate::queue::outbox::Outbox;
use crate::store::Store;
use protocol::{Event, EventKind, Filter, NodeStatus, ReplyBody, ServerReply, Snapshot};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

/// A connection's receiver of the hub's frames.
pub(crate) type Frames = broadcast::Receiver<Arc<Frame>>;

/// One event, ready to send.
#[derive(Debug)]
pub(crate) struct Frame {
    pub event: Arc<Event>,
    /// The pipeline of the event's run, when known (for filters).
    pub pipeline: Option<Arc<str>>,
    pub json: Utf8Bytes,
    /// The `node_status` a `batch_status` event also becomes.
    pub node_status: Option<Utf8Bytes>,
}

impl Frame {
    pub fn new(event: Arc<Event>, pipeline: Option<Arc<str>>) -> Self {
        let json = serde_json::to_string(&*event)
            .expect("events serialize")
            .into();
        let node_status = node_status(&event).map(|reply| {
            serde_json::to_string(&reply)
                .expect("replies serialize")
                .into()
        });
        Self {
            event,
            pipeline,
            json,
            node_status,
        }
    }

    /// Whether a client with `filter` wants the event itself.
    pub fn passes(&self, filter: &Filter) -> bool {
        passes(
            filter,
            &self.event,
            self.pipeline.as_deref(),
            self.event.type_name(),
        )
    }

    /// Whether a client with `filter` wants the `node_status` (when there is one).
    pub fn node_status_passes(&self, filter: &Filter) -> bool {
        passes(filter, &self.event, self.pipeline.as_deref(), "node_status")
    }
}

fn node_status(event: &Event) -> Option<ServerReply> {
    let EventKind::BatchStatus {
        run_id,
        pipeline,
        batch_id,
        batch_name,
        status,
        error,
        ..
    } = &event.kind
    else {
        return None;
    };
    Some(ServerReply::new(
        None,
        ReplyBody::NodeStatus {
            pipeline: pipeline.clone(),
            run_id: run_id.clone(),
            node_id: batch_id.clone(),
            node_name: batch_name.clone(),
            status: NodeStatus::from(*status),
            error: error.clone(),
            event_seq: event.seq,
            time: event.time,
        },
    ))
}

fn passes(filter: &Filter, event: &Event, pipeline: Option<&str>, type_name: &str) -> bool {
    if !filter.types.is_empty() && !filter.types.iter().any(|t| t == type_name) {
        return false;
    }
    if let Some(run_id) = event.run_id() {
        if !filter.runs.is_empty() && !filter.runs.iter().any(|r| r == run_id) {
            return false;
        }
        if !filter.pipelines.is_empty()
            && !pipeline.is_some_and(|p| filter.pipelines.iter().any(|f| f == p))
        {
            return false;
        }
    }
    if let EventKind::Log { level, .. } = &event.kind
        && !filter.levels.is_empty()
        && !filter.levels.contains(level)
    {
        return false;
    }
    if !filter.tags.is_empty()
        && !tags(&event.kind)
            .iter()
            .any(|tag| filter.tags.iter().any(|f| f == tag))
    {
        return false;
    }
    true
}

/// What a `tags` filter matches: a log's source, task ids and types, batch ids, agent names.
fn tags(kind: &EventKind) -> Vec<&str> {
    match kind {
        EventKind::Log {
            source, task_id, ..
        } => [Some(source.as_str()), task_id.as_deref()]
            .into_iter()
            .flatten()
            .collect(),
        EventKind::BatchStatus { batch_id, .. } => vec![batch_id],
        EventKind::TaskStarted {
            batch_id,
            task_id,
            task_type,
            ..
        }
        | EventKind::TaskFinished {
            batch_id,
            task_id,
            task_type,
            ..
        } => vec![batch_id, task_id, task_type],
        EventKind::TaskProgress {
            batch_id, task_id, ..
        } => vec![batch_id, task_id],
        EventKind::TerminalOutput { task_id, .. } => task_id.as_deref().into_iter().collect(),
        EventKind::CommandStatus { agent, task_id, .. } => {
            [Some(agent.as_str()), task_id.as_deref()]
                .into_iter()
                .flatten()
                .collect()
        }
        EventKind::AgentStatus { agent, .. } => vec![agent],
        EventKind::AgentActivity { agent, task_id, .. } => {
            [Some(agent.as_str()), task_id.as_deref()]
                .into_iter()
                .flatten()
                .collect()
        }
        _ => Vec::new(),
    }
}

pub(crate) struct Hub {
    bus: Arc<EventBus>,
    state: Mutex<State>,
    frames: broadcast::Sender<Arc<Frame>>,
    /// The sequence number of the last event broadcast.
    broadcast_seq: watch::Sender<u64>,
    /// The history database, when the server records into one.
    history: Option<Store>,
    /// Where a resume older than the bus's ring is read from.
    older: Option<Older>,
}

/// Where the events older than the bus's ring are, numbered as the bus numbers them.
#[derive(Clone)]
pub(crate) enum Older {
    /// A single server's history database.
    History(Store),
    /// A cluster node's outbox (`queue::outbox`): its ids are the bus's numbers.
    Outbox(Arc<Outbox>),
}

/// The most events one read of the history takes.
const HISTORY_BATCH: usize = 2_000;

impl Older {
    fn name(&self) -> &'static str {
        match self {
            Self::History(_) => "history",
            Self::Outbox(_) => "outbox",
        }
    }

    /// One batch of the events after `after_seq`, and the number read
    /// through (`after_seq` when there were none).
    async fn read_after(&self, after_seq: u64) -> Result<(Vec<Event>, u64), String> {
        match self {
            Self::History(store) => {
                let store = store.clone();
                let events = tokio::task::spawn_blocking(move || {
                    store.events_after(after_seq, HISTORY_BATCH)
                })
                .await
                .map_err(|err| err.to_string())?
                .map_err(|err| err.to_string())?;
                let through = events.last().map_or(after_seq, |event| event.seq);
                Ok((events, through))
            }
            Self::Outbox(outbox) => {
                let queue = outbox.queue().await.map_err(|err| err.to_string())?;
                let read = queue
                    .numbered_after(after_seq as i64, crate::queue::outbox::TAIL_BATCH)
                    .await
                    .map_err(|err| err.to_string())?;
                Ok((read.events, read.through as u64))
            }
        }
    }
}

impl Hub {
    /// The history database, when the server records into one.
    pub fn history(&self) -> Option<&Store> {
        self.history.as_ref()
    }

    /// Subscribes to `bus` (taking in what its ring still holds, so a server
    /// started mid-run knows the run) and starts the hub task. `recorded`
    /// are finished runs from the history, newest first.
    pub fn start(
        bus: Arc<EventBus>,
        capacity: usize,
        cancel: CancellationToken,
        history: Option<Store>,
        recorded: Vec<protocol::RunState>,
        older: Option<Older>,
    ) -> Arc<Self> {
        let (backlog, mut events, first_seq) = match bus.subscribe_after(0) {
            Some((backlog, events)) => (backlog, events, 0),
            None => {
                let after = bus.next_seq().saturating_sub(1);
                let (backlog, events) = bus
                    .subscribe_after(after)
                    .expect("the ring holds the newest event");
                (backlog, events, after)
            }
        };
        let (frames, _) = broadcast::channel(capacity);
        let hub = Arc::new(Self {
            bus,
            state: Mutex::new(State::new(first_seq)),
            frames,
            broadcast_seq: watch::Sender::new(first_seq),
            history,
            older,
        });
        for event in backlog {
            hub.process(event);
        }
        hub.state
            .lock()
            .expect("hub state lock")
            .remember_recorded(recorded);
        let task_hub = hub.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    event = events.recv() => match event {
                        Some(event) => task_hub.process(event),
                        None => break,
                    },
                }
            }
        });
        hub
    }

    fn process(&self, event: Arc<Event>) {
        // Serialize outside the lock; the pipeline is only known after apply.
        let mut frame = Frame::new(event, None);
        let mut state = self.state.lock().expect("hub state lock");
        state.apply(&frame.event);
        frame.pipeline = state.pipeline_of(&frame.event);
        let seq = frame.event.seq;
        // No receivers is fine: nobody is connected.
        let _ = self.frames.send(Arc::new(frame));
        drop(state);
        self.broadcast_seq.send_replace(seq);
    }

    /// Returns once every event up to `seq` has been broadcast.
    pub async fn broadcast_up_to(&self, seq: u64) {
        let mut seen = self.broadcast_seq.subscribe();
        let _ = seen.wait_for(|done| *done >= seq).await;
    }

    pub fn snapshot(&self) -> Snapshot {
        self.state.lock().expect("hub state lock").snapshot()
    }

    /// A receiver of every frame after the snapshot, and the snapshot.
    pub fn subscribe_with_snapshot(&self) -> (Frames, Snapshot) {
        let state = self.state.lock().expect("hub state lock");
        (self.frames.subscribe(), state.snapshot())
    }

    /// The bus's next sequence number: resuming after anything at or past it is refused.
    pub fn next_seq(&self) -> u64 {
        self.bus.next_seq()
    }

    /// What follows `after_seq`: when the bus's ring holds it, a receiver
    /// for the live stream and every event after `after_seq` (with its
    /// pipeline), which together leave no gap; when only [`Older`] does, its
    /// next batch (resume again after [`Resumed::Older::through`]).
    pub async fn resume(&self, after_seq: u64) -> Result<Resumed, Unavailable> {
        // Subscribe first: everything the hub broadcasts from now on is in
        // `live`; everything published before is in the bus's ring.
        let live = self.frames.subscribe();
        if let Some((missed, subscription)) = self.bus.subscribe_after(after_seq) {
            drop(subscription);
            let missed = self.with_pipelines(missed);
            return Ok(Resumed::Ready(Replay { live, missed }));
        }
        drop(live);
        // Older than the ring (a restart, a long absence).
        let older = self.older.as_ref().ok_or(Unavailable::NotHeld)?;
        let (events, through) = older.read_after(after_seq).await.map_err(|err| {
            tracing::warn!(after_seq, "cannot replay from the {}: {err}", older.name());
            Unavailable::Unreadable {
                from: older.name(),
                error: err,
            }
        })?;
        if through <= after_seq {
            return Err(Unavailable::NotHeld);
        }
        let events = self.with_pipelines(events.into_iter().map(Arc::new).collect());
        Ok(Resumed::Older { events, through })
    }

    fn with_pipelines(&self, events: Vec<Arc<Event>>) -> Vec<(Arc<Event>, Option<Arc<str>>)> {
        let state = self.state.lock().expect("hub state lock");
        events
            .into_iter()
            .map(|event| {
                let pipeline = state.pipeline_of(&event);
                (event, pipeline)
            })
            .collect()
    }
}

/// What a resume gets from [`Hub::resume`].
pub(crate) enum Resumed {
    /// The rest: `missed`, then `live`.
    Ready(Replay),
    /// A batch of older events; resume again after `through`.
    Older {
        events: Vec<(Arc<Event>, Option<Arc<str>>)>,
        through: u64,
    },
}

/// What a resuming connection sends: `missed` first, then `live`.
pub(crate) struct Replay {
    pub live: Frames,
    /// Serialized one at a time as they are written, so a replay of
    /// thousands of events holds no more than one frame at once.
    pub missed: Vec<(Arc<Event>, Option<Arc<str>>)>,
}

/// Why the events after a number cannot be replayed.
#[derive(Debug)]
pub(crate) enum Unavailable {
    /// Neither the bus's ring nor the history or outbox holds them any more.
    NotHeld,
    /// The history or outbox (`from`) could not be read (the error, as the client is told).
    Unreadable { from: &'static str, error: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use protocol::{BatchStatus, LogLevel};

    fn log(level: LogLevel, source: &str) -> Event {
        Event {
            seq: 1,
            time: Utc::now(),
            kind: EventKind::Log {
                run_id: Some("r1".into()),
                task_id: None,
                level,
                source: source.into(),
                stream: None,
                message: "m".into(),
            },
        }
    }

    #[test]
    fn filters_narrow_by_level_tag_pipeline_and_type() {
        let event = log(LogLevel::Debug, "checksum");
        let filter = |f: Filter| passes(&f, &event, Some("ci"), "log");
        assert!(filter(Filter::default()));
        assert!(!filter(Filter {
            levels: vec![LogLevel::Info, LogLevel::Error],
            ..Default::default()
        }));
        assert!(filter(Filter {
            tags: vec!["checksum".into()],
            ..Default::default()
        }));
        assert!(!filter(Filter {
            tags: vec!["wordcount".into()],
            ..Default::default()
        }));
        assert!(filter(Filter {
            pipelines: vec!["ci".into()],
            ..Default::default()
        }));
        assert!(!filter(Filter {
            pipelines: vec!["nightly".into()],
            ..Default::default()
        }));
        assert!(!filter(Filter {
            types: vec!["run_status".into()],
            ..Default::default()
        }));
        assert!(!filter(Filter {
            runs: vec!["r2".into()],
            ..Default::default()
        }));
    }

    #[test]
    fn a_batch_status_also_becomes_a_node_status() {
        let event = Arc::new(Event {
            seq: 9,
            time: Utc::now(),
            kind: EventKind::BatchStatus {
                run_id: "r1".into(),
                pipeline: "ci".into(),
                batch_id: "build".into(),
                batch_name: "Build".into(),
                status: BatchStatus::Running,
                branch: None,
                error: None,
                summary: None,
                depends_on: Vec::new(),
            },
        });
        let frame = Frame::new(event, Some("ci".into()));
        let node: serde_json::Value =
            serde_json::from_str(frame.node_status.as_deref().unwrap()).unwrap();
        assert_eq!(node["type"], "node_status");
        assert_eq!(node["status"], "processing");
        assert_eq!(node["event_seq"], 9);
        assert!(frame.node_status_passes(&Filter {
            types: vec!["node_status".into()],
            ..Default::default()
        }));
        assert!(!frame.passes(&Filter {
            types: vec!["node_status".into()],
            ..Default::default()
        }));
    }
}
