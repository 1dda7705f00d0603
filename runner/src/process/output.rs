//! Cuts a task's output into numbered chunks of at most 10 KB that never
//! split a UTF-8 character, up to the task's output limit.
//!
//! ## The output limit
//! A [`Chunker`] made [`with_limit`](Chunker::with_limit) passes on at most
//! that many bytes of output (both streams together); the rest is dropped
//! and only counted, so a flood costs neither events nor history. The end
//! of stdout is still kept for the task's result (its last JSON line is
//! what later tasks read). [`Chunker::cut`] says, at the end, whether and
//! how much was dropped; the caller turns that into one `log` warning.

use crate::units::format_size_exact;
use protocol::{MAX_CHUNK_BYTES, Stream};
use serde_json::{Value, json};

/// Numbers chunks across both streams of one task: 0, 1, 2, ...
pub struct Chunker {
    next_sequence: u64,
    carry_out: Vec<u8>,
    carry_err: Vec<u8>,
    /// The last bytes of stdout, kept for the task's output.
    tail: Vec<u8>,
    /// Bytes of output passed on so far.
    passed: u64,
    /// At most this many bytes are passed on.
    limit: u64,
    /// Bytes dropped past the limit.
    dropped: u64,
}

impl Default for Chunker {
    fn default() -> Self {
        Self::with_limit(u64::MAX)
    }
}

/// How much of stdout a task's output keeps.
pub const STDOUT_TAIL: usize = 64 * 1024;

/// Output dropped past a task's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputCut {
    /// The limit, in bytes.
    pub limit: u64,
    /// Bytes written after the limit was reached.
    pub dropped: u64,
}

impl OutputCut {
    /// The marker's text: `output cut at 4 MiB: 1234 bytes dropped`.
    pub fn message(&self) -> String {
        format!(
            "output cut at {}: {} bytes dropped (the `output` limit)",
            format_size_exact(self.limit),
            self.dropped
        )
    }

    /// `{"limit_bytes": .., "dropped_bytes": ..}`, for a task's result.
    pub fn to_json(self) -> Value {
        json!({ "limit_bytes": self.limit, "dropped_bytes": self.dropped })
    }

    /// `result` with an `output_cut` entry: added to an object, else a new
    /// object holding the old value as `output`.
    pub fn annotate(self, result: Option<Value>) -> Value {
        match result {
            Some(Value::Object(mut map)) => {
                map.insert("output_cut".into(), self.to_json());
                Value::Object(map)
            }
            None => json!({ "output_cut": self.to_json() }),
            Some(other) => json!({ "output": other, "output_cut": self.to_json() }),
        }
    }
}

impl Chunker {
    /// A chunker passing on at most `limit` bytes of output.
    pub fn with_limit(limit: u64) -> Self {
        Self {
            next_sequence: 0,
            carry_out: Vec::new(),
            carry_err: Vec::new(),
            tail: Vec::new(),
            passed: 0,
            limit,
            dropped: 0,
        }
    }

    /// What was dropped past the limit, if anything was.
    pub fn cut(&self) -> Option<OutputCut> {
        (self.dropped > 0).then_some(OutputCut {
            limit: self.limit,
            dropped: self.dropped,
        })
    }

    /// Counts `bytes` more as dropped past the limit, as another chunker
    /// (a worker's, with the same limit) dropped them: nothing passes any more.
    pub fn dropped(&mut self, bytes: u64) {
        if bytes > 0 {
            self.passed = self.limit;
            self.dropped += bytes;
        }
    }

    /// Splits `data` into chunks; a trailing partial character waits for the next call.
    pub fn push(&mut self, stream: Stream, data: &[u8]) -> Vec<(u64, String)> {
        if stream == Stream::Stdout {
            self.tail.extend_from_slice(data);
            if self.tail.len() > STDOUT_TAIL * 2 {
                self.tail.drain(..self.tail.len() - STDOUT_TAIL);
            }
        }
        if self.passed >= self.limit {
            self.dropped += data.len() as u64;
            return Vec::new();
        }
        let carry = match stream {
            Stream::Stdout => &mut self.carry_out,
            Stream::Stderr => &mut self.carry_err,
        };
        carry.extend_from_slice(data);
        let complete = match std::str::from_utf8(carry) {
            Ok(_) => carry.len(),
            // An error at the very end is a character still arriving.
            Err(err) if err.error_len().is_none() => err.valid_up_to(),
            Err(_) => carry.len(),
        };
        let bytes: Vec<u8> = carry.drain(..complete).collect();
        self.chunks(&String::from_utf8_lossy(&bytes))
    }

