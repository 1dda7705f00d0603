#!/bin/sh
# Builds {{name}}.wasm here. Needs clang-19, lld-19, wasi-libc (Debian) and
# wasm-tools; the WASI adapter is in this folder.
set -eu
cd "$(dirname "$0")"
mkdir -p gen
clang-19 --target=wasm32-wasi --sysroot=/usr -O2 -fuse-ld=lld -o gen/core.wasm plugin.c
wasm-tools component new gen/core.wasm \
  --adapt wasi_snapshot_preview1=wasi_snapshot_preview1.command.wasm -o {{name}}.wasm
