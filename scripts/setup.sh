#!/usr/bin/env bash
# Installs what building and testing mfr-sae needs on a fresh Debian/Ubuntu
# machine, skipping whatever is already there:
#   - lavapipe (Mesa's Vulkan on the CPU), so wgpu has an adapter without a GPU;
#   - the wasm32 Rust target, since the library is also built for the browser.
# Sourced by run.sh and test.sh; safe to run again.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

apt_install() {
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if [ ${#missing[@]} -gt 0 ]; then
        if ! command -v apt-get >/dev/null; then
            echo "setup: please install ${missing[*]} (or your system's equivalent)" >&2
            return 1
        fi
        echo "setup: installing ${missing[*]}" >&2
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

if command -v dpkg >/dev/null; then
    apt_install mesa-vulkan-drivers libvulkan1
fi
if ! rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi
# lavapipe warns on every instance without a runtime dir.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
