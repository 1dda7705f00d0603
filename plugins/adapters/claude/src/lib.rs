//! `claude`: the agent adapter for Claude Code.
//!
//! ## Invocation
//! `claude -p --output-format stream-json --verbose [--model M] [--resume SESSION]
//! <option flags> <extra-args> -- <prompt>`; `request.program` replaces `claude`.
//! The prompt goes after `--` so that a prompt starting with `-` is not read as a flag.
//!
//! ## Options (`[tasks.x.options]` in `runner.toml`)
//! | key | JSON value | flag |
//! |---|---|---|
//! | `permission_mode` | string | `--permission-mode <mode>` |
//! | `skip_permissions` | bool | `--dangerously-skip-permissions` |
//! | `max_turns` | positive integer | `--max-turns <n>` |
//! | `allowed_tools` | string or list | `--allowedTools <a,b>` |
//! | `disallowed_tools` | string or list | `--disallowedTools <a,b>` |
//! | `append_system_prompt` | string | `--append-system-prompt <text>` |
//! | `env` | table of strings | set in the CLI's environment |
//! | `permission_prompts` | bool | `--input-format stream-json --permission-prompt-tool stdio`: see below |
//!
//! Any other key refuses the request. `working_dir` is not passed: the host
//! starts the CLI in it. Standard input is empty and closed, so the CLI never
//! waits for piped input.
//!
//! ## Permission prompts
//! With `permission_prompts = true` the prompt is not an argument: it is
//! written on standard input as a stream-json `user` message, and standard
//! input stays open. Claude Code then asks before it uses a tool its
//! permission mode does not allow (a `control_request` of subtype
//! `can_use_tool` on stdout); [`prompts`] recognises those lines and writes
//! the `control_response` that answers one (the `approvals` interface). It
//! cannot be combined with `skip_permissions`.
//!
//! ## Output
//! [`parse::ClaudeParser`] turns the `stream-json` lines into agent events; see
//! its docs for how each line type maps.

pub mod parse;
pub mod prompts;
pub use runner_plugin_sdk::adapter_support as support;

use std::cell::RefCell;

use runner_plugin_sdk::agent::{
    AgentEvent, AgentRequest, Guest, Invocation, Outcome, OutputStream, PluginInfo,
};
use serde_json::json;

use crate::parse::ClaudeParser;
use crate::support::{Options, check_request, env_schema, parse_options};

const AGENT: &str = "claude";

const OPTION_KEYS: &[&str] = &[
    "permission_mode",
    "skip_permissions",
    "max_turns",
    "allowed_tools",
    "disallowed_tools",
    "append_system_prompt",
    "env",
    "permission_prompts",
];

/// The adapter's description, including the JSON Schema of its options.
pub fn plugin_info() -> PluginInfo {
    PluginInfo {
        name: AGENT.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "Runs Claude Code (`claude -p --output-format stream-json`) and reads its event stream".into(),
        config_schema: json!({
            "type": "object",
            "properties": {
                "permission_mode": {
                    "type": "string",
                    "description": "--permission-mode, for example \"acceptEdits\" or \"bypassPermissions\""
                },
                "skip_permissions": {
                    "type": "boolean",
                    "description": "--dangerously-skip-permissions"
                },
                "max_turns": { "type": "integer", "minimum": 1, "description": "--max-turns" },
                "allowed_tools": {
                    "type": ["string", "array"], "items": { "type": "string" },
                    "description": "--allowedTools, for example [\"Read\", \"Bash(git diff:*)\"]"
                },
                "disallowed_tools": {
                    "type": ["string", "array"], "items": { "type": "string" },
                    "description": "--disallowedTools"
                },
                "append_system_prompt": { "type": "string", "description": "--append-system-prompt" },
                "permission_prompts": {
                    "type": "boolean",
                    "description": "ask before using a tool the permission mode does not allow; the runner relays each prompt (approval_requested) and writes the answer"
                },
                "env": env_schema()
            },
            "additionalProperties": false
        })
        .to_string(),
    }
}

/// Checks the request and builds the `claude` command line.
pub fn build_invocation(request: &AgentRequest) -> Result<Invocation, String> {
    check_request(AGENT, request)?;
    let options = Options {
        agent: AGENT,
        values: parse_options(AGENT, &request.options, OPTION_KEYS)?,
    };

    let mut args: Vec<String> = ["-p", "--output-format", "stream-json", "--verbose"]
        .map(String::from)
        .to_vec();
    if let Some(model) = &request.model {
        args.extend(["--model".into(), model.clone()]);
    }
    if let Some(session) = &request.resume_session {
        args.extend(["--resume".into(), session.clone()]);
    }
    if let Some(mode) = options.string("permission_mode")? {
        args.extend(["--permission-mode".into(), mode]);
    }
    let prompts = options.flag("permission_prompts")?;
    if options.flag("skip_permissions")? {
        if prompts {
            return Err(
                "`permission_prompts` and `skip_permissions` cannot both be set: with every permission skipped there is nothing to ask"
                    .into(),
            );
        }
        args.push("--dangerously-skip-permissions".into());
    }
    if prompts {
        args.extend(
            [
                "--input-format",
                "stream-json",
                "--permission-prompt-tool",
                "stdio",
            ]
            .map(String::from),
        );
    }
    if let Some(turns) = options.positive_integer("max_turns")? {
        args.extend(["--max-turns".into(), turns.to_string()]);
    }
    for (key, flag) in [
        ("allowed_tools", "--allowedTools"),
        ("disallowed_tools", "--disallowedTools"),
    ] {
        let tools = options.strings(key)?;
        if !tools.is_empty() {
            args.extend([flag.into(), tools.join(",")]);
        }
    }
    if let Some(prompt) = options.string("append_system_prompt")? {
        args.extend(["--append-system-prompt".into(), prompt]);
    }
    args.extend(request.extra_args.iter().cloned());
    if prompts {
        // The prompt is the first message on standard input, which the host
        // keeps open for the answers to permission prompts.
        return Ok(Invocation {
            program: request.program.clone().unwrap_or_else(|| AGENT.into()),
            args,
            env: options.env()?,
            stdin: Some(prompts::user_message(&request.prompt)),
        });
    }
    args.extend(["--".into(), request.prompt.clone()]);

    Ok(Invocation {
        program: request.program.clone().unwrap_or_else(|| AGENT.into()),
        args,
        env: options.env()?,
        // Closed at once: with a pipe left open `claude -p` waits for input.
        stdin: Some(String::new()),
    })
}

