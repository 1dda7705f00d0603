//! Set-up for the WebSocket server tests: a real runner and service behind
//! `runner::server::serve` on `127.0.0.1:0`, and a small client.

#![allow(dead_code)]

use crate::support::Project;
use futures_util::{SinkExt, StreamExt};
use runner::events::EventBus;
use runner::plugin::Plugins;
use runner::run::Runner;
use runner::server::{ServerHandle, ServerSettings, serve};
use runner::service::Service;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Every await in these tests gives up after this long.
pub const WAIT: Duration = Duration::from_secs(10);

/// The top of every `runner.toml` here.
pub const HEADER: &str = r#"
version = 1

[defaults]
state_dir = "{state}"
concurrency = 4
"#;

/// Settings for tests: any free port, everything else default.
pub fn settings() -> ServerSettings {
    ServerSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerSettings::default()
    }
}

/// A runner serving its events.
pub struct Served {
    pub project: Project,
    pub bus: Arc<EventBus>,
    pub service: Arc<Service>,
    pub server: ServerHandle,
}

impl Served {
    /// `pipelines` go below [`HEADER`].
    pub async fn start(pipelines: &str, settings: ServerSettings) -> Self {
        let project = Project::new(&format!("{HEADER}\n{pipelines}"));
        let config = project.config();
        let plugins = Arc::new(
            Plugins::load(&config, None)
                .await
                .unwrap_or_else(|err| panic!("{err}")),
        );
        let bus = EventBus::new(1);
        let runner =
            Runner::new(config, plugins, bus.clone()).unwrap_or_else(|err| panic!("{err}"));
        let service = Service::new(Arc::new(runner));
        let server = serve(service.clone(), bus.clone(), settings)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        Self {
            project,
            bus,
            service,
            server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// A client that has identified as a dashboard and read `identified` and `state`.
    pub async fn dashboard(&self) -> (Client, Value) {
        let mut client = Client::connect(self.addr()).await;
        client.send(json!({"type": "identify", "protocol_version": "1.0.0", "client": {"kind": "dashboard"}})).await;
        let identified = client.recv().await;
        assert_eq!(identified["type"], "identified", "{identified}");
        let state = client.recv().await;
        assert_eq!(state["type"], "state", "{state}");
        (client, state)
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        let (ws, _) = timeout(
            WAIT,
            tokio_tungstenite::connect_async(format!("ws://{addr}/ws")),
        )
        .await
        .expect("connect in time")
        .expect("connect");
        Self { ws }
    }

    pub async fn send(&mut self, message: Value) {
        self.send_text(message.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        timeout(WAIT, self.ws.send(Message::Text(text.into())))
            .await
            .expect("send in time")
            .expect("send");
    }

    /// The next JSON message (pings and pongs are skipped).
    pub async fn recv(&mut self) -> Value {
        loop {
            let message = timeout(WAIT, self.ws.next())
                .await
                .expect("a message in time")
                .expect("the connection is open")
                .expect("a readable message");
            match message {
                Message::Text(text) => {
                    return serde_json::from_str(&text).expect("JSON from the server");
                }
                Message::Close(frame) => panic!("closed unexpectedly: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// Messages up to and including the first for which `last` holds.
    pub async fn recv_until(&mut self, mut last: impl FnMut(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        for _ in 0..200_000 {
            let message = self.recv().await;
            let done = last(&message);
            seen.push(message);
            if done {
                return seen;
            }
        }
        panic!("gave up after 200000 messages");
    }

    /// The close code the server ends the connection with.
    pub async fn close_code(&mut self) -> u16 {
        for _ in 0..10_000 {
            match timeout(WAIT, self.ws.next()).await.expect("closed in time") {
                Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
                Some(Ok(Message::Close(None))) => panic!("closed without a code"),
                Some(Ok(_)) => continue,
                Some(Err(err)) => panic!("connection failed before a close frame: {err}"),
                None => panic!("connection ended without a close frame"),
            }
        }
        panic!("no close frame");
    }
}

/// Whether `message` is the `run_status` event ending a run.
pub fn run_ended(message: &Value) -> bool {
    message["type"] == "run_status" && message["status"] != "running"
}

/// Sequence numbers of the events among `messages` (replies have no `seq`).
pub fn seqs(messages: &[Value]) -> Vec<u64> {
    messages.iter().filter_map(|m| m["seq"].as_u64()).collect()
}

/// Asserts `seqs` go up by one from `first`.
pub fn assert_consecutive(seqs: &[u64], first: u64) {
    for (i, seq) in seqs.iter().enumerate() {
        assert_eq!(
            *seq,
            first + i as u64,
            "gap or duplicate at position {i}: {seqs:?}"
        );
    }
}

/// A plain HTTP/1.1 GET; returns the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    let mut tcp = timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    timeout(WAIT, tcp.read_to_end(&mut response))
        .await
        .expect("response in time")
        .unwrap();
    let response = String::from_utf8_lossy(&response).to_string();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A response read off a raw socket: the status, the head, the body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Writes `request` (the whole HTTP request, bytes as given) to `addr` and
/// reads the answer: its head, then `Content-Length` bytes of body (none
/// for a `101`).
pub async fn raw_request(addr: SocketAddr, request: &str) -> RawResponse {
    let mut tcp = timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&response).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, value)| value.trim().parse().unwrap());
            if body.len() >= length {
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .expect("a status line");
                return RawResponse {
                    status,
                    head: head.to_string(),
                    body: body.to_string(),
                };
            }
        }
        let read = timeout(WAIT, tcp.read(&mut buffer))
            .await
            .unwrap_or_else(|_| panic!("a response in time to {request:?}; got {text:?}"))
            .unwrap();
        assert!(read > 0, "the connection ended; got {text:?}");
        response.extend_from_slice(&buffer[..read]);
    }
}

/// A WebSocket upgrade request for `/ws` with the given `Host` and extra header lines.
pub fn upgrade_request(host: &str, headers: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{headers}\r\n"
    )
}

/// A plain GET of `path` with the given `Host` and extra header lines, closing after.
pub fn get_request(path: &str, host: &str, headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{headers}\r\n")
}
