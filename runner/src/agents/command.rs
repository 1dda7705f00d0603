//! Running one command: the adapter builds the command line, the host runs
//! it in its own process group and feeds every output line back to the adapter.

use super::prompts::Prompts;
use super::*;
use crate::plugin::{Plugin, Signal, Sink};
use crate::process::exec::{self, Ending, ExecSpec};
use crate::process::find_program;
use crate::process::output::Chunker;
use crate::slots::Slots;
use futures_util::StreamExt;
use protocol::{Activity, CommandStatus, EventKind, LogLevel, Stream};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The message when what the command reported in `activity` takes it, or
/// its run, past a budget.
fn over_budget(
    agent: &Agent,
    request: &CommandRequest,
    result: &CommandResult,
    activity: &Activity,
) -> Option<String> {
    let Activity::Usage {
        input_tokens,
        output_tokens,
        cost_usd,
        ..
    } = activity
    else {
        return None;
    };
    let spent = super::Spent {
        cost_usd: result.usage.cost_usd.unwrap_or(0.0),
        tokens: result.usage.input_tokens + result.usage.output_tokens,
    };
    let run = request
        .run_budget
        .as_ref()
        .and_then(|run| run.add(cost_usd.unwrap_or(0.0), input_tokens + output_tokens));
    let task = format!("task `{}`", request.task_id.as_deref().unwrap_or("?"));
    spent
        .exceeds(&request.budget, &task)
        .or_else(|| spent.exceeds(&agent.decl.budget, &format!("agent `{}`", agent.decl.name)))
        .or(run)
}

impl Agents {
    pub(super) async fn run_command(
        self: &Arc<Self>,
        agent: &Arc<Agent>,
        plugin: Arc<Plugin>,
        id: &str,
        request: CommandRequest,
        run_slots: Option<Arc<Slots>>,
        cancel: CancellationToken,
    ) -> CommandResult {
        let mut result = CommandResult {
            command_id: id.to_string(),
            status: CommandStatus::Interrupted,
            exit_code: None,
            error: Some("interrupted while queued".into()),
            summary: None,
            session_id: None,
            usage: Usage::default(),
            files_changed: Vec::new(),
            tools_used: Vec::new(),
            output_cut: None,
        };
        // The agent first, then the run: a command holds a run slot only
        // once its agent has taken it.
        let permits = async {
            let agent_permit = agent.slots.acquire(request.priority).await;
            let run_permit = match &run_slots {
                Some(slots) => Some(slots.acquire(request.priority).await),
                None => None,
            };
            (agent_permit, run_permit)
        };
        let permit = tokio::select! {
            permits = permits => Some(permits),
            _ = cancel.cancelled() => None,
        };
        agent.queued.fetch_sub(1, Ordering::SeqCst);
        // A run over its budget starts nothing more.
        let refused = request.run_budget.as_ref().and_then(|b| b.refuses_start());
        let permit = match (permit, refused) {
            (Some(_), Some(message)) => {
                result.status = CommandStatus::Failed;
                result.error = Some(message);
                None
            }
            (permit, _) => permit,
        };
        let Some(permit) = permit else {
            let status = result.status;
            self.command_status(id, agent, &request, status, None, result.error.clone());
            self.publish_status(agent);
            return result;
        };
        agent
            .running
            .lock()
            .expect("running lock")
            .push(id.to_string());
        self.command_status(id, agent, &request, CommandStatus::Running, None, None);
        self.publish_status(agent);

        self.execute(agent, &plugin, id, &request, &cancel, &mut result)
            .await;

        drop(permit);
        agent
            .running
            .lock()
            .expect("running lock")
            .retain(|c| c != id);
        self.command_status(
            id,
            agent,
            &request,
            result.status,
            result.exit_code,
            result.error.clone(),
        );
        self.publish_status(agent);
        result
    }