thread_local! {
    /// One instance serves one execution, so one parser per instance.
    static PARSER: RefCell<ClaudeParser> = RefCell::new(ClaudeParser::default());
}

/// The exported component. Its functions hold no logic of their own, so the
/// native tests drive [`build_invocation`] and [`ClaudeParser`] directly.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct ClaudeAdapter;

impl Guest for ClaudeAdapter {
    fn describe() -> PluginInfo {
        plugin_info()
    }

    fn start(request: AgentRequest) -> Result<Invocation, String> {
        let invocation = build_invocation(&request)?;
        PARSER.with(|parser| *parser.borrow_mut() = ClaudeParser::default());
        Ok(invocation)
    }

    fn parse_line(stream: OutputStream, line: String) -> Vec<AgentEvent> {
        PARSER.with(|parser| parser.borrow_mut().parse_line(stream, &line))
    }

    fn finish(exit_code: Option<i32>) -> Outcome {
        PARSER.with(|parser| parser.borrow().finish(exit_code))
    }
}

impl runner_plugin_sdk::approvals::Guest for ClaudeAdapter {
    fn asks_permission(options: Vec<(String, String)>) -> bool {
        prompts::asks_permission(&options)
    }

    fn recognise(line: String) -> Option<runner_plugin_sdk::approvals::ApprovalRequest> {
        prompts::recognise(&line)
    }

    fn answer(
        request: runner_plugin_sdk::approvals::ApprovalRequest,
        decision: runner_plugin_sdk::approvals::ApprovalDecision,
    ) -> String {
        prompts::answer(&request, &decision)
    }
}

// Exported only for wasm: the export names (`runner:plugin/agent-adapter@0.1.0#...`)
// do not link into a native `cdylib`, and the native build exists for tests.
#[cfg(target_arch = "wasm32")]
runner_plugin_sdk::export_agent_adapter!(ClaudeAdapter);
#[cfg(target_arch = "wasm32")]
runner_plugin_sdk::export_approvals!(ClaudeAdapter);

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
    fn builds_the_print_mode_command_line_with_the_prompt_after_a_double_dash() {
        let invocation = build_invocation(&request("-fix the bug")).unwrap();
        assert_eq!(invocation.program, "claude");
        assert_eq!(
            invocation.args,
            [
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--",
                "-fix the bug"
            ]
        );
        assert_eq!(invocation.stdin.as_deref(), Some(""));
    }

    #[test]
    fn passes_model_resume_options_and_extra_args_in_order() {
        let mut req = request("go");
        req.model = Some("sonnet".into());
        req.resume_session = Some("65206fb7-610c-417e-89cd-7590603606a1".into());
        req.program = Some("/opt/bin/claude".into());
        req.extra_args = vec!["--add-dir".into(), "/tmp".into()];
        req.options = vec![
            ("max_turns".into(), "5".into()),
            (
                "allowed_tools".into(),
                r#"["Read","Bash(git diff:*)"]"#.into(),
            ),
            ("skip_permissions".into(), "true".into()),
            ("env".into(), r#"{"CLAUDE_CONFIG_DIR":"/cfg"}"#.into()),
        ];
        let invocation = build_invocation(&req).unwrap();
        assert_eq!(invocation.program, "/opt/bin/claude");
        assert_eq!(
            invocation.args,
            [
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--model",
                "sonnet",
                "--resume",
                "65206fb7-610c-417e-89cd-7590603606a1",
                "--dangerously-skip-permissions",
                "--max-turns",
                "5",
                "--allowedTools",
                "Read,Bash(git diff:*)",
                "--add-dir",
                "/tmp",
                "--",
                "go",
            ]
        );
        assert_eq!(
            invocation.env,
            [("CLAUDE_CONFIG_DIR".to_string(), "/cfg".to_string())]
        );
    }

    #[test]
    fn refuses_an_empty_prompt_with_a_clear_message() {
        let err = build_invocation(&request("  \n")).unwrap_err();
        assert!(err.contains("prompt is empty"), "{err}");
    }

    #[test]
    fn refuses_a_session_id_that_reads_as_a_flag() {
        let mut req = request("go");
        req.resume_session = Some("--dangerously-skip-permissions".into());
        assert!(
            build_invocation(&req)
                .unwrap_err()
                .contains("not a session id")
        );
    }

    #[test]
    fn refuses_unknown_options() {
        let mut req = request("go");
        req.options = vec![("turbo".into(), "true".into())];
        let err = build_invocation(&req).unwrap_err();
        assert!(err.contains("unknown option `turbo`"), "{err}");
    }

    #[test]
    fn describes_itself_with_a_json_schema() {
        let info = plugin_info();
        assert_eq!(info.name, "claude");
        let schema: serde_json::Value = serde_json::from_str(&info.config_schema).unwrap();
        assert_eq!(schema["additionalProperties"], false);
    }
}
