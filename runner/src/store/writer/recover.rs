//! Crash recovery: what dead runners left running ends as interrupted, as events.

use super::*;
use crate::store::lock::Holder;
use crate::store::{Recovery, StoreError};
use chrono::Utc;
use protocol::{
    BatchStatus, CommandStatus, Event, EventKind, ExecutionState, Priority, RunReason, RunStatus,
    TaskStatus,
};
use std::sync::Arc;

impl Writer {
    /// Interrupts what dead runners left running, as events.
    pub(super) fn recover(&mut self, reason: &str) -> Result<Recovery, StoreError> {
        let path = self.shared.path.clone();
        let sqlite = |err| StoreError::from_sqlite(&path, err);
        let (events, recovery) = self.recovery_events(reason).map_err(sqlite)?;
        if events.is_empty() {
            return Ok(recovery);
        }
        let mut events: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
        self.write_events(&mut events);
        let mut progress = self.shared.progress.lock().expect("store progress lock");
        match progress.error.take() {
            Some(message) => Err(StoreError::Write(message)),
            None => Ok(recovery),
        }
    }

    pub(super) fn recovery_events(&self, reason: &str) -> rusqlite::Result<(Vec<Event>, Recovery)> {
        let now = Utc::now();
        let mut seq = self
            .shared
            .progress
            .lock()
            .expect("store progress lock")
            .last_seq;
        let mut events = Vec::new();
        let mut push = |kind: EventKind| {
            seq += 1;
            events.push(Event {
                seq,
                time: now,
                kind,
            });
        };
        let mut recovery = Recovery::default();
        // The lock file tells who records: while this process holds it, a
        // run of any other process is dead, even one whose id was reused.
        let holder = Holder::of(&self.shared.path);
        let dead = |pid: Option<i64>| {
            pid.is_none_or(|pid| pid as u32 == self.pid || !holder.owns(Some(pid)))
        };

        let runs: Vec<(String, String, Option<i64>)> = self
            .conn
            .prepare("SELECT id, pipeline, owner_pid FROM runs WHERE status = 'running' ORDER BY first_seq")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (run_id, pipeline, _) in runs.into_iter().filter(|r| dead(r.2)) {
            let executions: Vec<LeftRunning> = self
                .conn
                .prepare(
                    "SELECT execution_id, batch_id, reason, name, kind, command, started_at FROM executions
                     WHERE run_id = ?1 AND status IN ('running', 'pending') ORDER BY first_seq",
                )?
                .query_map([&run_id], |row| {
                    Ok(LeftRunning {
                        execution_id: row.get(0)?,
                        batch_id: row.get(1)?,
                        reason: row.get(2)?,
                        name: row.get(3)?,
                        kind: row.get(4)?,
                        command: row.get(5)?,
                        started_at: row.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            for LeftRunning {
                execution_id,
                batch_id,
                reason: reason_text,
                name,
                kind,
                command,
                started_at,
            } in executions
            {
                recovery.executions += 1;
                let script = match reason_text.as_str() {
                    "setup_script" => Some(RunReason::SetupScript),
                    "cleanup_script" => Some(RunReason::CleanupScript),
                    "check" => Some(RunReason::Check),
                    _ => None,
                };
                if let Some(run_reason) = script {
                    push(EventKind::ExecutionStatus {
                        run_id: run_id.clone(),
                        batch_id,
                        execution_id,
                        reason: run_reason,
                        command: command.unwrap_or_default(),
                        status: ExecutionState::Interrupted,
                        exit_code: None,
                        error: Some(reason.to_string()),
                    });
                } else {
                    let started_at = started_at.as_deref().and_then(parse_time);
                    let duration_ms =
                        started_at.map_or(0, |s| (now - s).num_milliseconds().max(0) as u64);
                    push(EventKind::TaskFinished {
                        run_id: run_id.clone(),
                        batch_id,
                        task_id: execution_id,
                        task_type: kind,
                        name,
                        status: TaskStatus::Interrupted,
                        started_at,
                        finished_at: now,
                        duration_ms,
                        result: None,
                        error: Some(reason.to_string()),
                        exit_code: None,
                    });
                }
            }
            let turns: Vec<(String, String, Option<String>, Option<String>)> = self
                .conn
                .prepare(
                    "SELECT command_id, agent, priority, task_id FROM agent_turns
                     WHERE run_id = ?1 AND status IN ('queued', 'running') ORDER BY first_seq",
                )?
                .query_map([&run_id], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            for (command_id, agent, priority, task_id) in turns {
                recovery.agent_turns += 1;
                push(interrupted_command(
                    command_id,
                    agent,
                    priority,
                    Some(run_id.clone()),
                    task_id,
                    reason,
                ));
            }
            let batches: Vec<(String, String)> = self
                .conn
                .prepare(
                    "SELECT batch_id, name FROM batches WHERE run_id = ?1 AND status IN ('pending', 'running')
                     ORDER BY first_seq",
                )?
                .query_map([&run_id], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (batch_id, batch_name) in batches {
                recovery.batches += 1;
                push(EventKind::BatchStatus {
                    run_id: run_id.clone(),
                    pipeline: pipeline.clone(),
                    batch_id,
                    batch_name,
                    status: BatchStatus::Failed,
                    branch: None,
                    error: Some(reason.to_string()),
                    summary: None,
                    depends_on: Vec::new(),
                });
            }
            push(EventKind::RunStatus {
                run_id: run_id.clone(),
                pipeline,
                status: RunStatus::Interrupted,
                message: Some(format!("interrupted: {reason}")),
                error: Some(reason.to_string()),
            });
            recovery.runs.push(run_id);
        }

        // Agent commands outside any run (queued from the dashboard).
        let loose: Vec<(String, String, Option<String>, Option<i64>)> = self
            .conn
            .prepare(
                "SELECT command_id, agent, priority, owner_pid FROM agent_turns
                 WHERE run_id IS NULL AND status IN ('queued', 'running') ORDER BY first_seq",
            )?
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        for (command_id, agent, priority, _) in loose.into_iter().filter(|t| dead(t.3)) {
            recovery.agent_turns += 1;
            push(interrupted_command(
                command_id, agent, priority, None, None, reason,
            ));
        }
        recovery.seqs = events
            .first()
            .map(|first| (first.seq, events.last().map_or(first.seq, |e| e.seq)));
        Ok((events, recovery))
    }
}

/// An execution a dead runner left running.
struct LeftRunning {
    execution_id: String,
    batch_id: String,
    reason: String,
    name: String,
    kind: String,
    command: Option<String>,
    started_at: Option<String>,
}

fn interrupted_command(
    command_id: String,
    agent: String,
    priority: Option<String>,
    run_id: Option<String>,
    task_id: Option<String>,
    reason: &str,
) -> EventKind {
    EventKind::CommandStatus {
        command_id,
        agent,
        status: CommandStatus::Interrupted,
        priority: priority
            .as_deref()
            .and_then(Priority::parse)
            .unwrap_or_default(),
        run_id,
        task_id,
        exit_code: None,
        error: Some(reason.to_string()),
        prompt: None,
    }
}
