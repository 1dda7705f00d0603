//! The HTTP side: `/ws` (upgrade), `/api/state`, `/healthz`, the dashboard
//! (`/`, `/assets/…`) and its JSON endpoints (`/api/…`).

use super::Shared;
use super::conn::{Slot, serve_connection};
pub(crate) use bytes_body::{Body, text};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// Response bodies: a whole string.
mod bytes_body {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Response, StatusCode};

    pub type Body = Full<Bytes>;

    pub fn text(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
        Response::builder()
            .status(status)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .header(hyper::header::CACHE_CONTROL, "no-store")
            .body(Full::new(body.into()))
            .expect("a valid response")
    }
}

pub(crate) async fn route(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    let header_text = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let origin = header_text(header::ORIGIN);
    let host = header_text(header::HOST);
    if let Err(refusal) = shared.guard.check(origin.as_deref(), host.as_deref()) {
        tracing::warn!(
            %peer,
            path = req.uri().path(),
            origin = ?origin,
            host = ?host,
            "refused a request from a browser: {refusal:?}"
        );
        if req.uri().path() == "/ws"
            && let Some(history) = shared.hub.history()
        {
            history.audit_connection(crate::store::ConnectionAudit {
                client: "client".into(),
                peer: peer.to_string(),
                action: "rejected".into(),
                detail: Some(format!("403: {refusal:?}")),
            });
        }
        let mut response = text(StatusCode::FORBIDDEN, PLAIN, refusal.explain(shared.addr));
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(response);
    }
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, PLAIN, "ok\n"),
        (&Method::GET, "/api/state") => {
            if authorized(&req, peer, &shared) {
                let snapshot = shared.hub.snapshot();
                text(
                    StatusCode::OK,
                    "application/json",
                    serde_json::to_vec(&snapshot).expect("snapshots serialize"),
                )
            } else {
                unauthorized()
            }
        }
        (&Method::GET, path) if super::dashboard::serves(path) => {
            super::dashboard::asset(path, host.as_deref())
        }
        (&Method::GET, path) if path.starts_with("/api/") => {
            if authorized(&req, peer, &shared) {
                let query = req.uri().query().map(str::to_string);
                super::api::route(path, query.as_deref(), shared.clone()).await
            } else {
                unauthorized()
            }
        }
        (&Method::GET, "/ws") => match websocket_key(&req) {
            Some(key) => {
                let accept = derive_accept_key(key.as_bytes());
                let upgrade = hyper::upgrade::on(&mut req);
                let slot = Slot::take(&shared.connections, shared.max_connections());
                let config = WebSocketConfig::default()
                    .max_message_size(Some(shared.settings.max_message_bytes))
                    .max_frame_size(Some(shared.settings.max_message_bytes));
                let task_shared = shared.clone();
                shared.tracker.spawn(async move {
                    match upgrade.await {
                        Ok(upgraded) => {
                            let ws = WebSocketStream::from_raw_socket(
                                TokioIo::new(upgraded),
                                Role::Server,
                                Some(config),
                            )
                            .await;
                            serve_connection(ws, peer, task_shared, slot).await;
                        }
                        Err(err) => tracing::debug!(%peer, "WebSocket upgrade failed: {err}"),
                    }
                });
                Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header(header::CONNECTION, "Upgrade")
                    .header(header::UPGRADE, "websocket")
                    .header(header::SEC_WEBSOCKET_ACCEPT, accept)
                    .body(Body::default())
                    .expect("a valid response")
            }
            None => {
                let mut response = text(
                    StatusCode::UPGRADE_REQUIRED,
                    PLAIN,
                    "/ws speaks WebSocket: connect with `Upgrade: websocket`\n",
                );
                response
                    .headers_mut()
                    .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
                response
            }
        },
        (_, path)
            if matches!(path, "/healthz" | "/ws")
                || path.starts_with("/api/")
                || super::dashboard::serves(path) =>
        {
            text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "only GET\n")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found; try / (the dashboard), /ws, /api/state or /healthz\n",
        ),
    };
    Ok(response)
}

fn unauthorized() -> Response<Body> {
    let mut response = text(
        StatusCode::UNAUTHORIZED,
        "text/plain; charset=utf-8",
        "send `Authorization: Bearer <token>`\n",
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The `Sec-WebSocket-Key` of a valid WebSocket upgrade request.
fn websocket_key(req: &Request<Incoming>) -> Option<String> {
    let headers = req.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return None;
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        return None;
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `/api/state` asks for the same token as `identify`, in `Authorization: Bearer`.
fn authorized(req: &Request<Incoming>, peer: SocketAddr, shared: &Shared) -> bool {
    let Some(token) = &shared.token else {
        return true;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) => token.matches(given.trim()),
        None => {
            peer.ip().to_canonical().is_loopback() && shared.settings.allow_loopback_without_token
        }
    }
}
