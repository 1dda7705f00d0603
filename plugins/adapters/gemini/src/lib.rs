//! `gemini`: the agent adapter for the Gemini CLI.
//!
//! ## Invocation
//! `gemini --output-format stream-json [--model M] [--resume SESSION] <option flags>
//! <extra-args> --prompt=<prompt>`; `request.program` replaces `gemini`. The
//! prompt is joined to its flag with `=` so that a prompt starting with `-` is
//! not read as a flag. Standard input is empty and closed: the CLI appends
//! piped input to the prompt and would otherwise wait for it.
//!
//! ## Options (`[tasks.x.options]` in `runner.toml`)
//! | key | JSON value | flag |
//! |---|---|---|
//! | `yolo` | bool | `--yolo` (approve every tool call) |
//! | `approval_mode` | `"default"`, `"auto_edit"`, `"yolo"` or `"plan"` | `--approval-mode <mode>` |
//! | `sandbox` | bool | `--sandbox` |
//! | `include_directories` | string or list | `--include-directories <a,b>` |
//! | `env` | table of strings | set in the CLI's environment |
//!
//! Any other key refuses the request. `working_dir` is not passed: the host
//! starts the CLI in it.

pub mod parse;
pub use runner_plugin_sdk::adapter_support as support;

use std::cell::RefCell;

use runner_plugin_sdk::agent::{
    AgentEvent, AgentRequest, Guest, Invocation, Outcome, OutputStream, PluginInfo,
};
use serde_json::json;

use crate::parse::GeminiParser;
use crate::support::{Options, check_request, env_schema, parse_options};

const AGENT: &str = "gemini";

const OPTION_KEYS: &[&str] = &[
    "yolo",
    "approval_mode",
    "sandbox",
    "include_directories",
    "env",
];

const APPROVAL_MODES: &[&str] = &["default", "auto_edit", "yolo", "plan"];

/// The adapter's description, including the JSON Schema of its options.
pub fn plugin_info() -> PluginInfo {
    PluginInfo {
        name: AGENT.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description:
            "Runs the Gemini CLI (`gemini --output-format stream-json`) and reads its event stream"
                .into(),
        config_schema: json!({
            "type": "object",
            "properties": {
                "yolo": { "type": "boolean", "description": "--yolo: approve every tool call" },
                "approval_mode": { "enum": APPROVAL_MODES, "description": "--approval-mode" },
                "sandbox": { "type": "boolean", "description": "--sandbox" },
                "include_directories": {
                    "type": ["string", "array"], "items": { "type": "string" },
                    "description": "--include-directories"
                },
                "env": env_schema()
            },
            "additionalProperties": false
        })
        .to_string(),
    }
}

/// Checks the request and builds the `gemini` command line.
pub fn build_invocation(request: &AgentRequest) -> Result<Invocation, String> {
    check_request(AGENT, request)?;
    let options = Options {
        agent: AGENT,
        values: parse_options(AGENT, &request.options, OPTION_KEYS)?,
    };

    let mut args: Vec<String> = vec!["--output-format".into(), "stream-json".into()];
    if let Some(model) = &request.model {
        args.extend(["--model".into(), model.clone()]);
    }
    if let Some(session) = &request.resume_session {
        args.extend(["--resume".into(), session.clone()]);
    }
    if options.flag("yolo")? {
        args.push("--yolo".into());
    }
    if let Some(mode) = options.string("approval_mode")? {
        if !APPROVAL_MODES.contains(&mode.as_str()) {
            return Err(format!(
                "gemini: option `approval_mode` must be one of {}, got \"{mode}\"",
                APPROVAL_MODES.join(", ")
            ));
        }
        args.extend(["--approval-mode".into(), mode]);
    }
    if options.flag("sandbox")? {
        args.push("--sandbox".into());
    }
    let directories = options.strings("include_directories")?;
    if !directories.is_empty() {
        args.extend(["--include-directories".into(), directories.join(",")]);
    }
    args.extend(request.extra_args.iter().cloned());
    args.push(format!("--prompt={}", request.prompt));

    Ok(Invocation {
        program: request.program.clone().unwrap_or_else(|| AGENT.into()),
        args,
        env: options.env()?,
        stdin: Some(String::new()),
    })
}

