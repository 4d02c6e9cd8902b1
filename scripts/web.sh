#!/usr/bin/env bash
# The browser demo. `scripts/web.sh` builds the wasm and serves web/ on
# http://127.0.0.1:8080 (override with PORT=…); `scripts/web.sh build` only builds.
#
# Build: the library for wasm32 (release) → wasm-bindgen (the CLI version that
# matches Cargo.lock, installed if missing) → wasm-opt from npm `binaryen`
# (Debian's binaryen 108 produces broken modules) → web/pkg/, plus uPlot copied
# from web/node_modules into web/pkg/vendor/ so the page works offline. (npm also
# brings playwright-core and axe-core, which only the end-to-end tests use.)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

WASM_BINDGEN_VERSION=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
if [ "$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$WASM_BINDGEN_VERSION" ]; then
    echo "web: installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (once, ~3 min)" >&2
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi
if [ ! -d web/node_modules/uplot ] || [ ! -d web/node_modules/binaryen ] || [ ! -d web/node_modules/axe-core ]; then
    (cd web && npm ci --no-audit --no-fund)
fi

cargo build --lib --release --locked --target wasm32-unknown-unknown
rm -rf web/pkg
wasm-bindgen --target web --no-typescript --out-dir web/pkg target/wasm32-unknown-unknown/release/mfr_sae.wasm
web/node_modules/.bin/wasm-opt -O3 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals web/pkg/mfr_sae_bg.wasm -o web/pkg/mfr_sae_bg.wasm
mkdir -p web/pkg/vendor
cp web/node_modules/uplot/dist/uPlot.iife.min.js web/node_modules/uplot/dist/uPlot.min.css web/pkg/vendor/
echo "web: $(wc -c < web/pkg/mfr_sae_bg.wasm) bytes wasm, $(gzip -9 -c web/pkg/mfr_sae_bg.wasm | wc -c) gzipped" >&2

if [ "${1:-serve}" = serve ]; then
    PORT="${PORT:-8080}"
    echo "web: serving http://127.0.0.1:$PORT/ (Ctrl-C to stop)" >&2
    exec python3 -m http.server --bind 127.0.0.1 --directory web "$PORT"
fi
