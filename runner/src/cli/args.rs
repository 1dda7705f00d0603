//! The command line's arguments (clap).

use clap::{Parser, Subcommand};
use protocol::Priority;
use std::path::PathBuf;

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
        /// Coordinate the run over this PostgreSQL queue: `exec` tasks run on
        /// `runner worker`s (postgres://USER@HOST:PORT/DATABASE).
        #[arg(long)]
        queue: Option<String>,
        /// The schema holding the queue (with `--queue`).
        #[arg(long, default_value = "runner", requires = "queue")]
        schema: String,
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
        /// Join a cluster: share events through this PostgreSQL queue's
        /// outbox (postgres://USER@HOST:PORT/DATABASE), so clients of every
        /// node see one event sequence.
        #[arg(long)]
        queue: Option<String>,
        /// The schema holding the queue (with `--queue`).
        #[arg(long, default_value = "runner", requires = "queue")]
        schema: String,
    },
    /// Check runner.toml and every plugin without running anything.
    Check,
    /// Work with plugin components: `runner plugin check FILE`.
    Plugin {
        #[command(subcommand)]
        command: super::plugin::PluginCommand,
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
    /// Create a plugin folder NAME here from a template: WIT, build script, implementation, test.
    New {
        /// block, script, batch or agent.
        kind: super::new::Kind,
        /// The plugin's name (the folder too), for example `my-step`.
        name: String,
        /// rust, python, js or c.
        #[arg(long)]
        lang: super::new::Lang,
    },
    /// Claim tasks from a PostgreSQL queue and run them, until Ctrl-C or SIGTERM.
    Worker {
        /// The queue's database: postgres://USER@HOST:PORT/DATABASE.
        #[arg(long)]
        queue: String,
        /// The schema holding the queue (created when missing).
        #[arg(long, default_value = "runner")]
        schema: String,
        /// How long a claim holds without a heartbeat (heartbeats every third of it).
        #[arg(long, default_value = "30s", value_parser = parse_duration_arg)]
        lease: std::time::Duration,
        /// This worker's name, as leases and claims record it (default: HOST-PID).
        #[arg(long)]
        name: Option<String>,
        /// How often an idle worker looks for work behind the notifications.
        #[arg(long, default_value = "1s", value_parser = parse_duration_arg)]
        poll: std::time::Duration,
        /// Where the worker keeps what it fetches (default: $XDG_CACHE_HOME/runner/worker,
        /// or ~/.cache/runner/worker).
        #[arg(long)]
        cache: Option<std::path::PathBuf>,
    },
    /// Enqueue tasks into a PostgreSQL queue, or show its counts.
    Queue {
        #[command(subcommand)]
        command: super::worker::QueueCommand,
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