    /// Whatever partial characters are left, at the end of the task.
    pub fn finish(&mut self) -> Vec<(u64, String)> {
        let mut chunks = Vec::new();
        for carry in [
            std::mem::take(&mut self.carry_out),
            std::mem::take(&mut self.carry_err),
        ] {
            if !carry.is_empty() {
                chunks.extend(self.chunks(&String::from_utf8_lossy(&carry)));
            }
        }
        chunks
    }

    /// The end of stdout, as text.
    pub fn stdout_tail(&self) -> String {
        let start = self.tail.len().saturating_sub(STDOUT_TAIL);
        String::from_utf8_lossy(&self.tail[start..]).into_owned()
    }

    /// Numbered chunks of `text`, as far as the limit lets it through.
    fn chunks(&mut self, text: &str) -> Vec<(u64, String)> {
        let left = self.limit.saturating_sub(self.passed);
        let mut end = text.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.dropped += (text.len() - end) as u64;
        if end < text.len() {
            // Nothing passes any more, not even a character that would fit.
            self.passed = self.limit;
        } else {
            self.passed += end as u64;
        }
        let mut chunks = Vec::new();
        let mut rest = &text[..end];
        while !rest.is_empty() {
            let mut end = rest.len().min(MAX_CHUNK_BYTES);
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            chunks.push((self.next_sequence, rest[..end].to_string()));
            self.next_sequence += 1;
            rest = &rest[end..];
        }
        chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_long_output_into_numbered_chunks_of_at_most_10_kb() {
        let mut chunker = Chunker::default();
        let chunks = chunker.push(Stream::Stdout, &vec![b'x'; 25 * 1024]);
        assert_eq!(
            chunks.iter().map(|c| c.0).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!(chunks.iter().all(|c| c.1.len() <= MAX_CHUNK_BYTES));
        assert_eq!(chunks.iter().map(|c| c.1.len()).sum::<usize>(), 25 * 1024);
    }

    #[test]
    fn passes_output_up_to_the_limit_then_only_counts_what_it_drops() {
        let mut chunker = Chunker::with_limit(25 * 1024);
        let mut passed = 0;
        for _ in 0..10 {
            passed += chunker
                .push(Stream::Stdout, &[b'y'; 10 * 1024])
                .iter()
                .map(|c| c.1.len())
                .sum::<usize>();
            passed += chunker
                .push(Stream::Stderr, b"err\n")
                .iter()
                .map(|c| c.1.len())
                .sum::<usize>();
        }
        assert!(chunker.finish().is_empty());
        assert_eq!(passed, 25 * 1024);
        let cut = chunker.cut().expect("output was cut");
        assert_eq!(cut.limit, 25 * 1024);
        assert_eq!(cut.dropped, 10 * (10 * 1024 + 4) - 25 * 1024);
        assert_eq!(
            cut.message(),
            format!(
                "output cut at 25 KiB: {} bytes dropped (the `output` limit)",
                cut.dropped
            )
        );
        // The end of stdout is still there for the task's result.
        assert!(chunker.stdout_tail().ends_with('y'));
    }

    #[test]
    fn cuts_at_a_character_boundary_and_says_nothing_when_under_the_limit() {
        let mut chunker = Chunker::with_limit(4);
        let chunks = chunker.push(Stream::Stdout, "abcé".as_bytes());
        assert_eq!(chunks, vec![(0, "abc".to_string())]);
        assert_eq!(chunker.cut().map(|c| c.dropped), Some(2));
        assert!(chunker.push(Stream::Stdout, b"d").is_empty());

        let mut under = Chunker::with_limit(100);
        under.push(Stream::Stdout, b"hello");
        assert_eq!(under.cut(), None);
    }

    #[test]
    fn a_cut_is_added_to_the_result_of_a_task() {
        let cut = OutputCut {
            limit: 1 << 20,
            dropped: 7,
        };
        let result = cut.annotate(Some(json!({ "exit_code": 0 })));
        assert_eq!(result["exit_code"], 0);
        assert_eq!(result["output_cut"]["dropped_bytes"], 7);
        assert_eq!(result["output_cut"]["limit_bytes"], 1 << 20);
        assert_eq!(cut.annotate(None)["output_cut"]["dropped_bytes"], 7);
        assert_eq!(cut.annotate(Some(json!(3)))["output"], 3);
    }

    #[test]
    fn never_splits_a_character_across_writes() {
        let mut chunker = Chunker::default();
        let text = "héllo".as_bytes();
        let first = chunker.push(Stream::Stdout, &text[..2]);
        let second = chunker.push(Stream::Stdout, &text[2..]);
        assert_eq!(first, vec![(0, "h".to_string())]);
        assert_eq!(second, vec![(1, "éllo".to_string())]);
    }
}
