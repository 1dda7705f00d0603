//! The history database from the command line: recording runs, and
//! `runner history`, `runner show`, `runner logs`.

use super::Error;
use crate::config::Config;
use crate::events::EventBus;
use crate::store::{
    DB_FILE, LogKind, Recorder, RecorderLock, RunSummary, Store, StoreOptions, lock_path,
};
use std::sync::Arc;

/// Where `config`'s history lives.
fn db_path(config: &Config) -> std::path::PathBuf {
    config.state_dir().join(DB_FILE)
}

pub(super) fn open(config: &Config) -> Result<Store, Error> {
    let options = StoreOptions {
        retention: crate::store::Retention::from(&config.history),
        ..StoreOptions::default()
    };
    Ok(Store::open_with(db_path(config), options)?)
}

/// An open history that records every event of a bus.
pub struct Recording {
    pub store: Option<Store>,
    recorder: Option<Recorder>,
    /// Held while this process records: one writer numbers the events.
    _lock: Option<RecorderLock>,
}

impl Recording {
    /// Waits until every event published so far is written, then
    /// checkpoints the WAL when it is large ([`crate::store::KEEP_WAL`]);
    /// a smaller one is left to the next runner.
    pub async fn finish(&self) {
        if let Some(recorder) = &self.recorder
            && let Err(err) = recorder.flush_async().await
        {
            eprintln!("warning: the history may miss the last events: {err}");
            return;
        }
        if let Some(store) = self.store.clone() {
            let _ = tokio::task::spawn_blocking(move || store.checkpoint()).await;
        }
    }
}

