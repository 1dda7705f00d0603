//! The state a client joining late needs, projected from the events: runs
//! (active and recent), their batches and tasks, the node status of each
//! pipeline, agents and their queues.
//!
//! [`State::apply`] takes every event in sequence order; [`State::snapshot`]
//! copies it out, stamped with the last sequence number applied.
//!
//! ## After a restart
//! The events of runs recorded before the server started are not replayed;
//! [`State::remember_recorded`] takes those runs as the history holds them
//! ([`recorded_run`]), so `recent_runs` and the pipelines' nodes are not
//! empty for a dashboard that joins a freshly started server.

use crate::store::{RunDetail, Store, StoreError};
use protocol::{
    AgentState, AgentStatus, BatchState, BatchStatus, CommandState, CommandStatus, Event,
    EventKind, NodeState, NodeStatus, PendingApproval, PipelineNodes, RunState, RunStatus,
    Snapshot, TaskState, TaskStatus,
};
use std::collections::VecDeque;
use std::sync::Arc;

/// Finished runs kept for the snapshot.
pub const RECENT_RUNS: usize = 20;
/// Finished commands kept for the snapshot.
pub const RECENT_COMMANDS: usize = 50;

#[derive(Debug, Default)]
pub struct State {
    seq: u64,
    /// Oldest first.
    active: Vec<RunState>,
    /// Newest first.
    recent: VecDeque<RunState>,
    pipelines: Vec<PipelineNodes>,
    agents: Vec<AgentState>,
    /// Newest first.
    recent_commands: VecDeque<CommandState>,
    /// Oldest first; as many as the agents' commands wait on.
    pending_approvals: Vec<PendingApproval>,
}

impl State {
    /// An empty state, current to `seq` (the event before the first one it will see).
    pub fn new(seq: u64) -> Self {
        Self {
            seq,
            ..Self::default()
        }
    }

