//! The registry of agents and their queues: refusing, queueing, and
//! handing a command its slot.

use super::*;
use crate::config::AgentDecl;
use crate::events::EventBus;
use crate::plugin::{AgentRequest, Plugin, Plugins};
use crate::process::find_program;
use crate::slots::Slots;
use indexmap::IndexMap;
use protocol::{AgentStatus, CommandStatus, EventKind};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

impl Agents {
    pub fn new(
        agents: &IndexMap<String, AgentDecl>,
        plugins: Arc<Plugins>,
        bus: Arc<EventBus>,
    ) -> Arc<Self> {
        let agents = agents
            .iter()
            .map(|(name, decl)| {
                let agent = Agent {
                    decl: decl.clone(),
                    slots: Slots::new(decl.concurrency),
                    queued: AtomicUsize::new(0),
                    running: Mutex::new(Vec::new()),
                    program: Mutex::new(None),
                };
                (name.clone(), Arc::new(agent))
            })
            .collect();
        Arc::new(Self {
            bus,
            plugins,
            agents,
            commands: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            approvals: Approvals::default(),
        })
    }

    /// Answers a waiting permission prompt; the first answer wins.
    pub fn decide_approval(&self, approval_id: &str, answer: Answer) -> Result<(), DecisionError> {
        self.approvals.decide(approval_id, answer)
    }

    /// Resolves every agent's CLI and publishes its status.
    pub async fn refresh(&self) {
        for agent in self.agents.values() {
            if let Ok(plugin) = self.adapter(agent) {
                let probe = AgentRequest {
                    prompt: "status probe".into(),
                    model: agent.decl.model.clone(),
                    working_dir: agent.decl.working_dir.display().to_string(),
                    resume_session: None,
                    program: agent.decl.command.clone(),
                    extra_args: agent.decl.args.clone(),
                    options: agent.decl.options.clone(),
                };
                if let Ok(mut session) = plugin
                    .agent_session(Duration::from_secs(10), crate::plugin::discard())
                    .await
                    && let Ok(Ok(invocation)) = session.start(&probe).await
                {
                    let found =
                        find_program(&invocation.program, &agent.decl.working_dir).is_some();
                    *agent.program.lock().expect("program lock") =
                        Some((invocation.program, found));
                }
            }
            self.publish_status(agent);
        }
    }

    /// Every agent as it is now.
    pub fn views(&self) -> Vec<AgentView> {
        self.agents.values().map(|agent| self.view(agent)).collect()
    }

    pub(super) fn view(&self, agent: &Agent) -> AgentView {
        let running = agent.running.lock().expect("running lock").clone();
        let program = agent.program.lock().expect("program lock").clone();
        let status = match (&program, running.is_empty()) {
            (Some((_, false)), _) => AgentStatus::Offline,
            (_, false) => AgentStatus::Busy,
            _ => AgentStatus::Online,
        };
        AgentView {
            name: agent.decl.name.clone(),
            adapter: agent.decl.adapter.clone(),
            program: program.map(|p| p.0),
            status,
            queued: agent.queued.load(Ordering::SeqCst),
            running,
            concurrency: agent.decl.concurrency,
            queue_limit: agent.decl.queue_limit,
        }
    }

    pub(super) fn publish_status(&self, agent: &Agent) {
        let view = self.view(agent);
        self.bus.publish(EventKind::AgentStatus {
            agent: view.name,
            status: view.status,
            queued: view.queued,
            current_command: view.running.first().cloned(),
        });
    }

    pub(super) fn adapter(&self, agent: &Agent) -> Result<Arc<Plugin>, Refusal> {
        self.plugins
            .get(&agent.decl.adapter)
            .cloned()
            .ok_or_else(|| Refusal::Invalid {
                agent: agent.decl.name.clone(),
                message: format!("its adapter `{}` is not loaded", agent.decl.adapter),
            })
    }

    pub(super) fn request_for(&self, agent: &Agent, request: &CommandRequest) -> AgentRequest {
        AgentRequest {
            prompt: request.prompt.clone(),
            model: agent.decl.model.clone(),
            working_dir: request
                .working_dir
                .as_ref()
                .unwrap_or(&agent.decl.working_dir)
                .display()
                .to_string(),
            resume_session: request.resume_session.clone(),
            program: agent.decl.command.clone(),
            extra_args: agent.decl.args.clone(),
            options: agent.decl.options.clone(),
        }
    }

