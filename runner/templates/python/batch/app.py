"""`{{name}}`: a batch type (world `batch-plugin` of runner:plugin@0.2.0):
runs the declared tasks in order and completes when all of them did."""

import json
from typing import List

from wit_world import exports
from wit_world.exports import batch as b
from wit_world.imports.types import PluginInfo


class Batch(exports.Batch):
    def describe(self) -> PluginInfo:
        return PluginInfo(
            name="{{name}}", version="0.1.0", description="A batch type", config_schema="{}"
        )

    def expand(self, spec: str, tasks: List[b.TaskSpec]) -> b.Expansion:
        return b.Expansion(mode=b.ExecutionMode.SEQUENTIAL, fail_fast=True, tasks=tasks)

    def reduce(self, spec: str, results: List[b.TaskResult]) -> b.BatchOutcome:
        done = sum(1 for r in results if r.state == b.TaskState.COMPLETED)
        completed = done == len(results)
        return b.BatchOutcome(
            completed=completed,
            summary=f"{done} of {len(results)} tasks completed",
            error=None if completed else "a task did not complete",
            output=json.dumps({"completed": done}),
        )
