#!/bin/sh
# Builds jsonl.wasm: ./build.sh [OUT.wasm] (default: jsonl.wasm here).
# Needs componentize-py: pip install "componentize-py==0.25.*"
set -eu
here=$(cd "$(dirname "$0")" && pwd)
componentize-py -d "$here/../../../../wit/plugin.wit" -w agent-plugin \
  componentize app -p "$here" -o "${1:-$here/jsonl.wasm}"
