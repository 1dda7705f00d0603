#!/bin/sh
# Builds greet.wasm: ./build.sh [OUT.wasm] (default: greet.wasm here).
# Needs clang-19, lld-19, wasi-libc (Debian), wit-bindgen, wasm-tools, and
# WASI's preview1 reactor adapter in $WASI_ADAPTER_REACTOR (see ../README.md).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/greet.wasm}
adapter=${WASI_ADAPTER_REACTOR:?set WASI_ADAPTER_REACTOR to wasi_snapshot_preview1.reactor.wasm (see ../README.md)}
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
# block_plugin.h, block_plugin.c and block_plugin_component_type.o
wit-bindgen c "$here/../../../../wit/plugin.wit" --world block-plugin --out-dir "$gen"
clang-19 --target=wasm32-wasi --sysroot=/usr -O2 -fuse-ld=lld -mexec-model=reactor \
  -I "$gen" -o "$gen/core.wasm" \
  "$here/greet.c" "$gen/block_plugin.c" "$gen/block_plugin_component_type.o"
wasm-tools component new "$gen/core.wasm" --adapt "wasi_snapshot_preview1=$adapter" -o "$out"
