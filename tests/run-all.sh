#!/usr/bin/env bash
# Runs every moegrow test: the workspace's unit and integration tests, then the wasm32 build of
# the crates that run in the browser. On Debian/Ubuntu it installs what is missing; elsewhere it
# names what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

missing() { echo "missing: $1" >&2; echo "  install it with: $2" >&2; exit 1; }

command -v cargo >/dev/null || missing "the Rust toolchain (cargo)" "https://rustup.rs, then re-run"
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  # A C compiler for the -sys crates; nothing else is needed yet.
  command -v cc >/dev/null || { apt-get update -qq && apt-get install -y -qq build-essential pkg-config; }
fi
command -v cc >/dev/null || missing "a C compiler (cc)" "your system's build-essential / Xcode command-line tools"
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  command -v rustup >/dev/null || missing "rustup (for the wasm32-unknown-unknown target)" "https://rustup.rs"
  rustup target add wasm32-unknown-unknown
fi

echo "== cargo test (workspace)"
cargo test --workspace --locked
echo "== wasm32 build (core and web must run in the browser)"
cargo build --locked -p moegrow-core -p moegrow-web --target wasm32-unknown-unknown
echo "all moegrow tests passed"
