//! Cuts a task's output into numbered chunks of at most 10 KB that never
//! split a UTF-8 character.

use protocol::{MAX_CHUNK_BYTES, Stream};

/// Numbers chunks across both streams of one task: 0, 1, 2, ...
#[derive(Default)]
pub struct Chunker {
    next_sequence: u64,
    carry_out: Vec<u8>,
    carry_err: Vec<u8>,
    /// The last bytes of stdout, kept for the task's output.
    tail: Vec<u8>,
}

/// How much of stdout a task's output keeps.
pub const STDOUT_TAIL: usize = 64 * 1024;

impl Chunker {
    /// Splits `data` into chunks; a trailing partial character waits for the next call.
    pub fn push(&mut self, stream: Stream, data: &[u8]) -> Vec<(u64, String)> {
        if stream == Stream::Stdout {
            self.tail.extend_from_slice(data);
            if self.tail.len() > STDOUT_TAIL * 2 {
                self.tail.drain(..self.tail.len() - STDOUT_TAIL);
            }
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
        self.cut(&String::from_utf8_lossy(&bytes))
    }

    /// Whatever partial characters are left, at the end of the task.
    pub fn finish(&mut self) -> Vec<(u64, String)> {
        let mut chunks = Vec::new();
        for carry in [
            std::mem::take(&mut self.carry_out),
            std::mem::take(&mut self.carry_err),
        ] {
            if !carry.is_empty() {
                chunks.extend(self.cut(&String::from_utf8_lossy(&carry)));
            }
        }
        chunks
    }

    /// The end of stdout, as text.
    pub fn stdout_tail(&self) -> String {
        let start = self.tail.len().saturating_sub(STDOUT_TAIL);
        String::from_utf8_lossy(&self.tail[start..]).into_owned()
    }

    fn cut(&mut self, text: &str) -> Vec<(u64, String)> {
        let mut chunks = Vec::new();
        let mut rest = text;
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
    fn never_splits_a_character_across_writes() {
        let mut chunker = Chunker::default();
        let text = "héllo".as_bytes();
        let first = chunker.push(Stream::Stdout, &text[..2]);
        let second = chunker.push(Stream::Stdout, &text[2..]);
        assert_eq!(first, vec![(0, "h".to_string())]);
        assert_eq!(second, vec![(1, "éllo".to_string())]);
    }
}
