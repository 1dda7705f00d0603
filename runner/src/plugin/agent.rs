//! An agent adapter instance kept for one execution.

use super::bindings;
use super::state::StoreState;
use super::{CallError, CallOptions, Plugin, Pre, Sink, World, call::guarded};
use protocol::Stream;
use std::time::Duration;
use wasmtime::Store;

pub use bindings::agent::exports::runner::plugin::agent_adapter::{
    AgentEvent, AgentRequest, ChangeKind, Invocation, Outcome, OutputStream,
};

/// One agent adapter instance, alive for one execution so it can keep
/// state between output lines.
pub struct AgentSession {
    store: Store<StoreState>,
    instance: bindings::agent::AgentPlugin,
    timeout: Duration,
}

impl Plugin {
    /// A fresh adapter instance whose calls must all end within `timeout`.
    pub async fn agent_session(
        &self,
        timeout: Duration,
        sink: Sink,
    ) -> Result<AgentSession, CallError> {
        let Pre::Agent(pre) = &self.pre else {
            return Err(self.wrong_world(World::AgentAdapter));
        };
        let mut store = self.store(sink, timeout, &CallOptions::default())?;
        let instance = guarded(timeout, pre.instantiate_async(&mut store)).await?;
        Ok(AgentSession {
            store,
            instance,
            timeout,
        })
    }
}

impl AgentSession {
    async fn guarded<T>(
        &mut self,
        call: impl AsyncFnOnce(
            &mut Store<StoreState>,
            &bindings::agent::AgentPlugin,
        ) -> wasmtime::Result<T>,
    ) -> Result<T, CallError> {
        guarded(self.timeout, call(&mut self.store, &self.instance)).await
    }

    /// Checks the request and builds the command line.
    pub async fn start(
        &mut self,
        request: &AgentRequest,
    ) -> Result<Result<Invocation, String>, CallError> {
        self.guarded(async |store, instance| {
            instance
                .runner_plugin_agent_adapter()
                .call_start(store, request)
                .await
        })
        .await
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
        self.guarded(async |store, instance| {
            instance
                .runner_plugin_agent_adapter()
                .call_parse_line(store, source, line)
                .await
        })
        .await
    }

    /// The CLI ended with `exit_code`.
    pub async fn finish(&mut self, exit_code: Option<i32>) -> Result<Outcome, CallError> {
        self.guarded(async |store, instance| {
            instance
                .runner_plugin_agent_adapter()
                .call_finish(store, exit_code)
                .await
        })
        .await
    }
}