    /// The last sequence number applied.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            seq: self.seq,
            active_runs: self.active.clone(),
            recent_runs: self.recent.iter().cloned().collect(),
            pipelines: self.pipelines.clone(),
            agents: self.agents.clone(),
            recent_commands: self.recent_commands.iter().cloned().collect(),
            pending_approvals: self.pending_approvals.clone(),
        }
    }

    /// The pipeline `event` belongs to, if it belongs to a run this state knows.
    pub fn pipeline_of(&self, event: &Event) -> Option<Arc<str>> {
        match &event.kind {
            EventKind::RunStatus { pipeline, .. } | EventKind::BatchStatus { pipeline, .. } => {
                Some(pipeline.as_str().into())
            }
            _ => {
                let run_id = event.run_id()?;
                self.active
                    .iter()
                    .chain(&self.recent)
                    .find(|r| r.run_id == run_id)
                    .map(|r| r.pipeline.as_str().into())
            }
        }
    }

    pub fn apply(&mut self, event: &Event) {
        self.seq = self.seq.max(event.seq);
        let time = event.time;
        match &event.kind {
            EventKind::RunStatus {
                run_id,
                pipeline,
                status,
                message,
                error,
            } => {
                if *status == RunStatus::Running && self.run_mut(run_id).is_none() {
                    self.active.push(RunState {
                        run_id: run_id.clone(),
                        pipeline: pipeline.clone(),
                        status: *status,
                        started_at: time,
                        finished_at: None,
                        message: message.clone(),
                        error: None,
                        batches: Vec::new(),
                    });
                    self.pipelines.retain(|p| p.pipeline != *pipeline);
                    self.pipelines.push(PipelineNodes {
                        pipeline: pipeline.clone(),
                        run_id: run_id.clone(),
                        nodes: Vec::new(),
                    });
                    return;
                }
                if let Some(run) = self.run_mut(run_id) {
                    run.status = *status;
                    if message.is_some() {
                        run.message = message.clone();
                    }
                    run.error = error.clone();
                    if status.is_final() {
                        run.finished_at = Some(time);
                    }
                }
                if status.is_final()
                    && let Some(index) = self.active.iter().position(|r| r.run_id == *run_id)
                {
                    let run = self.active.remove(index);
                    self.recent.push_front(run);
                    self.recent.truncate(RECENT_RUNS);
                }
            }
            EventKind::BatchStatus {
                run_id,
                pipeline,
                batch_id,
                batch_name,
                status,
                branch,
                error,
                summary,
                ..
            } => {
                if let Some(batch) = self.batch_mut(run_id, batch_id, batch_name) {
                    batch.status = *status;
                    batch.batch_name = batch_name.clone();
                    match status {
                        BatchStatus::Running => batch.started_at = Some(time),
                        BatchStatus::Completed | BatchStatus::Failed => {
                            batch.finished_at = Some(time)
                        }
                        BatchStatus::Pending => {}
                    }
                    if branch.is_some() {
                        batch.branch = branch.clone();
                    }
                    batch.error = error.clone();
                    if summary.is_some() {
                        batch.summary = summary.clone();
                    }
                }
                if let Some(nodes) = self
                    .pipelines
                    .iter_mut()
                    .find(|p| p.pipeline == *pipeline && p.run_id == *run_id)
                {
                    let node = NodeState {
                        node_id: batch_id.clone(),
                        node_name: batch_name.clone(),
                        status: NodeStatus::from(*status),
                    };
                    match nodes.nodes.iter_mut().find(|n| n.node_id == *batch_id) {
                        Some(existing) => *existing = node,
                        None => nodes.nodes.push(node),
                    }
                }
            }
            EventKind::TaskStarted {
                run_id,
                batch_id,
                task_id,
                task_type,
                name,
                priority,
                display_text,
            } => {
                if let Some(task) = self.task_mut(run_id, batch_id, task_id, task_type, name) {
                    task.status = TaskStatus::Running;
                    task.priority = *priority;
                    task.display_text = display_text.clone();
                    task.started_at = Some(time);
                }
            }
            EventKind::TaskProgress {
                run_id,
                batch_id,
                task_id,
                display_text,
                percent,
            } => {
                if let Some(task) = self.task_mut(run_id, batch_id, task_id, "", task_id) {
                    task.display_text = Some(display_text.clone());
                    if percent.is_some() {
                        task.percent = *percent;
                    }
                }
            }
            EventKind::TaskFinished {
                run_id,
                batch_id,
                task_id,
                task_type,
                name,
                status,
                started_at,
                finished_at,
                duration_ms,
                error,
                exit_code,
                ..
            } => {
                if let Some(task) = self.task_mut(run_id, batch_id, task_id, task_type, name) {
                    task.status = *status;
                    if started_at.is_some() {
                        task.started_at = *started_at;
                    }
                    task.finished_at = Some(*finished_at);
                    task.duration_ms = Some(*duration_ms);
                    task.error = error.clone();
                    task.exit_code = *exit_code;
                }
            }
            EventKind::CommandStatus {
                command_id,
                agent,
                status,
                priority,
                run_id,
                task_id,
                exit_code,
                error,
                ..
            } => {
                let command = CommandState {
                    command_id: command_id.clone(),
                    agent: agent.clone(),
                    status: *status,
                    priority: *priority,
                    run_id: run_id.clone(),
                    task_id: task_id.clone(),
                    exit_code: *exit_code,
                    error: error.clone(),
                    updated_at: time,
                };
                let finished = matches!(
                    status,
                    CommandStatus::Completed | CommandStatus::Failed | CommandStatus::Interrupted
                );
                let queue = &mut self.agent_mut(agent).queue;
                let position = queue.iter().position(|c| c.command_id == *command_id);
                match (position, finished) {
                    (Some(index), true) => {
                        queue.remove(index);
                    }
                    (Some(index), false) => queue[index] = command.clone(),
                    (None, false) => queue.push(command.clone()),
                    (None, true) => {}
                }
                if finished {
                    self.recent_commands.retain(|c| c.command_id != *command_id);
                    self.recent_commands.push_front(command);
                    self.recent_commands.truncate(RECENT_COMMANDS);
                }
            }
            EventKind::AgentStatus {
                agent,
                status,
                current_command,
                ..
            } => {
                let state = self.agent_mut(agent);
                state.status = *status;
                state.current_command = current_command.clone();
            }
            EventKind::ApprovalRequested {
                approval_id,
                command_id,
                agent,
                run_id,
                task_id,
                tool,
                input,
                description,
                timeout_ms,
            } => self.pending_approvals.push(PendingApproval {
                approval_id: approval_id.clone(),
                command_id: command_id.clone(),
                agent: agent.clone(),
                run_id: run_id.clone(),
                task_id: task_id.clone(),
                tool: tool.clone(),
                input: input.clone(),
                description: description.clone(),
                seq: event.seq,
                timeout_ms: *timeout_ms,
            }),
            EventKind::ApprovalDecided { approval_id, .. } => {
                self.pending_approvals
                    .retain(|a| a.approval_id != *approval_id);
            }
            EventKind::WorkspacePrepared {
                run_id,
                batch_id,
                branch: Some(branch),
                ..
            } => {
                if let Some(batch) = self.batch_mut(run_id, batch_id, batch_id) {
                    batch.branch = Some(branch.clone());
                }
            }
            _ => {}
        }
    }

    /// Adds finished runs read from the history (newest first) after the
    /// runs this state already knows, up to [`RECENT_RUNS`]; a pipeline
    /// without nodes yet gets those of its newest recorded run.
    pub fn remember_recorded(&mut self, runs: Vec<RunState>) {
        for run in runs {
            if self.recent.len() >= RECENT_RUNS {
                break;
            }
            if !run.status.is_final() || self.run_mut(&run.run_id).is_some() {
                continue;
            }
            if !self.pipelines.iter().any(|p| p.pipeline == run.pipeline) {
                self.pipelines.push(PipelineNodes {
                    pipeline: run.pipeline.clone(),
                    run_id: run.run_id.clone(),
                    nodes: run
                        .batches
                        .iter()
                        .map(|b| NodeState {
                            node_id: b.batch_id.clone(),
                            node_name: b.batch_name.clone(),
                            status: NodeStatus::from(b.status),
                        })
                        .collect(),
                });
            }
            self.recent.push_back(run);
        }
    }

    fn run_mut(&mut self, run_id: &str) -> Option<&mut RunState> {
        self.active
            .iter_mut()
            .chain(self.recent.iter_mut())
            .find(|r| r.run_id == run_id)
    }

    fn batch_mut(
        &mut self,
        run_id: &str,
        batch_id: &str,
        batch_name: &str,
    ) -> Option<&mut BatchState> {
        let run = self.run_mut(run_id)?;
        let index = match run.batches.iter().position(|b| b.batch_id == batch_id) {
            Some(index) => index,
            None => {
                run.batches.push(BatchState {
                    batch_id: batch_id.to_string(),
                    batch_name: batch_name.to_string(),
                    status: BatchStatus::Pending,
                    branch: None,
                    error: None,
                    summary: None,
                    started_at: None,
                    finished_at: None,
                    tasks: Vec::new(),
                });
                run.batches.len() - 1
            }
        };
        Some(&mut run.batches[index])
    }

    fn task_mut(
        &mut self,
        run_id: &str,
        batch_id: &str,
        task_id: &str,
        task_type: &str,
        name: &str,
    ) -> Option<&mut TaskState> {
        let batch = self.batch_mut(run_id, batch_id, batch_id)?;
        let index = match batch.tasks.iter().position(|t| t.task_id == task_id) {
            Some(index) => index,
            None => {
                batch.tasks.push(TaskState {
                    task_id: task_id.to_string(),
                    task_type: task_type.to_string(),
                    name: name.to_string(),
                    status: TaskStatus::Pending,
                    priority: Default::default(),
                    display_text: None,
                    percent: None,
                    started_at: None,
                    finished_at: None,
                    duration_ms: None,
                    error: None,
                    exit_code: None,
                });
                batch.tasks.len() - 1
            }
        };
        Some(&mut batch.tasks[index])
    }

    fn agent_mut(&mut self, agent: &str) -> &mut AgentState {
        let index = match self.agents.iter().position(|a| a.agent == agent) {
            Some(index) => index,
            None => {
                self.agents.push(AgentState {
                    agent: agent.to_string(),
                    status: AgentStatus::Online,
                    current_command: None,
                    queue: Vec::new(),
                });
                self.agents.len() - 1
            }
        };
        &mut self.agents[index]
    }
}

