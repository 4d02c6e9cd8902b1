#!/usr/bin/env bash
# The test command: formatting, lints (native and wasm32), the wasm32 build of
# the library, and every test (kernels against the reference on lavapipe,
# training, CLI). Installs what it needs first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo clippy --lib --locked --target wasm32-unknown-unknown -- -D warnings
cargo test --locked
