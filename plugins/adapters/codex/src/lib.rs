//! `codex`: the agent adapter for the OpenAI Codex CLI.
//!
//! ## Invocation
//! `codex exec --json [--model M] <option flags> <extra-args> [resume SESSION] -- <prompt>`;
//! `request.program` replaces `codex`. The exec options come before the
//! `resume` subcommand and the prompt after `--`, as in the codex launcher of
//! jamesmurdza/background-agents (see `shared/fixtures/agents/SOURCES.md`).
//! Standard input is empty and closed: given a prompt, `codex exec` still
//! reads piped input ("Reading additional input from stdin...") until EOF.
//!
//! ## Options (`[tasks.x.options]` in `runner.toml`)
//! | key | JSON value | flag |
//! |---|---|---|
//! | `sandbox` | `"read-only"`, `"workspace-write"` or `"danger-full-access"` | `--sandbox <mode>` |
//! | `full_auto` | bool | `--full-auto` |
//! | `bypass_sandbox` | bool | `--dangerously-bypass-approvals-and-sandbox` |
//! | `skip_git_repo_check` | bool | `--skip-git-repo-check` |
//! | `reasoning_effort` | `"minimal"`, `"low"`, `"medium"` or `"high"` | `-c model_reasoning_effort=<e>` |
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

use crate::parse::CodexParser;
use crate::support::{Options, check_request, env_schema, parse_options};

const AGENT: &str = "codex";

const OPTION_KEYS: &[&str] = &[
    "sandbox",
    "full_auto",
    "bypass_sandbox",
    "skip_git_repo_check",
    "reasoning_effort",
    "env",
];

const SANDBOX_MODES: &[&str] = &["read-only", "workspace-write", "danger-full-access"];
const REASONING_EFFORTS: &[&str] = &["minimal", "low", "medium", "high"];

/// The adapter's description, including the JSON Schema of its options.
pub fn plugin_info() -> PluginInfo {
    PluginInfo {
        name: AGENT.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "Runs the OpenAI Codex CLI (`codex exec --json`) and reads its event stream".into(),
        config_schema: json!({
            "type": "object",
            "properties": {
                "sandbox": { "enum": SANDBOX_MODES, "description": "--sandbox" },
                "full_auto": { "type": "boolean", "description": "--full-auto" },
                "bypass_sandbox": {
                    "type": "boolean",
                    "description": "--dangerously-bypass-approvals-and-sandbox"
                },
                "skip_git_repo_check": { "type": "boolean", "description": "--skip-git-repo-check" },
                "reasoning_effort": {
                    "enum": REASONING_EFFORTS,
                    "description": "-c model_reasoning_effort=<effort>"
                },
                "env": env_schema()
            },
            "additionalProperties": false
        })
        .to_string(),
    }
}

/// Checks the request and builds the `codex exec` command line.
pub fn build_invocation(request: &AgentRequest) -> Result<Invocation, String> {
    check_request(AGENT, request)?;
    let options = Options {
        agent: AGENT,
        values: parse_options(AGENT, &request.options, OPTION_KEYS)?,
    };

    let mut args: Vec<String> = vec!["exec".into(), "--json".into()];
    if let Some(model) = &request.model {
        args.extend(["--model".into(), model.clone()]);
    }
    if let Some(mode) = options.string("sandbox")? {
        if !SANDBOX_MODES.contains(&mode.as_str()) {
            return Err(format!(
                "codex: option `sandbox` must be one of {}, got \"{mode}\"",
                SANDBOX_MODES.join(", ")
            ));
        }
        args.extend(["--sandbox".into(), mode]);
    }
    for (key, flag) in [
        ("full_auto", "--full-auto"),
        (
            "bypass_sandbox",
            "--dangerously-bypass-approvals-and-sandbox",
        ),
        ("skip_git_repo_check", "--skip-git-repo-check"),
    ] {
        if options.flag(key)? {
            args.push(flag.into());
        }
    }
    if let Some(effort) = options.string("reasoning_effort")? {
        if !REASONING_EFFORTS.contains(&effort.as_str()) {
            return Err(format!(
                "codex: option `reasoning_effort` must be one of {}, got \"{effort}\"",
                REASONING_EFFORTS.join(", ")
            ));
        }
        args.extend(["-c".into(), format!("model_reasoning_effort={effort}")]);
    }
    args.extend(request.extra_args.iter().cloned());
    if let Some(session) = &request.resume_session {
        args.extend(["resume".into(), session.clone()]);
    }
    args.extend(["--".into(), request.prompt.clone()]);

    Ok(Invocation {
        program: request.program.clone().unwrap_or_else(|| AGENT.into()),
        args,
        env: options.env()?,
        stdin: Some(String::new()),
    })
}

thread_local! {
    /// One instance serves one execution, so one parser per instance.
    static PARSER: RefCell<CodexParser> = RefCell::new(CodexParser::default());
}

/// The exported component. Its functions hold no logic of their own, so the
/// native tests drive [`build_invocation`] and [`CodexParser`] directly.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct CodexAdapter;

impl Guest for CodexAdapter {
    fn describe() -> PluginInfo {
        plugin_info()
    }

    fn start(request: AgentRequest) -> Result<Invocation, String> {
        let invocation = build_invocation(&request)?;
        PARSER.with(|parser| *parser.borrow_mut() = CodexParser::default());
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
runner_plugin_sdk::export_agent_adapter!(CodexAdapter);

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
    fn builds_exec_json_with_the_prompt_after_a_double_dash() {
        let invocation = build_invocation(&request("list files")).unwrap();
        assert_eq!(invocation.program, "codex");
        assert_eq!(invocation.args, ["exec", "--json", "--", "list files"]);
        assert_eq!(invocation.stdin.as_deref(), Some(""));
    }

    #[test]
    fn resumes_with_the_exec_options_before_the_resume_subcommand() {
        let mut req = request("continue");
        req.model = Some("gpt-5".into());
        req.resume_session = Some("019d53c0-4d8a-7ff2-9600-63d8e0673623".into());
        req.extra_args = vec!["--skip-git-repo-check".into()];
        req.options = vec![
            ("sandbox".into(), "\"workspace-write\"".into()),
            ("reasoning_effort".into(), "\"high\"".into()),
        ];
        let invocation = build_invocation(&req).unwrap();
        assert_eq!(
            invocation.args,
            [
                "exec",
                "--json",
                "--model",
                "gpt-5",
                "--sandbox",
                "workspace-write",
                "-c",
                "model_reasoning_effort=high",
                "--skip-git-repo-check",
                "resume",
                "019d53c0-4d8a-7ff2-9600-63d8e0673623",
                "--",
                "continue",
            ]
        );
    }

    #[test]
    fn refuses_an_empty_prompt_and_an_unknown_sandbox_mode() {
        assert!(
            build_invocation(&request(""))
                .unwrap_err()
                .contains("prompt is empty")
        );
        let mut req = request("go");
        req.options = vec![("sandbox".into(), "\"wide-open\"".into())];
        let err = build_invocation(&req).unwrap_err();
        assert!(err.contains("`sandbox` must be one of"), "{err}");
    }

    #[test]
    fn describes_itself_with_a_json_schema() {
        let info = plugin_info();
        assert_eq!(info.name, "codex");
        let schema: serde_json::Value = serde_json::from_str(&info.config_schema).unwrap();
        assert_eq!(schema["additionalProperties"], false);
    }
}