/// A run as the history recorded it, in the snapshot's terms. A status the
/// protocol has no word for (`interrupted`: the runner died) reads as
/// `aborted`, as the recovery's event says; a task `killed` as `interrupted`.
pub fn recorded_run(detail: &RunDetail) -> RunState {
    fn parse<T: serde::de::DeserializeOwned>(status: &str) -> Option<T> {
        serde_json::from_value(serde_json::Value::String(status.to_string())).ok()
    }
    let run = &detail.run;
    let batches = detail
        .batches
        .iter()
        .map(|batch| BatchState {
            batch_id: batch.batch_id.clone(),
            batch_name: batch.name.clone(),
            status: parse(&batch.status).unwrap_or(BatchStatus::Failed),
            branch: batch.branch.clone(),
            error: batch.error.clone(),
            summary: batch.summary.clone(),
            started_at: batch.started_at,
            finished_at: batch.finished_at,
            tasks: detail
                .executions
                .iter()
                .filter(|e| {
                    e.batch_id == batch.batch_id
                        && matches!(e.reason.as_str(), "task" | "coding_agent")
                })
                .map(|task| TaskState {
                    task_id: task.execution_id.clone(),
                    task_type: task.kind.clone(),
                    name: task.name.clone(),
                    status: match task.status.as_str() {
                        "killed" => TaskStatus::Interrupted,
                        status => parse(status).unwrap_or(TaskStatus::Failed),
                    },
                    priority: Default::default(),
                    display_text: task.progress.clone(),
                    percent: None,
                    started_at: task.started_at,
                    finished_at: task.finished_at,
                    duration_ms: task.duration_ms,
                    error: task.error.clone(),
                    exit_code: task.exit_code,
                })
                .collect(),
        })
        .collect();
    RunState {
        run_id: run.id.clone(),
        pipeline: run.pipeline.clone(),
        status: parse(&run.status).unwrap_or(RunStatus::Aborted),
        started_at: run.started_at,
        finished_at: run.finished_at,
        message: run.message.clone(),
        error: run.error.clone(),
        batches,
    }
}

