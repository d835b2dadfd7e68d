#!/usr/bin/env bash
# Instructions per call, counted by valgrind's callgrind (deterministic, unlike wall-clock
# numbers on a shared 2-vCPU VM): each server runs under callgrind while bench/rpc_client
# keeps 256 calls in flight for 2 s; total user-space instructions / calls answered.
# Includes each server's start-up, which is small against ~100k calls. Kernel time is not
# counted (both servers do one read and one write per batch; joint adds one epoll_wait).
# Usage: bench/instructions.sh NAME='CMD {port}'...   (prints a markdown table)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind not installed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
echo "| server | calls | instructions/call | vs first |"
echo "|---|---:|---:|---:|"
base=""
for spec in "$@"; do
    name=${spec%%=*} tmpl=${spec#*=}
    port=$((20000 + RANDOM % 20000))
    # shellcheck disable=SC2086 # the template is a command line
    valgrind --tool=callgrind --callgrind-out-file="$tmp/$name.out" ${tmpl//'{port}'/$port} >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
    out=$(timeout 30 bench/build/rpc_client 127.0.0.1 "$port" 256 2 0)
    # SIGINT, then SIGTERM: callgrind writes its counts on either.
    kill -INT $pid 2>/dev/null || true
    for _ in $(seq 20); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
    kill -TERM $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    calls=$(sed 's/.*calls=\([0-9]*\) .*/\1/' <<<"$out")
    ir=$(callgrind_annotate "$tmp/$name.out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done {gsub(",", "", $1); print $1; done = 1}')
    per=$((ir / calls))
    [ -n "$base" ] || base=$per
    printf '| %s | %s | %s | %s |\n' "$name" "$calls" "$per" "$(awk -v a="$base" -v b="$per" 'BEGIN { printf "%.2f", b / a }')"
done