    /// Checks and queues a command. Refused when the agent is unknown or
    /// offline, its queue is full, or its adapter finds the request invalid.
    pub async fn submit(
        self: &Arc<Self>,
        request: CommandRequest,
    ) -> Result<CommandHandle, Refusal> {
        self.enqueue(request, None).await
    }

    /// As [`Agents::submit`], for a task of a run: once the agent takes the
    /// command, it also waits for one of the run's `slots` and holds it while
    /// the command runs. A command waiting in its agent's queue holds none.
    pub async fn submit_for_run(
        self: &Arc<Self>,
        request: CommandRequest,
        slots: Arc<Slots>,
    ) -> Result<CommandHandle, Refusal> {
        self.enqueue(request, Some(slots)).await
    }

    pub(super) async fn enqueue(
        self: &Arc<Self>,
        request: CommandRequest,
        run_slots: Option<Arc<Slots>>,
    ) -> Result<CommandHandle, Refusal> {
        let agent = self
            .agents
            .get(&request.agent)
            .cloned()
            .ok_or_else(|| Refusal::UnknownAgent(request.agent.clone()))?;
        let plugin = self.adapter(&agent)?;
        let invalid = |message: String| Refusal::Invalid {
            agent: agent.decl.name.clone(),
            message,
        };
        let wire = self.request_for(&agent, &request);
        let mut session = plugin
            .agent_session(Duration::from_secs(10), crate::plugin::discard())
            .await
            .map_err(|e| invalid(e.to_string()))?;
        let invocation = match session.start(&wire).await {
            Ok(Ok(invocation)) => invocation,
            Ok(Err(message)) => return Err(invalid(message)),
            Err(err) => return Err(invalid(format!("its adapter {err}"))),
        };
        let cwd = request
            .working_dir
            .clone()
            .unwrap_or_else(|| agent.decl.working_dir.clone());
        let found = find_program(&invocation.program, &cwd).is_some();
        *agent.program.lock().expect("program lock") = Some((invocation.program.clone(), found));
        if !found {
            self.publish_status(&agent);
            return Err(Refusal::Offline {
                agent: agent.decl.name.clone(),
                program: invocation.program,
            });
        }
        // Count and check under one step so two submitters cannot both take the last place.
        let limit = agent.decl.queue_limit;
        if agent
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                (q < limit).then_some(q + 1)
            })
            .is_err()
        {
            return Err(Refusal::QueueFull {
                agent: agent.decl.name.clone(),
                limit,
            });
        }
        let id = crate::ids::command_id();
        let cancel = self.shutdown.child_token();
        self.commands
            .lock()
            .expect("commands lock")
            .insert(id.clone(), cancel.clone());
        self.command_status(&id, &agent, &request, CommandStatus::Queued, None, None);
        self.publish_status(&agent);

        let (tx, rx) = oneshot::channel();
        let (agents, id2) = (self.clone(), id.clone());
        tokio::spawn(async move {
            let request = CommandRequest {
                working_dir: Some(cwd),
                ..request
            };
            let result = agents
                .run_command(&agent, plugin, &id2, request, run_slots, cancel)
                .await;
            agents.commands.lock().expect("commands lock").remove(&id2);
            let _ = tx.send(result);
        });
        Ok(CommandHandle { id, done: rx })
    }

    /// Interrupts a queued or running command.
    pub fn interrupt(&self, command_id: &str) -> Result<(), String> {
        match self.commands.lock().expect("commands lock").get(command_id) {
            Some(cancel) => {
                cancel.cancel();
                Ok(())
            }
            None => Err(format!("no queued or running command `{command_id}`")),
        }
    }

    /// Interrupts every command (their process groups are killed).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    pub(super) fn command_status(
        &self,
        id: &str,
        agent: &Agent,
        request: &CommandRequest,
        status: CommandStatus,
        exit_code: Option<i32>,
        error: Option<String>,
    ) {
        self.bus.publish(EventKind::CommandStatus {
            command_id: id.to_string(),
            agent: agent.decl.name.clone(),
            status,
            priority: request.priority,
            run_id: request.run_id.clone(),
            task_id: request.task_id.clone(),
            exit_code,
            error,
            prompt: (status == CommandStatus::Queued).then(|| request.prompt.clone()),
        });
    }
}
