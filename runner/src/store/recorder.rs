//! [`Recorder`]: the subscriber that writes every published event to the store.

use super::writer::Command;
use super::{FLUSH_LIMIT, Store, StoreError};
use crate::events::EventBus;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How many events the forwarding thread hands over at once, at most.
const FORWARD_BATCH: usize = 1024;

/// How long the forwarding thread waits between rounds while events flow.
/// Each round is a transaction: at 2 ms, a run of 2,000 short `exec` tasks
/// spent a sixth more system time, most of it committing rounds of a few
/// events each. The history is that much behind the bus (the live view and
/// WebSocket clients read the bus); a flush does not wait it out.
const FORWARD_PAUSE: Duration = Duration::from_millis(10);

/// Writes every event of a bus to a [`Store`], from the moment it starts.
///
/// A thread of its own takes events off the bus subscription and hands them
/// to the store's writer thread, so publishing never waits for SQLite. The
/// thread ends when the bus is dropped.
pub struct Recorder {
    store: Store,
    bus: Arc<EventBus>,
}

impl Recorder {
    /// Starts recording every event `bus` publishes from now on.
    pub fn start(store: &Store, bus: &Arc<EventBus>) -> Self {
        store.shared.recorder_attached.store(true, Ordering::SeqCst);
        let after = bus.next_seq().saturating_sub(1);
        // `subscribe_after` of the seq just before the next one: nothing is
        // missed between reading `next_seq` and subscribing.
        let (missed, mut events) = bus
            .subscribe_after(after)
            .expect("the bus keeps the newest events");
        {
            let mut progress = store.shared.progress.lock().expect("store progress lock");
            progress.handled_seq = progress.handled_seq.max(after);
        }
        let tx = store.tx.clone();
        let spawned = std::thread::Builder::new()
            .name("runner-recorder".into())
            .spawn(move || {
                if !missed.is_empty() && tx.send(Command::Events(missed)).is_err() {
                    return;
                }
                while let Some(event) = events.blocking_recv() {
                    let mut batch = vec![event];
                    // While events flow, take them in rounds a pause apart:
                    // a publisher then seldom has a sleeping thread to wake
                    // (a wake-up per event cost a busy run more than the
                    // writing did). Idle, it sleeps until the next event.
                    loop {
                        while batch.len() < FORWARD_BATCH {
                            match events.try_recv() {
                                Ok(event) => batch.push(event),
                                Err(_) => break,
                            }
                        }
                        let full = batch.len() == FORWARD_BATCH;
                        if tx
                            .send(Command::Events(std::mem::take(&mut batch)))
                            .is_err()
                        {
                            return;
                        }
                        if !full {
                            // A flush wakes it early ([`wait_for`]).
                            std::thread::park_timeout(FORWARD_PAUSE);
                        }
                        match events.try_recv() {
                            Ok(event) => batch.push(event),
                            Err(_) => break,
                        }
                    }
                }
            });
        if let Ok(handle) = &spawned {
            *store
                .shared
                .recorder_thread
                .lock()
                .expect("store recorder lock") = Some(handle.thread().clone());
        }
        if let Err(err) = spawned {
            tracing::error!("history: cannot start the recorder thread: {err}");
            let mut progress = store.shared.progress.lock().expect("store progress lock");
            progress.stopped = Some(format!("the recorder thread did not start: {err}"));
        }
        Self {
            store: store.clone(),
            bus: bus.clone(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The highest sequence number the store has handled.
    pub fn written_seq(&self) -> u64 {
        self.store
            .shared
            .progress
            .lock()
            .expect("store progress lock")
            .handled_seq
    }

    /// Waits (at most [`FLUSH_LIMIT`]) until every event published so far is
    /// written; reports the first write error since the last flush.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.flush_within(FLUSH_LIMIT)
    }

    /// [`Recorder::flush`] for async callers: waits on a blocking thread.
    pub async fn flush_async(&self) -> Result<(), StoreError> {
        let (store, target) = (self.store.clone(), self.bus.next_seq().saturating_sub(1));
        tokio::task::spawn_blocking(move || wait_for(&store, target, FLUSH_LIMIT))
            .await
            .map_err(|err| StoreError::WriterStopped(err.to_string()))?
    }

    /// Like [`Recorder::flush`], waiting at most `limit`.
    pub fn flush_within(&self, limit: Duration) -> Result<(), StoreError> {
        wait_for(&self.store, self.bus.next_seq().saturating_sub(1), limit)
    }
}

fn wait_for(store: &Store, target: u64, limit: Duration) -> Result<(), StoreError> {
    let deadline = Instant::now() + limit;
    let shared = &store.shared;
    // The forwarding thread may be in its pause with the last events.
    if let Some(thread) = &*shared.recorder_thread.lock().expect("store recorder lock") {
        thread.unpark();
    }
    let mut progress = shared.progress.lock().expect("store progress lock");
    while progress.handled_seq < target {
        if let Some(stopped) = &progress.stopped {
            return Err(StoreError::WriterStopped(stopped.clone()));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StoreError::Write(format!(
                "events up to {target} were not written within {}s (written up to {})",
                limit.as_secs(),
                progress.handled_seq
            )));
        }
        progress = shared
            .written
            .wait_timeout(progress, left)
            .expect("store progress lock")
            .0;
    }
    match progress.error.take() {
        Some(message) => Err(StoreError::Write(message)),
        None => Ok(()),
    }
}
