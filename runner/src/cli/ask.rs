//! `runner ask` and `runner agents`: the coding agents, here or through a server.

use super::output::Output;
use super::prompt::TerminalPrompts;
use super::run::shutdown_signal;
use super::{Error, client, exit, handoff, history};
use crate::config::Config;
use crate::events::EventBus;
use crate::plugin::Plugins;
use crate::run::Runner;
use protocol::{CommandStatus, Priority};
use std::sync::Arc;

/// A runner for commands that run no pipeline: plugins for the agents only.
async fn agent_runner(config: &Arc<Config>, bus: Arc<EventBus>) -> Result<Runner, Error> {
    let adapters: Vec<String> = config.agents.values().map(|a| a.adapter.clone()).collect();
    let plugins = Arc::new(Plugins::load(config, Some(&adapters)).await?);
    Ok(Runner::new(config.clone(), plugins, bus)?)
}

pub(super) async fn ask(
    config: Arc<Config>,
    agent: &str,
    prompt: String,
    priority: Priority,
    resume: Option<String>,
    json: bool,
) -> Result<i32, Error> {
    if let Some(client) = handoff(&config, "runner ask").await? {
        return ask_remote(client, agent, prompt, priority, resume, json).await;
    }
    let (bus, recording) = history::start(&config).await?;
    let runner = agent_runner(&config, bus.clone()).await?;
    let mut events = bus.subscribe();
    let mut prompt_events = bus.subscribe();
    let request = crate::agents::CommandRequest {
        agent: agent.to_string(),
        prompt,
        priority,
        resume_session: resume,
        run_id: None,
        task_id: None,
        working_dir: None,
        timeout: None,
        budget: Default::default(),
        run_budget: None,
    };
    let handle = runner
        .agents()
        .submit(request)
        .await
        .map_err(|refusal| Error::Usage(refusal.to_string()))?;
    let agents = runner.agents().clone();
    let id = handle.id.clone();
    tokio::spawn({
        let agents = agents.clone();
        let id = id.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = agents.interrupt(&id);
            }
        }
    });
    // Permission prompts of the command, answered in this terminal.
    let work = async move {
        let mut prompts = TerminalPrompts::new();
        let done = handle.done;
        tokio::pin!(done);
        loop {
            tokio::select! {
                result = &mut done => break result,
                Some(event) = prompt_events.recv() => prompts.see(&event, &id),
                (approval_id, answer) = prompts.next() => {
                    if let Err(err) = agents.decide_approval(&approval_id, answer) {
                        eprintln!("note: {err}");
                    }
                }
            }
        }
    };
    let result = Output::new(json, false)
        .print_while(&mut events, None, work)
        .await;
    recording.finish().await;
    let result =
        result.map_err(|_| Error::Other(anyhow::anyhow!("the command ended without a result")))?;
    Ok(ask_outcome(&result, json))
}

/// Prints how a command ended (unless `json`) and returns its exit code.
fn ask_outcome(result: &crate::agents::CommandResult, json: bool) -> i32 {
    if !json {
        let usage = &result.usage;
        println!(
            "{} · session {} · tokens in {} / out {} / cached {}{}",
            result
                .summary
                .as_deref()
                .map(|s| s.lines().next().unwrap_or(""))
                .unwrap_or("(no summary)"),
            result.session_id.as_deref().unwrap_or("-"),
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_tokens,
            usage
                .cost_usd
                .map(|c| format!(" · ${c:.4}"))
                .unwrap_or_default(),
        );
    }
    match result.status {
        CommandStatus::Completed => exit::OK,
        CommandStatus::Interrupted => exit::ABORTED,
        _ => exit::FAILED,
    }
}

