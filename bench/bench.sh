#!/usr/bin/env bash
# Build libjoint and bench/joint_server.c, then run bench/run.sh with the raw C reference
# server as the baseline and joint's server beside it, writing docs/BENCHMARKS.md.
# Usage: bench/bench.sh [run.sh options]   (e.g. --runs 5)
# Then appends instructions per call for both servers (bench/instructions.sh), small-call
# latency during a big transfer, bulk throughput beside a raw socket transfer
# (cli/examples/bulk.rs), TLS beside plaintext (cli/examples/tls.rs) and the limits under
# attack (cli/tests/attacks.rs), and `joint bench` as a load generator (bench/generator.sh).
# Needs libmsgpack-dev (the reference server), libssl-dev and openssl (the load generator's
# --tls, the benchmark certificate), valgrind, nvim and python3 with venv (bench/generator.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p joint -p joint-cli --bins --examples >&2
cargo build --release --locked -p joint -p joint-cli >&2
mkdir -p bench/build
cc -O2 -Wall -Wextra -Iinclude bench/joint_server.c -Ltarget/release -ljoint \
    -Wl,-rpath,"$PWD/target/release" -o bench/build/joint_server
# `joint serve` over tcp:// and over tls:// (the same binary), for the TLS-vs-plaintext rows.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -days 2 -keyout bench/build/tls-key.pem -out bench/build/tls-cert.pem 2>/dev/null
bash bench/run.sh --server joint="bench/build/joint_server {port}" \
    --server serve="target/release/joint serve --listen tcp://127.0.0.1:{port}" \
    --tls-server serve-tls="target/release/joint serve --listen tls://127.0.0.1:{port} --tls-cert bench/build/tls-cert.pem --tls-key bench/build/tls-key.pem" \
    --compare serve-tls=serve --write docs/BENCHMARKS.md "$@"
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
    echo
    echo "## Bulk throughput"
    echo
    echo "\`joint serve\` (its own process) and a client in another, beside a plain socket transfer in the"
    echo "same run: each of 5 transfers of 256 MiB right after a raw transfer, and the medians of the GB/s"
    echo "and of the ratios (the VM's speed drifts; a pair sees the same machine). The stock blob is"
    echo "read by a raw client that does not decode it; the streamed rows use the joint client"
    echo "(\`Context::call_with\` counting item bytes; upload through \`Context::send\`, which copies each"
    echo "value, and through \`Context::send_bin_shared\`, which writes it from the caller's buffer as the"
    echo "server's \`download\` does). The last row is the command-line client writing a file, beside a raw"
    echo "transfer written to a file. Command: \`cargo run --release -p joint-cli --example bulk\`."
    echo
    target/release/examples/bulk 256 5
    echo
    echo "## TLS beside plaintext"
    echo
    echo "Small calls over TLS are in the first table (\`serve-tls\` against \`serve\`: the same"
    echo "\`joint serve\` binary, its tcp:// and tls:// listeners, measured in the same job with runs"
    echo "interleaved). Here \`joint serve\` listens on both at once and a joint client measures, in"
    echo "the same run: streamed transfers, each of 5 TLS runs right after a plaintext run (goal ≥ 0.5 ×"
    echo "plaintext), and a new connection plus its first call, 5 runs of 200 one after another, each"
    echo "a new context (so a full handshake every time, certificate verified; no resumption). The"
    echo "machine is a shared 2-vCPU VM: ranges are over the runs. Command:"
    echo "\`cargo run --release -p joint-cli --example tls -- 256 5 200\`."
    echo
    target/release/examples/tls 256 5 200
    echo
    echo "## Limits under attack"
    echo
    echo "Each attack drives \`joint serve\` (default limits unless the row says otherwise) past one"
    echo "limit while a well-behaved client calls \`echo\` lock-step every 5 ms on its own connection."
    echo "Every row is also a test that asserts its bound (\`cli/tests/attacks.rs\`); command:"
    echo "\`cargo test --release -p joint-cli --test attacks -- --nocapture --test-threads=1\`."
    echo
    echo "| attack | server RSS before (MiB) | peak RSS (MiB) | control calls | p50 (ms) | p99 (ms) | max (ms) | outcome |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    cargo test --release --locked -p joint-cli --test attacks -- --nocapture --test-threads=1 2>/dev/null \
        | grep -o 'ATTACK|.*' | sed 's/^ATTACK//; s/$/|/'
} >>docs/BENCHMARKS.md
# `joint bench` beside the raw C client, and against joint serve, Neovim and aio-msgpack-rpc.
bench/generator.sh --append docs/BENCHMARKS.md
cat docs/BENCHMARKS.md
