#!/usr/bin/env bash
# Install what the tests need, then run every test: Rust unit and integration tests (codec,
# protocol, reactor, hostile input, Neovim interop, the CLI), the header freshness check, the
# Doxygen API reference, and the C/CMake suite under ctest (examples on epoll, libuv and
# libev; API, build, install and Debian package tests), once normally and once under
# AddressSanitizer + UndefinedBehaviorSanitizer, and the
# fuzz targets for a bounded time when a nightly toolchain is present.
set -euo pipefail
cd "$(dirname "$0")/.."
# Interop tests skip when a peer is missing; here a missing peer is a failure.
export JOINT_REQUIRE_NVIM=1

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
scripts/install-deps.sh

step "header is up to date (scripts/gen-header.sh --check)"
scripts/gen-header.sh --check

step "API reference builds without a Doxygen warning (scripts/docs.sh)"
timeout 300 scripts/docs.sh

step "cargo test (workspace)"
timeout 1200 cargo test --locked --workspace --release

step "interop matrix with third-party peers (writes docs/INTEROP.md)"
timeout 1500 scripts/interop.sh

step "Python package (bindings/python)"
timeout 900 bindings/python/run-tests.sh

step "README examples"
timeout 300 scripts/check-readme.sh

step "Go package (bindings/go)"
timeout 900 bindings/go/run-tests.sh

step "C and CMake tests (ctest)"
timeout 1200 scripts/ctest.sh

step "C tests under ASan + UBSan"
timeout 1200 scripts/ctest.sh --sanitize

step "coverage-guided fuzzing, 30 s per target (scripts/fuzz.sh; skipped without a nightly toolchain)"
timeout 1800 scripts/fuzz.sh 30

step "all tests passed"
