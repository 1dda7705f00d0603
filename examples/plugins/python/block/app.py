"""`greet`: a block plugin in Python (world `block-plugin` of runner:plugin@0.2.0).

Config: `{"name": "..."}`. Output: `{"greeting", "language", "upstream"}`, where
`upstream` lists the ids of the tasks whose outputs reached this one.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import LogLevel, PluginInfo


class Block(exports.Block):
    def describe(self) -> PluginInfo:
        return PluginInfo(
            name="greet",
            version="0.1.0",
            description="Greets someone (a block plugin in Python)",
            config_schema=json.dumps(
                {
                    "type": "object",
                    "properties": {"name": {"type": "string"}},
                    "required": ["name"],
                }
            ),
        )

    def run(self, config: str, input: str) -> str:
        name = json.loads(config).get("name")
        if not isinstance(name, str) or not name:
            # Raising Err fails the task with this message.
            raise Err("config needs `name` (a non-empty string)")
        host.progress(f"greeting {name}", 50)
        host.log(LogLevel.INFO, f"greeting {name}")
        upstream = sorted(json.loads(input).get("outputs", {}))
        return json.dumps(
            {"greeting": f"hello, {name}", "language": "python", "upstream": upstream}
        )
