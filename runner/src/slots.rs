//! Slots under a concurrency limit, handed out by priority.
//!
//! Waiters are served high before normal before low, and first come first
//! served within a priority. A waiter that gives up (its future is dropped)
//! never holds a slot: a slot sent to it comes back when the unreceived
//! [`Permit`] is dropped.

use protocol::Priority;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

pub struct Slots {
    state: Mutex<State>,
}

struct State {
    free: usize,
    next_ticket: u64,
    waiting: BinaryHeap<Waiter>,
}

struct Waiter {
    priority: Priority,
    ticket: u64,
    tx: oneshot::Sender<Permit>,
}

impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap: higher priority first, then the lower (earlier) ticket.
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.ticket.cmp(&self.ticket))
    }
}

impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Waiter {}

/// One slot, given back when dropped.
pub struct Permit {
    slots: Arc<Slots>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.slots.release();
    }
}

impl Slots {
    pub fn new(count: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                free: count,
                next_ticket: 0,
                waiting: BinaryHeap::new(),
            }),
        })
    }

    /// Waits for a slot.
    pub async fn acquire(self: &Arc<Self>, priority: Priority) -> Permit {
        let rx = {
            let mut state = self.state.lock().expect("slots lock");
            if state.free > 0 && state.waiting.is_empty() {
                state.free -= 1;
                return Permit {
                    slots: self.clone(),
                };
            }
            let (tx, rx) = oneshot::channel();
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.waiting.push(Waiter {
                priority,
                ticket,
                tx,
            });
            rx
        };
        rx.await
            .expect("a waiter is only dropped after being served")
    }

    /// How many are waiting.
    pub fn waiting(&self) -> usize {
        self.state.lock().expect("slots lock").waiting.len()
    }

    fn release(self: &Arc<Self>) {
        let mut state = self.state.lock().expect("slots lock");
        while let Some(waiter) = state.waiting.pop() {
            // A permit sent to a waiter that left comes straight back
            // through `Drop`, so release the lock before sending.
            drop(state);
            match waiter.tx.send(Permit {
                slots: self.clone(),
            }) {
                Ok(()) => return,
                Err(permit) => {
                    std::mem::forget(permit);
                    state = self.state.lock().expect("slots lock");
                }
            }
        }
        state.free += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn serves_high_before_normal_before_low_and_fifo_within_a_priority() {
        let slots = Slots::new(1);
        let held = slots.acquire(Priority::Normal).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for (name, priority) in [
            ("low1", Priority::Low),
            ("normal1", Priority::Normal),
            ("high1", Priority::High),
            ("low2", Priority::Low),
            ("high2", Priority::High),
        ] {
            let (queue, order) = (slots.clone(), order.clone());
            handles.push(tokio::spawn(async move {
                let _permit = queue.acquire(priority).await;
                order.lock().unwrap().push(name);
            }));
            while slots.waiting() < handles.len() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        drop(held);
        for handle in handles {
            handle.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            vec!["high1", "high2", "normal1", "low1", "low2"]
        );
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_keep_the_slot() {
        let slots = Slots::new(1);
        let held = slots.acquire(Priority::Normal).await;
        let gave_up =
            tokio::time::timeout(Duration::from_millis(10), slots.acquire(Priority::High)).await;
        assert!(gave_up.is_err());
        drop(held);
        let again =
            tokio::time::timeout(Duration::from_secs(5), slots.acquire(Priority::Low)).await;
        assert!(again.is_ok(), "the slot came back");
    }
}
