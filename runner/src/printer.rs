//! Shows events to people (`runner run`) or prints them as JSON lines
//! (`runner run --json`). Both read the same [`Event`]s the bus carries.

use crate::units::format_size_rounded;
use protocol::{
    AttemptResult, BatchStatus, CompileStatus, Event, EventKind, LogLevel, RunStatus, Stream,
    TaskStatus,
};
use std::collections::HashMap;
use std::io::{self, Write};

/// One JSON object per line, flushed per event so pipes see it live.
pub fn print_json(out: &mut impl Write, event: &Event) -> io::Result<()> {
    serde_json::to_writer(&mut *out, event)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Human-readable live progress.
pub struct TerminalPrinter<W: Write> {
    out: W,
    color: bool,
    verbose: bool,
    /// Output not yet ending in a newline, per task and stream.
    partial: HashMap<(String, Stream), String>,
}

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

impl<W: Write> TerminalPrinter<W> {
    pub fn new(out: W, color: bool, verbose: bool) -> Self {
        Self {
            out,
            color,
            verbose,
            partial: HashMap::new(),
        }
    }

    fn paint(&self, style: &str, text: &str) -> String {
        if self.color {
            format!("{style}{text}{RESET}")
        } else {
            text.to_string()
        }
    }

    pub fn print(&mut self, event: &Event) -> io::Result<()> {
        let line = match &event.kind {
            EventKind::RunStatus { run_id, pipeline, status, message, error } => match status {
                RunStatus::Running => Some(self.paint(BOLD, &format!("▶ run {run_id} · pipeline {pipeline}"))),
                RunStatus::Completed => Some(self.paint(GREEN, &format!("✓ run completed: {}", message.as_deref().unwrap_or("")))),
                RunStatus::Failed => Some(self.paint(RED, &format!("✗ run failed: {}", error.as_deref().unwrap_or("")))),
                RunStatus::Aborted => Some(self.paint(YELLOW, &format!("■ run aborted: {}", message.as_deref().unwrap_or("")))),
                RunStatus::Interrupted => Some(self.paint(YELLOW, &format!("■ run interrupted: {}", error.as_deref().unwrap_or("")))),
            },
            EventKind::BatchStatus { batch_id, batch_name, status, error, summary, branch, .. } => {
                let name = if batch_name != batch_id { format!("{batch_id} ({batch_name})") } else { batch_id.clone() };
                match status {
                    BatchStatus::Pending => None,
                    BatchStatus::Running => Some(format!("  ◦ batch {name} running")),
                    BatchStatus::Completed => {
                        let mut text = format!("  ✓ batch {name} completed");
                        if let Some(summary) = summary {
                            text.push_str(&format!(" · {summary}"));
                        }
                        if let Some(branch) = branch {
                            text.push_str(&format!(" · branch {branch}"));
                        }
                        Some(self.paint(GREEN, &text))
                    }
                    BatchStatus::Failed => Some(self.paint(RED, &format!("  ✗ batch {name} failed: {}", error.as_deref().unwrap_or("")))),
                }
            }
            EventKind::TaskStarted { task_id, task_type, .. } => {
                self.verbose.then(|| self.paint(DIM, &format!("    · task {task_id} [{task_type}] started")))
            }
            EventKind::TaskProgress { task_id, display_text, percent, .. } => self.verbose.then(|| {
                let percent = percent.map(|p| format!(" ({p}%)")).unwrap_or_default();
                self.paint(DIM, &format!("    … {task_id}: {display_text}{percent}"))
            }),
            EventKind::TaskFinished { task_id, task_type, status, duration_ms, error, .. } => {
                self.flush_partial(task_id)?;
                let took = format_ms(*duration_ms);
                Some(match status {
                    TaskStatus::Completed => self.paint(GREEN, &format!("    ✓ {task_id} [{task_type}] {took}")),
                    TaskStatus::Skipped => self.paint(DIM, &format!("    - {task_id} [{task_type}] skipped: {}", error.as_deref().unwrap_or(""))),
                    TaskStatus::Interrupted => self.paint(YELLOW, &format!("    ■ {task_id} [{task_type}] interrupted")),
                    _ => self.paint(RED, &format!("    ✗ {task_id} [{task_type}] {took}: {}", error.as_deref().unwrap_or("failed"))),
                })
            }
            EventKind::Log { task_id, level, source, message, .. } => {
                if *level < LogLevel::Info && !self.verbose {
                    return Ok(());
                }
                let at = task_id.as_deref().map(|t| format!("{t}: ")).unwrap_or_default();
                let style = match level {
                    LogLevel::Error => RED,
                    LogLevel::Warn => YELLOW,
                    _ => DIM,
                };
                Some(self.paint(style, &format!("    · {at}[{source}] {level}: {message}")))
            }
            EventKind::TerminalOutput { task_id, command_id, stream, data, .. } => {
                // An agent's raw stream is shown parsed, as activity; raw only with --verbose.
                if command_id.is_some() && !self.verbose {
                    return Ok(());
                }
                let owner = task_id.clone().or_else(|| command_id.clone()).unwrap_or_default();
                return self.output(owner, *stream, data);
            }
            EventKind::CommandStatus { command_id, agent, status, exit_code, error, .. } => Some(format!(
                "  ◦ command {command_id} → {agent}: {status}{}{}",
                exit_code.map(|c| format!(" (exit {c})")).unwrap_or_default(),
                error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
            )),
            EventKind::AgentStatus { agent, status, queued, .. } => {
                self.verbose.then(|| format!("  ◦ agent {agent} {status} ({queued} queued)"))
            }
            EventKind::AgentActivity { task_id, agent, activity, .. } => {
                let at = task_id.clone().unwrap_or_else(|| agent.clone());
                Some(self.paint(DIM, &format!("    ⋯ {at}: {}", describe_activity(activity))))
            }
            EventKind::WorkspacePrepared { batch_id, path, branch, note, .. } => {
                let place = branch.as_deref().map_or_else(|| format!("in {path}, no branch"), |b| format!("branch {b} in {path}"));
                let note = note.as_deref().map(|n| format!(" · {n}")).unwrap_or_default();
                self.verbose.then(|| self.paint(DIM, &format!("  ◦ batch {batch_id}: {place}{note}")))
            }
            EventKind::ExecutionStatus { batch_id, execution_id, status, exit_code, error, .. } => Some(format!(
                "  ◦ {batch_id}: {execution_id} {status}{}{}",
                exit_code.map(|c| format!(" (exit {c})")).unwrap_or_default(),
                error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
            ))
            .filter(|_| self.verbose || !matches!(status, protocol::ExecutionState::Running | protocol::ExecutionState::Completed)),
            EventKind::RepoState { batch_id, branch, head_after, files_changed, .. } => self.verbose.then(|| {
                let short = &head_after[..head_after.len().min(10)];
                self.paint(DIM, &format!("  ◦ batch {batch_id}: {files_changed} files committed on {branch} ({short})"))
            }),
            EventKind::MergeStatus { branch, target, status, error, conflicts, .. } => Some(if status.is_success() {
                self.paint(GREEN, &format!("  ✓ merged {branch} into {target} ({})", status.as_str()))
            } else {
                let detail = error.clone().unwrap_or_else(|| format!("conflicts in {}", conflicts.join(", ")));
                self.paint(RED, &format!("  ✗ merge of {branch} into {target} {}: {detail}", status.as_str()))
            }),
            // `runner watch` prints its own `[watch]` lines.
            EventKind::WatchStatus { .. } => None,
            EventKind::ApprovalRequested { approval_id, agent, task_id, tool, input, description, timeout_ms, .. } => {
                let at = task_id.clone().unwrap_or_else(|| agent.clone());
                let what = description.clone().unwrap_or_else(|| shorten(&input.to_string(), 120));
                Some(self.paint(YELLOW, &format!(
                    "    ? {at}: wants to use {tool}: {what} · approval {approval_id} (denied in {} without an answer)",
                    crate::units::format_duration(std::time::Duration::from_millis(*timeout_ms))
                )))
            }
            EventKind::ApprovalDecided { approval_id, agent, task_id, allow, message, decided_by, .. } => {
                let at = task_id.clone().unwrap_or_else(|| agent.clone());
                let why = message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
                Some(if *allow {
                    self.paint(GREEN, &format!("    ✓ {at}: approval {approval_id} allowed by {decided_by}{why}"))
                } else {
                    self.paint(YELLOW, &format!("    ✗ {at}: approval {approval_id} denied by {decided_by}{why}"))
                })
            }
            EventKind::BestOfResult { batch_id, winner, reason, attempts, .. } => {
                let head = format!("  ◆ batch {batch_id}: {}", best_of_verdict(*winner, reason, attempts.len()));
                let head = self.paint(if winner.is_some() { BOLD } else { RED }, &head);
                let rows = best_of_rows(attempts).into_iter().map(|row| format!("    {row}"));
                Some(std::iter::once(head).chain(rows).collect::<Vec<_>>().join("\n"))
            }
            EventKind::PluginCompile { plugin, size_bytes, status, duration_ms, error } => {
                let size = format_size_rounded(*size_bytes);
                let took = duration_ms.map(format_ms).unwrap_or_default();
                Some(match status {
                    CompileStatus::Compiling => self.paint(DIM, &format!("compiling {plugin} ({size})…")),
                    CompileStatus::Compiled => self.paint(DIM, &format!("compiled {plugin} ({size}) in {took}")),
                    CompileStatus::Failed => format!(
                        "{} {plugin} ({size}) after {took}: {}",
                        self.paint(RED, "compiling failed:"),
                        error.as_deref().unwrap_or("unknown error")
                    ),
                })
            }
        };
        if let Some(line) = line {
            writeln!(self.out, "{line}")?;
        }
        self.out.flush()
    }

    fn output(&mut self, owner: String, stream: Stream, data: &str) -> io::Result<()> {
        let buffer = self.partial.entry((owner.clone(), stream)).or_default();
        buffer.push_str(data);
        let Some(end) = buffer.rfind('\n') else {
            return Ok(());
        };
        let complete: String = buffer.drain(..=end).collect();
        let mark = if stream == Stream::Stderr { "!" } else { "│" };
        for line in complete.lines() {
            let text = self.paint(DIM, &format!("    {mark} {owner}: "));
            writeln!(self.out, "{text}{line}")?;
        }
        self.out.flush()
    }

    fn flush_partial(&mut self, owner: &str) -> io::Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            if let Some(rest) = self.partial.remove(&(owner.to_string(), stream))
                && !rest.is_empty()
            {
                let mark = if stream == Stream::Stderr { "!" } else { "│" };
                let text = self.paint(DIM, &format!("    {mark} {owner}: "));
                writeln!(self.out, "{text}{rest}")?;
            }
        }
        Ok(())
    }
}

