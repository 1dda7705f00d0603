//! The dashboard's JSON endpoints, read from the history database, the
//! configuration and the batches' git branches. Each asks for the same
//! token as `/api/state` (`Authorization: Bearer`, not needed on loopback
//! when `allow_loopback_without_token`).
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /api/runs?status=&pipeline=&limit=50&offset=0` | a page of runs, newest first: `{runs, total, offset, limit}` |
//! | `GET /api/runs/RUN` | what `runner show RUN --json` prints |
//! | `GET /api/runs/RUN/logs?task=&after_seq=0&limit=5000` | log lines and output chunks in order: `{lines, last_seq}` |
//! | `GET /api/runs/RUN/logs.txt?task=` | the same as plain text |
//! | `GET /api/runs/RUN/batches/BATCH/diff` | what the batch changed on its branch, file by file |
//! | `GET /api/commands/COMMAND` | an agent command's `command_status` and `agent_activity` events |
//! | `GET /api/pipelines` | the pipelines of `runner.toml`: batches, `depends_on`, tasks |
//!
//! Errors are `{"error": "…"}` with 400 (a bad parameter), 404 (no such
//! run, batch or command; no history), or 500.

use super::Shared;
use super::http::{Body, text};
use crate::store::{RunFilter, Store, StoreError};
use hyper::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

const JSON: &str = "application/json";

/// An answer that is not 200.
struct Failure(StatusCode, String);

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        let status = match err {
            StoreError::NoSuchRun(_) | StoreError::AmbiguousRun { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(status, err.to_string())
    }
}

fn bad(message: impl Into<String>) -> Failure {
    Failure(StatusCode::BAD_REQUEST, message.into())
}

fn not_found(message: impl Into<String>) -> Failure {
    Failure(StatusCode::NOT_FOUND, message.into())
}

fn ok_json(value: &impl Serialize) -> hyper::Response<Body> {
    text(
        StatusCode::OK,
        JSON,
        serde_json::to_vec(value).expect("answers serialize"),
    )
}

/// Answers `GET path?query` for a path under `/api/` other than `/api/state`.
pub(crate) async fn route(
    path: &str,
    query: Option<&str>,
    shared: Arc<Shared>,
) -> hyper::Response<Body> {
    let params: HashMap<String, String> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let segments: Vec<String> = path
        .trim_start_matches("/api/")
        .split('/')
        .map(percent_decode)
        .collect();
    let answer = answer(segments, params, shared).await;
    match answer {
        Ok(response) => response,
        Err(Failure(status, message)) => text(
            status,
            JSON,
            serde_json::to_vec(&json!({ "error": message })).expect("errors serialize"),
        ),
    }
}

async fn answer(
    segments: Vec<String>,
    params: HashMap<String, String>,
    shared: Arc<Shared>,
) -> Result<hyper::Response<Body>, Failure> {
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    if segments == ["pipelines"] {
        return Ok(ok_json(&pipelines(&shared)));
    }
    let store = shared
        .hub
        .history()
        .cloned()
        .ok_or_else(|| not_found("this server keeps no history database"))?;
    let number = |key: &str, default: u64| -> Result<u64, Failure> {
        match params.get(key).filter(|v| !v.is_empty()) {
            Some(value) => value
                .parse()
                .map_err(|_| bad(format!("`{key}` must be a whole number, not `{value}`"))),
            None => Ok(default),
        }
    };
    let text_param = |key: &str| params.get(key).filter(|v| !v.is_empty()).cloned();
    match segments.as_slice() {
        ["runs"] => {
            let filter = RunFilter {
                status: text_param("status"),
                pipeline: text_param("pipeline"),
                limit: number("limit", 50)? as usize,
                offset: number("offset", 0)? as usize,
            };
            let page = blocking(store, move |store| store.run_page(&filter)).await?;
            Ok(ok_json(&page))
        }
        ["runs", run] => {
            let run = run.to_string();
            let detail = blocking(store, move |store| {
                let id = store.resolve_run(&run)?;
                store.run_detail(&id)
            })
            .await?;
            Ok(ok_json(&detail))
        }
        ["runs", run, "logs"] => {
            let (run, task) = (run.to_string(), text_param("task"));
            let after = number("after_seq", 0)?;
            let limit = number("limit", 5000)?.clamp(1, 20_000) as usize;
            let lines = blocking(store, move |store| {
                let id = store.resolve_run(&run)?;
                store.logs(&id, task.as_deref(), after, limit)
            })
            .await?;
            let last_seq = lines.last().map_or(after, |line| line.seq);
            Ok(ok_json(&json!({ "lines": lines, "last_seq": last_seq })))
        }
        ["runs", run, "logs.txt"] => {
            let (run, task) = (run.to_string(), text_param("task"));
            let body = blocking(store, move |store| raw_logs(store, &run, task.as_deref())).await?;
            Ok(text(StatusCode::OK, "text/plain; charset=utf-8", body))
        }
        ["runs", run, "batches", batch, "diff"] => {
            let (run, batch) = (run.to_string(), batch.to_string());
            let detail = blocking(store, move |store| {
                let id = store.resolve_run(&run)?;
                store.run_detail(&id)
            })
            .await?;
            let record = detail
                .batches
                .into_iter()
                .find(|b| b.batch_id == batch)
                .ok_or_else(|| {
                    not_found(format!("run {} has no batch `{batch}`", detail.run.id))
                })?;
            let to = record
                .head_after
                .clone()
                .or(record.branch.clone())
                .ok_or_else(|| {
                    not_found(format!(
                        "batch `{batch}` has no branch ({})",
                        record
                            .note
                            .as_deref()
                            .unwrap_or("the project is not in a git repository")
                    ))
                })?;
            let from = record.base_commit.clone().or(record.head_before.clone());
            let dir = shared.service.runner().config().base_dir.clone();
            let diff = tokio::task::spawn_blocking(move || {
                crate::git::diff_between(&dir, from.as_deref(), &to)
            })
            .await
            .map_err(|err| Failure(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))?
            .map_err(|err| Failure(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))?;
            let mut value = serde_json::to_value(&diff).expect("diffs serialize");
            value["batch_id"] = Value::String(record.batch_id);
            value["branch"] = json!(record.branch);
            Ok(ok_json(&value))
        }
        ["commands", command] => {
            let command = command.to_string();
            let events =
                blocking(store, move |store| store.command_events(&command, 20_000)).await?;
            Ok(ok_json(&json!({ "events": events })))
        }
        _ => Err(not_found(
            "no such endpoint; see the module list in the README's Dashboard section",
        )),
    }
}

/// Runs a store read on a blocking thread.
async fn blocking<T: Send + 'static>(
    store: Store,
    read: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(move || read(&store))
        .await
        .map_err(|err| Failure(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))?
        .map_err(Failure::from)
}

/// A run's (or one task's) logs as text: output as written, log lines as
/// `[level source] message`.
fn raw_logs(store: &Store, run: &str, task: Option<&str>) -> Result<String, StoreError> {
    let id = store.resolve_run(run)?;
    let mut body = String::new();
    let mut after = 0;
    loop {
        let lines = store.logs(&id, task, after, 10_000)?;
        let Some(last) = lines.last() else { break };
        after = last.seq;
        for line in &lines {
            match line.kind {
                crate::store::LogKind::Output => body.push_str(&line.text),
                crate::store::LogKind::Log => {
                    let _ = writeln!(
                        body,
                        "[{} {}] {}",
                        line.level.as_deref().unwrap_or("info"),
                        line.source.as_deref().unwrap_or("runner"),
                        line.text
                    );
                }
            }
        }
    }
    Ok(body)
}

/// The pipelines as the run graph draws them.
fn pipelines(shared: &Shared) -> Value {
    let config = shared.service.runner().config();
    let default = config.pipeline(None).ok().map(|p| p.name.clone());
    let pipelines: Vec<Value> = config
        .pipelines
        .values()
        .map(|pipeline| {
            json!({
                "name": pipeline.name,
                "description": pipeline.description,
                "batches": pipeline.batches.iter().map(|batch| json!({
                    "id": batch.id,
                    "name": batch.name,
                    "batch_type": batch.batch_type,
                    "depends_on": batch.depends_on,
                    "tasks": batch.tasks.iter().map(|task| json!({
                        "id": task.id,
                        "name": task.name,
                        "type": task.kind.type_name(),
                        "priority": task.priority,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let agents: Vec<&String> = config.agents.keys().collect();
    json!({ "default": default, "pipelines": pipelines, "agents": agents })
}

/// `%2F` and the like in one path segment.
fn percent_decode(segment: &str) -> String {
    form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}