/// Opens the history (which prunes old logs, see [`Store::open_with`]),
/// marks what a dead runner left running as interrupted, and returns a bus
/// numbering on from the last event.
///
/// Sequence numbers come from one process, so while another runner records
/// into the same state directory this one waits until that one ends
/// (Ctrl-C stops the wait): every run and agent turn of a project lands in
/// its history. A `runner serve` is not waited for: `ask` and `run` hand
/// their work to it instead (see `client`).
pub async fn start(config: &Config) -> Result<(Arc<EventBus>, Recording), Error> {
    let db = db_path(config);
    let killed = crate::process::groups::adopt(config.state_dir());
    if !killed.is_empty() {
        eprintln!(
            "note: killed {} process group(s) left running by a stopped runner",
            killed.len()
        );
    }
    let mut said = false;
    let lock = loop {
        let acquired = RecorderLock::try_acquire(&db).map_err(|err| {
            Error::Usage(format!("cannot lock {}: {err}", lock_path(&db).display()))
        })?;
        if let Some(lock) = acquired {
            break lock;
        }
        if !said {
            let holder = match crate::store::Holder::of(&db) {
                crate::store::Holder::Alive(pid) => format!(" (pid {pid})"),
                _ => String::new(),
            };
            eprintln!(
                "note: another runner{holder} is recording into {}; waiting for it to end (Ctrl-C stops)",
                db.display()
            );
            said = true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let store = open(config)?;
    let recovery = store.recover("the runner stopped while it was going (crash or kill)")?;
    if !recovery.runs.is_empty() {
        eprintln!(
            "note: {} run(s) left going by a stopped runner are now marked interrupted: {}",
            recovery.runs.len(),
            recovery.runs.join(", ")
        );
    }
    let bus = EventBus::new(store.last_seq() + 1);
    let recorder = Recorder::start(&store, &bus);
    Ok((
        bus,
        Recording {
            store: Some(store),
            recorder: Some(recorder),
            _lock: Some(lock),
        },
    ))
}

pub fn history(config: &Config, limit: usize, json: bool) -> Result<i32, Error> {
    let runs = open(config)?.list_runs(limit)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&runs).expect("plain JSON")
        );
        return Ok(super::exit::OK);
    }
    if runs.is_empty() {
        println!(
            "no runs yet: `runner run` records its runs in {}",
            db_path(config).display()
        );
        return Ok(super::exit::OK);
    }
    let rows: Vec<[String; 8]> = runs
        .iter()
        .map(|run| {
            [
                run.id.clone(),
                run.pipeline.clone(),
                run.trigger.clone().unwrap_or_else(|| "run".into()),
                run.status_text(),
                run.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                format!("{}/{} ok", run.batches_ok, run.batches),
                tasks_text(run),
                run.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!("{}", table(&HISTORY_COLUMNS, &rows));
    Ok(super::exit::OK)
}

/// `2/3 ok`, and how many are still going: `0/1 ok, 1 running`.
fn tasks_text(run: &RunSummary) -> String {
    let mut text = format!("{}/{} ok", run.tasks_ok, run.tasks);
    if run.tasks_running > 0 {
        text.push_str(&format!(", {} running", run.tasks_running));
    }
    text
}

/// The columns of `runner history`: a header and whether it is right-aligned.
/// TRIGGER is what started the run: `watch` (a `runner watch` run) or
/// `run` (a request: `runner run`, or `start_run` over the WebSocket).
const HISTORY_COLUMNS: [(&str, bool); 8] = [
    ("RUN", false),
    ("PIPELINE", false),
    ("TRIGGER", false),
    ("STATUS", false),
    ("STARTED", false),
    ("BATCHES", true),
    ("TASKS", true),
    ("ERROR", false),
];

/// A plain-text table: each column as wide as its widest cell, two spaces
/// between columns, the last column unpadded.
fn table<const N: usize>(columns: &[(&str, bool); N], rows: &[[String; N]]) -> String {
    let mut widths = columns.map(|(header, _)| header.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let headers = columns.map(|(header, _)| header.to_string());
    let mut out = String::new();
    for row in std::iter::once(&headers).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = " ".repeat(widths[i] - cell.chars().count());
            match (columns[i].1, i + 1 == N) {
                (true, _) => line.push_str(&format!("{pad}{cell}")),
                (false, true) => line.push_str(cell),
                (false, false) => line.push_str(&format!("{cell}{pad}")),
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `watch (changed: a.rs, b.rs)`, at most ten paths named.
fn trigger_text(trigger: &str, changed: &[String]) -> String {
    const SHOWN: usize = 10;
    if changed.is_empty() {
        return trigger.to_string();
    }
    let mut names = changed[..changed.len().min(SHOWN)].join(", ");
    if changed.len() > SHOWN {
        names.push_str(&format!(" and {} more", changed.len() - SHOWN));
    }
    format!("{trigger} (changed: {names})")
}

pub fn show(config: &Config, run: &str, json: bool) -> Result<i32, Error> {
    let detail = open(config)?.run_detail(run)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&detail).expect("plain JSON")
        );
        return Ok(super::exit::OK);
    }
    let r = &detail.run;
    let took = r.finished_at.map(|f| {
        format!(
            " in {}",
            crate::units::format_elapsed((f - r.started_at).to_std().unwrap_or_default())
        )
    });
    println!(
        "run {} · pipeline {} · {} · tasks {}{}",
        r.id,
        r.pipeline,
        r.status_text(),
        tasks_text(r),
        took.unwrap_or_default()
    );
    if let Some(trigger) = &r.trigger {
        println!("  trigger: {}", trigger_text(trigger, &r.changed));
    }
    if let Some(error) = &r.error {
        println!("  error: {error}");
    }
    for batch in &detail.batches {
        let mut line = format!(
            "  batch {} ({}) {}",
            batch.batch_id, batch.name, batch.status
        );
        if let Some(branch) = &batch.branch {
            line.push_str(&format!(" · branch {branch}"));
        }
        if let (Some(before), Some(after)) = (&batch.head_before, &batch.head_after) {
            line.push_str(&format!(" · {}..{}", short(before), short(after)));
        }
        if let Some(note) = &batch.note {
            line.push_str(&format!(" · {note}"));
        }
        println!("{line}");
        if let Some(error) = &batch.error {
            println!("    error: {error}");
        }
        for exec in detail
            .executions
            .iter()
            .filter(|e| e.batch_id == batch.batch_id)
        {
            let took = exec
                .duration_ms
                .map(|ms| format!(" {ms}ms"))
                .unwrap_or_default();
            let code = exec
                .exit_code
                .map(|c| format!(" exit {c}"))
                .unwrap_or_default();
            let error = exec
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            let cut = exec
                .result
                .as_ref()
                .and_then(|r| r["output_cut"]["dropped_bytes"].as_u64())
                .map(|dropped| format!(" · output cut: {dropped} bytes dropped"))
                .unwrap_or_default();
            println!(
                "    {} [{} · {}] {}{code}{took}{cut}{error}",
                exec.execution_id, exec.kind, exec.reason, exec.status
            );
        }
    }
    for turn in &detail.agent_turns {
        println!(
            "  agent {} · {} · {} · session {} · tokens in {} / out {} / cached {}{}",
            turn.agent,
            turn.task_id.as_deref().unwrap_or(&turn.command_id),
            turn.status,
            turn.agent_session_id.as_deref().unwrap_or("-"),
            turn.input_tokens,
            turn.output_tokens,
            turn.cached_tokens,
            turn.cost_usd
                .map(|c| format!(" · ${c:.4}"))
                .unwrap_or_default()
        );
        if let Some(prompt) = &turn.prompt {
            println!("    prompt: {}", prompt.lines().next().unwrap_or(""));
        }
        if let Some(summary) = &turn.summary {
            println!("    summary: {}", summary.lines().next().unwrap_or(""));
        }
    }
    for best in &detail.best_of {
        println!(
            "  best of batch {}: {}",
            best.batch_id,
            crate::printer::best_of_verdict(best.winner, &best.reason, best.attempts.len())
        );
        if let Some(check) = &best.check {
            println!("    check: {check}");
        }
        for row in crate::printer::best_of_rows(&best.attempts) {
            println!("    {row}");
        }
    }
    for merge in &detail.merges {
        println!(
            "  merge {} → {}: {}",
            merge.branch, merge.target, merge.status
        );
    }
    Ok(super::exit::OK)
}

pub async fn logs(
    config: &Config,
    run: &str,
    task: Option<&str>,
    follow: bool,
) -> Result<i32, Error> {
    let store = open(config)?;
    let run_id = store.resolve_run(run)?;
    let print = |lines: Vec<crate::store::LogLine>| {
        for line in lines {
            let owner = line
                .task_id
                .or(line.command_id)
                .unwrap_or_else(|| "run".into());
            match line.kind {
                LogKind::Output => print!("{}", line.text),
                _ => println!(
                    "[{}] {owner} {} {}: {}",
                    line.time.format("%H:%M:%S%.3f"),
                    line.source.as_deref().unwrap_or("runner"),
                    line.level.as_deref().unwrap_or("info"),
                    line.text
                ),
            }
        }
    };
    if !follow {
        print(store.logs(&run_id, task, 0, usize::MAX)?);
        return Ok(super::exit::OK);
    }
    let mut follow = store.follow_logs(&run_id, task, 0);
    while let Some(lines) = follow.next().await? {
        print(lines);
    }
    Ok(super::exit::OK)
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_lines_up_every_column_whatever_its_longest_cell() {
        let rows = [
            ["run-1", "ci", "completed", "3/3 ok", "boom"].map(String::from),
            ["run-22", "default", "interrupted", "10/12 ok", ""].map(String::from),
        ];
        let columns = [
            ("RUN", false),
            ("PIPELINE", false),
            ("STATUS", false),
            ("TASKS", true),
            ("ERROR", false),
        ];
        let text = table(&columns, &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![
                "RUN     PIPELINE  STATUS          TASKS  ERROR",
                "run-1   ci        completed      3/3 ok  boom",
                "run-22  default   interrupted  10/12 ok",
            ]
        );
    }
}
