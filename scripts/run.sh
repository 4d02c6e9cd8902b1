#!/usr/bin/env bash
# The main job: build the release binary, show the adapter, and train.
# Extra arguments go to `mfr-sae train` (see `mfr-sae train --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build --release --locked
./target/release/mfr-sae info
./target/release/mfr-sae train "$@"
