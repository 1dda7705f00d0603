//! A client of a `runner serve` of this project, over the documented
//! WebSocket protocol: what `runner ask`, `runner run` and `runner agents`
//! use to hand their work to a server that owns the project's queues and
//! history.
//!
//! ## Finding the server
//!
//! [`connect`] dials `[server] listen` (an unspecified address such as
//! `0.0.0.0` is dialled on loopback), identifies with the token of
//! `[server] token_env` / `token_file` when one is configured, and waits for
//! `identified` and the `state` snapshot. Nothing listening is
//! [`ConnectError::Refused`]: the caller then works in-process. Every other
//! failure says why: a refused token (HTTP 401/403 or close 1008), no answer
//! in time, something that is not a runner.
//!
//! ## Events and answers
//!
//! Events may arrive before the answer to the request that caused them (the
//! `command_status` of a command before its `command_accepted`, say), so
//! [`Client::request`] keeps the events it reads while it waits and
//! [`Client::next_event`] hands them out first, in order.

use crate::config::Config;
use futures_util::{SinkExt, StreamExt};
use protocol::{
    ClientBody, ClientInfo, ClientKind, ClientMessage, Event, PROTOCOL_VERSION, ReplyBody,
    RequestId, Secret, ServerMessage, Snapshot,
};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long connecting and identifying may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no session with a server could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no runner serve listens at {addr} ({source})")]
    Refused {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the token for runner serve at {addr}: {message}")]
    Token { addr: SocketAddr, message: String },
    #[error(
        "runner serve at {addr} refused the token ({detail}); check [server] token_env / token_file"
    )]
    BadToken { addr: SocketAddr, detail: String },
    #[error("runner serve at {addr} did not answer within {}s", CONNECT_TIMEOUT.as_secs())]
    Timeout { addr: SocketAddr },
    #[error("what listens at {addr} is not a runner serve: {detail}")]
    NotARunner { addr: SocketAddr, detail: String },
    #[error("runner serve at {addr} closed the connection: {detail}")]
    Closed { addr: SocketAddr, detail: String },
}

/// A failure once the session is open.
#[derive(Debug, thiserror::Error)]
#[error("the connection to runner serve at {addr} failed: {detail}")]
pub struct SessionError {
    pub addr: SocketAddr,
    pub detail: String,
}

/// An identified session with a `runner serve`.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub addr: SocketAddr,
    /// The `runner.toml` the server runs, as it said in `identified`.
    pub project: Option<String>,
    /// The state it sent on joining.
    pub snapshot: Snapshot,
    /// Events read while waiting for an answer, oldest first.
    pending: VecDeque<Event>,
    next_id: i64,
}

/// The address to dial for a server listening on `listen`.
pub fn dial_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Connects to the `runner serve` at `[server] listen` and identifies as
/// `name` (`runner ask`, say).
pub async fn connect(config: &Config, name: &str) -> Result<Client, ConnectError> {
    let addr = dial_address(config.server.listen);
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout { addr }),
        Ok(Err(source)) => return Err(ConnectError::Refused { addr, source }),
        Ok(Ok(tcp)) => tcp,
    };
    // A token that cannot be read is left out: a loopback client may not
    // need one. If the server wants it, the error says why it was missing.
    let (token, token_problem) = match crate::server::token_text(&config.server) {
        Ok(token) => (token, None),
        Err(err) => (None, Some(err.to_string())),
    };
    let result = tokio::time::timeout(CONNECT_TIMEOUT, handshake(tcp, addr, token, name))
        .await
        .map_err(|_| ConnectError::Timeout { addr })?;
    match (result, token_problem) {
        (Err(ConnectError::BadToken { addr, detail }), Some(message)) => Err(ConnectError::Token {
            addr,
            message: format!("{message} ({detail})"),
        }),
        (result, _) => result,
    }
}

