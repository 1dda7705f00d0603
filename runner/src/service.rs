//! What clients (the WebSocket server, `runner ask`) may ask of a running
//! runner: start and abort runs, queue and interrupt agent commands.
//!
//! Every method returns at once; the work goes on in the background and
//! reports through events.

use crate::agents::CommandRequest;
use crate::run::{Runner, new_run_id};
use protocol::Priority;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// A run [`Service::start_run`] started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedRun {
    pub run_id: String,
    /// The pipeline it runs: the one asked for, or the default one.
    pub pipeline: String,
}

pub struct Service {
    runner: Arc<Runner>,
    /// Runs still going, by id.
    runs: Mutex<HashMap<String, CancellationToken>>,
    /// Cancelled when the service shuts down: every run is aborted.
    shutdown: CancellationToken,
}

impl Service {
    pub fn new(runner: Arc<Runner>) -> Arc<Self> {
        Arc::new(Self {
            runner,
            runs: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
        })
    }

    pub fn runner(&self) -> &Arc<Runner> {
        &self.runner
    }

    /// Starts a run of `pipeline` (the default one when `None`); returns
    /// its id and the pipeline it runs.
    pub fn start_run(self: &Arc<Self>, pipeline: Option<&str>) -> Result<StartedRun, String> {
        let pipeline = self.runner.config().pipeline(pipeline)?.name.clone();
        let run_id = new_run_id();
        let cancel = self.shutdown.child_token();
        self.runs
            .lock()
            .expect("runs lock")
            .insert(run_id.clone(), cancel.clone());
        let (service, id, name) = (self.clone(), run_id.clone(), pipeline.clone());
        tokio::spawn(async move {
            service.runner.run_with_id(id.clone(), &name, cancel).await;
            service.runs.lock().expect("runs lock").remove(&id);
        });
        Ok(StartedRun { run_id, pipeline })
    }

    /// Aborts a run that is still going.
    pub fn abort_run(&self, run_id: &str) -> Result<(), String> {
        match self.runs.lock().expect("runs lock").get(run_id) {
            Some(cancel) => {
                cancel.cancel();
                Ok(())
            }
            None => Err(format!("no active run `{run_id}`")),
        }
    }

    /// The ids of the runs still going.
    pub fn active_runs(&self) -> Vec<String> {
        self.runs
            .lock()
            .expect("runs lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Queues `prompt` for `agent` (resuming `resume_session` when given);
    /// returns the command id. Refused (never
    /// silently queued) when the agent is unknown or offline, its queue is
    /// full, or the request is invalid.
    pub async fn request_command(
        &self,
        agent: &str,
        prompt: &str,
        priority: Priority,
        resume_session: Option<String>,
    ) -> Result<String, String> {
        let request = CommandRequest {
            agent: agent.to_string(),
            prompt: prompt.to_string(),
            priority,
            resume_session,
            run_id: None,
            task_id: None,
            working_dir: None,
            timeout: None,
            budget: Default::default(),
            run_budget: None,
        };
        let handle = self
            .runner
            .agents()
            .submit(request)
            .await
            .map_err(|refusal| refusal.to_string())?;
        Ok(handle.id)
    }

    /// Interrupts a queued or running agent command.
    pub fn interrupt_command(&self, command_id: &str) -> Result<(), String> {
        self.runner.agents().interrupt(command_id)
    }

    /// Answers a waiting permission prompt; the first answer wins.
    pub fn decide_approval(
        &self,
        approval_id: &str,
        answer: crate::agents::Answer,
    ) -> Result<(), String> {
        self.runner
            .agents()
            .decide_approval(approval_id, answer)
            .map_err(|err| err.to_string())
    }

    /// Aborts every run and interrupts every agent command.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
        self.runner.agents().shutdown();
    }
}