/// `runner ask` handed to a `runner serve`: queues the command there, prints
/// its events until it ends, and interrupts it on Ctrl-C.
async fn ask_remote(
    mut client: client::Client,
    agent: &str,
    prompt: String,
    priority: Priority,
    resume: Option<String>,
    json: bool,
) -> Result<i32, Error> {
    let lost = |err: client::SessionError| Error::Other(err.into());
    let request = protocol::ClientBody::CommandRequest {
        agent: agent.to_string(),
        prompt,
        priority,
        resume_session: resume,
    };
    let command_id = match client.request(request).await.map_err(lost)? {
        protocol::ReplyBody::CommandAccepted { command_id, .. } => command_id,
        protocol::ReplyBody::Error { message, .. } => return Err(Error::Usage(message)),
        other => {
            return Err(Error::Other(anyhow::anyhow!(
                "runner serve answered `command_request` with `{}`",
                other.type_name()
            )));
        }
    };
    let mut result = crate::agents::CommandResult {
        command_id: command_id.clone(),
        status: CommandStatus::Queued,
        exit_code: None,
        error: None,
        summary: None,
        session_id: None,
        usage: crate::agents::Usage::default(),
        files_changed: Vec::new(),
        tools_used: Vec::new(),
        output_cut: None,
    };
    let mut output = Output::new(json, false);
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut interrupting = false;
    let mut prompts = TerminalPrompts::new();
    loop {
        tokio::select! {
            () = &mut signal, if !interrupting => {
                interrupting = true;
                let interrupt = protocol::ClientBody::CommandInterrupt { command_id: command_id.clone() };
                client.send(interrupt).await.map_err(lost)?;
            }
            (approval_id, answer) = prompts.next() => {
                // The server answers with `approval_accepted`, or an error
                // when someone answered first; the `approval_decided`
                // event says what was written either way.
                let decision = protocol::ClientBody::ApprovalDecision {
                    approval_id,
                    allow: answer.allow,
                    message: answer.message,
                };
                client.send(decision).await.map_err(lost)?;
            }
            event = client.next_event() => {
                let event = event.map_err(lost)?;
                use protocol::EventKind;
                prompts.see(&event, &command_id);
                let ours = match &event.kind {
                    EventKind::CommandStatus { command_id: id, .. }
                    | EventKind::AgentActivity { command_id: id, .. }
                    | EventKind::ApprovalRequested { command_id: id, .. }
                    | EventKind::ApprovalDecided { command_id: id, .. } => *id == command_id,
                    EventKind::TerminalOutput { command_id: Some(id), .. } => *id == command_id,
                    EventKind::AgentStatus { agent: name, .. } => name == agent,
                    _ => false,
                };
                if !ours {
                    continue;
                }
                output.print(&event);
                match &event.kind {
                    EventKind::AgentActivity { activity, .. } => {
                        crate::agents::track(&mut result, activity);
                    }
                    EventKind::CommandStatus { status, exit_code, error, .. }
                        if !matches!(status, CommandStatus::Queued | CommandStatus::Running) =>
                    {
                        result.status = *status;
                        result.exit_code = *exit_code;
                        result.error = error.clone();
                        client.close().await;
                        return Ok(ask_outcome(&result, json));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The live state of this project's `runner serve`, from the `state` it
/// sends on joining; `None` (with a note saying why) when no server of this
/// project listens at `[server] listen`. A server that cannot be used (a bad
/// token, no answer) is an error that says so.
async fn live_snapshot(
    config: &Config,
) -> Result<Option<(std::net::SocketAddr, protocol::Snapshot)>, Error> {
    match client::connect(config, "runner agents").await {
        Ok(client) if client.serves(config) => {
            let found = (client.addr, client.snapshot.clone());
            client.close().await;
            Ok(Some(found))
        }
        Ok(client) => {
            eprintln!(
                "note: the runner serve at {} runs {}; showing this project's configuration",
                client.addr,
                client.project.as_deref().unwrap_or("another project")
            );
            client.close().await;
            Ok(None)
        }
        Err(
            err @ (client::ConnectError::Refused { .. } | client::ConnectError::NotARunner { .. }),
        ) => {
            eprintln!("note: {err}; showing the configuration (queues are empty)");
            Ok(None)
        }
        Err(err) => Err(Error::Other(anyhow::anyhow!(
            "cannot show live agents: {err}"
        ))),
    }
}

pub(super) async fn agents(config: Arc<Config>, json: bool) -> Result<i32, Error> {
    if let Some((addr, snapshot)) = live_snapshot(&config).await? {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&snapshot.agents).expect("plain JSON")
            );
            return Ok(exit::OK);
        }
        println!("live from runner serve at {addr}");
        println!("{:<14} {:<8} {:<7} RUNNING", "AGENT", "STATUS", "QUEUED");
        for agent in &snapshot.agents {
            let queued = agent
                .queue
                .iter()
                .filter(|c| c.status == CommandStatus::Queued)
                .count();
            println!(
                "{:<14} {:<8} {:<7} {}",
                agent.agent,
                agent.status,
                queued,
                agent.current_command.as_deref().unwrap_or("-")
            );
        }
        return Ok(exit::OK);
    }
    let runner = agent_runner(&config, EventBus::new(1)).await?;
    runner.agents().refresh().await;
    let views = runner.agents().views();
    if json {
        let list: Vec<serde_json::Value> = views
            .iter()
            .map(|v| serde_json::json!({
                "name": v.name, "adapter": v.adapter, "command": v.program, "status": v.status,
                "queued": v.queued, "running": v.running, "concurrency": v.concurrency, "queue_limit": v.queue_limit,
            }))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).expect("plain JSON")
        );
        return Ok(exit::OK);
    }
    if views.is_empty() {
        println!(
            "no agents: declare one in {} as [agents.NAME] with adapter = \"claude\"",
            config.path.display()
        );
        return Ok(exit::OK);
    }
    println!(
        "{:<14} {:<9} {:<8} {:<7} {:<11} COMMAND",
        "AGENT", "ADAPTER", "STATUS", "QUEUED", "CONCURRENCY"
    );
    for v in &views {
        println!(
            "{:<14} {:<9} {:<8} {:<7} {:<11} {}",
            v.name,
            v.adapter,
            v.status,
            format!("{}/{}", v.queued, v.queue_limit),
            v.concurrency,
            v.program.as_deref().unwrap_or("-")
        );
    }
    Ok(exit::OK)
}
