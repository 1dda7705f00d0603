//! Each event projected into the tables `runner history` and `runner show` read.

use protocol::{
    Activity, BatchStatus, CommandStatus, Event, EventKind, ExecutionState, RunReason, WatchState,
    format_time,
};
use rusqlite::{Transaction, params};
use serde_json::Value;

fn task_reason(task_type: &str) -> RunReason {
    if task_type == "agent" {
        RunReason::CodingAgent
    } else {
        RunReason::Task
    }
}

/// Updates the tables the event says something about. `start` is a task's
/// start folded into its finish (see `coalesced_starts`): the finish writes
/// what it would have.
pub(super) fn project(
    tx: &Transaction,
    event: &Event,
    start: Option<&Event>,
    pid: u32,
) -> rusqlite::Result<()> {
    let seq = event.seq as i64;
    let time = format_time(&event.time);
    match &event.kind {
        EventKind::RunStatus {
            run_id,
            pipeline,
            status,
            message,
            error,
        } => {
            let finished = status.is_final().then_some(&time);
            tx.prepare_cached(
                "INSERT INTO runs (id, pipeline, status, message, error, started_at, finished_at, owner_pid, first_seq, last_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                     message = COALESCE(excluded.message, message), error = excluded.error,
                     finished_at = excluded.finished_at, last_seq = excluded.last_seq",
            )?
            .execute(params![run_id, pipeline, status.as_str(), message, error, time, finished, pid, seq])?;
        }
        EventKind::BatchStatus {
            run_id,
            batch_id,
            batch_name,
            status,
            branch,
            error,
            summary,
            depends_on,
            ..
        } => {
            let started = (*status == BatchStatus::Running).then_some(&time);
            // Kept from the `pending` event, `[]` included: NULL means a run
            // recorded before the history kept the edges.
            let depends_on = (*status == BatchStatus::Pending)
                .then(|| serde_json::to_string(depends_on).expect("plain JSON"));
            let finished =
                matches!(status, BatchStatus::Completed | BatchStatus::Failed).then_some(&time);
            tx.prepare_cached(
                "INSERT INTO batches (run_id, batch_id, first_seq, name, status, error, summary, branch, started_at, finished_at, depends_on)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (run_id, batch_id) DO UPDATE SET name = excluded.name, status = excluded.status,
                     error = excluded.error, summary = COALESCE(excluded.summary, summary),
                     depends_on = COALESCE(excluded.depends_on, depends_on),
                     branch = COALESCE(excluded.branch, branch), started_at = COALESCE(started_at, excluded.started_at),
                     finished_at = COALESCE(excluded.finished_at, finished_at)",
            )?
            .execute(params![run_id, batch_id, seq, batch_name, status.as_str(), error, summary, branch, started, finished, depends_on])?;
        }
        EventKind::TaskStarted {
            run_id,
            batch_id,
            task_id,
            task_type,
            name,
            display_text,
            ..
        } => {
            tx.prepare_cached(
                "INSERT INTO executions (run_id, execution_id, batch_id, first_seq, reason, name, kind, status, progress, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8, ?9)
                 ON CONFLICT (run_id, execution_id) DO UPDATE SET status = 'running', started_at = excluded.started_at,
                     progress = COALESCE(excluded.progress, progress)",
            )?
            .execute(params![
                run_id,
                task_id,
                batch_id,
                seq,
                task_reason(task_type).as_str(),
                name,
                task_type,
                display_text,
                time
            ])?;
        }
        EventKind::TaskProgress {
            run_id,
            task_id,
            display_text,
            ..
        } => {
            tx.prepare_cached(
                "UPDATE executions SET progress = ?3 WHERE run_id = ?1 AND execution_id = ?2",
            )?
            .execute(params![run_id, task_id, display_text])?;
        }
        EventKind::TaskFinished {
            run_id,
            batch_id,
            task_id,
            task_type,
            name,
            status,
            started_at,
            finished_at,
            duration_ms,
            result,
            error,
            exit_code,
        } => {
            // As the start would have written it: numbered by the start,
            // with its progress text, started when it started.
            let (first_seq, progress, start_time, task_type, name) =
                match start.map(|start| (start, &start.kind)) {
                    Some((
                        start,
                        EventKind::TaskStarted {
                            display_text,
                            task_type,
                            name,
                            ..
                        },
                    )) => (
                        start.seq as i64,
                        display_text.as_deref(),
                        Some(format_time(&start.time)),
                        task_type,
                        name,
                    ),
                    _ => (seq, None, None, task_type, name),
                };
            let started_at = started_at.as_ref().map(format_time).or(start_time);
            tx.prepare_cached(
                "INSERT INTO executions (run_id, execution_id, batch_id, first_seq, reason, name, kind, status, exit_code,
                     error, result, started_at, finished_at, duration_ms, progress)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
                 ON CONFLICT (run_id, execution_id) DO UPDATE SET status = excluded.status, exit_code = excluded.exit_code,
                     error = excluded.error, result = excluded.result,
                     started_at = COALESCE(excluded.started_at, started_at), finished_at = excluded.finished_at,
                     duration_ms = excluded.duration_ms, progress = COALESCE(excluded.progress, progress)",
            )?
            .execute(params![
                run_id,
                task_id,
                batch_id,
                first_seq,
                task_reason(task_type).as_str(),
                name,
                task_type,
                status.as_str(),
                exit_code,
                error,
                result.as_ref().map(Value::to_string),
                started_at,
                format_time(finished_at),
                *duration_ms as i64,
                progress
            ])?;
        }
        EventKind::ExecutionStatus {
            run_id,
            batch_id,
            execution_id,
            reason,
            command,
            status,
            exit_code,
            error,
        } => {
            let running = *status == ExecutionState::Running;
            let started = running.then_some(&time);
            let finished = (!running).then_some(&time);
            tx.prepare_cached(
                "INSERT INTO executions (run_id, execution_id, batch_id, first_seq, reason, name, kind, command, status,
                     exit_code, error, started_at, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?2, 'script', ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (run_id, execution_id) DO UPDATE SET status = excluded.status, exit_code = excluded.exit_code,
                     error = excluded.error, started_at = COALESCE(started_at, excluded.started_at),
                     finished_at = excluded.finished_at,
                     duration_ms = CAST(ROUND((julianday(excluded.finished_at) - julianday(started_at)) * 86400000) AS INTEGER)",
            )?
            .execute(params![
                run_id,
                execution_id,
                batch_id,
                seq,
                reason.as_str(),
                command,
                status.as_str(),
                exit_code,
                error,
                started,
                finished
            ])?;
        }
        EventKind::Log {
            run_id,
            task_id,
            level,
            source,
            stream,
            message: _,
        } => {
            tx.prepare_cached(
                "INSERT INTO logs (seq, time, run_id, task_id, kind, level, source, stream)
                 VALUES (?1, ?2, ?3, ?4, 'log', ?5, ?6, ?7)",
            )?
            .execute(params![
                seq,
                time,
                run_id,
                task_id,
                level.as_str(),
                source,
                stream.map(|s| s.as_str())
            ])?;
        }
        EventKind::TerminalOutput {
            run_id,
            task_id,
            command_id,
            stream,
            sequence,
            data: _,
        } => {
            tx.prepare_cached(
                "INSERT INTO logs (seq, time, run_id, task_id, command_id, kind, stream, chunk)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'output', ?6, ?7)",
            )?
            .execute(params![
                seq,
                time,
                run_id,
                task_id,
                command_id,
                stream.as_str(),
                *sequence as i64
            ])?;
        }
        EventKind::CommandStatus {
            command_id,
            agent,
            status,
            priority,
            run_id,
            task_id,
            exit_code,
            error,
            prompt,
        } => {
            let started = (*status == CommandStatus::Running).then_some(&time);
            let finished = matches!(
                status,
                CommandStatus::Completed | CommandStatus::Failed | CommandStatus::Interrupted
            )
            .then_some(&time);
            tx.prepare_cached(
                "INSERT INTO agent_turns (command_id, run_id, task_id, agent, status, priority, prompt, exit_code, error,
                     owner_pid, started_at, finished_at, first_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT (command_id) DO UPDATE SET status = excluded.status, priority = excluded.priority,
                     run_id = COALESCE(excluded.run_id, run_id), task_id = COALESCE(excluded.task_id, task_id),
                     prompt = COALESCE(excluded.prompt, prompt), exit_code = COALESCE(excluded.exit_code, exit_code),
                     error = COALESCE(excluded.error, error), started_at = COALESCE(started_at, excluded.started_at),
                     finished_at = COALESCE(excluded.finished_at, finished_at)",
            )?
            .execute(params![
                command_id,
                run_id,
                task_id,
                agent,
                status.as_str(),
                priority.as_str(),
                prompt,
                exit_code,
                error,
                pid,
                started,
                finished,
                seq
            ])?;
        }
        EventKind::AgentStatus { .. } => {}
        EventKind::AgentActivity {
            command_id,
            agent,
            run_id,
            task_id,
            activity,
        } => {
            tx.prepare_cached(
                "INSERT INTO agent_turns (command_id, run_id, task_id, agent, status, owner_pid, started_at, first_seq)
                 VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7) ON CONFLICT (command_id) DO NOTHING",
            )?
            .execute(params![command_id, run_id, task_id, agent, pid, time, seq])?;
            match activity {
                Activity::SessionStarted { session_id } => {
                    tx.prepare_cached(
                        "UPDATE agent_turns SET agent_session_id = ?2 WHERE command_id = ?1",
                    )?
                    .execute(params![command_id, session_id])?;
                }
                // One usage report per turn; a command with several turns adds them up.
                Activity::Usage {
                    input_tokens,
                    output_tokens,
                    cached_tokens,
                    cost_usd,
                } => {
                    tx.prepare_cached(
                        "UPDATE agent_turns SET input_tokens = input_tokens + ?2, output_tokens = output_tokens + ?3,
                             cached_tokens = cached_tokens + ?4,
                             cost_usd = CASE WHEN ?5 IS NULL THEN cost_usd ELSE COALESCE(cost_usd, 0) + ?5 END
                         WHERE command_id = ?1",
                    )?
                    .execute(params![
                        command_id,
                        *input_tokens as i64,
                        *output_tokens as i64,
                        *cached_tokens as i64,
                        cost_usd
                    ])?;
                }
                Activity::FinalResult { summary, is_error } => {
                    tx.prepare_cached(
                        "UPDATE agent_turns SET summary = ?2, is_error = ?3 WHERE command_id = ?1",
                    )?
                    .execute(params![command_id, summary, is_error])?;
                }
                _ => {}
            }
        }
        EventKind::WorkspacePrepared {
            run_id,
            batch_id,
            path,
            branch,
            base_commit,
            note,
        } => {
            tx.prepare_cached(
                "INSERT INTO batches (run_id, batch_id, first_seq, name, status, branch, worktree, base_commit, head_before, note)
                 VALUES (?1, ?2, ?3, ?2, 'running', ?4, ?5, ?6, ?6, ?7)
                 ON CONFLICT (run_id, batch_id) DO UPDATE SET branch = COALESCE(excluded.branch, branch),
                     worktree = excluded.worktree, base_commit = excluded.base_commit,
                     head_before = excluded.head_before, note = excluded.note",
            )?
            .execute(params![run_id, batch_id, seq, branch, path, base_commit, note])?;
        }
        EventKind::RepoState {
            run_id,
            batch_id,
            branch,
            head_before,
            head_after,
            files_changed,
        } => {
            tx.prepare_cached(
                "INSERT INTO batches (run_id, batch_id, first_seq, name, status, branch, head_before, head_after, files_changed)
                 VALUES (?1, ?2, ?3, ?2, 'running', ?4, ?5, ?6, ?7)
                 ON CONFLICT (run_id, batch_id) DO UPDATE SET branch = excluded.branch,
                     head_before = COALESCE(head_before, excluded.head_before), head_after = excluded.head_after,
                     files_changed = excluded.files_changed",
            )?
            .execute(params![run_id, batch_id, seq, branch, head_before, head_after, *files_changed as i64])?;
        }
        EventKind::MergeStatus {
            run_id,
            batch_id,
            branch,
            target,
            status,
            commit,
            conflicts,
            error,
        } => {
            let conflicts =
                (!conflicts.is_empty()).then(|| serde_json::to_string(conflicts).expect("strings"));
            tx.prepare_cached(
                "INSERT INTO merges (seq, time, run_id, batch_id, branch, target, status, commit_id, conflicts, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![seq, time, run_id, batch_id, branch, target, status.as_str(), commit, conflicts, error])?;
        }
        EventKind::WatchStatus {
            status: WatchState::Triggered,
            run_id: Some(run_id),
            paths,
            ..
        } => {
            let changed = serde_json::to_string(paths).expect("strings");
            tx.prepare_cached(
                "INSERT INTO run_triggers (run_id, trigger, changed) VALUES (?1, 'watch', ?2)
                 ON CONFLICT (run_id) DO UPDATE SET trigger = excluded.trigger, changed = excluded.changed",
            )?
            .execute(params![run_id, changed])?;
        }
        // Kept in `events` only: permission prompts, and the
        // `best_of_result` that `runner show` reads from there.
        EventKind::WatchStatus { .. }
        | EventKind::PluginCompile { .. }
        | EventKind::ApprovalRequested { .. }
        | EventKind::ApprovalDecided { .. }
        | EventKind::BestOfResult { .. } => {}
    }
    Ok(())
}
