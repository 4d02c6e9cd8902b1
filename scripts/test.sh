#!/usr/bin/env bash
# The test command: formatting, lints (native and wasm32), every native test
# (kernels against the reference on lavapipe, MFR, training, loaders, CLI), the
# same kernels and training in a real browser (wasm-bindgen-test in headless
# Chromium), and the page end to end (Playwright). Installs what it needs
# first (scripts/setup.sh, Chromium, wasm-bindgen-cli), skipping what is there.
# The page tests' screenshots are kept in target/artifacts/ (desktop.png and
# phone.png: the first screen at 1440×900 and 390×844; page.png, eeg.png).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
apt_install chromium chromium-driver

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo clippy --lib --locked --target wasm32-unknown-unknown -- -D warnings
cargo test --locked

# The browser: build the page (installs wasm-bindgen-cli and the npm packages
# if missing), run the kernel/training tests in Chromium, then the page test.
bash scripts/web.sh build
# wasm-bindgen-test-runner gives the whole file 20 s by default; SwiftShader on a busy
# 2-core machine needed more for the four tests (the stacked one was cut off at 20 s).
WASM_BINDGEN_TEST_TIMEOUT=300 CHROMEDRIVER=/usr/bin/chromedriver \
    cargo test --locked --target wasm32-unknown-unknown --test web
ARTIFACTS_DIR="$PWD/target/artifacts" node --test tests/e2e/
