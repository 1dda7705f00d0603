//! What a coordinator hears of a dispatched task while it waits for it
//! ([`super::remote`]): claims said on the task, output passed through the
//! task's chunker as a local task's output goes, a block's log lines, and
//! an agent command's events (`remote_agents.rs`).

use super::RunCtx;
use super::remote::{Remote, Seen, UNCLAIMED_NOTE};
use crate::process::output::Chunker;
use crate::queue::Part;
use protocol::{EventKind, LogLevel, Stream};
use serde_json::Value;
use std::sync::Mutex;
use tokio::time::Instant;
/// What the coordinator heard of one dispatched task while waiting for it.
pub(super) struct Heard {
    task_id: String,
    batch_id: String,
    /// Its plugin's name, what its log lines come from.
    source: String,
    /// When it was queued, for [`UNCLAIMED_NOTE`].
    queued_at: Option<Instant>,
    /// Whether the note was said.
    said_unclaimed: bool,
    /// The attempt and worker of the last claim.
    claim: Option<(i32, String)>,
    /// Whether that attempt's output came.
    output_since_claim: bool,
    /// Whether a worker said it cut the output at the limit.
    pub(super) cut: bool,
    /// An agent task's command, as said here.
    pub(super) turn: Option<super::remote_agents::RemoteTurn>,
}

impl Heard {
    pub(super) fn new(task_id: &str, batch_id: &str, source: &str) -> Self {
        Self {
            task_id: task_id.to_string(),
            batch_id: batch_id.to_string(),
            source: source.to_string(),
            queued_at: None,
            said_unclaimed: false,
            claim: None,
            output_since_claim: false,
            cut: false,
            turn: None,
        }
    }

    /// Says `seen` on the task as a local run would: output through the
    /// task's chunker, a block's log line as its log; a claim as an `info`
    /// line and the task's progress.
    pub(super) fn saw(
        &mut self,
        ctx: &RunCtx,
        remote: &Remote,
        chunker: &Mutex<Chunker>,
        seen: Seen<'_>,
    ) {
        let task_id = self.task_id.as_str();
        match seen {
            Seen::Unclaimed => {
                // Said once, when no worker has taken the task for a while:
                // a run with no worker would otherwise wait in silence.
                let queued_at = *self.queued_at.get_or_insert_with(Instant::now);
                if !self.said_unclaimed && queued_at.elapsed() >= UNCLAIMED_NOTE {
                    self.said_unclaimed = true;
                    ctx.log(
                        Some(task_id),
                        LogLevel::Warn,
                        format!(
                            "no worker has claimed it in {}: is a `runner worker --queue … --schema {}` running?",
                            crate::units::format_duration(UNCLAIMED_NOTE),
                            remote.schema
                        ),
                    );
                }
            }
            Seen::Claimed(claim) => {
                let mut message = format!(
                    "claimed by worker {} (attempt {})",
                    claim.worker, claim.attempt
                );
                match &self.claim {
                    Some((attempt, worker)) if self.output_since_claim => {
                        message.push_str(&format!(
                            ": the output above came from attempt {attempt} on worker {worker}"
                        ))
                    }
                    Some((attempt, worker)) => message.push_str(&format!(
                        "; attempt {attempt} on worker {worker} did not finish"
                    )),
                    None => {}
                }
                ctx.log(Some(task_id), LogLevel::Info, message);
                if let Some(turn) = &mut self.turn {
                    turn.claimed(ctx, task_id, claim.attempt, &claim.worker);
                }
                ctx.publish(EventKind::TaskProgress {
                    run_id: ctx.run_id.clone(),
                    batch_id: self.batch_id.clone(),
                    task_id: task_id.to_string(),
                    display_text: format!("on worker {} (attempt {})", claim.worker, claim.attempt),
                    percent: None,
                });
                self.claim = Some((claim.attempt, claim.worker.clone()));
                self.output_since_claim = false;
            }
            Seen::Output(piece) => {
                let stream = match piece.part {
                    Part::Stdout => Stream::Stdout,
                    Part::Stderr => Stream::Stderr,
                    Part::Log => {
                        self.output_since_claim = true;
                        let line: Value = serde_json::from_slice(&piece.chunk).unwrap_or_default();
                        let level = serde_json::from_value::<LogLevel>(line["level"].clone())
                            .unwrap_or(LogLevel::Info);
                        let message = line["message"].as_str().unwrap_or_default();
                        ctx.publish(EventKind::log(
                            Some(ctx.run_id.clone()),
                            Some(task_id.to_string()),
                            level,
                            self.source.as_str(),
                            message,
                        ));
                        return;
                    }
                    Part::Event => {
                        self.output_since_claim = true;
                        let event = serde_json::from_slice::<EventKind>(&piece.chunk);
                        if let (Some(turn), Ok(event)) = (&mut self.turn, event) {
                            turn.event(ctx, task_id, piece.attempt, event);
                        }
                        return;
                    }
                    Part::Cut => {
                        self.cut = true;
                        return;
                    }
                };
                self.output_since_claim = true;
                let chunks = chunker
                    .lock()
                    .expect("chunker lock")
                    .push(stream, &piece.chunk);
                ctx.output_chunks(task_id, stream, chunks);
            }
        }
    }
}
