"""`jsonl`: an agent adapter in Python (world `agent-plugin` of runner:plugin@0.2.0).

A generic adapter for any coding-agent CLI that prints one JSON object per
line on stdout. It understands these lines (anything else is kept as a raw
log line):

    {"type": "session", "id": "..."}                     the session, for resuming
    {"type": "message", "text": "..."}                   the assistant speaks
    {"type": "thinking", "text": "..."}
    {"type": "tool", "name": "...", "input": {...}, "id": "..."}
    {"type": "tool_result", "id": "...", "output": "...", "error": false}
    {"type": "file", "path": "...", "kind": "add" | "update" | "delete"}
    {"type": "command", "command": "...", "exit_code": 0}
    {"type": "usage", "input_tokens": 1, "output_tokens": 2, "cached_tokens": 0}
    {"type": "error", "message": "..."}
    {"type": "result", "text": "...", "error": false}    the final summary

The command line is `PROGRAM [EXTRA ARGS] [--model M] [--resume S] PROMPT`,
PROGRAM being the agent's `command` (default `agent-cli`). Options:
`prompt_via_stdin = true` writes the prompt to standard input instead, and
`model_flag` / `resume_flag` rename the two flags.
"""

import json
from typing import List, Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import agent_adapter as a
from wit_world.imports.types import PluginInfo

# One instance lives for one execution: module state is per execution.
session: Optional[str] = None
result: Optional[a.FinalResult] = None
errors: List[str] = []


class AgentAdapter(exports.AgentAdapter):
    def describe(self) -> PluginInfo:
        return PluginInfo(
            name="jsonl",
            version="0.1.0",
            description="Drives any agent CLI that prints JSON lines (an adapter in Python)",
            config_schema=json.dumps(
                {
                    "type": "object",
                    "properties": {
                        "prompt_via_stdin": {"type": "boolean"},
                        "model_flag": {"type": "string"},
                        "resume_flag": {"type": "string"},
                    },
                }
            ),
        )

    def start(self, request: a.AgentRequest) -> a.Invocation:
        if not request.prompt.strip():
            raise Err("the prompt is empty")
        options = {key: json.loads(value) for key, value in request.options}
        unknown = sorted(set(options) - {"prompt_via_stdin", "model_flag", "resume_flag"})
        if unknown:
            raise Err(f"unknown option `{unknown[0]}` (known: prompt_via_stdin, model_flag, resume_flag)")
        args = list(request.extra_args)
        if request.model:
            args += [options.get("model_flag", "--model"), request.model]
        if request.resume_session:
            args += [options.get("resume_flag", "--resume"), request.resume_session]
        stdin = None
        if options.get("prompt_via_stdin"):
            stdin = request.prompt
        else:
            args.append(request.prompt)
        return a.Invocation(
            program=request.program or "agent-cli", args=args, env=[], stdin=stdin
        )

    def parse_line(self, source: a.OutputStream, line: str) -> List[a.AgentEvent]:
        global session, result
        if source == a.OutputStream.STDERR or not line.strip():
            return [a.AgentEvent_Raw(line)] if line.strip() else []
        try:
            event = json.loads(line)
        except ValueError:
            return [a.AgentEvent_Raw(line)]
        if not isinstance(event, dict):
            return [a.AgentEvent_Raw(line)]
        kind = event.get("type")
        if kind == "session" and isinstance(event.get("id"), str):
            session = event["id"]
            return [a.AgentEvent_SessionStarted(session)]
        if kind == "message":
            return [a.AgentEvent_AssistantMessage(str(event.get("text", "")))]
        if kind == "thinking":
            return [a.AgentEvent_Thinking(str(event.get("text", "")))]
        if kind == "tool":
            tool = a.ToolUse(
                id=event.get("id"),
                name=str(event.get("name", "?")),
                input=json.dumps(event.get("input", {})),
            )
            return [a.AgentEvent_ToolUse(tool)]
        if kind == "tool_result":
            done = a.ToolResult(
                id=event.get("id"),
                output=str(event.get("output", "")),
                is_error=bool(event.get("error", False)),
            )
            return [a.AgentEvent_ToolResult(done)]
        if kind == "file":
            change = CHANGE_KINDS.get(event.get("kind"), a.ChangeKind.UNKNOWN)
            return [a.AgentEvent_FileChange(a.FileChange(path=str(event.get("path", "")), kind=change))]
        if kind == "command":
            run = a.CommandRun(
                command=str(event.get("command", "")),
                exit_code=event.get("exit_code"),
                output=event.get("output"),
            )
            return [a.AgentEvent_CommandRun(run)]
        if kind == "usage":
            usage = a.Usage(
                input_tokens=int(event.get("input_tokens", 0)),
                output_tokens=int(event.get("output_tokens", 0)),
                cached_tokens=int(event.get("cached_tokens", 0)),
                cost_usd=event.get("cost_usd"),
            )
            return [a.AgentEvent_Usage(usage)]
        if kind == "error":
            errors.append(str(event.get("message", "")))
            return [a.AgentEvent_Error(errors[-1])]
        if kind == "result":
            result = a.FinalResult(
                summary=str(event.get("text", "")), is_error=bool(event.get("error", False))
            )
            return [a.AgentEvent_FinalResult(result)]
        return [a.AgentEvent_Raw(line)]

    def finish(self, exit_code: Optional[int]) -> a.Outcome:
        summary = result.summary if result else None
        if exit_code != 0:
            how = "was killed" if exit_code is None else f"exited with code {exit_code}"
            error = errors[-1] if errors else f"the agent CLI {how}"
            return a.Outcome(success=False, summary=summary, error=error, session_id=session)
        if result is None:
            return a.Outcome(
                success=False, summary=None, error="the agent CLI printed no result line", session_id=session
            )
        error = summary if result.is_error else None
        return a.Outcome(success=not result.is_error, summary=summary, error=error, session_id=session)


CHANGE_KINDS = {
    "add": a.ChangeKind.ADD,
    "update": a.ChangeKind.UPDATE,
    "delete": a.ChangeKind.DELETE,
}
