//! Permission prompts waiting for a person.
//!
//! An adapter that relays prompts (the 0.2.0 `approvals` interface) hands
//! each one to the host; the host publishes `approval_requested`, and the
//! first [`Approvals::decide`] for its id wins: later answers, and answers
//! after the prompt timed out or its command ended, are refused. What was
//! decided is then written to the CLI's standard input by the command that
//! waits (see `command.rs`), which publishes `approval_decided`.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// How a prompt was answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub allow: bool,
    /// Told to the agent.
    pub message: Option<String>,
    /// Who answered (a client's name, `terminal`, `timeout`).
    pub by: String,
}

/// Why an answer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    #[error(
        "no permission prompt `{0}` is waiting: it was already answered, timed out, or its command ended"
    )]
    NotWaiting(String),
}

/// Prompts of one command beyond this many at once are denied at once: a
/// CLI cannot grow the table without bound.
pub const MAX_PENDING_PER_COMMAND: usize = 16;

struct Pending {
    command_id: String,
    answer: oneshot::Sender<Answer>,
}

/// The prompts that wait, by id.
#[derive(Default)]
pub struct Approvals {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Approvals {
    /// Registers a prompt of `command_id`: its id and where its answer
    /// arrives; `None` when the command already has
    /// [`MAX_PENDING_PER_COMMAND`] prompts waiting.
    pub(super) fn open(&self, command_id: &str) -> Option<(String, oneshot::Receiver<Answer>)> {
        let mut pending = self.pending.lock().expect("approvals lock");
        let waiting = pending
            .values()
            .filter(|p| p.command_id == command_id)
            .count();
        if waiting >= MAX_PENDING_PER_COMMAND {
            return None;
        }
        let id = crate::ids::approval_id();
        let (answer, rx) = oneshot::channel();
        pending.insert(
            id.clone(),
            Pending {
                command_id: command_id.to_string(),
                answer,
            },
        );
        Some((id, rx))
    }

    /// Answers the prompt `id`; the first answer wins.
    pub fn decide(&self, id: &str, answer: Answer) -> Result<(), DecisionError> {
        let pending = self
            .pending
            .lock()
            .expect("approvals lock")
            .remove(id)
            .ok_or_else(|| DecisionError::NotWaiting(id.to_string()))?;
        // The waiting command went away between the lookup and now: the
        // prompt is not waiting any more.
        pending
            .answer
            .send(answer)
            .map_err(|_| DecisionError::NotWaiting(id.to_string()))
    }

    /// Takes the prompt `id` out of the table (it timed out, or its
    /// command ended); `false` when an answer took it first.
    pub(super) fn withdraw(&self, id: &str) -> bool {
        self.pending
            .lock()
            .expect("approvals lock")
            .remove(id)
            .is_some()
    }

    /// How many prompts wait.
    pub fn waiting(&self) -> usize {
        self.pending.lock().expect("approvals lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(allow: bool, by: &str) -> Answer {
        Answer {
            allow,
            message: None,
            by: by.into(),
        }
    }

    #[test]
    fn the_first_answer_wins_and_a_second_is_refused() {
        let approvals = Approvals::default();
        let (id, mut rx) = approvals.open("cmd-1").expect("room");
        approvals.decide(&id, answer(true, "a")).expect("first");
        let second = approvals.decide(&id, answer(false, "b"));
        assert_eq!(second, Err(DecisionError::NotWaiting(id.clone())));
        assert_eq!(rx.try_recv().expect("answered"), answer(true, "a"));
        assert_eq!(approvals.waiting(), 0);
    }

    #[test]
    fn a_withdrawn_prompt_takes_no_answer() {
        let approvals = Approvals::default();
        let (id, _rx) = approvals.open("cmd-1").expect("room");
        assert!(approvals.withdraw(&id));
        assert!(!approvals.withdraw(&id));
        assert!(approvals.decide(&id, answer(true, "a")).is_err());
    }

    #[test]
    fn one_command_cannot_open_prompts_without_bound() {
        let approvals = Approvals::default();
        let open: Vec<_> = (0..MAX_PENDING_PER_COMMAND)
            .map(|_| approvals.open("cmd-1").expect("room"))
            .collect();
        assert!(approvals.open("cmd-1").is_none());
        assert!(
            approvals.open("cmd-2").is_some(),
            "other commands still may"
        );
        drop(open);
    }
}
