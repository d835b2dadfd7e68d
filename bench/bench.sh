#!/usr/bin/env bash
# Build libjoint and bench/joint_server.c, then run bench/run.sh with the raw C reference
# server as the baseline and joint's server beside it, writing docs/BENCHMARKS.md.
# Usage: bench/bench.sh [run.sh options]   (e.g. --runs 5)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p joint >&2
mkdir -p bench/build
cc -O2 -Wall -Wextra -Iinclude bench/joint_server.c -Ltarget/release -ljoint \
    -Wl,-rpath,"$PWD/target/release" -o bench/build/joint_server
exec bash bench/run.sh --server joint="$PWD/bench/build/joint_server {port}" --write docs/BENCHMARKS.md "$@"
