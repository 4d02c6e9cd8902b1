#!/usr/bin/env bash
# The main job: build the release binary, show the adapter, and run the paper's
# synthetic experiment (baseline vs MFR, quick preset, 3 seeds).
# Extra arguments go to `mfr-sae experiment synthetic` (see its --help).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build --release --locked
./target/release/mfr-sae info
# --overwrite: a re-run replaces the previous run's outputs in its folder (else refused).
./target/release/mfr-sae experiment synthetic --overwrite "$@"   # defaults: --preset quick --seeds 3
