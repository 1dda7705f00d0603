//! The WebSocket server: a live, typed, numbered event stream with the
//! current state on join, resume by sequence number, and commands from
//! clients. The messages are in [`protocol`] (see its `messages` module for
//! the session, close codes and the mapping from the seeds' messages).
//!
//! ```no_run
//! # async fn demo(service: std::sync::Arc<runner::service::Service>, bus: std::sync::Arc<runner::events::EventBus>) -> Result<(), runner::server::ServerError> {
//! use runner::server::{serve, ServerSettings};
//! let server = serve(service, bus, ServerSettings::default()).await?;
//! println!("listening on ws://{}/ws", server.addr);
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Endpoints
//! - `GET /ws`: the WebSocket; without an upgrade, HTTP 426.
//! - `GET /api/state`: the snapshot a client gets on join, as JSON.
//! - `GET /healthz`: `ok`.
//! - `GET /`: the dashboard ([`dashboard`]); `GET /api/…`: its JSON
//!   endpoints ([`api`]).
//!
//! ## Browsers
//! Every request, the WebSocket upgrade included, first passes the `Origin`
//! and `Host` checks of [`guard`]: a page from another web origin, or one
//! reached through DNS rebinding, gets 403 (`[server] allowed_origins` lets
//! a web app in).
//!
//! ## Auth
//! Binding anything but a loopback address needs a token (`token_env` or
//! `token_file`). Loopback clients may leave it out when
//! `allow_loopback_without_token` (the default). The token is kept only as a
//! hash, compared in constant time, and never logged.
//!
//! ## Publishing never blocks
//! One hub task reads the bus, projects the state and broadcasts each event,
//! serialized once, into a bounded ring; a connection that falls behind the
//! ring is told it lagged and replays from the bus's ring (see [`hub`]), or,
//! when it fell further behind, from the history or the cluster's outbox.
//! The run never waits for a client.
//!
//! ## Closing
//! [`ServerHandle::shutdown`] waits until the hub has broadcast every event
//! published before it was called; each connection then writes what it has
//! not sent yet (replaying if it had lagged) before its 1001 close frame.

mod api;
mod conn;
mod dashboard;
mod guard;
mod http;
mod hub;
mod settings;
pub mod state;

pub use crate::config::server::{DEFAULT_LISTEN, ServerSettings};
pub use settings::token_text;

use crate::events::EventBus;
use crate::service::Service;
use hub::Hub;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use protocol::Snapshot;
use settings::Token;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "listening on {addr}, which is not a loopback address, needs a token: set `token_env` or `token_file` under [server] in runner.toml"
    )]
    NeedsToken { addr: SocketAddr },
    #[error(
        "[server] allow_loopback_without_token = false needs a token: set `token_env` or `token_file` under [server] in runner.toml"
    )]
    NoTokenConfigured,
    #[error("{0}")]
    Token(String),
    #[error("[server] {0}")]
    Invalid(#[from] crate::config::InvalidSetting),
}

/// A running server. Dropping it stops the server too.
pub struct ServerHandle {
    /// The address it listens on (with the real port when `listen` asked for port 0).
    pub addr: SocketAddr,
    cancel: CancellationToken,
    tracker: TaskTracker,
    hub: Arc<Hub>,
}

impl ServerHandle {
    /// The state a client would get now.
    pub fn snapshot(&self) -> Snapshot {
        self.hub.snapshot()
    }

