"""`linecount PATH...`: a script in Python (a plain `wasi:cli/command`).

Prints `PATH: N lines` per file, then a JSON summary as its last line:
`{"files", "lines", "env"}`, `env` being the names of the variables it sees.
A file it cannot read (outside its granted directories, say) is an error:
`cannot read PATH: ...` on stderr and exit code 1.
"""

import json
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import environment


def linecount(paths: list[str], variables: list[str]) -> bool:
    if not paths:
        print("usage: linecount PATH...", file=sys.stderr)
        return False
    total = 0
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as file:
                lines = sum(1 for _ in file)
        except OSError as err:
            print(f"cannot read {path}: {err.strerror or err}", file=sys.stderr)
            return False
        print(f"{path}: {lines} lines")
        total += lines
    print(json.dumps({"files": len(paths), "lines": total, "env": sorted(variables)}))
    return True


class Run(exports.Run):
    def run(self) -> None:
        # componentize-py runs the module's top level at build time, so the
        # arguments and variables of this run come from WASI, not sys.argv.
        args = environment.get_arguments()[1:]
        variables = [name for name, _ in environment.get_environment()]
        ok = linecount(args, variables)
        sys.stdout.flush()
        sys.stderr.flush()
        if not ok:
            # WASI 0.2 carries only success or failure.
            raise Err(None)
