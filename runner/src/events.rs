//! The event bus: numbers every [`Event`] and hands it to every subscriber.
//!
//! ## Publishing never blocks
//! `publish` takes a short lock, assigns the next sequence number, keeps
//! the event in a bounded ring of recent events and pushes it into each
//! subscriber's unbounded channel. A slow subscriber only grows its own
//! queue; it never slows the run. Subscribers that went away are dropped.
//!
//! ## Order
//! Sequence numbers are assigned under the lock that also delivers, so
//! every subscriber sees events in sequence order with no gaps.

use chrono::Utc;
use protocol::{Event, EventKind};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// How many recent events the bus keeps for late subscribers.
pub const RECENT_EVENTS: usize = 10_000;

pub type Subscription = mpsc::UnboundedReceiver<Arc<Event>>;

pub struct EventBus {
    inner: Mutex<Inner>,
}

struct Inner {
    next_seq: u64,
    recent: VecDeque<Arc<Event>>,
    subscribers: Vec<mpsc::UnboundedSender<Arc<Event>>>,
}

impl Inner {
    /// Keeps `event` in the ring and sends it to every subscriber still there.
    fn deliver(&mut self, event: Arc<Event>) {
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(event.clone());
        self.subscribers.retain(|tx| tx.send(event.clone()).is_ok());
    }
}

impl EventBus {
    /// A bus whose first event gets sequence number `first_seq`.
    pub fn new(first_seq: u64) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                next_seq: first_seq,
                recent: VecDeque::new(),
                subscribers: Vec::new(),
            }),
        })
    }

    /// Numbers, timestamps and delivers one event; returns its sequence number.
    pub fn publish(&self, kind: EventKind) -> u64 {
        let mut inner = self.inner.lock().expect("event bus lock");
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.deliver(Arc::new(Event {
            seq,
            time: Utc::now(),
            kind,
        }));
        seq
    }

    /// Delivers an event numbered elsewhere (the cluster's outbox, see
    /// `queue::outbox`): kept and sent as it is. An event numbered below
    /// the next expected one is dropped (already delivered); numbering goes
    /// on after it.
    pub fn publish_numbered(&self, event: Event) -> bool {
        let mut inner = self.inner.lock().expect("event bus lock");
        if event.seq < inner.next_seq {
            return false;
        }
        inner.next_seq = event.seq + 1;
        inner.deliver(Arc::new(event));
        true
    }

    /// Every event published from now on.
    pub fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner
            .lock()
            .expect("event bus lock")
            .subscribers
            .push(tx);
        rx
    }

    /// The kept events after `after_seq`, then every event after them, with
    /// nothing missed in between. `None` when the bus no longer holds the
    /// event right after `after_seq`.
    pub fn subscribe_after(&self, after_seq: u64) -> Option<(Vec<Arc<Event>>, Subscription)> {
        let mut inner = self.inner.lock().expect("event bus lock");
        let oldest = inner.recent.front().map_or(inner.next_seq, |e| e.seq);
        if after_seq + 1 < oldest {
            return None;
        }
        let missed = inner
            .recent
            .iter()
            .filter(|e| e.seq > after_seq)
            .cloned()
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        inner.subscribers.push(tx);
        Some((missed, rx))
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.inner.lock().expect("event bus lock").next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{LogLevel, RunStatus};

    fn log(message: &str) -> EventKind {
        EventKind::Log {
            run_id: None,
            task_id: None,
            level: LogLevel::Info,
            source: "test".into(),
            stream: None,
            message: message.into(),
        }
    }

    #[test]
    fn numbers_events_in_order_for_every_subscriber() {
        let bus = EventBus::new(1);
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        for i in 0..5 {
            bus.publish(log(&i.to_string()));
        }
        for rx in [&mut a, &mut b] {
            let seqs: Vec<u64> = (0..5).map(|_| rx.try_recv().unwrap().seq).collect();
            assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        }
    }

    #[test]
    fn a_late_subscriber_gets_what_it_missed_then_the_live_stream() {
        let bus = EventBus::new(1);
        bus.publish(log("one"));
        bus.publish(EventKind::RunStatus {
            run_id: "r".into(),
            pipeline: "p".into(),
            status: RunStatus::Running,
            message: None,
            error: None,
        });
        let (missed, mut rx) = bus.subscribe_after(1).unwrap();
        assert_eq!(missed.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
        bus.publish(log("three"));
        assert_eq!(rx.try_recv().unwrap().seq, 3);
    }

    #[test]
    fn a_dropped_subscriber_does_not_stop_publishing() {
        let bus = EventBus::new(1);
        drop(bus.subscribe());
        assert_eq!(bus.publish(log("x")), 1);
        assert_eq!(bus.publish(log("y")), 2);
    }
}
