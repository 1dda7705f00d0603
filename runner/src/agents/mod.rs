//! Coding agents: per-agent priority queues in front of CLIs the host owns.
//!
//! A command goes `queued → running → completed | failed | interrupted`.
//! Each agent runs `concurrency` commands at once (one by default), takes
//! waiting commands high before normal before low and first come first
//! served within a priority, and refuses, never silently queues, a request
//! that is invalid, for an agent that is offline, or beyond `queue_limit`.
//!
//! The adapter plugin is pure: it builds the command line and reads the
//! output lines; the host spawns the CLI in its own process group and
//! kills the group on timeout, interrupt or shutdown.

mod convert;

pub use convert::activity;

use crate::config::AgentDecl;
use crate::events::EventBus;
use crate::plugin::{AgentRequest, Plugin, Plugins, Signal, Sink, humanize};
use crate::process::exec::{self, Ending, ExecSpec};
use crate::process::find_program;
use crate::process::output::Chunker;
use crate::slots::Slots;
use indexmap::IndexMap;
use protocol::{Activity, AgentStatus, CommandStatus, EventKind, LogLevel, Priority, Stream};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// A prompt for an agent.
#[derive(Debug, Clone)]
pub struct CommandRequest {
    pub agent: String,
    pub prompt: String,
    pub priority: Priority,
    /// The agent's own session id, to resume.
    pub resume_session: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    /// Where the CLI runs (the agent's `working_dir` when `None`).
    pub working_dir: Option<PathBuf>,
    /// The agent's `timeout` when `None`.
    pub timeout: Option<Duration>,
}

/// Why a request was refused before it was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no agent `{0}`; declare it as [agents.{0}] in runner.toml")]
    UnknownAgent(String),
    #[error(
        "agent `{agent}` is offline: its command `{program}` was not found (set `command` in [agents.{agent}] or put it on PATH)"
    )]
    Offline { agent: String, program: String },
    #[error("agent `{agent}` has {limit} commands waiting, its `queue_limit`; try again later")]
    QueueFull { agent: String, limit: usize },
    #[error("agent `{agent}` refused the request: {message}")]
    Invalid { agent: String, message: String },
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandResult {
    pub command_id: String,
    pub status: CommandStatus,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub summary: Option<String>,
    pub session_id: Option<String>,
    pub usage: Usage,
    pub files_changed: Vec<String>,
    pub tools_used: Vec<String>,
    /// Terminal output dropped past the agent's `output` limit.
    pub output_cut: Option<crate::process::output::OutputCut>,
}

/// Tokens and cost an agent reported for one command, summed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cost_usd: Option<f64>,
}

impl CommandResult {
    /// The output of an agent task.
    pub fn to_json(&self, agent: &str) -> Value {
        let json = json!({
            "agent": agent,
            "command_id": self.command_id,
            "session_id": self.session_id,
            "summary": self.summary,
            "exit_code": self.exit_code,
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
                "cached_tokens": self.usage.cached_tokens,
                "cost_usd": self.usage.cost_usd,
            },
            "files_changed": self.files_changed,
            "tools_used": self.tools_used,
        });
        match self.output_cut {
            Some(cut) => cut.annotate(Some(json)),
            None => json,
        }
    }
}

/// A queued command: its id, and its result once it ends.
pub struct CommandHandle {
    pub id: String,
    pub done: oneshot::Receiver<CommandResult>,
}

/// What `runner agents` and the state snapshot show of one agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentView {
    pub name: String,
    pub adapter: String,
    pub program: Option<String>,
    pub status: AgentStatus,
    pub queued: usize,
    pub running: Vec<String>,
    pub concurrency: usize,
    pub queue_limit: usize,
}

struct Agent {
    decl: AgentDecl,
    slots: Arc<Slots>,
    queued: AtomicUsize,
    running: Mutex<Vec<String>>,
    /// The CLI as last resolved, and whether it was found.
    program: Mutex<Option<(String, bool)>>,
}

