//! `{{name}}`: an agent adapter (world `agent-plugin` of runner:plugin@0.2.0)
//! for a CLI that takes the prompt as its last argument and prints text.
//! The host runs the CLI; the adapter builds its command line and reads its
//! output lines.

wit_bindgen::generate!({ world: "agent-plugin", path: "wit" });

use exports::runner::plugin::agent_adapter::{
    AgentEvent, AgentRequest, Guest, Invocation, Outcome, OutputStream,
};
use runner::plugin::types::PluginInfo;
use std::cell::RefCell;

thread_local! {
    // One instance lives for one execution: the last line it printed.
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

struct Plugin;

impl Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".into(),
            version: "0.1.0".into(),
            description: "An agent adapter".into(),
            config_schema: "{}".into(),
        }
    }

    fn start(request: AgentRequest) -> Result<Invocation, String> {
        let mut args = request.extra_args;
        args.push(request.prompt);
        Ok(Invocation {
            program: request.program.unwrap_or_else(|| "{{name}}-cli".into()),
            args,
            env: Vec::new(),
            stdin: None,
        })
    }

    fn parse_line(source: OutputStream, line: String) -> Vec<AgentEvent> {
        match source {
            OutputStream::Stdout => {
                LAST.with(|last| *last.borrow_mut() = Some(line.clone()));
                vec![AgentEvent::AssistantMessage(line)]
            }
            OutputStream::Stderr => vec![AgentEvent::Raw(line)],
        }
    }

    fn finish(exit_code: Option<i32>) -> Outcome {
        let summary = LAST.with(|last| last.borrow().clone());
        let success = exit_code == Some(0);
        Outcome {
            success,
            summary,
            error: (!success).then(|| format!("the CLI exited with {exit_code:?}")),
            session_id: None,
        }
    }
}

export!(Plugin);
