//! The `runner` command line: arguments, and what each command does.
//!
//! `main` only parses, calls [`execute`], prints the error and exits with
//! the code it returns.

mod args;
mod ask;
mod client;
mod cluster;
mod gc;
mod history;
mod inspect;
mod new;
mod output;
mod plugin;
mod prompt;
mod run;
mod worker;

pub use args::{Cli, Command};

use crate::config::{Config, ConfigError};
use crate::plugin::LoadError;
use std::sync::Arc;

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
    #[error(transparent)]
    Pipeline(#[from] crate::config::PipelineError),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    #[error(transparent)]
    QueuePlugin(#[from] crate::queue::PluginError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Config(_)
            | Self::Pipeline(_)
            | Self::Plugin(_)
            | Self::Usage(_)
            | Self::Store(_)
            | Self::Queue(_)
            | Self::QueuePlugin(_) => exit::INVALID,
            Self::Other(_) => exit::FAILED,
        }
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
    if let Command::New { kind, name, lang } = &cli.command {
        return new::new(*kind, name, *lang);
    }
    if let Command::Plugin { command } = &cli.command {
        return plugin::execute(command);
    }
    if let Command::Worker {
        queue,
        schema,
        lease,
        name,
        poll,
        cache,
    } = cli.command
    {
        let options = worker::WorkerOptions {
            url: queue,
            schema,
            lease,
            name: name.unwrap_or_else(worker::default_name),
            poll,
            cache: cache.unwrap_or_else(worker::default_cache),
        };
        return worker::worker(options).await;
    }
    if let Command::Queue { command } = cli.command {
        return worker::queue_command(command).await;
    }
    let config = Arc::new(Config::load(&cli.config)?);
    match cli.command {
        Command::Run {
            pipeline,
            json,
            verbose,
            serve,
            listen,
            queue,
            schema,
        } => {
            run::run(
                config,
                pipeline.as_deref(),
                json,
                verbose,
                serve.then_some(listen),
                queue.map(|url| (url, schema)),
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
                pipeline: config.pipeline(pipeline.as_deref())?.name.clone(),
                debounce: debounce.unwrap_or(config.watch.debounce),
                poll,
                on_busy: on_busy.unwrap_or(config.watch.on_busy),
                own_output: crate::watch::own_output_files(),
            };
            run::watch(config, options, json, verbose, serve.then_some(listen)).await
        }
        Command::Serve {
            listen,
            queue,
            schema,
        } => run::serve(config, listen, queue.map(|url| (url, schema))).await,
        Command::Check => inspect::check(config).await,
        Command::Plugins { json } => inspect::plugins(config, json).await,
        Command::Ask {
            agent,
            prompt,
            priority,
            resume,
            json,
        } => ask::ask(config, &agent, prompt, priority, resume, json).await,
        Command::Agents { json } => ask::agents(config, json).await,
        Command::History { limit, json } => history::history(&config, limit, json),
        Command::Show { run, json } => history::show(&config, &run, json),
        Command::Logs { run, task, follow } => {
            history::logs(&config, &run, task.as_deref(), follow).await
        }
        Command::Gc { dry_run } => gc::gc(&config, dry_run),
        Command::New { .. } => unreachable!("`new` runs before the config loads"),
        Command::Plugin { command } => plugin::execute(&command),
        Command::Worker { .. } | Command::Queue { .. } => {
            unreachable!("`worker` and `queue` run without a config")
        }
    }
}