pub struct Agents {
    bus: Arc<EventBus>,
    plugins: Arc<Plugins>,
    agents: IndexMap<String, Arc<Agent>>,
    /// Queued and running commands, to interrupt them.
    commands: Mutex<HashMap<String, CancellationToken>>,
    /// Cancelled at shutdown: every command is interrupted.
    shutdown: CancellationToken,
}

impl Agents {
    pub fn new(
        agents: &IndexMap<String, AgentDecl>,
        plugins: Arc<Plugins>,
        bus: Arc<EventBus>,
    ) -> Arc<Self> {
        let agents = agents
            .iter()
            .map(|(name, decl)| {
                let agent = Agent {
                    decl: decl.clone(),
                    slots: Slots::new(decl.concurrency),
                    queued: AtomicUsize::new(0),
                    running: Mutex::new(Vec::new()),
                    program: Mutex::new(None),
                };
                (name.clone(), Arc::new(agent))
            })
            .collect();
        Arc::new(Self {
            bus,
            plugins,
            agents,
            commands: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
        })
    }

    /// Resolves every agent's CLI and publishes its status.
    pub async fn refresh(&self) {
        for agent in self.agents.values() {
            if let Ok(plugin) = self.adapter(agent) {
                let probe = AgentRequest {
                    prompt: "status probe".into(),
                    model: agent.decl.model.clone(),
                    working_dir: agent.decl.working_dir.display().to_string(),
                    resume_session: None,
                    program: agent.decl.command.clone(),
                    extra_args: agent.decl.args.clone(),
                    options: agent.decl.options.clone(),
                };
                if let Ok(mut session) = plugin
                    .agent_session(Duration::from_secs(10), crate::plugin::discard())
                    .await
                    && let Ok(Ok(invocation)) = session.start(&probe).await
                {
                    let found =
                        find_program(&invocation.program, &agent.decl.working_dir).is_some();
                    *agent.program.lock().expect("program lock") =
                        Some((invocation.program, found));
                }
            }
            self.publish_status(agent);
        }
    }

    /// Every agent as it is now.
    pub fn views(&self) -> Vec<AgentView> {
        self.agents.values().map(|agent| self.view(agent)).collect()
    }

    fn view(&self, agent: &Agent) -> AgentView {
        let running = agent.running.lock().expect("running lock").clone();
        let program = agent.program.lock().expect("program lock").clone();
        let status = match (&program, running.is_empty()) {
            (Some((_, false)), _) => AgentStatus::Offline,
            (_, false) => AgentStatus::Busy,
            _ => AgentStatus::Online,
        };
        AgentView {
            name: agent.decl.name.clone(),
            adapter: agent.decl.adapter.clone(),
            program: program.map(|p| p.0),
            status,
            queued: agent.queued.load(Ordering::SeqCst),
            running,
            concurrency: agent.decl.concurrency,
            queue_limit: agent.decl.queue_limit,
        }
    }

    fn publish_status(&self, agent: &Agent) {
        let view = self.view(agent);
        self.bus.publish(EventKind::AgentStatus {
            agent: view.name,
            status: view.status,
            queued: view.queued,
            current_command: view.running.first().cloned(),
        });
    }

    fn adapter(&self, agent: &Agent) -> Result<Arc<Plugin>, Refusal> {
        self.plugins
            .get(&agent.decl.adapter)
            .cloned()
            .ok_or_else(|| Refusal::Invalid {
                agent: agent.decl.name.clone(),
                message: format!("its adapter `{}` is not loaded", agent.decl.adapter),
            })
    }

    fn request_for(&self, agent: &Agent, request: &CommandRequest) -> AgentRequest {
        AgentRequest {
            prompt: request.prompt.clone(),
            model: agent.decl.model.clone(),
            working_dir: request
                .working_dir
                .as_ref()
                .unwrap_or(&agent.decl.working_dir)
                .display()
                .to_string(),
            resume_session: request.resume_session.clone(),
            program: agent.decl.command.clone(),
            extra_args: agent.decl.args.clone(),
            options: agent.decl.options.clone(),
        }
    }

