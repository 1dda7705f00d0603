"""`{{name}}`: a script (a plain `wasi:cli/command`). It sees only the
directories and variables `runner.toml` grants it."""

from wit_world import exports
from wit_world.imports import environment


class Run(exports.Run):
    def run(self) -> None:
        # The module's top level runs at build time: read the arguments of
        # this run from WASI, not from sys.argv.
        args = environment.get_arguments()[1:]
        who = args[0] if args else "world"
        print(f"hello, {who}", flush=True)
