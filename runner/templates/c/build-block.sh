#!/bin/sh
# Builds {{name}}.wasm here. Needs clang-19, lld-19, wasi-libc (Debian),
# wit-bindgen and wasm-tools; the WASI adapter is in this folder.
set -eu
cd "$(dirname "$0")"
mkdir -p gen
wit-bindgen c wit/plugin.wit --world block-plugin --out-dir gen
clang-19 --target=wasm32-wasi --sysroot=/usr -O2 -fuse-ld=lld -mexec-model=reactor \
  -I gen -o gen/core.wasm plugin.c gen/block_plugin.c gen/block_plugin_component_type.o
wasm-tools component new gen/core.wasm \
  --adapt wasi_snapshot_preview1=wasi_snapshot_preview1.reactor.wasm -o {{name}}.wasm