    /// Checks and queues a command. Refused when the agent is unknown or
    /// offline, its queue is full, or its adapter finds the request invalid.
    pub async fn submit(
        self: &Arc<Self>,
        request: CommandRequest,
    ) -> Result<CommandHandle, Refusal> {
        self.enqueue(request, None).await
    }

    /// As [`Agents::submit`], for a task of a run: once the agent takes the
    /// command, it also waits for one of the run's `slots` and holds it while
    /// the command runs. A command waiting in its agent's queue holds none.
    pub async fn submit_for_run(
        self: &Arc<Self>,
        request: CommandRequest,
        slots: Arc<Slots>,
    ) -> Result<CommandHandle, Refusal> {
        self.enqueue(request, Some(slots)).await
    }

    async fn enqueue(
        self: &Arc<Self>,
        request: CommandRequest,
        run_slots: Option<Arc<Slots>>,
    ) -> Result<CommandHandle, Refusal> {
        let agent = self
            .agents
            .get(&request.agent)
            .cloned()
            .ok_or_else(|| Refusal::UnknownAgent(request.agent.clone()))?;
        let plugin = self.adapter(&agent)?;
        let invalid = |message: String| Refusal::Invalid {
            agent: agent.decl.name.clone(),
            message,
        };
        let wire = self.request_for(&agent, &request);
        let mut session = plugin
            .agent_session(Duration::from_secs(10), crate::plugin::discard())
            .await
            .map_err(|e| invalid(e.to_string()))?;
        let invocation = match session.start(&wire).await {
            Ok(Ok(invocation)) => invocation,
            Ok(Err(message)) => return Err(invalid(message)),
            Err(err) => return Err(invalid(format!("its adapter {err}"))),
        };
        let cwd = request
            .working_dir
            .clone()
            .unwrap_or_else(|| agent.decl.working_dir.clone());
        let found = find_program(&invocation.program, &cwd).is_some();
        *agent.program.lock().expect("program lock") = Some((invocation.program.clone(), found));
        if !found {
            self.publish_status(&agent);
            return Err(Refusal::Offline {
                agent: agent.decl.name.clone(),
                program: invocation.program,
            });
        }
        // Count and check under one step so two submitters cannot both take the last place.
        let limit = agent.decl.queue_limit;
        if agent
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                (q < limit).then_some(q + 1)
            })
            .is_err()
        {
            return Err(Refusal::QueueFull {
                agent: agent.decl.name.clone(),
                limit,
            });
        }
        let id = crate::ids::command_id();
        let cancel = self.shutdown.child_token();
        self.commands
            .lock()
            .expect("commands lock")
            .insert(id.clone(), cancel.clone());
        self.command_status(&id, &agent, &request, CommandStatus::Queued, None, None);
        self.publish_status(&agent);

        let (tx, rx) = oneshot::channel();
        let (agents, id2) = (self.clone(), id.clone());
        tokio::spawn(async move {
            let request = CommandRequest {
                working_dir: Some(cwd),
                ..request
            };
            let result = agents
                .run_command(&agent, plugin, &id2, request, run_slots, cancel)
                .await;
            agents.commands.lock().expect("commands lock").remove(&id2);
            let _ = tx.send(result);
        });
        Ok(CommandHandle { id, done: rx })
    }

    /// Interrupts a queued or running command.
    pub fn interrupt(&self, command_id: &str) -> Result<(), String> {
        match self.commands.lock().expect("commands lock").get(command_id) {
            Some(cancel) => {
                cancel.cancel();
                Ok(())
            }
            None => Err(format!("no queued or running command `{command_id}`")),
        }
    }

    /// Interrupts every command (their process groups are killed).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    fn command_status(
        &self,
        id: &str,
        agent: &Agent,
        request: &CommandRequest,
        status: CommandStatus,
        exit_code: Option<i32>,
        error: Option<String>,
    ) {
        self.bus.publish(EventKind::CommandStatus {
            command_id: id.to_string(),
            agent: agent.decl.name.clone(),
            status,
            priority: request.priority,
            run_id: request.run_id.clone(),
            task_id: request.task_id.clone(),
            exit_code,
            error,
            prompt: (status == CommandStatus::Queued).then(|| request.prompt.clone()),
        });
    }

    async fn run_command(
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
        let Some(permit) = permit else {
            self.command_status(
                id,
                agent,
                &request,
                CommandStatus::Interrupted,
                None,
                result.error.clone(),
            );
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

    async fn execute(
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
        let consume = async {
            let mut session_errors = Vec::new();
            while let Some((stream, line)) = line_rx.recv().await {
                match session.parse_line(stream, &line).await {
                    Ok(events) => {
                        for event in events {
                            let activity = convert::activity(event);
                            track(&mut tracker.lock().expect("tracker lock"), &activity);
                            self.activity(id, agent, request, activity);
                        }
                    }
                    Err(err) => session_errors.push(err),
                }
            }
            session_errors
        };
        let (ending, session_errors) =
            tokio::join!(exec::run(&spec, timeout, cancel, on_output), consume);
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
        let exit_code = match &ending {
            Ok(Ending::Exited(code)) => *code,
            _ => None,
        };
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
            Ok(Ending::Aborted) => {
                result.status = CommandStatus::Interrupted;
                result.error = Some("interrupted; its process group was stopped".into());
            }
            Ok(Ending::TimedOut) => {
                result.error = Some(format!(
                    "timed out after {}; its process group was stopped",
                    humanize(timeout)
                ));
            }
            Ok(Ending::Exited(_)) => match outcome {
                Ok(outcome) if outcome.success => result.status = CommandStatus::Completed,
                Ok(outcome) => {
                    result.error = Some(outcome.error.unwrap_or_else(|| match exit_code {
                        Some(code) => format!("the agent exited with code {code}"),
                        None => "the agent was killed by a signal".into(),
                    }))
                }
                Err(err) => result.error = Some(format!("adapter `{}` {err}", plugin.name())),
            },
        }
    }

    fn adapter_sink(&self, adapter: &str, request: &CommandRequest) -> Sink {
        let (bus, source, run_id, task_id) = (
            self.bus.clone(),
            adapter.to_string(),
            request.run_id.clone(),
            request.task_id.clone(),
        );
        Arc::new(move |signal| {
            if let Signal::Log { level, message } = signal {
                bus.publish(EventKind::Log {
                    run_id: run_id.clone(),
                    task_id: task_id.clone(),
                    level,
                    source: source.clone(),
                    stream: None,
                    message,
                });
            }
        })
    }

    fn log(&self, request: &CommandRequest, level: LogLevel, message: String) {
        self.bus.publish(EventKind::Log {
            run_id: request.run_id.clone(),
            task_id: request.task_id.clone(),
            level,
            source: "runner".into(),
            stream: None,
            message,
        });
    }

    fn activity(&self, id: &str, agent: &Agent, request: &CommandRequest, activity: Activity) {
        self.bus.publish(EventKind::AgentActivity {
            command_id: id.to_string(),
            agent: agent.decl.name.clone(),
            run_id: request.run_id.clone(),
            task_id: request.task_id.clone(),
            activity,
        });
    }

    fn terminal_chunks(
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

/// Sums what a command reported, for its result (also used by a client
/// that follows a command through its events).
pub fn track(result: &mut CommandResult, activity: &Activity) {
    match activity {
        Activity::SessionStarted { session_id } => result.session_id = Some(session_id.clone()),
        Activity::Usage {
            input_tokens,
            output_tokens,
            cached_tokens,
            cost_usd,
        } => {
            result.usage.input_tokens += input_tokens;
            result.usage.output_tokens += output_tokens;
            result.usage.cached_tokens += cached_tokens;
            if let Some(cost) = cost_usd {
                result.usage.cost_usd = Some(result.usage.cost_usd.unwrap_or(0.0) + cost);
            }
        }
        Activity::FileChange { path, .. } if !result.files_changed.contains(path) => {
            result.files_changed.push(path.clone())
        }
        Activity::ToolUse { name, .. } if !result.tools_used.contains(name) => {
            result.tools_used.push(name.clone())
        }
        Activity::FinalResult { summary, .. } if !summary.is_empty() => {
            result.summary = Some(summary.clone())
        }
        _ => {}
    }
}
