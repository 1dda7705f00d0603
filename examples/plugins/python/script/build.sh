#!/bin/sh
# Builds linecount.wasm: ./build.sh [OUT.wasm] (default: linecount.wasm here).
# Needs componentize-py: pip install "componentize-py==0.25.*"
set -eu
here=$(cd "$(dirname "$0")" && pwd)
componentize-py -d "$here/wit" -w linecount \
  componentize app -p "$here" -o "${1:-$here/linecount.wasm}"
