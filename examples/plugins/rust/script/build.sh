#!/bin/sh
# Builds linecount.wasm: ./build.sh [OUT.wasm] (default: linecount.wasm here).
# Needs the wasm32-wasip2 target: rustup target add wasm32-wasip2
# CARGO_TARGET_DIR picks where cargo builds (default: ../target).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
target=${CARGO_TARGET_DIR:-$here/../target}
cargo build --release --target wasm32-wasip2 --manifest-path "$here/../Cargo.toml" \
  -p linecount --target-dir "$target"
cp "$target/wasm32-wasip2/release/linecount.wasm" "${1:-$here/linecount.wasm}"
