//! The typed events and messages of `runner`.
//!
//! One [`Event`] type is the truth: the scheduler publishes it, and the
//! terminal printer, `--json`, the store and the WebSocket server all read
//! the same values. Every event carries a sequence number that only grows
//! and an RFC 3339 timestamp.
//!
//! ## Wire format
//! An event is one JSON object with a `type` field naming its kind, the
//! `seq` and `time` fields, and the kind's own fields flattened beside them:
//!
//! ```json
//! {"seq":7,"time":"2026-11-22T10:00:00.000Z","type":"batch_status","run_id":"r1",
//!  "batch_id":"build","batch_name":"Build","status":"failed","error":"task `x` failed"}
//! ```

mod event;
mod messages;
mod status;
mod time;

pub use event::*;
pub use messages::*;
pub use status::*;

/// The version of the event and message format.
pub const PROTOCOL_VERSION: &str = "1.0.0";

/// Terminal output is cut into chunks of at most this many bytes.
pub const MAX_CHUNK_BYTES: usize = 10 * 1024;
