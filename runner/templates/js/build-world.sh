#!/bin/sh
# Builds {{name}}.wasm here. Needs `npm install` here first (jco and
# componentize-js); JCO may name another jco.
set -eu
cd "$(dirname "$0")"
jco=${JCO:-./node_modules/.bin/jco}
"$jco" componentize plugin.js --wit wit/plugin.wit --world-name {{world}} \
  --disable all --out {{name}}.wasm
