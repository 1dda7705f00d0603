//! Permission prompts answered in the terminal that runs `runner ask`.
//!
//! Each `approval_requested` of the command is asked in turn on standard
//! error (`allow Write? [y/N]`), and the line typed answers it: `y` or
//! `yes` allows, anything else denies, with the text as the message told to
//! the agent when it is more than `n`/`no`. A prompt answered elsewhere
//! first (a dashboard, the timeout) is dropped from the turn. Without a
//! terminal on standard input nothing is asked: the prompt waits for a
//! dashboard or another client, or for its timeout.

use crate::agents::Answer;
use protocol::{Event, EventKind};
use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal, Write};
use tokio::sync::mpsc;

pub(super) struct TerminalPrompts {
    asks: bool,
    /// Lines typed, from a reader thread started at the first prompt.
    lines: Option<mpsc::UnboundedReceiver<String>>,
    /// Prompts waiting, oldest first: (approval id, tool); the first is asked.
    waiting: VecDeque<(String, String)>,
    /// Whether the first of `waiting` was asked already.
    asked: bool,
    told_how: bool,
}

impl TerminalPrompts {
    pub(super) fn new() -> Self {
        Self {
            asks: std::io::stdin().is_terminal(),
            lines: None,
            waiting: VecDeque::new(),
            asked: false,
            told_how: false,
        }
    }

    /// Takes in an event of the command `command_id`.
    pub(super) fn see(&mut self, event: &Event, command_id: &str) {
        match &event.kind {
            EventKind::ApprovalRequested {
                approval_id,
                command_id: of,
                tool,
                ..
            } if of == command_id => {
                if !self.asks {
                    if !self.told_how {
                        self.told_how = true;
                        eprintln!(
                            "note: standard input is not a terminal: answer permission prompts from the dashboard or with an `approval_decision` message"
                        );
                    }
                    return;
                }
                self.waiting.push_back((approval_id.clone(), tool.clone()));
                self.ask_next();
            }
            EventKind::ApprovalDecided {
                approval_id,
                decided_by,
                ..
            } => {
                let Some(at) = self.waiting.iter().position(|(id, _)| id == approval_id) else {
                    return;
                };
                self.waiting.remove(at);
                if at == 0 && self.asked {
                    self.asked = false;
                    if decided_by != "terminal" {
                        eprintln!("(answered by {decided_by})");
                    }
                }
                self.ask_next();
            }
            _ => {}
        }
    }

    fn ask_next(&mut self) {
        let Some((_, tool)) = self.waiting.front() else {
            return;
        };
        if self.asked {
            return;
        }
        self.asked = true;
        if self.lines.is_none() {
            let (tx, rx) = mpsc::unbounded_channel();
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            self.lines = Some(rx);
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "allow {tool}? [y/N, or a reason to deny with] ");
        let _ = err.flush();
    }

    /// The next answer typed: the prompt it answers, and the answer.
    /// Pending while nothing is asked.
    pub(super) async fn next(&mut self) -> (String, Answer) {
        loop {
            let line = match (&mut self.lines, self.asked) {
                (Some(lines), true) => lines.recv().await,
                _ => std::future::pending().await,
            };
            let Some(line) = line else {
                // Standard input ended: ask no more.
                self.lines = None;
                self.asks = false;
                self.asked = false;
                continue;
            };
            let Some((id, _)) = self.waiting.pop_front() else {
                continue;
            };
            self.asked = false;
            return (id, parse_answer(&line));
        }
    }
}

/// `y`/`yes` allows; anything else denies, with the text as the reason.
pub(super) fn parse_answer(line: &str) -> Answer {
    let text = line.trim();
    let lower = text.to_ascii_lowercase();
    let allow = matches!(lower.as_str(), "y" | "yes");
    let message = (!allow && !matches!(lower.as_str(), "" | "n" | "no")).then(|| text.to_string());
    Answer {
        allow,
        message,
        by: "terminal".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_allows_and_any_other_text_denies_with_it_as_the_reason() {
        assert!(parse_answer(" Y ").allow);
        assert!(parse_answer("yes").allow);
        let no = parse_answer("n");
        assert!(!no.allow && no.message.is_none());
        assert!(!parse_answer("").allow);
        let reason = parse_answer("not outside src/");
        assert!(!reason.allow);
        assert_eq!(reason.message.as_deref(), Some("not outside src/"));
    }
}
