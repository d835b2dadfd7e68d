#!/usr/bin/env bash
# Install what building and testing joint needs on Debian 12 (bookworm): the C toolchain and
# loops for the examples, Neovim (the interop peer), valgrind, openssl (the TLS tests make
# their certificates with it), doxygen (the API reference), dpkg-dev (dpkg-shlibdeps, for the
# Debian package test), and the pinned cbindgen.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(build-essential openssl cmake ninja-build pkg-config libuv1-dev libev-dev libgtest-dev libmsgpack-cxx-dev neovim valgrind python3 python3-venv doxygen dpkg-dev)
CBINDGEN_VERSION=0.29.4

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: apt-get install ${missing[*]}"
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

for tool in go node npm java mvn; do
    command -v "$tool" >/dev/null || echo "install-deps: note: $tool is not installed; the interop matrix and the Go package need Go, Node.js and Java with Maven" >&2
done

if ! command -v cargo >/dev/null; then
    echo "install-deps: Rust is required (https://rustup.rs)" >&2
    exit 1
fi
if ! cbindgen --version 2>/dev/null | grep -qx "cbindgen $CBINDGEN_VERSION"; then
    echo "install-deps: cargo install cbindgen $CBINDGEN_VERSION"
    cargo install cbindgen --version "$CBINDGEN_VERSION" --locked --quiet
fi
echo "install-deps: ok"
