"""`{{name}}`: an agent adapter (world `agent-plugin` of runner:plugin@0.2.0)
for a CLI that takes the prompt as its last argument and prints text. The
host runs the CLI; the adapter builds its command line and reads its lines."""

from typing import List, Optional

from wit_world import exports
from wit_world.exports import agent_adapter as a
from wit_world.imports.types import PluginInfo

# One instance lives for one execution: the last line the CLI printed.
last: Optional[str] = None


class AgentAdapter(exports.AgentAdapter):
    def describe(self) -> PluginInfo:
        return PluginInfo(
            name="{{name}}", version="0.1.0", description="An agent adapter", config_schema="{}"
        )

    def start(self, request: a.AgentRequest) -> a.Invocation:
        return a.Invocation(
            program=request.program or "{{name}}-cli",
            args=list(request.extra_args) + [request.prompt],
            env=[],
            stdin=None,
        )

    def parse_line(self, source: a.OutputStream, line: str) -> List[a.AgentEvent]:
        global last
        if source == a.OutputStream.STDERR:
            return [a.AgentEvent_Raw(line)]
        last = line
        return [a.AgentEvent_AssistantMessage(line)]

    def finish(self, exit_code: Optional[int]) -> a.Outcome:
        ok = exit_code == 0
        error = None if ok else f"the CLI exited with {exit_code}"
        return a.Outcome(success=ok, summary=last, error=error, session_id=None)