thread_local! {
    /// One instance serves one execution, so one parser per instance.
    static PARSER: RefCell<GeminiParser> = RefCell::new(GeminiParser::default());
}

/// The exported component. Its functions hold no logic of their own, so the
/// native tests drive [`build_invocation`] and [`GeminiParser`] directly.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct GeminiAdapter;

impl Guest for GeminiAdapter {
    fn describe() -> PluginInfo {
        plugin_info()
    }

    fn start(request: AgentRequest) -> Result<Invocation, String> {
        let invocation = build_invocation(&request)?;
        PARSER.with(|parser| *parser.borrow_mut() = GeminiParser::default());
        Ok(invocation)
    }

    fn parse_line(stream: OutputStream, line: String) -> Vec<AgentEvent> {
        PARSER.with(|parser| parser.borrow_mut().parse_line(stream, &line))
    }

    fn finish(exit_code: Option<i32>) -> Outcome {
        PARSER.with(|parser| parser.borrow().finish(exit_code))
    }
}

// Exported only for wasm: the export names (`runner:plugin/agent-adapter@0.1.0#...`)
// do not link into a native `cdylib`, and the native build exists for tests.
#[cfg(target_arch = "wasm32")]
runner_plugin_sdk::export_agent_adapter!(GeminiAdapter);

#[cfg(test)]
mod tests {
    use super::*;

    fn request(prompt: &str) -> AgentRequest {
        AgentRequest {
            prompt: prompt.into(),
            model: None,
            working_dir: "/work/repo".into(),
            resume_session: None,
            program: None,
            extra_args: Vec::new(),
            options: Vec::new(),
        }
    }

    #[test]
    fn builds_stream_json_with_the_prompt_joined_to_its_flag() {
        let invocation = build_invocation(&request("--version please")).unwrap();
        assert_eq!(invocation.program, "gemini");
        assert_eq!(
            invocation.args,
            [
                "--output-format",
                "stream-json",
                "--prompt=--version please"
            ]
        );
        assert_eq!(invocation.stdin.as_deref(), Some(""));
    }

    #[test]
    fn passes_model_resume_options_and_extra_args_in_order() {
        let mut req = request("go on");
        req.model = Some("gemini-2.5-pro".into());
        req.resume_session = Some("9ea39555-d63b-4283-b9da-0ec0cda51203".into());
        req.extra_args = vec!["--skip-trust".into()];
        req.options = vec![("yolo".into(), "true".into())];
        let invocation = build_invocation(&req).unwrap();
        assert_eq!(
            invocation.args,
            [
                "--output-format",
                "stream-json",
                "--model",
                "gemini-2.5-pro",
                "--resume",
                "9ea39555-d63b-4283-b9da-0ec0cda51203",
                "--yolo",
                "--skip-trust",
                "--prompt=go on",
            ]
        );
    }

    #[test]
    fn refuses_an_empty_prompt_and_a_wrong_option_type() {
        assert!(
            build_invocation(&request(" "))
                .unwrap_err()
                .contains("prompt is empty")
        );
        let mut req = request("go");
        req.options = vec![("yolo".into(), "\"yes\"".into())];
        let err = build_invocation(&req).unwrap_err();
        assert!(err.contains("`yolo` must be true or false"), "{err}");
    }

    #[test]
    fn describes_itself_with_a_json_schema() {
        let info = plugin_info();
        assert_eq!(info.name, "gemini");
        let schema: serde_json::Value = serde_json::from_str(&info.config_schema).unwrap();
        assert_eq!(schema["additionalProperties"], false);
    }
}
