//! The `runner` command line: arguments, and what each command does.
//!
//! `main` only parses, calls [`execute`], prints the error and exits with
//! the code it returns.

mod client;
mod gc;
mod history;
mod plugin;

use crate::config::{Config, ConfigError};
use crate::events::EventBus;
use crate::plugin::{Compiled, LoadError, Plugins};
use crate::printer::{TerminalPrinter, print_json};
use crate::run::Runner;
use crate::server::ServerHandle;
use crate::service::Service;
use clap::{Parser, Subcommand};
use protocol::{CommandStatus, Priority, RunStatus};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "runner",
    version,
    about = "Runs pipelines whose every task is a WASI component"
)]
pub struct Cli {
    /// The configuration file.
    #[arg(short, long, global = true, default_value = "runner.toml")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline (the default one when none is named).
    Run {
        /// The pipeline to run.
        pipeline: Option<String>,
        /// Print one JSON event per line instead of progress.
        #[arg(long)]
        json: bool,
        /// Also show task starts, progress and debug logs.
        #[arg(short, long)]
        verbose: bool,
        /// Also serve the event stream over WebSocket while the run lasts.
        #[arg(long)]
        serve: bool,
        /// The address to serve on (default: `[server] listen`, else 127.0.0.1:7420).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Run a pipeline, then re-run what file changes affect, until Ctrl-C.
    Watch {
        /// The pipeline to run.
        pipeline: Option<String>,
        /// Print one JSON event per line instead of progress (`watch_status` events included).
        #[arg(long)]
        json: bool,
        /// Also show task starts, progress and debug logs.
        #[arg(short, long)]
        verbose: bool,
        /// Quiet time that closes a burst of changes (default: `[watch] debounce`, else 50ms).
        #[arg(long, value_parser = parse_duration_arg)]
        debounce: Option<std::time::Duration>,
        /// Poll the files at this interval instead of using file-system events.
        #[arg(long, value_parser = parse_duration_arg)]
        poll: Option<std::time::Duration>,
        /// A change seen while a run is going: queue, restart or ignore (default: `[watch] on_busy`).
        #[arg(long, value_parser = parse_on_busy)]
        on_busy: Option<crate::config::OnBusy>,
        /// Also serve the event stream over WebSocket while watching.
        #[arg(long)]
        serve: bool,
        /// The address to serve on (default: `[server] listen`, else 127.0.0.1:7420).
        #[arg(long, requires = "serve")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Serve the event stream and accept runs and agent commands over WebSocket (`/ws`), until Ctrl-C.
    Serve {
        /// The address to listen on (default: `[server] listen`, else 127.0.0.1:7420).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Check runner.toml and every plugin without running anything.
    Check,
    /// Work with plugin components: `runner plugin check FILE`.
    Plugin {
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
    /// List the plugins with the world and WIT version each implements.
    Plugins {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send one prompt to an agent, outside any pipeline, and show what it does.
    Ask {
        /// The agent, as declared under [agents] in runner.toml.
        agent: String,
        /// The prompt.
        prompt: String,
        /// Queue priority: high, normal or low.
        #[arg(long, default_value = "normal", value_parser = parse_priority)]
        priority: Priority,
        /// Resume this agent session (printed by an earlier `ask`).
        #[arg(long)]
        resume: Option<String>,
        /// Print one JSON event per line instead.
        #[arg(long)]
        json: bool,
    },
    /// Show each agent: adapter, command, status (online, busy, offline) and queue.
    Agents {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List past runs, newest first.
    History {
        /// How many runs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a run: batches, branches, executions, exit codes, timings, agent turns with tokens and cost.
    Show {
        /// A run id, a unique prefix of one, or `last`.
        run: String,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Print the recorded logs and output of a run, or of one of its tasks.
    Logs {
        /// A run id, a unique prefix of one, or `last`.
        run: String,
        /// Only this task (or agent command).
        task: Option<String>,
        /// Keep printing new lines until the run ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Apply the retentions now: old batch branches, worktrees of stopped runs, old history logs.
    Gc {
        /// Print what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    crate::units::parse_duration(text)
}

fn parse_on_busy(text: &str) -> Result<crate::config::OnBusy, String> {
    crate::config::OnBusy::parse(text)
        .ok_or_else(|| format!("`{text}`: use queue, restart or ignore"))
}

fn parse_priority(text: &str) -> Result<Priority, String> {
    Priority::parse(text)
        .ok_or_else(|| format!("`{text}` is not a priority; use high, normal or low"))
}

/// Exit codes.
pub mod exit {
    /// Every batch completed.
    pub const OK: i32 = 0;
    /// The run failed.
    pub const FAILED: i32 = 1;
    /// Bad configuration or plugin: nothing ran.
    pub const INVALID: i32 = 2;
    /// The run was aborted (Ctrl-C).
    pub const ABORTED: i32 = 130;
}

/// A failure with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Plugin(#[from] LoadError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Config(_) | Self::Plugin(_) | Self::Usage(_) | Self::Store(_) => exit::INVALID,
            Self::Other(_) => exit::FAILED,
        }
    }
}

/// Prints events as the terminal printer does, or as JSON lines.
struct Output {
    json: bool,
    printer: TerminalPrinter<std::io::StdoutLock<'static>>,
}

impl Output {
    fn new(json: bool, verbose: bool) -> Self {
        let stdout = std::io::stdout();
        let color = !json && stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Self {
            json,
            printer: TerminalPrinter::new(stdout.lock(), color, verbose),
        }
    }

    fn print(&mut self, event: &protocol::Event) {
        let result = if self.json {
            print_json(&mut std::io::stdout().lock(), event)
        } else {
            self.printer.print(event)
        };
        // A closed stdout (`runner run | head`) must not stop the work.
        let _ = result;
    }
}

/// A session with this project's `runner serve`, when one listens at
/// `[server] listen`; `None` when nothing listens there (or a server of
/// another project does), so the work runs in this process.
async fn handoff(config: &Config, name: &str) -> Result<Option<client::Client>, Error> {
    match client::connect(config, name).await {
        Ok(client) if client.serves(config) => {
            eprintln!("handed to runner serve at {}", client.addr);
            Ok(Some(client))
        }
        Ok(client) => {
            eprintln!(
                "note: the runner serve at {} runs {}, not {}; running here",
                client.addr,
                client.project.as_deref().unwrap_or("another project"),
                config.project_id()
            );
            client.close().await;
            Ok(None)
        }
        Err(client::ConnectError::Refused { .. }) => Ok(None),
        Err(err @ client::ConnectError::NotARunner { .. }) => {
            eprintln!("note: {err}; running here");
            Ok(None)
        }
        Err(err) => Err(Error::Usage(format!("cannot hand the work over: {err}"))),
    }
}

/// Runs one command; `Ok` holds the exit code.
pub async fn execute(cli: Cli) -> Result<i32, Error> {
    if let Command::Plugin { command } = &cli.command {
        return plugin::execute(command);
    }
    let config = Arc::new(Config::load(&cli.config)?);
    match cli.command {
        Command::Run {
            pipeline,
            json,
            verbose,
            serve,
            listen,
        } => {
            run(
                config,
                pipeline.as_deref(),
                json,
                verbose,
                serve.then_some(listen),
            )
            .await
        }
        Command::Watch {
            pipeline,
            json,
            verbose,
            debounce,
            poll,
            on_busy,
            serve,
            listen,
        } => {
            let options = crate::watch::WatchOptions {
                pipeline: config
                    .pipeline(pipeline.as_deref())
                    .map_err(Error::Usage)?
                    .name
                    .clone(),
                debounce: debounce.unwrap_or(config.watch.debounce),
                poll,
                on_busy: on_busy.unwrap_or(config.watch.on_busy),
                own_output: crate::watch::own_output_files(),
            };
            watch(config, options, json, verbose, serve.then_some(listen)).await
        }
        Command::Serve { listen } => serve(config, listen).await,
        Command::Check => check(config).await,
        Command::Plugin { command } => plugin::execute(&command),
        Command::Plugins { json } => plugins(config, json).await,
        Command::Ask {
            agent,
            prompt,
            priority,
            resume,
            json,
        } => ask(config, &agent, prompt, priority, resume, json).await,
        Command::Agents { json } => agents(config, json).await,
        Command::History { limit, json } => history::history(&config, limit, json),
        Command::Show { run, json } => history::show(&config, &run, json),
        Command::Logs { run, task, follow } => {
            history::logs(&config, &run, task.as_deref(), follow).await
        }
        Command::Gc { dry_run } => gc::gc(&config, dry_run),
    }
}

/// Starts the WebSocket server for `service`; `listen` overrides `[server] listen`.
/// A runner of `pipeline` in this process, recording into the history,
/// and its server when `serve` asks for one.
async fn local_runner(
    config: &Arc<Config>,
    pipeline: &crate::config::Pipeline,
    serve: Option<Option<std::net::SocketAddr>>,
) -> Result<
    (
        Arc<Runner>,
        Arc<EventBus>,
        history::Recording,
        Option<ServerHandle>,
    ),
    Error,
> {
    let used = config.plugins_used_by(pipeline);
    let (bus, recording) = history::start(config).await?;
    let plugins = Arc::new(plugin::load_showing_compiles(config, Some(&used), &bus).await?);
    let runner = Arc::new(Runner::new(config.clone(), plugins, bus.clone())?);
    let server = match serve {
        Some(listen) => Some(
            start_server(
                config,
                Service::new(runner.clone()),
                bus.clone(),
                listen,
                &recording,
            )
            .await?,
        ),
        None => None,
    };
    Ok((runner, bus, recording, server))
}

async fn start_server(
    config: &Config,
    service: Arc<Service>,
    bus: Arc<EventBus>,
    listen: Option<std::net::SocketAddr>,
    history: &history::Recording,
) -> Result<ServerHandle, Error> {
    let mut settings = config.server.clone();
    if let Some(listen) = listen {
        settings.listen = listen;
    }
    let handle = crate::server::serve_with_history(service, bus, settings, history.store.clone())
        .await
        .map_err(|err| Error::Usage(err.to_string()))?;
    eprintln!(
        "serving on ws://{}/ws (state: http://{}/api/state)",
        handle.addr, handle.addr
    );
    Ok(handle)
}

async fn serve(config: Arc<Config>, listen: Option<std::net::SocketAddr>) -> Result<i32, Error> {
    let plugins = Arc::new(Plugins::load(&config, None).await?);
    let (bus, recording) = history::start(&config).await?;
    let runner = Arc::new(Runner::new(config.clone(), plugins, bus.clone())?);
    let service = Service::new(runner.clone());
    let server = start_server(&config, service.clone(), bus, listen, &recording).await?;
    runner.agents().refresh().await;
    shutdown_signal().await;
    eprintln!("shutting down: aborting runs and interrupting agent commands");
    service.shutdown();
    // Give runs a moment to record their end before the server closes.
    for _ in 0..100 {
        if service.active_runs().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    server.shutdown().await;
    recording.finish().await;
    Ok(exit::OK)
}

/// Ctrl-C or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled, so a signal that arrives before the
/// first poll (while the first events are printed, say) still counts
/// instead of killing the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    async move {
        tokio::select! {
            () = received(interrupt.as_mut()) => {}
            () = received(terminate.as_mut()) => {}
        }
    }
}

/// A token cancelled by Ctrl-C or SIGTERM (installed now).
fn cancel_on_signal() -> CancellationToken {
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    let signal = shutdown_signal();
    tokio::spawn(async move {
        signal.await;
        on_signal.cancel();
    });
    cancel
}

/// Waits for `signal`; never, when it could not be installed.
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

async fn run(
    config: Arc<Config>,
    pipeline: Option<&str>,
    json: bool,
    verbose: bool,
    serve: Option<Option<std::net::SocketAddr>>,
) -> Result<i32, Error> {
    let pipeline = config.pipeline(pipeline).map_err(Error::Usage)?.clone();
    if let Some(client) = handoff(&config, "runner run").await? {
        if serve.is_some() {
            eprintln!(
                "note: --serve: the run is served by runner serve at {}",
                client.addr
            );
        }
        return run_remote(client, &pipeline.name, json, verbose).await;
    }
    let (runner, bus, recording, server) = local_runner(&config, &pipeline, serve).await?;

    let cancel = cancel_on_signal();

    let mut events = bus.subscribe();
    let mut output = Output::new(json, verbose);
    let report = {
        let run = runner.run(&pipeline.name, cancel);
        tokio::pin!(run);
        loop {
            tokio::select! {
                biased;
                Some(event) = events.recv() => output.print(&event),
                report = &mut run => break report,
            }
        }
    };
    while let Ok(event) = events.try_recv() {
        output.print(&event);
    }
    if let Some(server) = server {
        server.shutdown().await;
    }
    recording.finish().await;
    Ok(run_exit_code(report.status))
}

fn run_exit_code(status: RunStatus) -> i32 {
    match status {
        RunStatus::Completed => exit::OK,
        RunStatus::Aborted => exit::ABORTED,
        _ => exit::FAILED,
    }
}

/// `runner run` handed to a `runner serve`: starts the run there, prints its
/// events until it ends, and aborts it on Ctrl-C.
async fn run_remote(
    mut client: client::Client,
    pipeline: &str,
    json: bool,
    verbose: bool,
) -> Result<i32, Error> {
    let lost = |err: client::SessionError| Error::Other(err.into());
    let start = protocol::ClientBody::StartRun {
        pipeline: Some(pipeline.to_string()),
    };
    let run_id = match client.request(start).await.map_err(lost)? {
        protocol::ReplyBody::RunStarted { run_id, .. } => run_id,
        protocol::ReplyBody::Error { message, .. } => return Err(Error::Usage(message)),
        other => {
            return Err(Error::Other(anyhow::anyhow!(
                "runner serve answered `start_run` with `{}`",
                other.type_name()
            )));
        }
    };
    let mut output = Output::new(json, verbose);
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut aborting = false;
    loop {
        tokio::select! {
            () = &mut signal, if !aborting => {
                aborting = true;
                let abort = protocol::ClientBody::AbortRun { run_id: run_id.clone() };
                client.send(abort).await.map_err(lost)?;
            }
            event = client.next_event() => {
                let event = event.map_err(lost)?;
                if event.run_id() != Some(run_id.as_str()) {
                    continue;
                }
                output.print(&event);
                if let protocol::EventKind::RunStatus { status, .. } = &event.kind
                    && *status != RunStatus::Running
                {
                    let code = run_exit_code(*status);
                    client.close().await;
                    return Ok(code);
                }
            }
        }
    }
}

/// `runner watch`: see [`crate::watch`].
async fn watch(
    config: Arc<Config>,
    options: crate::watch::WatchOptions,
    json: bool,
    verbose: bool,
    serve: Option<Option<std::net::SocketAddr>>,
) -> Result<i32, Error> {
    let config = Arc::new(crate::watch::for_watch(&config));
    let pipeline = config.pipelines[&options.pipeline].clone();
    // The live stream (watch_status events included) while watching; runs
    // started through it use the configuration watching began with.
    let (runner, bus, recording, server) = local_runner(&config, &pipeline, serve).await?;
    let cancel = cancel_on_signal();
    let mut events = bus.subscribe();
    let (watch_tx, mut watch_rx) = tokio::sync::mpsc::unbounded_channel();
    let stdout = std::io::stdout();
    let color = !json && stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut printer = TerminalPrinter::new(stdout.lock(), color, verbose);
    let show = |event: &crate::watch::WatchEvent| {
        use std::io::Write;
        // With `--json` the watcher's `watch_status` events say it.
        if !json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "[watch] {event}");
            let _ = out.flush();
        }
    };
    let result = {
        let watching = crate::watch::watch(runner, options, cancel.clone(), watch_tx);
        tokio::pin!(watching);
        loop {
            tokio::select! {
                biased;
                Some(event) = events.recv() => {
                    let _ = if json {
                        print_json(&mut std::io::stdout().lock(), &event)
                    } else {
                        printer.print(&event)
                    };
                }
                Some(event) = watch_rx.recv() => show(&event),
                result = &mut watching => break result,
            }
        }
    };
    while let Ok(event) = events.try_recv() {
        let _ = if json {
            print_json(&mut std::io::stdout().lock(), &event)
        } else {
            printer.print(&event)
        };
    }
    while let Ok(event) = watch_rx.try_recv() {
        show(&event);
    }
    if let Some(server) = server {
        server.shutdown().await;
    }
    recording.finish().await;
    result.map_err(|err| Error::Usage(err.to_string()))?;
    Ok(exit::ABORTED)
}

async fn check(config: Arc<Config>) -> Result<i32, Error> {
    if !plugin::check_configured(&config)? {
        return Ok(exit::INVALID);
    }
    // Loading compiles what the cache lacks, so the first `run` does not.
    let bus = EventBus::new(1);
    let plugins = Arc::new(plugin::load_showing_compiles(&config, None, &bus).await?);
    Runner::new(config.clone(), plugins.clone(), bus)?;
    let batches: usize = config.pipelines.values().map(|p| p.batches.len()).sum();
    let tasks: usize = config
        .pipelines
        .values()
        .flat_map(|p| &p.batches)
        .map(|b| b.tasks.len())
        .sum();
    println!(
        "{}: ok · {} pipelines, {batches} batches, {tasks} tasks, {} plugins",
        config.path.display(),
        config.pipelines.len(),
        plugins.iter().count()
    );
    Ok(exit::OK)
}

async fn plugins(config: Arc<Config>, json: bool) -> Result<i32, Error> {
    let plugins = Plugins::load(&config, None).await?;
    if json {
        let list: Vec<serde_json::Value> = plugins
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name(),
                    "world": p.world.name(),
                    "wit": p.wit_version,
                    "version": p.info.as_ref().map(|i| i.version.clone()),
                    "description": p.info.as_ref().map(|i| i.description.clone()),
                    "source": source(p),
                    "sha256": p.sha256,
                    "cached": p.compiled == Compiled::Cached,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).expect("plain JSON")
        );
        return Ok(exit::OK);
    }
    println!(
        "{:<12} {:<17} {:<20} {:<8} {:<22} DESCRIPTION",
        "NAME", "WORLD", "WIT", "VERSION", "SOURCE"
    );
    for p in plugins.iter() {
        let (version, description) = p
            .info
            .as_ref()
            .map_or(("-".to_string(), String::new()), |i| {
                (i.version.clone(), i.description.clone())
            });
        println!(
            "{:<12} {:<17} {:<20} {:<8} {:<22} {description}",
            p.name(),
            p.world.name(),
            p.wit_version,
            version,
            source(p)
        );
    }
    Ok(exit::OK)
}

/// A runner for commands that run no pipeline: plugins for the agents only.
async fn agent_runner(config: &Arc<Config>, bus: Arc<EventBus>) -> Result<Runner, Error> {
    let adapters: Vec<String> = config.agents.values().map(|a| a.adapter.clone()).collect();
    let plugins = Arc::new(Plugins::load(config, Some(&adapters)).await?);
    Ok(Runner::new(config.clone(), plugins, bus)?)
}

async fn ask(
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
    let request = crate::agents::CommandRequest {
        agent: agent.to_string(),
        prompt,
        priority,
        resume_session: resume,
        run_id: None,
        task_id: None,
        working_dir: None,
        timeout: None,
    };
    let handle = runner
        .agents()
        .submit(request)
        .await
        .map_err(|refusal| Error::Usage(refusal.to_string()))?;
    let agents = runner.agents().clone();
    let id = handle.id.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = agents.interrupt(&id);
        }
    });
    let mut output = Output::new(json, false);
    let mut done = handle.done;
    let result = loop {
        tokio::select! {
            biased;
            Some(event) = events.recv() => output.print(&event),
            result = &mut done => break result,
        }
    };
    while let Ok(event) = events.try_recv() {
        output.print(&event);
    }
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
    loop {
        tokio::select! {
            () = &mut signal, if !interrupting => {
                interrupting = true;
                let interrupt = protocol::ClientBody::CommandInterrupt { command_id: command_id.clone() };
                client.send(interrupt).await.map_err(lost)?;
            }
            event = client.next_event() => {
                let event = event.map_err(lost)?;
                use protocol::EventKind;
                let ours = match &event.kind {
                    EventKind::CommandStatus { command_id: id, .. }
                    | EventKind::AgentActivity { command_id: id, .. } => *id == command_id,
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

async fn agents(config: Arc<Config>, json: bool) -> Result<i32, Error> {
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

fn source(plugin: &crate::plugin::Plugin) -> String {
    match &plugin.decl.source {
        crate::config::PluginSource::Builtin(name) => format!("built-in:{name}"),
        crate::config::PluginSource::Path(path) => path.display().to_string(),
    }
}
