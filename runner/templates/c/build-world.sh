#!/bin/sh
# Builds {{name}}.wasm here. Needs clang-19, lld-19, wasi-libc (Debian),
# wit-bindgen and wasm-tools; the WASI adapter is in this folder.
set -eu
cd "$(dirname "$0")"
mkdir -p gen
# gen/{{c_world}}.h, gen/{{c_world}}.c and gen/{{c_world}}_component_type.o
wit-bindgen c wit/plugin.wit --world {{world}} --out-dir gen
clang-19 --target=wasm32-wasi --sysroot=/usr -O2 -fuse-ld=lld -mexec-model=reactor \
  -I gen -o gen/core.wasm plugin.c gen/{{c_world}}.c gen/{{c_world}}_component_type.o
wasm-tools component new gen/core.wasm \
  --adapt wasi_snapshot_preview1=wasi_snapshot_preview1.reactor.wasm -o {{name}}.wasm
