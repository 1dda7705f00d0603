//! The permission prompts of one running command: each one the adapter
//! recognises is published as `approval_requested` and waits for its first
//! answer (or its `approval_timeout`, which denies it); the adapter turns
//! the answer into the line written on the CLI's standard input, and
//! `approval_decided` says what was written. A prompt still waiting when
//! the command ends is withdrawn.

use super::approvals::{Answer, MAX_PENDING_PER_COMMAND};
use super::{Agent, Agents, CommandRequest};
use crate::plugin::{AgentSession, ApprovalDecision, ApprovalRequest};
use crate::units::format_duration;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use protocol::{EventKind, LogLevel};
use tokio::sync::mpsc::UnboundedSender;

/// A prompt that waits, as the adapter read it.
pub(super) struct Waiting {
    id: String,
    request: ApprovalRequest,
}

pub(super) struct Prompts<'a> {
    agents: &'a Agents,
    agent: &'a Agent,
    command_id: &'a str,
    request: &'a CommandRequest,
    /// The CLI's standard input; `None` once closed (or never kept open).
    input: Option<UnboundedSender<String>>,
    /// The ids of the prompts not answered yet.
    open: Vec<String>,
    /// Each resolves when its prompt is answered or times out.
    pub waits: FuturesUnordered<BoxFuture<'a, (Waiting, Answer)>>,
}

impl<'a> Prompts<'a> {
    pub fn new(
        agents: &'a Agents,
        agent: &'a Agent,
        command_id: &'a str,
        request: &'a CommandRequest,
        input: Option<UnboundedSender<String>>,
    ) -> Self {
        Self {
            agents,
            agent,
            command_id,
            request,
            input,
            open: Vec::new(),
            waits: FuturesUnordered::new(),
        }
    }

    /// Publishes a prompt the adapter recognised and starts waiting for its
    /// answer; one prompt too many is denied at once.
    pub async fn open(&mut self, session: &mut AgentSession, prompt: ApprovalRequest) {
        let Some((id, mut rx)) = self.agents.approvals.open(self.command_id) else {
            let answer = Answer {
                allow: false,
                message: Some(format!(
                    "more than {MAX_PENDING_PER_COMMAND} permission prompts at once"
                )),
                by: "runner".into(),
            };
            let waiting = Waiting {
                id: crate::ids::approval_id(),
                request: prompt,
            };
            self.answer(session, waiting, answer).await;
            return;
        };
        let timeout = self.agent.decl.approval_timeout;
        self.agents.bus.publish(EventKind::ApprovalRequested {
            approval_id: id.clone(),
            command_id: self.command_id.to_string(),
            agent: self.agent.decl.name.clone(),
            run_id: self.request.run_id.clone(),
            task_id: self.request.task_id.clone(),
            tool: prompt.tool.clone(),
            input: serde_json::from_str(&prompt.input)
                .unwrap_or_else(|_| serde_json::Value::String(prompt.input.clone())),
            description: prompt.description.clone(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        });
        self.open.push(id.clone());
        let approvals = &self.agents.approvals;
        self.waits.push(Box::pin(async move {
            let answer = match tokio::time::timeout(timeout, &mut rx).await {
                Ok(Ok(answer)) => answer,
                // Nobody answered in time, unless an answer came just now.
                Ok(Err(_)) | Err(_) if approvals.withdraw(&id) => Answer {
                    allow: false,
                    message: Some(format!(
                        "nobody answered within {}",
                        format_duration(timeout)
                    )),
                    by: "timeout".into(),
                },
                _ => rx.await.unwrap_or(Answer {
                    allow: false,
                    message: None,
                    by: "runner".into(),
                }),
            };
            (
                Waiting {
                    id,
                    request: prompt,
                },
                answer,
            )
        }));
    }

    /// Writes the adapter's line for `answer` to the CLI and publishes it.
    pub async fn answer(&mut self, session: &mut AgentSession, waiting: Waiting, answer: Answer) {
        self.open.retain(|id| *id != waiting.id);
        let decision = ApprovalDecision {
            allow: answer.allow,
            message: answer.message.clone(),
        };
        match session.answer_approval(&waiting.request, &decision).await {
            Ok(line) => match &self.input {
                Some(input) => {
                    let _ = input.send(format!("{line}\n"));
                }
                None => self.warn(format!(
                    "command {}: the agent's input was closed; the answer to `{}` was not written",
                    self.command_id, waiting.request.tool
                )),
            },
            Err(err) => self.warn(format!(
                "command {}: adapter `{}` could not answer a permission prompt: {err}",
                self.command_id, self.agent.decl.adapter
            )),
        }
        self.decided(&waiting.id, answer);
    }

    /// Closes the CLI's standard input (it got its result).
    pub fn close_input(&mut self) {
        self.input = None;
    }

    /// The command ended: prompts still waiting take no answer any more.
    pub fn end(&mut self) {
        self.waits.clear();
        for id in std::mem::take(&mut self.open) {
            if self.agents.approvals.withdraw(&id) {
                let answer = Answer {
                    allow: false,
                    message: Some("the command ended before anyone answered".into()),
                    by: "ended".into(),
                };
                self.decided(&id, answer);
            }
        }
    }

    fn decided(&self, id: &str, answer: Answer) {
        self.agents.bus.publish(EventKind::ApprovalDecided {
            approval_id: id.to_string(),
            command_id: self.command_id.to_string(),
            agent: self.agent.decl.name.clone(),
            run_id: self.request.run_id.clone(),
            task_id: self.request.task_id.clone(),
            allow: answer.allow,
            message: answer.message,
            decided_by: answer.by,
        });
    }

    fn warn(&self, message: String) {
        self.agents.log(self.request, LogLevel::Warn, message);
    }
}
