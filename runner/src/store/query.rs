//! What `runner history`, `runner show` and `runner logs` read: the
//! records of `records.rs`, newest runs first, logs in sequence order.

use super::lock::Holder;
use super::records::*;
use super::writer::read_time;
use super::{Store, StoreError};
use chrono::{DateTime, Utc};
use protocol::Event;
use rusqlite::{Connection, OptionalExtension, Row, params};

/// An agent command's events; the `json_extract` and the types are the
/// ones `events_by_command` indexes (migration 6), written the same way.
const COMMAND_EVENTS: &str = "SELECT seq, json FROM events
     WHERE json_extract(json, '$.command_id') = ?1
       AND (type = 'command_status' OR type = 'agent_activity'
            OR type = 'approval_requested' OR type = 'approval_decided')
     ORDER BY seq LIMIT ?2";

const RUN_COLUMNS: &str = "r.id, r.pipeline, r.status, r.message, r.error, r.started_at, r.finished_at,
    r.owner_pid,
    (SELECT COUNT(*) FROM batches b WHERE b.run_id = r.id),
    (SELECT COUNT(*) FROM batches b WHERE b.run_id = r.id AND b.status = 'completed'),
    (SELECT COUNT(*) FROM batches b WHERE b.run_id = r.id AND b.status = 'failed'),
    (SELECT COUNT(*) FROM executions e WHERE e.run_id = r.id AND e.reason IN ('task', 'coding_agent')),
    (SELECT COUNT(*) FROM executions e WHERE e.run_id = r.id AND e.reason IN ('task', 'coding_agent')
        AND e.status = 'completed'),
    (SELECT COUNT(*) FROM executions e WHERE e.run_id = r.id AND e.reason IN ('task', 'coding_agent')
        AND e.status IN ('failed', 'interrupted', 'killed')),
    (SELECT COUNT(*) FROM executions e WHERE e.run_id = r.id AND e.reason IN ('task', 'coding_agent')
        AND e.status IN ('running', 'pending')),
    (SELECT t.trigger FROM run_triggers t WHERE t.run_id = r.id),
    (SELECT t.changed FROM run_triggers t WHERE t.run_id = r.id)";

/// A run as recorded, with the process that recorded it.
fn run_summary(row: &Row) -> rusqlite::Result<(RunSummary, Option<i64>)> {
    let count = |i| row.get::<_, i64>(i).map(|n| n.max(0) as usize);
    let summary = RunSummary {
        id: row.get(0)?,
        pipeline: row.get(1)?,
        status: row.get(2)?,
        owner_gone: false,
        message: row.get(3)?,
        error: row.get(4)?,
        started_at: read_time(row.get(5)?).unwrap_or_default(),
        finished_at: read_time(row.get(6)?),
        batches: count(8)?,
        batches_ok: count(9)?,
        batches_failed: count(10)?,
        tasks: count(11)?,
        tasks_ok: count(12)?,
        tasks_failed: count(13)?,
        tasks_running: count(14)?,
        trigger: row.get(15)?,
        changed: row
            .get::<_, Option<String>>(16)?
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default(),
    };
    Ok((summary, row.get(7)?))
}

