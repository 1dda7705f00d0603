//! One WebSocket connection: identify, then requests in and events out.
//!
//! One task owns the socket. It waits on the client's next message, the
//! next frame from the hub, the heartbeat and the shutdown signal, and
//! writes everything itself, so answers and events go out in order.
//!
//! ## Closing
//! On shutdown the connection first writes every frame the hub broadcast
//! before it (see [`super::ServerHandle::shutdown`]), then closes with 1001.
//!
//! ## Slow clients
//! Every write has a deadline of one heartbeat interval: a client that
//! stops reading for that long is dropped. A client that reads, but too
//! slowly, falls behind the hub's ring; it gets `lagged` and a replay.

use super::Shared;
use super::hub::{Frame, Frames, Resumed, Unavailable};
use futures_util::{SinkExt, StreamExt};
use protocol::{ClientKind, ErrorCode, Filter, ReplyBody, RequestId, ServerReply};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Instant, interval_at, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// How many frames already waiting are written before one flush.
mod requests;

const WRITE_BATCH: usize = 64;
/// How long closing may take: sending the close frame, then draining.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Why a connection ends.
enum End {
    /// The peer went away, or stopped reading: nothing more to say.
    Gone,
    /// Close with this code and reason.
    Close(CloseCode, String),
}

/// A slot counted against a limit; given back on drop.
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// Takes a slot unless `max` are taken.
    pub fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        let previous = count.fetch_add(1, Ordering::SeqCst);
        if previous >= max {
            count.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Self(count.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Conn<S> {
    ws: WebSocketStream<S>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    client_id: String,
    /// Set by `identify`; holds the dashboard or agent slot.
    identified: Option<(ClientKind, Slot)>,
    /// Who the client said it is (its name, or its kind), for the
    /// `decided_by` of the permission prompts it answers.
    who: String,
    /// The hub's frames, once the client is identified.
    frames: Option<Frames>,
    /// The last event sequence number sent (or passed over by the filter).
    last_seq: u64,
    filter: Filter,
    /// Something arrived from the client since the last ping.
    heard: bool,
}

/// Serves one upgraded connection to its end. `slot` counts it against the
/// server's total; `None` means the server is full and it is closed with 1013.
pub(crate) async fn serve_connection<S>(
    ws: WebSocketStream<S>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    slot: Option<Slot>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let client_id = crate::ids::client_id();
    let mut conn = Conn {
        ws,
        shared,
        peer,
        client_id,
        identified: None,
        who: String::new(),
        frames: None,
        last_seq: 0,
        filter: Filter::default(),
        heard: false,
    };
    let end = match slot {
        Some(_) => conn.run().await,
        None => End::Close(
            CloseCode::Again,
            "the server has too many connections; try again later".into(),
        ),
    };
    tracing::debug!(client = %conn.client_id, peer = %conn.peer, "connection ends");
    let kind = conn
        .identified
        .as_ref()
        .map_or("client", |(kind, _)| kind.as_str());
    match end {
        End::Close(code, reason) => {
            let action = if conn.identified.is_some() {
                "disconnected"
            } else {
                "rejected"
            };
            conn.audit(
                kind,
                action,
                Some(format!(
                    "{} close {}: {reason}",
                    conn.client_id,
                    u16::from(code)
                )),
            );
            conn.close(code, reason).await;
        }
        _ => conn.audit(kind, "disconnected", Some(conn.client_id.clone())),
    }
}

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async fn run(&mut self) -> End {
        let every = self.shared.settings.heartbeat;
        let mut heartbeat = interval_at(Instant::now() + every, every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let cancel = self.shared.cancel.clone();
        loop {
            let result = tokio::select! {
                biased;
                _ = cancel.cancelled() => self.drain().await.and(Err(End::Close(CloseCode::Away, "the server is shutting down".into()))),
                _ = heartbeat.tick() => self.on_heartbeat().await,
                incoming = self.ws.next() => self.on_incoming(incoming).await,
                frame = next_frame(&mut self.frames) => self.on_frame(frame).await,
            };
            if let Err(end) = result {
                return end;
            }
        }
    }

    async fn on_heartbeat(&mut self) -> Result<(), End> {
        if self.identified.is_none() {
            return Err(End::Close(
                CloseCode::Policy,
                "send `identify` first".into(),
            ));
        }
        if !self.heard {
            tracing::debug!(client = %self.client_id, "no answer to the last ping; dropping the client");
            return Err(End::Gone);
        }
        self.heard = false;
        self.send(Message::Ping(Default::default())).await
    }

    async fn on_incoming(&mut self, incoming: Option<Result<Message, WsError>>) -> Result<(), End> {
        self.heard = true;
        match incoming {
            None => Err(End::Gone),
            Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => Err(End::Close(
                CloseCode::Size,
                format!(
                    "messages are limited to {} bytes",
                    self.shared.settings.max_message_bytes
                ),
            )),
            Some(Err(_)) => Err(End::Gone),
            Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).await,
            Some(Ok(Message::Binary(_))) => {
                self.reply_error(
                    None,
                    ErrorCode::Malformed,
                    "binary messages are not understood; send JSON text",
                )
                .await
            }
            Some(Ok(Message::Close(_))) => {
                // tungstenite queued the answering close frame; send it.
                let _ = timeout(CLOSE_GRACE, self.ws.flush()).await;
                Err(End::Gone)
            }
            Some(Ok(_)) => Ok(()),
        }
    }

    async fn on_frame(&mut self, frame: Result<Arc<Frame>, RecvError>) -> Result<(), End> {
        match frame {
            Ok(frame) => {
                self.feed_frame(&frame).await?;
                // Write what else is waiting, then flush once.
                for _ in 0..WRITE_BATCH {
                    match self.frames.as_mut().map(|f| f.try_recv()) {
                        Some(Ok(frame)) => self.feed_frame(&frame).await?,
                        Some(Err(broadcast::error::TryRecvError::Lagged(missed))) => {
                            self.flush().await?;
                            return self.on_lagged(missed).await;
                        }
                        _ => break,
                    }
                }
                self.flush().await
            }
            Err(RecvError::Lagged(missed)) => self.on_lagged(missed).await,
            Err(RecvError::Closed) => Err(End::Close(
                CloseCode::Away,
                "the server is shutting down".into(),
            )),
        }
    }

    /// Writes every frame the hub has already broadcast and this client has
    /// not been sent, replaying when it had lagged: the last events of a run
    /// come before the close frame.
    async fn drain(&mut self) -> Result<(), End> {
        loop {
            match self.frames.as_mut().map(|f| f.try_recv()) {
                Some(Ok(frame)) => self.feed_frame(&frame).await?,
                Some(Err(broadcast::error::TryRecvError::Lagged(missed))) => {
                    self.flush().await?;
                    self.on_lagged(missed).await?;
                }
                _ => break,
            }
        }
        self.flush().await
    }

    async fn on_lagged(&mut self, missed: u64) -> Result<(), End> {
        tracing::debug!(client = %self.client_id, missed, after_seq = self.last_seq, "client lagged");
        self.reply(
            None,
            ReplyBody::Lagged {
                after_seq: self.last_seq,
                missed,
            },
        )
        .await?;
        if let Err(why) = self.resume(self.last_seq).await? {
            let reason = match why {
                Unavailable::NotHeld => "fell too far behind to replay what was missed",
                Unavailable::Unreadable { .. } => {
                    "fell behind, and what was missed could not be read"
                }
            };
            return Err(End::Close(
                CloseCode::Again,
                format!("{reason}; reconnect and send `request_state`"),
            ));
        }
        Ok(())
    }

    /// Sends every event after `after_seq`, then goes on live; `Err(why)`
    /// inside when they cannot be replayed. Events older than the hub's
    /// memory come one batch at a time (see `hub`'s "Older than the ring").
    async fn resume(&mut self, after_seq: u64) -> Result<Result<(), Unavailable>, End> {
        let mut after = after_seq;
        let mut written = 0usize;
        let replay = loop {
            let resumed = match self.shared.hub.resume(after).await {
                Ok(resumed) => resumed,
                Err(why) => return Ok(Err(why)),
            };
            if after == after_seq {
                self.last_seq = after_seq;
            }
            match resumed {
                Resumed::Ready(replay) => break replay,
                Resumed::Older { events, through } => {
                    self.write_replayed(events, &mut written).await?;
                    self.flush().await?;
                    after = through;
                }
            }
        };
        self.frames = Some(replay.live);
        self.write_replayed(replay.missed, &mut written).await?;
        self.flush().await?;
        Ok(Ok(()))
    }

    /// Writes replayed events (those not sent yet), flushing every [`WRITE_BATCH`].
    async fn write_replayed(
        &mut self,
        events: Vec<(Arc<protocol::Event>, Option<Arc<str>>)>,
        written: &mut usize,
    ) -> Result<(), End> {
        for (event, pipeline) in events {
            if event.seq <= self.last_seq {
                continue;
            }
            self.feed_frame(&Frame::new(event, pipeline)).await?;
            *written += 1;
            if written.is_multiple_of(WRITE_BATCH) {
                self.flush().await?;
            }
        }
        Ok(())
    }

    /// What a client that asked to resume after `after_seq` is told when it cannot.
    fn unavailable(after_seq: u64, why: &Unavailable, then: &str) -> String {
        match why {
            Unavailable::NotHeld => {
                format!("the events after {after_seq} are no longer held; {then}")
            }
            Unavailable::Unreadable { from, error } => format!(
                "the events after {after_seq} could not be read from the {from} ({error}); {then}"
            ),
        }
    }

    async fn send_state(&mut self, id: Option<RequestId>) -> Result<(), End> {
        let (live, snapshot) = self.shared.hub.subscribe_with_snapshot();
        self.frames = Some(live);
        self.last_seq = snapshot.seq;
        self.reply(id, ReplyBody::State { snapshot }).await
    }

    async fn feed_frame(&mut self, frame: &Frame) -> Result<(), End> {
        if frame.event.seq <= self.last_seq {
            return Ok(());
        }
        self.last_seq = frame.event.seq;
        if frame.passes(&self.filter) {
            self.feed(Message::Text(frame.json.clone())).await?;
        }
        if let Some(node_status) = &frame.node_status
            && frame.node_status_passes(&self.filter)
        {
            self.feed(Message::Text(node_status.clone())).await?;
        }
        Ok(())
    }

    async fn reply(&mut self, id: Option<RequestId>, body: ReplyBody) -> Result<(), End> {
        let json = serde_json::to_string(&ServerReply::new(id, body)).expect("replies serialize");
        self.send(Message::Text(json.into())).await
    }

    async fn reply_error(
        &mut self,
        id: Option<RequestId>,
        code: ErrorCode,
        message: &str,
    ) -> Result<(), End> {
        self.reply(
            id,
            ReplyBody::Error {
                code,
                message: message.to_string(),
            },
        )
        .await
    }

    async fn feed(&mut self, message: Message) -> Result<(), End> {
        match timeout(self.shared.settings.heartbeat, self.ws.feed(message)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Gone),
        }
    }

    async fn flush(&mut self) -> Result<(), End> {
        match timeout(self.shared.settings.heartbeat, self.ws.flush()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Gone),
        }
    }

    async fn send(&mut self, message: Message) -> Result<(), End> {
        self.feed(message).await?;
        self.flush().await
    }

    /// Records a connection change in the 30-day audit of the history.
    fn audit(&self, client: &str, action: &str, detail: Option<String>) {
        if let Some(history) = self.shared.hub.history() {
            history.audit_connection(crate::store::ConnectionAudit {
                client: client.to_string(),
                peer: self.peer.to_string(),
                action: action.to_string(),
                detail,
            });
        }
    }

    /// Sends a close frame, then half-closes and drains the socket so the
    /// peer reads the close frame rather than a reset (it may still be
    /// sending, for example the rest of an oversized message).
    async fn close(&mut self, code: CloseCode, reason: String) {
        tracing::debug!(client = %self.client_id, code = u16::from(code), %reason, "closing");
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = timeout(CLOSE_GRACE, self.ws.close(Some(frame))).await;
        let io = self.ws.get_mut();
        let _ = timeout(CLOSE_GRACE, io.shutdown()).await;
        let mut sink = [0u8; 16 * 1024];
        let _ = timeout(CLOSE_GRACE, async {
            while let Ok(read) = io.read(&mut sink).await {
                if read == 0 {
                    break;
                }
            }
        })
        .await;
    }
}

async fn next_frame(frames: &mut Option<Frames>) -> Result<Arc<Frame>, RecvError> {
    match frames {
        Some(frames) => frames.recv().await,
        None => std::future::pending().await,
    }
}
