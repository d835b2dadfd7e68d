#!/usr/bin/env bash
# Build libjoint and bench/joint_server.c, then run bench/run.sh with the raw C reference
# server as the baseline and joint's server beside it, writing docs/BENCHMARKS.md.
# Usage: bench/bench.sh [run.sh options]   (e.g. --runs 5)
# Then appends instructions per call for both servers (bench/instructions.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p joint >&2
mkdir -p bench/build
cc -O2 -Wall -Wextra -Iinclude bench/joint_server.c -Ltarget/release -ljoint \
    -Wl,-rpath,"$PWD/target/release" -o bench/build/joint_server
bash bench/run.sh --server joint="bench/build/joint_server {port}" --write docs/BENCHMARKS.md "$@"
{
    echo
    echo "## Instructions per call (callgrind, depth 256)"
    echo
    echo "Deterministic for a given binary and input, so it is the steadiest comparison on a"
    echo "shared VM; user-space only. Command: \`bench/instructions.sh\` (run by \`bench/bench.sh\`)."
    echo
    bench/instructions.sh ref="bench/build/ref_server {port}" joint="bench/build/joint_server {port}"
    echo
    echo "## Small calls during a 256 MiB transfer on the same connection"
    echo
    echo "A server (its own thread and context) answers one call with 256 MiB while the client"
    echo "sends a small call every 2 ms; latency of the small calls issued during the transfer, 3"
    echo "rounds per mode. With the joint extension the result goes in 64 KiB fragments and small"
    echo "answers slip in between; in stock mode they wait behind it. Command:"
    echo "\`cargo run --release --example big_transfer_latency -- 256 3\`."
    echo
    cargo run --release --quiet --example big_transfer_latency -- 256 3
} >>docs/BENCHMARKS.md
cat docs/BENCHMARKS.md
