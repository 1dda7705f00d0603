//! The requests of a connection: each client message parsed, checked and
//! answered (see the module docs of [`super`]).

use super::{Conn, End, Slot};
use crate::service::StartedRun;
use protocol::{
    ClientBody, ClientKind, ClientMessage, ErrorCode, PROTOCOL_VERSION, ReplyBody, RequestId,
};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    pub(super) async fn on_text(&mut self, text: &str) -> Result<(), End> {
        let message = match parse(text) {
            Ok(message) => message,
            Err(rejection) => {
                self.reply_error(rejection.id, rejection.code, &rejection.message)
                    .await?;
                // A client speaking another version will not understand
                // anything else either: say why, then close at once.
                if rejection.code == ErrorCode::UnsupportedVersion && self.identified.is_none() {
                    return Err(End::Close(
                        CloseCode::Protocol,
                        format!(
                            "unsupported protocol version; this server speaks {PROTOCOL_VERSION}"
                        ),
                    ));
                }
                return Ok(());
            }
        };
        let ClientMessage { id, body } = message;
        if self.identified.is_none()
            && !matches!(body, ClientBody::Identify { .. } | ClientBody::Ping)
        {
            return self
                .reply_error(id, ErrorCode::NotIdentified, "send `identify` first")
                .await;
        }
        match body {
            ClientBody::Identify {
                token,
                client,
                after_seq,
                filter,
                ..
            } => {
                if self.identified.is_some() {
                    return self
                        .reply_error(id, ErrorCode::Invalid, "already identified")
                        .await;
                }
                let settings = &self.shared.settings;
                let loopback = self.peer.ip().to_canonical().is_loopback();
                let token_needed = !(loopback && settings.allow_loopback_without_token);
                match (&self.shared.token, token) {
                    (Some(expected), Some(given)) if !expected.matches(&given.0) => {
                        return Err(End::Close(CloseCode::Policy, "bad token".into()));
                    }
                    (Some(_), None) if token_needed => {
                        return Err(End::Close(CloseCode::Policy, "a token is required".into()));
                    }
                    _ => {}
                }
                let (count, max) = match client.kind {
                    ClientKind::Dashboard => (&self.shared.dashboards, settings.max_dashboards),
                    ClientKind::Agent => (&self.shared.agents, settings.max_agents),
                };
                let Some(slot) = Slot::take(count, max) else {
                    return Err(End::Close(
                        CloseCode::Again,
                        format!(
                            "too many {} clients (at most {max}); try again later",
                            client.kind.as_str()
                        ),
                    ));
                };
                tracing::debug!(client = %self.client_id, peer = %self.peer, kind = client.kind.as_str(), name = ?client.name, "client identified");
                self.audit(
                    client.kind.as_str(),
                    "connected",
                    Some(format!(
                        "{} {}",
                        self.client_id,
                        client.name.as_deref().unwrap_or("-")
                    )),
                );
                self.identified = Some((client.kind, slot));
                self.who = client
                    .name
                    .clone()
                    .filter(|name| !name.trim().is_empty())
                    .unwrap_or_else(|| client.kind.as_str().to_string());
                self.filter = filter.unwrap_or_default();
                let body = ReplyBody::Identified {
                    client_id: self.client_id.clone(),
                    kind: client.kind,
                    protocol_version: PROTOCOL_VERSION.to_string(),
                    server_version: env!("CARGO_PKG_VERSION").to_string(),
                    heartbeat_ms: settings.heartbeat.as_millis() as u64,
                    max_message_bytes: settings.max_message_bytes,
                    project: Some(self.shared.service.runner().config().project_id()),
                };
                self.reply(id.clone(), body).await?;
                if let Some(after_seq) = after_seq {
                    let message = match self.check_resumable(after_seq) {
                        Ok(()) => match self.resume(after_seq).await? {
                            Ok(()) => return Ok(()),
                            Err(why) => Self::unavailable(after_seq, &why, "here is the state"),
                        },
                        Err(message) => message,
                    };
                    self.reply_error(id.clone(), ErrorCode::ResumeUnavailable, &message)
                        .await?;
                }
                self.send_state(id).await
            }
            ClientBody::Ping => self.reply(id, ReplyBody::Pong).await,
            ClientBody::RequestState => self.send_state(id).await,
            ClientBody::Subscribe { filter } => {
                self.filter = filter.clone();
                self.reply(id, ReplyBody::Subscribed { filter }).await
            }
            ClientBody::Resume { after_seq } => {
                if let Err(message) = self.check_resumable(after_seq) {
                    return self
                        .reply_error(id, ErrorCode::ResumeUnavailable, &message)
                        .await;
                }
                // Announce first: the replayed events follow the answer.
                self.reply(id.clone(), ReplyBody::Resumed { after_seq })
                    .await?;
                if let Err(why) = self.resume(after_seq).await? {
                    let message = Self::unavailable(after_seq, &why, "send `request_state`");
                    return self
                        .reply_error(id, ErrorCode::ResumeUnavailable, &message)
                        .await;
                }
                Ok(())
            }
            ClientBody::StartRun { pipeline } => {
                match self.shared.service.start_run(pipeline.as_deref()) {
                    Ok(StartedRun { run_id, pipeline }) => {
                        self.reply(id, ReplyBody::RunStarted { run_id, pipeline })
                            .await
                    }
                    Err(message) => self.reply_error(id, ErrorCode::Rejected, &message).await,
                }
            }
            ClientBody::AbortRun { run_id } => match self.shared.service.abort_run(&run_id) {
                Ok(()) => self.reply(id, ReplyBody::AbortRequested { run_id }).await,
                Err(message) => self.reply_error(id, ErrorCode::Rejected, &message).await,
            },
            ClientBody::CommandRequest {
                agent,
                prompt,
                priority,
                resume_session,
            } => {
                match self
                    .shared
                    .service
                    .request_command(&agent, &prompt, priority, resume_session)
                    .await
                {
                    Ok(command_id) => {
                        self.reply(id, ReplyBody::CommandAccepted { command_id, agent })
                            .await
                    }
                    Err(message) => self.reply_error(id, ErrorCode::Rejected, &message).await,
                }
            }
            ClientBody::CommandInterrupt { command_id } => {
                match self.shared.service.interrupt_command(&command_id) {
                    Ok(()) => {
                        self.reply(id, ReplyBody::InterruptRequested { command_id })
                            .await
                    }
                    Err(message) => self.reply_error(id, ErrorCode::Rejected, &message).await,
                }
            }
            ClientBody::ApprovalDecision {
                approval_id,
                allow,
                message,
            } => {
                let answer = crate::agents::Answer {
                    allow,
                    message,
                    by: self.who.clone(),
                };
                match self.shared.service.decide_approval(&approval_id, answer) {
                    Ok(()) => {
                        self.audit(
                            "approval",
                            if allow { "allowed" } else { "denied" },
                            Some(format!("{approval_id} by {}", self.who)),
                        );
                        self.reply(id, ReplyBody::ApprovalAccepted { approval_id })
                            .await
                    }
                    Err(message) => self.reply_error(id, ErrorCode::Rejected, &message).await,
                }
            }
        }
    }

    fn check_resumable(&self, after_seq: u64) -> Result<(), String> {
        let next = self.shared.hub.next_seq();
        if after_seq >= next {
            return Err(format!(
                "no event {after_seq} was published yet (the next is {next}); the server may have restarted: send `request_state`"
            ));
        }
        Ok(())
    }
}

