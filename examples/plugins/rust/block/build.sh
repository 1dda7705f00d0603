#!/bin/sh
# Builds greet.wasm: ./build.sh [OUT.wasm] (default: greet.wasm here).
# Needs the wasm32-wasip2 target: rustup target add wasm32-wasip2
# CARGO_TARGET_DIR picks where cargo builds (default: ../target).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
target=${CARGO_TARGET_DIR:-$here/../target}
cargo build --release --target wasm32-wasip2 --manifest-path "$here/../Cargo.toml" \
  -p greet --target-dir "$target"
cp "$target/wasm32-wasip2/release/greet.wasm" "${1:-$here/greet.wasm}"