impl Store {
    fn read<T>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = self.shared.reader.lock().expect("store reader lock");
        query(&conn).map_err(|err| StoreError::from_sqlite(&self.shared.path, err))
    }

    /// Who records into this history, from its lock file.
    fn holder(&self) -> Holder {
        Holder::of(&self.shared.path)
    }

    /// The newest `limit` runs, newest first. A run whose runner is gone
    /// reads `interrupted` (see [`RunSummary::owner_gone`]).
    pub fn list_runs(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        let holder = self.holder();
        let runs: Vec<(RunSummary, Option<i64>)> = self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs r ORDER BY r.first_seq DESC LIMIT ?1"
            ))?
            .query_map([limit as i64], run_summary)?
            .collect()
        })?;
        Ok(runs
            .into_iter()
            .map(|(mut run, owner_pid)| {
                run.settle(holder, owner_pid);
                run
            })
            .collect())
    }

    /// One page of the history for the dashboard's runs list: newest first,
    /// `filter.limit` runs from `filter.offset`, of one status and pipeline
    /// when given. `total` counts every run that matches.
    pub fn run_page(&self, filter: &RunFilter) -> Result<RunPage, StoreError> {
        let holder = self.holder();
        let limit = filter.limit.clamp(1, 500);
        // A run recorded `running` whose runner is gone reads `interrupted`:
        // both are read, and settled below.
        const WHERE: &str =
            "(?1 IS NULL OR r.status = ?1 OR (?1 = 'interrupted' AND r.status = 'running'))
             AND (?2 IS NULL OR r.pipeline = ?2)";
        let status = filter.status.as_deref();
        let pipeline = filter.pipeline.as_deref();
        let (rows, total): (Vec<(RunSummary, Option<i64>)>, i64) = self.read(|conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs r WHERE {WHERE} ORDER BY r.first_seq DESC LIMIT ?3 OFFSET ?4"
                ))?
                .query_map(
                    params![status, pipeline, limit as i64, filter.offset as i64],
                    run_summary,
                )?
                .collect::<rusqlite::Result<_>>()?;
            let total = conn
                .prepare_cached(&format!("SELECT COUNT(*) FROM runs r WHERE {WHERE}"))?
                .query_row(params![status, pipeline], |row| row.get(0))?;
            Ok((rows, total))
        })?;
        let runs = rows
            .into_iter()
            .map(|(mut run, owner_pid)| {
                run.settle(holder, owner_pid);
                run
            })
            .filter(|run| status.is_none_or(|status| run.status == status))
            .collect();
        Ok(RunPage {
            runs,
            total: total.max(0) as usize,
            offset: filter.offset,
            limit,
        })
    }

    /// The `command_status`, `agent_activity` and permission prompt
    /// events of one agent command, in order (at most `limit`): its
    /// conversation. Read through the `events_by_command` index.
    pub fn command_events(&self, command_id: &str, limit: usize) -> Result<Vec<Event>, StoreError> {
        let rows: Vec<(i64, String)> = self.read(|conn| {
            conn.prepare_cached(COMMAND_EVENTS)?
                .query_map(params![command_id, limit as i64], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .collect()
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(_, json)| serde_json::from_str(&json).ok())
            .collect())
    }

    /// How SQLite plans [`Store::command_events`] (for the test that checks
    /// it uses the index).
    pub fn command_events_plan(&self) -> Result<String, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {COMMAND_EVENTS}"))?;
            let details: Vec<String> = statement
                .query_map(params!["cmd-x", 1], |row| row.get::<_, String>(3))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(details.join("; "))
        })
    }

    /// The id of the run `name` means: an id, a unique prefix of one (or of
    /// a part after one of its `-`, such as its random tail), or `last` for
    /// the newest run.
    pub fn resolve_run(&self, name: &str) -> Result<String, StoreError> {
        let found: Vec<String> = self.read(|conn| {
            if name == "last" || name == "latest" {
                return conn
                    .prepare_cached("SELECT id FROM runs ORDER BY first_seq DESC LIMIT 1")?
                    .query_map([], |row| row.get(0))?
                    .collect();
            }
            if let Some(id) = conn
                .prepare_cached("SELECT id FROM runs WHERE id = ?1")?
                .query_row([name], |row| row.get(0))
                .optional()?
            {
                return Ok(vec![id]);
            }
            let pattern = format!(
                "{}%",
                name.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            let by_prefix: Vec<String> = conn
                .prepare_cached(
                    "SELECT id FROM runs WHERE id LIKE ?1 ESCAPE '\\' ORDER BY first_seq DESC LIMIT 10",
                )?
                .query_map([&pattern], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            if !by_prefix.is_empty() {
                return Ok(by_prefix);
            }
            // Run ids of one day share their start; the time or the random
            // tail after a `-` tells them apart.
            conn.prepare_cached(
                "SELECT id FROM runs WHERE id LIKE ?1 ESCAPE '\\' ORDER BY first_seq DESC LIMIT 10",
            )?
            .query_map([format!("%-{pattern}")], |row| row.get(0))?
            .collect()
        })?;
        match found.len() {
            0 => Err(StoreError::NoSuchRun(name.to_string())),
            1 => Ok(found.into_iter().next().expect("one")),
            _ => Err(StoreError::AmbiguousRun {
                prefix: name.to_string(),
                matches: found,
            }),
        }
    }

    /// A run with its batches, executions, agent turns and merges. `run` may
    /// be anything [`Store::resolve_run`] accepts.
    pub fn run_detail(&self, run: &str) -> Result<RunDetail, StoreError> {
        let id = self.resolve_run(run)?;
        let holder = self.holder();
        let mut detail = self.read(|conn| {
            let (mut run, owner_pid) = conn
                .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.id = ?1"))?
                .query_row([&id], run_summary)?;
            run.settle(holder, owner_pid);
            let batches = conn
                .prepare_cached(
                    "SELECT batch_id, name, status, error, summary, branch, worktree, base_commit, head_before, head_after,
                         files_changed, note, started_at, finished_at, depends_on
                     FROM batches WHERE run_id = ?1 ORDER BY first_seq",
                )?
                .query_map([&id], |row| {
                    Ok(BatchRecord {
                        batch_id: row.get(0)?,
                        name: row.get(1)?,
                        status: row.get(2)?,
                        error: row.get(3)?,
                        summary: row.get(4)?,
                        branch: row.get(5)?,
                        worktree: row.get(6)?,
                        base_commit: row.get(7)?,
                        head_before: row.get(8)?,
                        head_after: row.get(9)?,
                        files_changed: row.get::<_, Option<i64>>(10)?.map(|n| n as u64),
                        note: row.get(11)?,
                        started_at: read_time(row.get(12)?),
                        finished_at: read_time(row.get(13)?),
                        depends_on: row
                            .get::<_, Option<String>>(14)?
                            .and_then(|json| serde_json::from_str(&json).ok()),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let executions = conn
                .prepare_cached(
                    "SELECT execution_id, batch_id, reason, name, kind, command, status, exit_code, error, progress, result,
                         started_at, finished_at, duration_ms
                     FROM executions WHERE run_id = ?1 ORDER BY first_seq",
                )?
                .query_map([&id], |row| {
                    Ok(ExecutionRecord {
                        execution_id: row.get(0)?,
                        batch_id: row.get(1)?,
                        reason: row.get(2)?,
                        name: row.get(3)?,
                        kind: row.get(4)?,
                        command: row.get(5)?,
                        status: row.get(6)?,
                        exit_code: row.get(7)?,
                        error: row.get(8)?,
                        progress: row.get(9)?,
                        result: row.get::<_, Option<String>>(10)?.and_then(|text| serde_json::from_str(&text).ok()),
                        started_at: read_time(row.get(11)?),
                        finished_at: read_time(row.get(12)?),
                        duration_ms: row.get::<_, Option<i64>>(13)?.map(|n| n.max(0) as u64),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let agent_turns = conn
                .prepare_cached(
                    "SELECT command_id, task_id, agent, status, prompt, summary, is_error, agent_session_id, input_tokens,
                         output_tokens, cached_tokens, cost_usd, exit_code, error, started_at, finished_at
                     FROM agent_turns WHERE run_id = ?1 ORDER BY first_seq",
                )?
                .query_map([&id], |row| {
                    Ok(AgentTurnRecord {
                        command_id: row.get(0)?,
                        task_id: row.get(1)?,
                        agent: row.get(2)?,
                        status: row.get(3)?,
                        prompt: row.get(4)?,
                        summary: row.get(5)?,
                        is_error: row.get(6)?,
                        agent_session_id: row.get(7)?,
                        input_tokens: row.get::<_, i64>(8)? as u64,
                        output_tokens: row.get::<_, i64>(9)? as u64,
                        cached_tokens: row.get::<_, i64>(10)? as u64,
                        cost_usd: row.get(11)?,
                        exit_code: row.get(12)?,
                        error: row.get(13)?,
                        started_at: read_time(row.get(14)?),
                        finished_at: read_time(row.get(15)?),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let merges = conn
                .prepare_cached(
                    "SELECT batch_id, branch, target, status, commit_id, conflicts, error, time
                     FROM merges WHERE run_id = ?1 ORDER BY seq",
                )?
                .query_map([&id], |row| {
                    Ok(MergeRecord {
                        batch_id: row.get(0)?,
                        branch: row.get(1)?,
                        target: row.get(2)?,
                        status: row.get(3)?,
                        commit: row.get(4)?,
                        conflicts: row
                            .get::<_, Option<String>>(5)?
                            .and_then(|text| serde_json::from_str(&text).ok())
                            .unwrap_or_default(),
                        error: row.get(6)?,
                        time: read_time(row.get(7)?).unwrap_or_default(),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let best_of = super::comparisons::best_of(conn, &id)?;
            Ok(RunDetail { run, batches, executions, agent_turns, merges, best_of })
        })?;
        detail.settle();
        Ok(detail)
    }

    /// Log lines and output of run `run_id` (of one task or agent command
    /// when `task` is given) after sequence number `after_seq`, at most
    /// `limit`, in sequence order.
    pub fn logs(
        &self,
        run_id: &str,
        task: Option<&str>,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<LogLine>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT l.seq, l.time, l.task_id, l.command_id, l.kind, l.level, l.source, l.stream,
                     json_extract(e.json, CASE l.kind WHEN 'output' THEN '$.data' ELSE '$.message' END)
                 FROM logs l JOIN events e ON e.seq = l.seq
                 WHERE l.run_id = ?1 AND l.seq > ?2 AND (?3 IS NULL OR l.task_id = ?3 OR l.command_id = ?3)
                 ORDER BY l.seq LIMIT ?4",
            )?
            .query_map(
                params![run_id, after_seq as i64, task, limit as i64],
                |row| {
                    Ok(LogLine {
                        seq: row.get::<_, i64>(0)? as u64,
                        time: read_time(row.get(1)?).unwrap_or_default(),
                        task_id: row.get(2)?,
                        command_id: row.get(3)?,
                        kind: if row.get::<_, String>(4)? == "output" {
                            LogKind::Output
                        } else {
                            LogKind::Log
                        },
                        level: row.get(5)?,
                        source: row.get(6)?,
                        stream: row.get(7)?,
                        text: row.get(8)?,
                    })
                },
            )?
            .collect()
        })
    }

    /// The run's status (`running`, `completed`, ...); `interrupted` for a
    /// run whose runner is gone.
    pub fn run_status(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        let holder = self.holder();
        let found: Option<(String, Option<i64>)> = self.read(|conn| {
            conn.prepare_cached("SELECT status, owner_pid FROM runs WHERE id = ?1")?
                .query_row([run_id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })?;
        Ok(found.map(|(status, owner_pid)| {
            if status == "running" && !holder.owns(owner_pid) {
                "interrupted".to_string()
            } else {
                status
            }
        }))
    }

    /// The recorded events after `after_seq`, at most `limit`, in order: how
    /// a client resumes once the bus no longer holds what it missed. Events
    /// pruned by the log retention are gone from this stream.
    pub fn events_after(&self, after_seq: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let rows: Vec<(i64, String)> = self.read(|conn| {
            conn.prepare_cached(
                "SELECT seq, json FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?
            .query_map(params![after_seq as i64, limit as i64], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .collect()
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(seq, json)| match serde_json::from_str(&json) {
                Ok(event) => Some(event),
                Err(err) => {
                    tracing::warn!("history: event {seq} cannot be read back ({err}); skipped");
                    None
                }
            })
            .collect())
    }

    /// The newest `limit` entries of the connection audit, newest first.
    pub fn connections(&self, limit: usize) -> Result<Vec<ConnectionRecord>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT time, client, peer, action, detail FROM connections ORDER BY id DESC LIMIT ?1",
            )?
            .query_map([limit as i64], |row| {
                Ok(ConnectionRecord {
                    time: read_time(row.get(0)?).unwrap_or_default(),
                    client: row.get(1)?,
                    peer: row.get(2)?,
                    action: row.get(3)?,
                    detail: row.get(4)?,
                })
            })?
            .collect()
        })
    }
}

impl Store {
    /// What [`Store::prune`] would remove now, removing nothing
    /// (`runner gc --dry-run`).
    pub fn prunable(&self) -> Result<super::Pruned, StoreError> {
        self.prunable_at(Utc::now())
    }

    /// Like [`Store::prunable`], as if it were `now`.
    pub fn prunable_at(&self, now: DateTime<Utc>) -> Result<super::Pruned, StoreError> {
        let retention = self.shared.retention;
        let cutoff =
            |days: u32| protocol::format_time(&(now - chrono::Duration::days(days.into())));
        self.read(|conn| {
            let mut pruned = super::Pruned::default();
            if let Some(days) = retention.log_days {
                let before = first_seq_since(conn, &cutoff(days))?;
                let older = |sql: &str| {
                    conn.query_row(sql, [before], |row| row.get::<_, i64>(0))
                        .map(|n| n as usize)
                };
                pruned.logs = older("SELECT COUNT(*) FROM logs WHERE seq < ?1")?;
                pruned.events = older(
                    "SELECT COUNT(*) FROM events WHERE seq < ?1 AND type IN ('log', 'terminal_output', 'agent_activity')",
                )?;
            }
            pruned.connections = conn
                .query_row(
                    "SELECT COUNT(*) FROM connections WHERE time < ?1",
                    [cutoff(retention.audit_days)],
                    |row| row.get::<_, i64>(0),
                )
                .map(|n| n as usize)?;
            Ok(pruned)
        })
    }
}

/// The sequence number of the first event recorded at `cutoff` (a stored
/// time) or later: everything numbered before it is older. Events are
/// numbered in the order they happen, so their times only grow along the
/// sequence, and a binary search over it finds the bound in a few dozen
/// row reads, without an index by time. `i64::MAX` when every event is
/// older.
pub(super) fn first_seq_since(conn: &Connection, cutoff: &str) -> rusqlite::Result<i64> {
    let mut first_from = conn.prepare_cached(
        "SELECT seq, time >= ?2 FROM events WHERE seq >= ?1 ORDER BY seq LIMIT 1",
    )?;
    // The first event numbered `seq` or later, and whether it is recent.
    let mut at = |seq: i64| -> rusqlite::Result<Option<(i64, bool)>> {
        first_from
            .query_row(params![seq, cutoff], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()
    };
    let Some((first, recent)) = at(i64::MIN)? else {
        return Ok(i64::MAX);
    };
    if recent {
        return Ok(first);
    }
    let last: i64 = conn.query_row("SELECT MAX(seq) FROM events", [], |row| row.get(0))?;
    if at(last)?.is_none_or(|(_, recent)| !recent) {
        return Ok(i64::MAX);
    }
    // From `low` the first event is older, from `high` it is recent.
    let (mut low, mut high) = (first, last);
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        match at(middle)? {
            Some((_, true)) => high = middle,
            _ => low = middle,
        }
    }
    Ok(at(high)?.map_or(i64::MAX, |(seq, _)| seq))
}
