//! A task's output on its way to the queue while the task runs.
//!
//! The executors hand what the task writes to a [`Tee`]; the loop that
//! holds the lease (`cli/worker.rs`) gathers it in [`Pending`] and sends it
//! with `Queue::put_output` every [`FLUSH_AFTER`], or sooner once
//! [`FLUSH_BYTES`] are waiting, and before the completion, so a reader that
//! sees the task ended has seen all of its output.
//!
//! ## The limit
//! A [`Tee`] passes on at most the payload's `output_limit` (the task's
//! `output` limit in the run, both streams together; a local run's default
//! without one). Past it, one [`Part::Cut`] marker is sent and the rest is
//! only counted, for the result's `output_cut`, as a local run counts it.
//! An agent task's events ([`Tee::event`]) count against the same limit,
//! each passed whole or not at all.

use crate::process::output::OutputCut;
use crate::queue::Part;
use protocol::{LogLevel, Stream};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long output waits before it is sent.
pub const FLUSH_AFTER: Duration = Duration::from_millis(100);
/// How much output is sent at once, without waiting for [`FLUSH_AFTER`].
pub const FLUSH_BYTES: usize = 64 * 1024;
/// The most one row holds.
const ROW_BYTES: usize = 64 * 1024;

/// A piece of output, as the executors hand it over.
pub type Piece = (Part, Vec<u8>);

/// The payload's `output_limit`, or a local run's default.
pub fn limit(payload: &Value) -> u64 {
    payload
        .get("output_limit")
        .and_then(Value::as_u64)
        .unwrap_or(crate::config::DEFAULT_OUTPUT)
}

/// Where an executor writes a task's output: passed on up to the limit.
#[derive(Clone)]
pub struct Tee {
    inner: Arc<Inner>,
}

struct Inner {
    to: mpsc::UnboundedSender<Piece>,
    limit: u64,
    counted: Mutex<Counted>,
}

#[derive(Default)]
struct Counted {
    sent: u64,
    dropped: u64,
}

impl Tee {
    /// A tee passing on at most `limit` bytes, and where they arrive.
    pub fn new(limit: u64) -> (Self, mpsc::UnboundedReceiver<Piece>) {
        let (to, from) = mpsc::unbounded_channel();
        let inner = Inner {
            to,
            limit,
            counted: Mutex::default(),
        };
        (
            Self {
                inner: Arc::new(inner),
            },
            from,
        )
    }

    /// What the task wrote on `stream`.
    pub fn output(&self, stream: Stream, data: &[u8]) {
        let part = match stream {
            Stream::Stdout => Part::Stdout,
            Stream::Stderr => Part::Stderr,
        };
        self.send(part, data, false);
    }

    /// A block's log line (whole or not at all).
    pub fn log(&self, level: LogLevel, message: &str) {
        let line = json!({"level": level, "message": message}).to_string();
        self.send(Part::Log, line.as_bytes(), true);
    }

    /// One event of an agent task's command, as its JSON (whole or not at all).
    pub fn event(&self, kind: &protocol::EventKind) {
        let json = serde_json::to_vec(kind).expect("an event is plain JSON");
        self.send(Part::Event, &json, true);
    }

    fn send(&self, part: Part, data: &[u8], whole: bool) {
        if data.is_empty() {
            return;
        }
        let inner = &*self.inner;
        let mut counted = inner.counted.lock().expect("tee lock");
        let left = inner.limit.saturating_sub(counted.sent);
        let fits = usize::try_from(left).unwrap_or(usize::MAX);
        let take = match (whole, data.len() <= fits) {
            (_, true) => data.len(),
            (true, false) => 0,
            (false, false) => fits,
        };
        if take > 0 {
            counted.sent += take as u64;
            // The receiver lives as long as the task's loop.
            let _ = inner.to.send((part, data[..take].to_vec()));
        }
        if take < data.len() {
            if counted.dropped == 0 {
                let _ = inner.to.send((Part::Cut, Vec::new()));
            }
            // Nothing passes any more, not even what would still fit.
            counted.sent = inner.limit;
            counted.dropped += (data.len() - take) as u64;
        }
    }

    /// What was dropped past the limit, if anything was.
    pub fn cut(&self) -> Option<OutputCut> {
        let counted = self.inner.counted.lock().expect("tee lock");
        (counted.dropped > 0).then_some(OutputCut {
            limit: self.inner.limit,
            dropped: counted.dropped,
        })
    }
}

/// Output gathered and not sent yet.
#[derive(Default)]
pub struct Pending {
    rows: Vec<Piece>,
    bytes: usize,
    since: Option<Instant>,
}

impl Pending {
    /// Adds `piece`, to the last row when it continues its stream.
    pub fn add(&mut self, (part, data): Piece) {
        self.since.get_or_insert_with(Instant::now);
        self.bytes += data.len();
        if let Some((last, chunk)) = self.rows.last_mut()
            && *last == part
            && matches!(part, Part::Stdout | Part::Stderr)
            && chunk.len() + data.len() <= ROW_BYTES
        {
            chunk.extend_from_slice(&data);
            return;
        }
        self.rows.push((part, data));
    }

    /// When it is to be sent: `None` while nothing waits.
    pub fn due(&self) -> Option<Instant> {
        let since = self.since?;
        Some(if self.bytes >= FLUSH_BYTES {
            since
        } else {
            since + FLUSH_AFTER
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn rows(&self) -> &[Piece] {
        &self.rows
    }

    /// Forgets what was sent.
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_output_up_to_the_limit_then_one_marker_and_counts_the_rest() {
        let (tee, mut from) = Tee::new(10);
        tee.output(Stream::Stdout, b"12345678");
        tee.output(Stream::Stderr, b"abcd");
        tee.output(Stream::Stdout, b"more");
        tee.log(LogLevel::Info, "late");
        let mut got = Vec::new();
        while let Ok(piece) = from.try_recv() {
            got.push(piece);
        }
        assert_eq!(
            got,
            vec![
                (Part::Stdout, b"12345678".to_vec()),
                (Part::Stderr, b"ab".to_vec()),
                (Part::Cut, Vec::new()),
            ]
        );
        let cut = tee.cut().expect("cut");
        assert_eq!((cut.limit, cut.dropped), (10, 2 + 4 + 33));
    }

    #[test]
    fn gathers_a_stream_into_one_row_until_the_other_writes() {
        let mut pending = Pending::default();
        assert!(pending.due().is_none());
        pending.add((Part::Stdout, b"a".to_vec()));
        pending.add((Part::Stdout, b"b".to_vec()));
        pending.add((Part::Stderr, b"c".to_vec()));
        pending.add((Part::Stdout, b"d".to_vec()));
        assert_eq!(
            pending.rows(),
            [
                (Part::Stdout, b"ab".to_vec()),
                (Part::Stderr, b"c".to_vec()),
                (Part::Stdout, b"d".to_vec()),
            ]
        );
        let due = pending.due().expect("due");
        pending.add((Part::Stdout, vec![b'x'; FLUSH_BYTES]));
        assert!(
            pending.due().expect("due") < due,
            "a full batch is due at once"
        );
        pending.clear();
        assert!(pending.is_empty() && pending.due().is_none());
    }
}