fn describe_activity(activity: &protocol::Activity) -> String {
    use protocol::Activity::*;
    let short = |text: &str| {
        let line = text.lines().next().unwrap_or("");
        if line.chars().count() > 100 {
            format!("{}…", line.chars().take(100).collect::<String>())
        } else {
            line.to_string()
        }
    };
    match activity {
        SessionStarted { session_id } => format!("session {session_id}"),
        AssistantMessage { text } => format!("says: {}", short(text)),
        Thinking { text } => format!("thinks: {}", short(text)),
        ToolUse { name, input, .. } => format!("uses {name} {}", short(&input.to_string())),
        ToolResult {
            output, is_error, ..
        } => format!(
            "tool {}: {}",
            if *is_error { "failed" } else { "result" },
            short(output)
        ),
        FileChange { path, change } => format!("{change} {path}"),
        CommandRun {
            command, exit_code, ..
        } => {
            format!(
                "ran `{}`{}",
                short(command),
                exit_code
                    .map(|c| format!(" → exit {c}"))
                    .unwrap_or_default()
            )
        }
        Usage {
            input_tokens,
            output_tokens,
            cached_tokens,
            cost_usd,
        } => format!(
            "tokens in {input_tokens} / out {output_tokens} / cached {cached_tokens}{}",
            cost_usd.map(|c| format!(" · ${c:.4}")).unwrap_or_default()
        ),
        Error { message } => format!("error: {}", short(message)),
        FinalResult { summary, is_error } => {
            format!(
                "{}: {}",
                if *is_error { "failed" } else { "done" },
                short(summary)
            )
        }
        Raw { line } => format!("» {}", short(line)),
    }
}

