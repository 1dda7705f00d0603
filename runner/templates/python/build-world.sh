#!/bin/sh
# Builds {{name}}.wasm here. Needs: pip install "componentize-py==0.25.*"
set -eu
cd "$(dirname "$0")"
componentize-py -d wit/plugin.wit -w {{world}} componentize app -o {{name}}.wasm
