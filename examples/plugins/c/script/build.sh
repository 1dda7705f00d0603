#!/bin/sh
# Builds linecount.wasm: ./build.sh [OUT.wasm] (default: linecount.wasm here).
# Needs clang-19, lld-19, wasi-libc (Debian), wasm-tools, and WASI's preview1
# command adapter in $WASI_ADAPTER_COMMAND (see ../README.md).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/linecount.wasm}
adapter=${WASI_ADAPTER_COMMAND:?set WASI_ADAPTER_COMMAND to wasi_snapshot_preview1.command.wasm (see ../README.md)}
core=$(mktemp --suffix=.wasm)
trap 'rm -f "$core"' EXIT
clang-19 --target=wasm32-wasi --sysroot=/usr -O2 -fuse-ld=lld \
  -o "$core" "$here/linecount.c"
wasm-tools component new "$core" --adapt "wasi_snapshot_preview1=$adapter" -o "$out"