    /// Stops listening, sends each client every event published so far,
    /// closes every connection with 1001 and waits (a few seconds at most)
    /// for them to end. Runs are not touched.
    pub async fn shutdown(self) {
        // `runner run --serve` ends right after the run's last events: they
        // must reach the hub's stream before the connections drain it.
        let last = self.hub.next_seq().saturating_sub(1);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.hub.broadcast_up_to(last)).await;
        self.cancel.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// What every connection shares.
pub(crate) struct Shared {
    settings: ServerSettings,
    /// The bound address (with the real port).
    addr: SocketAddr,
    /// The `Origin` and `Host` checks.
    guard: guard::Guard,
    token: Option<Token>,
    service: Arc<Service>,
    hub: Arc<Hub>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    /// Open WebSocket connections, identified or not.
    connections: Arc<AtomicUsize>,
    dashboards: Arc<AtomicUsize>,
    agents: Arc<AtomicUsize>,
}

impl Shared {
    /// Room for every dashboard and agent, plus a few that are about to be
    /// refused at `identify` (so they learn why).
    fn max_connections(&self) -> usize {
        self.settings.max_dashboards + self.settings.max_agents + 8
    }
}

/// Starts the server on `settings.listen`; returns once it listens.
pub async fn serve(
    service: Arc<Service>,
    bus: Arc<EventBus>,
    settings: ServerSettings,
) -> Result<ServerHandle, ServerError> {
    serve_with_history(service, bus, settings, None).await
}

/// Like [`serve`]; a client resuming from a number older than the bus's
/// ring (after a restart, say) is replayed from `history`.
pub async fn serve_with_history(
    service: Arc<Service>,
    bus: Arc<EventBus>,
    settings: ServerSettings,
    history: Option<crate::store::Store>,
) -> Result<ServerHandle, ServerError> {
    let older = history.clone().map(hub::Older::History);
    serve_inner(service, bus, settings, history, older).await
}

/// Like [`serve_with_history`] for a node of a cluster: `bus` carries the
/// cluster's events numbered by its outbox (`queue::outbox`), so a resume
/// older than the bus's ring is read from `outbox`, not from this node's
/// own history, whose numbers are its own; the history still serves the
/// JSON endpoints.
pub async fn serve_cluster(
    service: Arc<Service>,
    bus: Arc<EventBus>,
    settings: ServerSettings,
    history: Option<crate::store::Store>,
    outbox: Arc<crate::queue::outbox::Outbox>,
) -> Result<ServerHandle, ServerError> {
    let older = Some(hub::Older::Outbox(outbox));
    serve_inner(service, bus, settings, history, older).await
}

async fn serve_inner(
    service: Arc<Service>,
    bus: Arc<EventBus>,
    settings: ServerSettings,
    history: Option<crate::store::Store>,
    older: Option<hub::Older>,
) -> Result<ServerHandle, ServerError> {
    settings.check()?;
    let token = settings::load_token(&settings)?;
    let addr = settings.listen;
    if token.is_none() {
        if !addr.ip().to_canonical().is_loopback() {
            return Err(ServerError::NeedsToken { addr });
        }
        if !settings.allow_loopback_without_token {
            return Err(ServerError::NoTokenConfigured);
        }
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    let guard = guard::Guard::new(addr, &settings.allowed_origins);

    let recorded = match history.clone() {
        Some(store) => {
            let read = tokio::task::spawn_blocking(move || state::recorded_runs(&store)).await;
            match read.map_err(|err| err.to_string()) {
                Ok(Ok(runs)) => runs,
                Ok(Err(err)) => {
                    tracing::warn!("the snapshot lists no runs from before this start: {err}");
                    Vec::new()
                }
                Err(err) => {
                    tracing::warn!("the snapshot lists no runs from before this start: {err}");
                    Vec::new()
                }
            }
        }
        None => Vec::new(),
    };
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let hub = Hub::start(
        bus,
        settings.client_queue,
        cancel.clone(),
        history,
        recorded,
        older,
    );
    let shared = Arc::new(Shared {
        settings,
        addr,
        guard,
        token,
        service,
        hub: hub.clone(),
        cancel: cancel.clone(),
        tracker: tracker.clone(),
        connections: Arc::new(AtomicUsize::new(0)),
        dashboards: Arc::new(AtomicUsize::new(0)),
        agents: Arc::new(AtomicUsize::new(0)),
    });
    tracker.spawn(accept_loop(listener, shared));
    tracing::info!(%addr, "serving events on ws://{addr}/ws");
    Ok(ServerHandle {
        addr,
        cancel,
        tracker,
        hub,
    })
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!("cannot accept a connection: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let conn_shared = shared.clone();
        shared.tracker.spawn(async move {
            let service = service_fn(|req| http::route(req, peer, conn_shared.clone()));
            let connection = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(%peer, "HTTP connection ended: {err}");
                    }
                }
                _ = conn_shared.cancel.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(1), connection).await;
                }
            }
        });
    }
}
