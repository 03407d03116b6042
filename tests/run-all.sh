#!/usr/bin/env bash
# Runs every moegrow test: the workspace's unit and integration tests (GPU kernels included, on
# whatever Vulkan/Metal/DX12 adapter the machine has; Mesa's software Vulkan, lavapipe, where
# there is no GPU), then the browser explorer: its wasm tests and an end-to-end run of the built
# app in headless Chromium (WebGPU on SwiftShader). On Debian/Ubuntu it installs what is
# missing; elsewhere it names what to install.
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
  # The browser tests: Debian's Chromium and its WebDriver, Node for playwright-core.
  command -v chromium >/dev/null || pkgs+=(chromium)
  command -v chromedriver >/dev/null || pkgs+=(chromium-driver)
  command -v npm >/dev/null || pkgs+=(nodejs npm)
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

for tool in chromium chromedriver npm; do
  command -v $tool >/dev/null || missing "$tool (the browser tests drive headless Chromium)" "apt-get install chromium chromium-driver nodejs npm (Debian/Ubuntu), or your distribution's packages"
done
# wasm-bindgen's CLI must equal the wasm-bindgen crate's version exactly (Cargo.lock pins it);
# trunk builds the app. Installed once per machine (~10 min), then found on PATH.
export PATH="$HOME/.cargo/bin:$PATH"
bindgen_version=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
if [ "$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$bindgen_version" ]; then
  cargo install wasm-bindgen-cli --version "$bindgen_version"
fi
if ! trunk --version 2>/dev/null | grep -q '^trunk 0\.21\.'; then
  cargo install trunk --version '~0.21' --locked
fi

echo "== cargo test (workspace)"
cargo test --workspace --locked
echo "== wasm tests in headless Chromium (Blob reads, WGSL on WebGPU against the CPU)"
(
  cd web
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
    CHROMEDRIVER="$(command -v chromedriver)" \
    cargo test --locked -p moegrow-web --target wasm32-unknown-unknown
)
echo "== browser explorer: trunk build, then the end-to-end test in headless Chromium"
(cd web && trunk build --release)
# An absolute path: node runs in tests/browser/, where a relative target/ would not resolve.
REPO_TARGET=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)
(cd tests/browser && npm ci --no-audit --no-fund --silent && MOEGROW_BIN="$REPO_TARGET/debug/moegrow" node e2e.mjs)
echo "all moegrow tests passed"
