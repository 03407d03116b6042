#!/usr/bin/env bash
# Runs every moegrow test: the workspace's unit and integration tests (GPU kernels included, on
# whatever Vulkan/Metal/DX12 adapter the machine has; Mesa's software Vulkan, lavapipe, where
# there is no GPU), then the wasm32 build of the crates that run in the browser. On
# Debian/Ubuntu it installs what is missing; elsewhere it names what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

missing() { echo "missing: $1" >&2; echo "  install it with: $2" >&2; exit 1; }

command -v cargo >/dev/null || missing "the Rust toolchain (cargo)" "https://rustup.rs, then re-run"
have_vulkan() {
  local icds
  icds=$(find /usr/share/vulkan/icd.d /etc/vulkan/icd.d -name '*.json' 2>/dev/null | head -n 1)
  # Not `ldconfig -p | grep -q`: grep stopping early kills ldconfig with SIGPIPE, which
  # pipefail turns into a false "missing".
  local libs
  libs=$(ldconfig -p 2>/dev/null || true)
  [ -n "$icds" ] && [[ "$libs" == *libvulkan.so.1* ]]
}
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  pkgs=()
  command -v cc >/dev/null || pkgs+=(build-essential pkg-config)
  # wgpu needs a Vulkan loader and a driver; Mesa's lavapipe runs our WGSL on the CPU.
  have_vulkan || pkgs+=(mesa-vulkan-drivers libvulkan1)
  if [ ${#pkgs[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"
  fi
fi
command -v cc >/dev/null || missing "a C compiler (cc)" "your system's build-essential / Xcode command-line tools"
if [ "$(uname)" = Linux ] && ! have_vulkan; then
  missing "a Vulkan driver (the GPU tests run on it; without a GPU, Mesa's lavapipe)" "apt-get install mesa-vulkan-drivers libvulkan1 (Debian/Ubuntu), or your distribution's mesa Vulkan package"
fi
# Mesa wants a private runtime directory; without one it prints harmless but noisy warnings.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "${XDG_RUNTIME_DIR}" ]; then
  export XDG_RUNTIME_DIR
  XDG_RUNTIME_DIR=$(mktemp -d)
  chmod 700 "$XDG_RUNTIME_DIR"
fi
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  command -v rustup >/dev/null || missing "rustup (for the wasm32-unknown-unknown target)" "https://rustup.rs"
  rustup target add wasm32-unknown-unknown
fi

# The built-in training corpus is the toolchain's documentation books.
if ! [ -d "$(rustc --print sysroot)/share/doc/rust/html/book" ]; then
  command -v rustup >/dev/null || missing "the Rust documentation (the default training corpus)" "your toolchain's rust-docs package"
  rustup component add rust-docs
fi

echo "== cargo test (workspace)"
cargo test --workspace --locked
echo "== wasm32 build (core and web must run in the browser)"
cargo build --locked -p moegrow-core -p moegrow-web --target wasm32-unknown-unknown
echo "all moegrow tests passed"
