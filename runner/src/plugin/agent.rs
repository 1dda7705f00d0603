//! An agent adapter instance kept for one execution.

use super::bindings::latest::{self, approvals};
use super::bindings::v0_1_0::{self, Convert};
use super::state::StoreState;
use super::{CallError, CallOptions, Plugin, Pre, Sink, World, call::guarded};
use protocol::Stream;
use std::time::Duration;
use wasmtime::Store;

pub use approvals::{ApprovalDecision, ApprovalRequest};
pub use latest::agent::exports::runner::plugin::agent_adapter::{
    AgentEvent, AgentRequest, ChangeKind, Invocation, Outcome, OutputStream,
};

/// One agent adapter instance, alive for one execution so it can keep
/// state between output lines.
pub struct AgentSession {
    store: Store<StoreState>,
    instance: Instance,
    timeout: Duration,
}

enum Instance {
    Latest {
        adapter: latest::agent::AgentPlugin,
        approvals: Option<approvals::Guest>,
    },
    V0_1(v0_1_0::agent::AgentPlugin),
}

impl Plugin {
    /// A fresh adapter instance whose calls must all end within `timeout`.
    pub async fn agent_session(
        &self,
        timeout: Duration,
        sink: Sink,
    ) -> Result<AgentSession, CallError> {
        let mut store = self.store(sink, timeout, &CallOptions::default())?;
        let instance = match &self.pre {
            Pre::Agent { pre, approvals } => {
                let instance =
                    guarded(timeout, pre.instance_pre().instantiate_async(&mut store)).await?;
                let adapter = latest::agent::AgentPlugin::new(&mut store, &instance)
                    .map_err(|err| CallError::Other(format!("{err:#}")))?;
                let approvals = approvals
                    .as_ref()
                    .map(|indices| indices.load(&mut store, &instance))
                    .transpose()
                    .map_err(|err| CallError::Other(format!("{err:#}")))?;
                Instance::Latest { adapter, approvals }
            }
            Pre::V0_1(v0_1_0::Pre::Agent(pre)) => {
                Instance::V0_1(guarded(timeout, pre.instantiate_async(&mut store)).await?)
            }
            _ => return Err(self.wrong_world(World::AgentAdapter)),
        };
        Ok(AgentSession {
            store,
            instance,
            timeout,
        })
    }
}

impl AgentSession {
    /// Checks the request and builds the command line.
    pub async fn start(
        &mut self,
        request: &AgentRequest,
    ) -> Result<Result<Invocation, String>, CallError> {
        let Self {
            store,
            instance,
            timeout,
        } = self;
        match instance {
            Instance::Latest { adapter, .. } => {
                let call = adapter
                    .runner_plugin_agent_adapter()
                    .call_start(store, request);
                guarded(*timeout, call).await
            }
            Instance::V0_1(adapter) => {
                let request = request.clone().convert();
                let call = adapter
                    .runner_plugin_agent_adapter()
                    .call_start(store, &request);
                guarded(*timeout, call).await.map(Convert::convert)
            }
        }
    }

    /// Parses one line of the CLI's output.
    pub async fn parse_line(
        &mut self,
        stream: Stream,
        line: &str,
    ) -> Result<Vec<AgentEvent>, CallError> {
        let source = match stream {
            Stream::Stdout => OutputStream::Stdout,
            Stream::Stderr => OutputStream::Stderr,
        };
        let Self {
            store,
            instance,
            timeout,
        } = self;
        match instance {
            Instance::Latest { adapter, .. } => {
                let call = adapter
                    .runner_plugin_agent_adapter()
                    .call_parse_line(store, source, line);
                guarded(*timeout, call).await
            }
            Instance::V0_1(adapter) => {
                let call = adapter.runner_plugin_agent_adapter().call_parse_line(
                    store,
                    source.convert(),
                    line,
                );
                guarded(*timeout, call).await.map(Convert::convert)
            }
        }
    }

    /// The CLI ended with `exit_code`.
    pub async fn finish(&mut self, exit_code: Option<i32>) -> Result<Outcome, CallError> {
        let Self {
            store,
            instance,
            timeout,
        } = self;
        match instance {
            Instance::Latest { adapter, .. } => {
                let call = adapter
                    .runner_plugin_agent_adapter()
                    .call_finish(store, exit_code);
                guarded(*timeout, call).await
            }
            Instance::V0_1(adapter) => {
                let call = adapter
                    .runner_plugin_agent_adapter()
                    .call_finish(store, exit_code);
                guarded(*timeout, call).await.map(Convert::convert)
            }
        }
    }

    /// Whether the adapter relays permission prompts (it exports the
    /// 0.2.0 `approvals` interface).
    pub fn handles_approvals(&self) -> bool {
        matches!(
            self.instance,
            Instance::Latest {
                approvals: Some(_),
                ..
            }
        )
    }

    /// Whether the CLI started with these adapter options asks for
    /// permissions (and so needs its standard input kept open); `false` for
    /// adapters without approvals.
    pub async fn asks_permission(
        &mut self,
        options: &[(String, String)],
    ) -> Result<bool, CallError> {
        let Self {
            store,
            instance,
            timeout,
        } = self;
        let Instance::Latest {
            approvals: Some(approvals),
            ..
        } = instance
        else {
            return Ok(false);
        };
        guarded(*timeout, approvals.call_asks_permission(store, options)).await
    }

    /// The permission prompt in one stdout line, if the adapter sees one;
    /// always `None` for adapters without approvals.
    pub async fn recognise_approval(
        &mut self,
        line: &str,
    ) -> Result<Option<ApprovalRequest>, CallError> {
        let Self {
            store,
            instance,
            timeout,
        } = self;
        let Instance::Latest {
            approvals: Some(approvals),
            ..
        } = instance
        else {
            return Ok(None);
        };
        guarded(*timeout, approvals.call_recognise(store, line)).await
    }

    /// The stdin line that answers `request` with `decision`.
    pub async fn answer_approval(
        &mut self,
        request: &ApprovalRequest,
        decision: &ApprovalDecision,
    ) -> Result<String, CallError> {
        let Self {
            store,
            instance,
            timeout,
        } = self;
        let Instance::Latest {
            approvals: Some(approvals),
            ..
        } = instance
        else {
            return Err(CallError::Other(
                "the adapter does not relay permission prompts".into(),
            ));
        };
        guarded(*timeout, approvals.call_answer(store, request, decision)).await
    }
}
