#!/bin/sh
# Builds greet.wasm: ./build.sh [OUT.wasm] (default: greet.wasm here).
# Needs componentize-py: pip install "componentize-py==0.25.*"
set -eu
here=$(cd "$(dirname "$0")" && pwd)
componentize-py -d "$here/../../../../wit/plugin.wit" -w block-plugin \
  componentize app -p "$here" -o "${1:-$here/greet.wasm}"