/// A message the server could not take, with the id to answer.
#[derive(Debug)]
pub(crate) struct Rejection {
    pub id: Option<RequestId>,
    pub code: ErrorCode,
    pub message: String,
}

/// Reads one client message, telling apart bad JSON, an unknown `type`,
/// wrong fields and a rule the seeds set (with the request's id when it has one).
pub(crate) fn parse(text: &str) -> Result<ClientMessage, Rejection> {
    let reject = |id, code, message: String| Rejection { id, code, message };
    let value: Value = serde_json::from_str(text)
        .map_err(|err| reject(None, ErrorCode::Malformed, format!("not JSON: {err}")))?;
    let Value::Object(object) = &value else {
        return Err(reject(
            None,
            ErrorCode::Malformed,
            "a message must be a JSON object with a `type`".into(),
        ));
    };
    let id = match object.get("id") {
        None | Some(Value::Null) => None,
        Some(id) => Some(
            serde_json::from_value::<RequestId>(id.clone()).map_err(|_| {
                reject(
                    None,
                    ErrorCode::Invalid,
                    "`id` must be a string or an integer".into(),
                )
            })?,
        ),
    };
    let Some(kind) = object.get("type").and_then(Value::as_str) else {
        return Err(reject(
            id,
            ErrorCode::Invalid,
            "a message needs a string `type`".into(),
        ));
    };
    if !protocol::CLIENT_MESSAGE_TYPES.contains(&kind) {
        let message = format!(
            "unknown message type `{kind}`; expected one of {}",
            protocol::CLIENT_MESSAGE_TYPES.join(", ")
        );
        return Err(reject(id, ErrorCode::UnknownType, message));
    }
    let kind = kind.to_string();
    let message: ClientMessage = serde_json::from_value(value)
        .map_err(|err| reject(id.clone(), ErrorCode::Invalid, format!("`{kind}`: {err}")))?;
    if let Err(why) = message.body.validate() {
        let code = if matches!(message.body, ClientBody::Identify { .. }) {
            ErrorCode::UnsupportedVersion
        } else {
            ErrorCode::Invalid
        };
        return Err(reject(id, code, format!("`{kind}`: {why}")));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_bad_json_from_an_unknown_type_from_wrong_fields() {
        assert_eq!(parse("{nope").unwrap_err().code, ErrorCode::Malformed);
        assert_eq!(parse("[1]").unwrap_err().code, ErrorCode::Malformed);
        let unknown = parse(r#"{"type":"launch_missiles","id":"x"}"#).unwrap_err();
        assert_eq!(
            (unknown.code, unknown.id),
            (ErrorCode::UnknownType, Some(RequestId::Text("x".into())))
        );
        let invalid = parse(r#"{"type":"abort_run","id":3}"#).unwrap_err();
        assert_eq!(
            (invalid.code, invalid.id),
            (ErrorCode::Invalid, Some(RequestId::Number(3)))
        );
        assert!(invalid.message.contains("run_id"), "{}", invalid.message);
        let empty =
            parse(r#"{"type":"command_request","agent":"claude","prompt":" "}"#).unwrap_err();
        assert!(empty.message.contains("prompt"), "{}", empty.message);
        assert!(parse(r#"{"type":"ping"}"#).is_ok());
    }
}