async fn handshake(
    tcp: TcpStream,
    addr: SocketAddr,
    token: Option<String>,
    name: &str,
) -> Result<Client, ConnectError> {
    let url = format!("ws://{addr}/ws");
    let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp))
        .await
        .map_err(|err| match err {
            tungstenite::Error::Http(response)
                if matches!(response.status().as_u16(), 401 | 403) =>
            {
                ConnectError::BadToken {
                    addr,
                    detail: format!("HTTP {}", response.status()),
                }
            }
            tungstenite::Error::Http(response) => ConnectError::NotARunner {
                addr,
                detail: format!("HTTP {} to a WebSocket upgrade", response.status()),
            },
            other => ConnectError::NotARunner {
                addr,
                detail: other.to_string(),
            },
        })?;
    let mut client = Client {
        ws,
        addr,
        project: None,
        snapshot: Snapshot::default(),
        pending: VecDeque::new(),
        next_id: 1,
    };
    let identify = ClientBody::Identify {
        protocol_version: PROTOCOL_VERSION.to_string(),
        token: token.map(Secret),
        client: ClientInfo {
            kind: ClientKind::Dashboard,
            name: Some(name.to_string()),
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
            ..ClientInfo::default()
        },
        after_seq: None,
        filter: None,
    };
    let closed = |detail: String| ConnectError::Closed { addr, detail };
    client
        .send(identify)
        .await
        .map_err(|err| closed(err.detail))?;
    let mut identified = false;
    loop {
        let message = match client.ws.next().await {
            None => return Err(closed("before it answered `identify`".into())),
            Some(Err(err)) => return Err(closed(err.to_string())),
            Some(Ok(message)) => message,
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => {
                let (code, reason) = frame
                    .map(|f| (f.code, f.reason.to_string()))
                    .unwrap_or((CloseCode::Status, String::new()));
                let detail = format!("close {}: {reason}", u16::from(code));
                return Err(if code == CloseCode::Policy {
                    ConnectError::BadToken { addr, detail }
                } else {
                    closed(detail)
                });
            }
            _ => continue,
        };
        match serde_json::from_str::<ServerMessage>(&text) {
            Ok(ServerMessage::Reply(reply)) => match reply.body {
                ReplyBody::Identified { project, .. } => {
                    client.project = project;
                    identified = true;
                }
                ReplyBody::State { snapshot } if identified => {
                    client.snapshot = snapshot;
                    return Ok(client);
                }
                ReplyBody::Error { message, .. } => return Err(closed(message)),
                _ => {}
            },
            Ok(ServerMessage::Event(_)) => {}
            Err(err) => {
                return Err(ConnectError::NotARunner {
                    addr,
                    detail: format!("an answer that is not the protocol's: {err}"),
                });
            }
        }
    }
}

impl Client {
    /// Whether the server runs the project of `config`.
    pub fn serves(&self, config: &Config) -> bool {
        self.project.as_deref() == Some(config.project_id().as_str())
    }

    /// Sends `body` without waiting for its answer; returns the request id.
    pub async fn send(&mut self, body: ClientBody) -> Result<RequestId, SessionError> {
        let id = RequestId::Number(self.next_id);
        self.next_id += 1;
        let message = ClientMessage {
            id: Some(id.clone()),
            body,
        };
        let text = serde_json::to_string(&message).expect("plain JSON");
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|err| self.failed(err.to_string()))?;
        Ok(id)
    }

    /// Sends `body` and waits for its answer (an `error` answer included);
    /// events read meanwhile are kept for [`Self::next_event`].
    pub async fn request(&mut self, body: ClientBody) -> Result<ReplyBody, SessionError> {
        let id = self.send(body).await?;
        loop {
            match self.read().await? {
                ServerMessage::Event(event) => self.pending.push_back(event),
                ServerMessage::Reply(reply) if reply.id.as_ref() == Some(&id) => {
                    return Ok(reply.body);
                }
                ServerMessage::Reply(_) => {}
            }
        }
    }

    /// The next event (answers and notices are skipped).
    pub async fn next_event(&mut self) -> Result<Event, SessionError> {
        if let Some(event) = self.pending.pop_front() {
            return Ok(event);
        }
        loop {
            if let ServerMessage::Event(event) = self.read().await? {
                return Ok(event);
            }
        }
    }

    async fn read(&mut self) -> Result<ServerMessage, SessionError> {
        loop {
            let message = match self.ws.next().await {
                None => return Err(self.failed("the server closed the connection".into())),
                Some(Err(err)) => return Err(self.failed(err.to_string())),
                Some(Ok(message)) => message,
            };
            match message {
                Message::Text(text) => {
                    return serde_json::from_str(&text)
                        .map_err(|err| self.failed(format!("an unreadable message: {err}")));
                }
                Message::Close(frame) => {
                    let detail = frame
                        .map(|f| format!("closed ({}: {})", u16::from(f.code), f.reason))
                        .unwrap_or_else(|| "closed".into());
                    return Err(self.failed(detail));
                }
                _ => {}
            }
        }
    }

    fn failed(&self, detail: String) -> SessionError {
        SessionError {
            addr: self.addr,
            detail,
        }
    }

    /// Says goodbye (best effort).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
