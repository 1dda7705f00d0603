"""`{{name}}`: a block plugin (world `block-plugin` of runner:plugin@0.2.0)."""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import LogLevel, PluginInfo


class Block(exports.Block):
    def describe(self) -> PluginInfo:
        return PluginInfo(
            name="{{name}}", version="0.1.0", description="A block plugin", config_schema="{}"
        )

    def run(self, config: str, input: str) -> str:
        """`config` and `input` are JSON; the returned text is the task's
        output (JSON). Raising `Err(message)` fails the task."""
        who = json.loads(config).get("who", "world")
        if not isinstance(who, str):
            raise Err("`who` must be a string")
        host.progress(f"greeting {who}", 50)
        host.log(LogLevel.INFO, f"greeting {who}")
        return json.dumps({"greeting": f"hello, {who}"})