    pub(super) async fn execute(
        self: &Arc<Self>,
        agent: &Agent,
        plugin: &Plugin,
        id: &str,
        request: &CommandRequest,
        cancel: &CancellationToken,
        result: &mut CommandResult,
    ) {
        let cwd = request
            .working_dir
            .clone()
            .unwrap_or_else(|| agent.decl.working_dir.clone());
        let timeout = request.timeout.unwrap_or(agent.decl.timeout);
        result.status = CommandStatus::Failed;
        result.error = None;
        let sink = self.adapter_sink(&agent.decl.adapter, request);
        // The adapter lives as long as the command may, plus time to read the rest.
        let mut session = match plugin
            .agent_session(
                timeout
                    .saturating_add(exec::KILL_GRACE)
                    .saturating_add(Duration::from_secs(30)),
                sink,
            )
            .await
        {
            Ok(session) => session,
            Err(err) => {
                result.error = Some(format!("adapter `{}` {err}", plugin.name()));
                return;
            }
        };
        let invocation = match session.start(&self.request_for(agent, request)).await {
            Ok(Ok(invocation)) => invocation,
            Ok(Err(message)) => {
                result.error = Some(format!(
                    "adapter `{}` refused the request: {message}",
                    plugin.name()
                ));
                return;
            }
            Err(err) => {
                result.error = Some(format!("adapter `{}` {err}", plugin.name()));
                return;
            }
        };
        // An adapter that relays permission prompts for these options keeps
        // the CLI's standard input open for the answers.
        let asks = match session.asks_permission(&agent.decl.options).await {
            Ok(asks) => asks,
            Err(err) => {
                result.error = Some(format!("adapter `{}` {err}", plugin.name()));
                return;
            }
        };
        let (answers, more_stdin) = if asks {
            let (tx, rx) = mpsc::unbounded_channel::<String>();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let program = find_program(&invocation.program, &cwd)
            .map_or(invocation.program.clone(), |p| p.display().to_string());
        let mut env = agent.decl.env.clone();
        env.extend(invocation.env.iter().cloned());
        let spec = ExecSpec {
            program,
            args: invocation.args.clone(),
            cwd,
            env,
            stdin: invocation.stdin.clone(),
        };

        let (line_tx, mut line_rx) = mpsc::unbounded_channel::<(Stream, String)>();
        let mut chunker = Chunker::with_limit(agent.decl.output);
        let mut partial: HashMap<Stream, Vec<u8>> = HashMap::new();
        // Owns the sender, so the line reader below ends when the process does.
        let on_output = {
            let (chunker, partial) = (&mut chunker, &mut partial);
            move |stream: Stream, data: &[u8]| {
                let chunks = chunker.push(stream, data);
                self.terminal_chunks(id, request, stream, chunks);
                let buffer = partial.entry(stream).or_default();
                buffer.extend_from_slice(data);
                while let Some(newline) = buffer.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=newline).collect();
                    let text = String::from_utf8_lossy(&line)
                        .trim_end_matches(['\n', '\r'])
                        .to_string();
                    let _ = line_tx.send((stream, text));
                }
            }
        };
        let tracker = Mutex::new(&mut *result);
        // Cancelled when a budget is passed: stops the command alone.
        let stop = cancel.child_token();
        let exceeded: Mutex<Option<String>> = Mutex::new(None);
        let consume = async {
            let mut session_errors = Vec::new();
            let mut prompts = Prompts::new(self, agent, id, request, answers);
            loop {
                let (stream, line) = tokio::select! {
                    line = line_rx.recv() => match line {
                        Some(line) => line,
                        None => break,
                    },
                    Some((prompt, answer)) = prompts.waits.next(), if !prompts.waits.is_empty() => {
                        prompts.answer(&mut session, prompt, answer).await;
                        continue;
                    }
                };
                if asks && stream == Stream::Stdout {
                    match session.recognise_approval(&line).await {
                        Ok(Some(prompt)) => {
                            prompts.open(&mut session, prompt).await;
                            continue;
                        }
                        Ok(None) => {}
                        Err(err) => session_errors.push(err),
                    }
                }
                match session.parse_line(stream, &line).await {
                    Ok(events) => {
                        for event in events {
                            let activity = convert::activity(event);
                            if matches!(activity, Activity::FinalResult { .. }) {
                                // The CLI has its answer: nothing more to say to it.
                                prompts.close_input();
                            }
                            let mut tracked = tracker.lock().expect("tracker lock");
                            track(&mut tracked, &activity);
                            if let Some(message) = over_budget(agent, request, &tracked, &activity)
                            {
                                let mut first = exceeded.lock().expect("budget lock");
                                if first.is_none() {
                                    self.log(
                                        request,
                                        LogLevel::Warn,
                                        format!("command {id}: {message}; stopping it"),
                                    );
                                    *first = Some(message);
                                }
                                stop.cancel();
                            }
                            drop(tracked);
                            self.activity(id, agent, request, activity);
                        }
                    }
                    Err(err) => session_errors.push(err),
                }
            }
            prompts.end();
            session_errors
        };
        let (ending, session_errors) = tokio::join!(
            exec::run_with_input(&spec, more_stdin, timeout, &stop, on_output),
            consume
        );
        let exceeded = exceeded.into_inner().expect("budget lock");
        // Lines that ended without a newline.
        for (stream, rest) in partial.into_iter().filter(|(_, rest)| !rest.is_empty()) {
            let line = String::from_utf8_lossy(&rest).into_owned();
            if let Ok(events) = session.parse_line(stream, &line).await {
                for event in events {
                    let activity = convert::activity(event);
                    track(result, &activity);
                    self.activity(id, agent, request, activity);
                }
            }
        }
        let rest = chunker.finish();
        self.terminal_chunks(id, request, Stream::Stdout, rest);
        // Every line still reached the adapter; only the terminal output was cut.
        if let Some(cut) = chunker.cut() {
            self.log(
                request,
                LogLevel::Warn,
                format!("command {id}: {}", cut.message()),
            );
            result.output_cut = Some(cut);
        }
        if let Some(err) = session_errors.first() {
            self.log(
                request,
                LogLevel::Warn,
                format!("adapter `{}` could not read a line: {err}", plugin.name()),
            );
        }
        let exit_code = ending.as_ref().ok().and_then(Ending::exit_code);
        result.exit_code = exit_code;
        let outcome = session.finish(exit_code).await;
        if let Ok(outcome) = &outcome {
            result.summary = outcome.summary.clone().or(result.summary.take());
            if outcome.session_id.is_some() {
                result.session_id = outcome.session_id.clone();
            }
        }
        match ending {
            Err(err) => result.error = Some(format!("{err:#}")),
            // Stopped for its budget (not interrupted by someone): a failure.
            _ if exceeded.is_some() && !cancel.is_cancelled() => {
                result.error = exceeded;
            }
            Ok(Ending::Aborted) => {
                result.status = CommandStatus::Interrupted;
                result.error = Some("interrupted; its process group was stopped".into());
            }
            Ok(ending @ Ending::TimedOut) => result.error = ending.error("the agent", timeout),
            Ok(Ending::Exited(_)) => match outcome {
                Ok(outcome) if outcome.success => result.status = CommandStatus::Completed,
                Ok(outcome) => {
                    result.error = Some(
                        outcome
                            .error
                            .unwrap_or_else(|| exec::exit_message("the agent", exit_code)),
                    )
                }
                Err(err) => result.error = Some(format!("adapter `{}` {err}", plugin.name())),
            },
        }
    }

    pub(super) fn adapter_sink(&self, adapter: &str, request: &CommandRequest) -> Sink {
        let (bus, source, run_id, task_id) = (
            self.bus.clone(),
            adapter.to_string(),
            request.run_id.clone(),
            request.task_id.clone(),
        );
        Arc::new(move |signal| {
            if let Signal::Log { level, message } = signal {
                bus.publish(EventKind::log(
                    run_id.clone(),
                    task_id.clone(),
                    level,
                    source.clone(),
                    message,
                ));
            }
        })
    }

    pub(super) fn log(&self, request: &CommandRequest, level: LogLevel, message: String) {
        self.bus.publish(EventKind::log(
            request.run_id.clone(),
            request.task_id.clone(),
            level,
            "runner",
            message,
        ));
    }

    pub(super) fn activity(
        &self,
        id: &str,
        agent: &Agent,
        request: &CommandRequest,
        activity: Activity,
    ) {
        self.bus.publish(EventKind::AgentActivity {
            command_id: id.to_string(),
            agent: agent.decl.name.clone(),
            run_id: request.run_id.clone(),
            task_id: request.task_id.clone(),
            activity,
        });
    }

    pub(super) fn terminal_chunks(
        &self,
        id: &str,
        request: &CommandRequest,
        stream: Stream,
        chunks: Vec<(u64, String)>,
    ) {
        for (sequence, data) in chunks {
            self.bus.publish(EventKind::TerminalOutput {
                run_id: request.run_id.clone(),
                task_id: request.task_id.clone(),
                command_id: Some(id.to_string()),
                stream,
                sequence,
                data,
            });
        }
    }
}