/// `text` cut to `max` characters, with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// `attempt 2 of 3 won: <reason>`, or `no attempt of 3 can be kept: <reason>`.
pub(crate) fn best_of_verdict(winner: Option<u32>, reason: &str, attempts: usize) -> String {
    match winner {
        Some(n) => format!("attempt {n} of {attempts} won: {reason}"),
        None => format!("no attempt of {attempts} can be kept: {reason}"),
    }
}

/// The attempts of a `best_of_result` side by side: a header, then one row
/// per attempt with its note below it (`runner run` and `runner show`).
pub(crate) fn best_of_rows(attempts: &[AttemptResult]) -> Vec<String> {
    let header = [
        "attempt", "rank", "agent", "tasks", "check", "files", "+/-", "time", "tokens", "cost",
        "branch",
    ]
    .map(String::from);
    let rows: Vec<[String; 11]> = attempts
        .iter()
        .map(|a| {
            [
                a.number.to_string(),
                a.rank.to_string(),
                a.agent.clone().unwrap_or_else(|| "-".into()),
                if a.completed { "ok" } else { "failed" }.into(),
                match &a.check {
                    Some(c) if c.passed => "passed".into(),
                    Some(_) => "failed".into(),
                    None => "-".into(),
                },
                a.files_changed.to_string(),
                format!("+{} -{}", a.additions, a.deletions),
                format_ms(a.duration_ms),
                (a.input_tokens + a.output_tokens).to_string(),
                a.cost_usd.map_or("-".into(), |c| format!("${c:.4}")),
                a.branch.clone(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 11]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut lines = vec![line(&header)];
    for (row, attempt) in rows.iter().zip(attempts) {
        lines.push(line(row));
        if !attempt.note.is_empty() {
            lines.push(format!("  {}", attempt.note));
        }
    }
    lines
}

fn format_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.2}s", ms as f64 / 1000.0)
    }
}
