//! `runner run`, `runner watch` and `runner serve`: the commands that run
//! pipelines, here or handed to a server.

use super::output::Output;
use super::{Error, client, exit, handoff, history};
use crate::config::Config;
use crate::events::EventBus;
use crate::plugin::Plugins;
use crate::run::Runner;
use crate::server::ServerHandle;
use crate::service::Service;
use protocol::RunStatus;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Starts the WebSocket server for `service`; `listen` overrides `[server] listen`.
/// A runner of `pipeline` in this process, recording into the history,
/// and its server when `serve` asks for one.
async fn local_runner(
    config: &Arc<Config>,
    pipeline: &crate::config::Pipeline,
    serve: Option<Option<std::net::SocketAddr>>,
    queue: Option<&(String, String)>,
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
    let plugins = Arc::new(super::plugin::load_showing_compiles(config, Some(&used), &bus).await?);
    let runner = Arc::new(coordinator(config, plugins, &bus, queue).await?);
    let server = match serve {
        Some(listen) => Some(
            start_server(
                config,
                Service::new(runner.clone()),
                bus.clone(),
                listen,
                &recording,
                None,
            )
            .await?,
        ),
        None => None,
    };
    Ok((runner, bus, recording, server))
}

/// A runner; with `queue` (its URL and schema), one that hands the tasks
/// workers can run to that queue.
async fn coordinator(
    config: &Arc<Config>,
    plugins: Arc<Plugins>,
    bus: &Arc<EventBus>,
    queue: Option<&(String, String)>,
) -> Result<Runner, Error> {
    let runner = Runner::new(config.clone(), plugins, bus.clone())?;
    Ok(match queue {
        Some((url, schema)) => runner.with_remote(crate::run::Remote::connect(url, schema).await?),
        None => runner,
    })
}

async fn start_server(
    config: &Config,
    service: Arc<Service>,
    bus: Arc<EventBus>,
    listen: Option<std::net::SocketAddr>,
    history: &history::Recording,
    cluster: Option<Arc<crate::queue::outbox::Outbox>>,
) -> Result<ServerHandle, Error> {
    let mut settings = config.server.clone();
    if let Some(listen) = listen {
        settings.listen = listen;
    }
    let store = history.store.clone();
    let handle = match cluster {
        Some(outbox) => crate::server::serve_cluster(service, bus, settings, store, outbox).await,
        None => crate::server::serve_with_history(service, bus, settings, store).await,
    }
    .map_err(|err| Error::Usage(err.to_string()))?;
    eprintln!(
        "serving on ws://{addr}/ws (dashboard: http://{addr}/, state: http://{addr}/api/state)",
        addr = handle.addr
    );
    Ok(handle)
}

/// `runner serve`; with `queue` (its URL and schema), as a node of a cluster.
pub(super) async fn serve(
    config: Arc<Config>,
    listen: Option<std::net::SocketAddr>,
    queue: Option<(String, String)>,
) -> Result<i32, Error> {
    let plugins = Arc::new(Plugins::load(&config, None).await?);
    let (bus, recording) = history::start(&config).await?;
    let runner = Arc::new(coordinator(&config, plugins, &bus, queue.as_ref()).await?);
    let service = Service::new(runner.clone());
    let node = match &queue {
        Some((url, schema)) => Some(super::cluster::join(url, schema, &bus).await?),
        None => None,
    };
    let server = match &node {
        Some(node) => {
            let served = node.events.clone();
            let outbox = Some(node.outbox.clone());
            start_server(&config, service.clone(), served, listen, &recording, outbox).await?
        }
        None => start_server(&config, service.clone(), bus, listen, &recording, None).await?,
    };
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
    if let Some(node) = node {
        node.leave().await;
        // The last events reach this node's clients before it closes.
        tokio::time::sleep(crate::queue::outbox::TAIL_PAUSE * 3).await;
    }
    server.shutdown().await;
    recording.finish().await;
    Ok(exit::OK)
}

/// Ctrl-C or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled, so a signal that arrives before the
/// first poll (while the first events are printed, say) still counts
/// instead of killing the process.
pub(super) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
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
pub(super) fn cancel_on_signal() -> CancellationToken {
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

pub(super) async fn run(
    config: Arc<Config>,
    pipeline: Option<&str>,
    json: bool,
    verbose: bool,
    serve: Option<Option<std::net::SocketAddr>>,
    queue: Option<(String, String)>,
) -> Result<i32, Error> {
    let pipeline = config.pipeline(pipeline)?.clone();
    // With `--queue` this process is the run's coordinator: no hand-off.
    let handed = match queue {
        Some(_) => None,
        None => handoff(&config, "runner run").await?,
    };
    if let Some(client) = handed {
        if serve.is_some() {
            eprintln!(
                "note: --serve: the run is served by runner serve at {}",
                client.addr
            );
        }
        return run_remote(client, &pipeline.name, json, verbose).await;
    }
    let (runner, bus, recording, server) =
        local_runner(&config, &pipeline, serve, queue.as_ref()).await?;

    let cancel = cancel_on_signal();

    let mut events = bus.subscribe();
    let report = Output::new(json, verbose)
        .print_while(&mut events, None, runner.run(&pipeline.name, cancel))
        .await;
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
pub(super) async fn watch(
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
    let (runner, bus, recording, server) = local_runner(&config, &pipeline, serve, None).await?;
    let cancel = cancel_on_signal();
    let mut events = bus.subscribe();
    let (watch_tx, mut watch_rx) = tokio::sync::mpsc::unbounded_channel();
    let watching = crate::watch::watch(runner, options, cancel.clone(), watch_tx);
    let result = Output::new(json, verbose)
        .print_while(&mut events, Some(&mut watch_rx), watching)
        .await;
    if let Some(server) = server {
        server.shutdown().await;
    }
    recording.finish().await;
    result.map_err(|err| Error::Usage(err.to_string()))?;
    Ok(exit::ABORTED)
}