/// The newest finished runs of `history`, for [`State::remember_recorded`].
/// Blocking: call it off the async threads.
pub fn recorded_runs(history: &Store) -> Result<Vec<RunState>, StoreError> {
    let mut runs = Vec::new();
    for summary in history.list_runs(RECENT_RUNS)? {
        if summary.status == "running" {
            continue;
        }
        runs.push(recorded_run(&history.run_detail(&summary.id)?));
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use protocol::Priority;

    fn event(seq: u64, kind: EventKind) -> Event {
        Event {
            seq,
            time: Utc::now(),
            kind,
        }
    }

    fn batch(seq: u64, status: BatchStatus) -> Event {
        event(
            seq,
            EventKind::BatchStatus {
                run_id: "r1".into(),
                pipeline: "ci".into(),
                batch_id: "build".into(),
                batch_name: "Build".into(),
                status,
                branch: None,
                error: None,
                summary: None,
                depends_on: Vec::new(),
            },
        )
    }

    fn run(seq: u64, status: RunStatus) -> Event {
        event(
            seq,
            EventKind::RunStatus {
                run_id: "r1".into(),
                pipeline: "ci".into(),
                status,
                message: None,
                error: None,
            },
        )
    }

    #[test]
    fn a_run_moves_from_active_to_recent_with_its_batches_and_node_status() {
        let mut state = State::new(0);
        state.apply(&run(1, RunStatus::Running));
        state.apply(&batch(2, BatchStatus::Pending));
        state.apply(&batch(3, BatchStatus::Running));
        let snapshot = state.snapshot();
        assert_eq!(snapshot.seq, 3);
        assert_eq!(
            snapshot.active_runs[0].batches[0].status,
            BatchStatus::Running
        );
        assert_eq!(
            snapshot.pipelines[0].nodes[0].status,
            NodeStatus::Processing
        );

        state.apply(&batch(4, BatchStatus::Completed));
        state.apply(&run(5, RunStatus::Completed));
        let snapshot = state.snapshot();
        assert!(snapshot.active_runs.is_empty());
        assert_eq!(snapshot.recent_runs[0].status, RunStatus::Completed);
        assert_eq!(
            snapshot.recent_runs[0].batches[0].status,
            BatchStatus::Completed
        );
        assert_eq!(snapshot.pipelines[0].nodes[0].status, NodeStatus::Completed);
    }

    #[test]
    fn an_agent_queue_holds_commands_until_they_end() {
        let mut state = State::new(0);
        let command = |seq, id: &str, status| {
            event(
                seq,
                EventKind::CommandStatus {
                    command_id: id.into(),
                    agent: "claude".into(),
                    status,
                    priority: Priority::High,
                    run_id: None,
                    task_id: None,
                    exit_code: None,
                    error: None,
                    prompt: None,
                },
            )
        };
        state.apply(&command(1, "c1", CommandStatus::Queued));
        state.apply(&command(2, "c2", CommandStatus::Queued));
        state.apply(&command(3, "c1", CommandStatus::Running));
        let snapshot = state.snapshot();
        let ids: Vec<_> = snapshot.agents[0]
            .queue
            .iter()
            .map(|c| (c.command_id.as_str(), c.status))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("c1", CommandStatus::Running),
                ("c2", CommandStatus::Queued)
            ]
        );
        state.apply(&command(4, "c1", CommandStatus::Completed));
        let snapshot = state.snapshot();
        assert_eq!(snapshot.agents[0].queue.len(), 1);
        assert_eq!(snapshot.recent_commands[0].command_id, "c1");
    }
}
