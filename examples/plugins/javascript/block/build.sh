#!/bin/sh
# Builds greet.wasm: ./build.sh [OUT.wasm] (default: greet.wasm here).
# Needs `npm install` in examples/plugins/javascript first (jco, componentize-js).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
"$here/../node_modules/.bin/jco" componentize "$here/greet.js" \
  --wit "$here/../../../../wit/plugin.wit" --world-name block-plugin \
  --disable all --out "${1:-$here/greet.wasm}"
