//! `runner logs RUN --follow`: polling the history for a run's new log lines.

use super::records::LogLine;
use super::{Store, StoreError};
use std::time::Duration;

impl Store {
    /// Follows the logs of a run as they are written, from `after_seq`.
    pub fn follow_logs(&self, run_id: &str, task: Option<&str>, after_seq: u64) -> LogFollow {
        LogFollow {
            store: self.clone(),
            run_id: run_id.to_string(),
            task: task.map(str::to_string),
            after_seq,
            poll: Duration::from_millis(250),
            done: false,
        }
    }
}

/// `runner logs RUN --follow`: new lines as they are written, until the run
/// has ended and every line of it was read.
pub struct LogFollow {
    store: Store,
    run_id: String,
    task: Option<String>,
    after_seq: u64,
    poll: Duration,
    done: bool,
}

impl LogFollow {
    /// How often the database is polled (default 250 ms).
    pub fn poll_every(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The sequence number of the last line returned.
    pub fn last_seq(&self) -> u64 {
        self.after_seq
    }

    /// The next lines; `None` once the run has ended and nothing is left.
    pub async fn next(&mut self) -> Result<Option<Vec<LogLine>>, StoreError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let (store, run_id, task, after) = (
                self.store.clone(),
                self.run_id.clone(),
                self.task.clone(),
                self.after_seq,
            );
            let (ended, lines) = tokio::task::spawn_blocking(move || {
                // Status first: a run that had ended before the read has
                // all its lines in that read.
                let ended = store
                    .run_status(&run_id)?
                    .is_none_or(|status| status != "running");
                let lines = store.logs(&run_id, task.as_deref(), after, 1000)?;
                Ok::<_, StoreError>((ended, lines))
            })
            .await
            .map_err(|err| StoreError::WriterStopped(err.to_string()))??;
            if let Some(last) = lines.last() {
                self.after_seq = last.seq;
                return Ok(Some(lines));
            }
            if ended {
                self.done = true;
                return Ok(None);
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}
