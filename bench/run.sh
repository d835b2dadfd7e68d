#!/usr/bin/env bash
# bench/run.sh - MessagePack-RPC throughput benchmark (one TCP connection, loopback).
#
# Builds bench/ref_server.c and bench/rpc_client.c, then measures every server with
# bench/rpc_client calling "add" [a, b]:
#   (a) pipelined: DEPTH (default 256) requests in flight, nothing pinned;
#   (b) lock-step: depth 1, server AND client pinned to CPU 0 (taskset -c 0).
# Cross-core lock-step is deliberately not measured: on these 2-vCPU VMs it only
# measures the hypervisor's cross-CPU wake-up latency, the same for every server.
# Each number is the median of RUNS runs (default 3 x 2 s, after a 0.3 s warm-up);
# runs are interleaved across servers so drift hits all of them alike.
# The first server is the baseline for the ratio columns; by default it is
# "ref" (bench/ref_server.c, raw C + msgpack-c).
#
# Usage: bench/run.sh [options]
#   --server NAME='CMD {port}'  add a server; {port} is replaced by a free TCP port on
#                               which CMD must listen (127.0.0.1). Repeatable.
#   --tls-server NAME='CMD {port}'
#                               add a server that speaks TLS on {port}: the load generator
#                               connects with --tls (OpenSSL). Repeatable.
#   --compare NAME=BASE         also report NAME's rates relative to BASE's (medians, and the
#                               range of the per-run ratios; runs are interleaved, so run k of
#                               each is measured at nearly the same time). Repeatable.
#   --no-ref                    do not include the ref server (first --server is baseline)
#   --write FILE                also write the table with a header to FILE
#   --runs N                    runs per measurement (default 3)
#   --seconds S                 seconds per run (default 2)
#   --warmup S                  warm-up seconds per run (default 0.3)
#   --depth N                   pipeline depth for (a) (default 256)
#   --build-dir DIR             where binaries and server logs go (default bench/build)
# Example: bench/run.sh --server joint='target/release/joint_server {port}' --write docs/BENCHMARKS.md
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
CMDLINE=$(printf '%q ' "$0" "$@")
CMDLINE=${CMDLINE% }

BUILD_DIR=$BENCH_DIR/build
RUNS=3 RUN_SECS=2 WARMUP=0.3 DEPTH=256 WRITE="" USE_REF=1
EXTRA_NAMES=() EXTRA_CMDS=() EXTRA_TLS=() COMPARE=()

die() { echo "run.sh: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --server)
            [[ $# -ge 2 && $2 == ?*=?* ]] || die "--server needs NAME='CMD {port}'"
            EXTRA_NAMES+=("${2%%=*}") EXTRA_CMDS+=("${2#*=}") EXTRA_TLS+=(0); shift 2 ;;
        --tls-server)
            [[ $# -ge 2 && $2 == ?*=?* ]] || die "--tls-server needs NAME='CMD {port}'"
            EXTRA_NAMES+=("${2%%=*}") EXTRA_CMDS+=("${2#*=}") EXTRA_TLS+=(1); shift 2 ;;
        --compare)
            [[ $# -ge 2 && $2 == ?*=?* ]] || die "--compare needs NAME=BASE"
            COMPARE+=("$2"); shift 2 ;;
        --no-ref) USE_REF=0; shift ;;
        --write) [[ $# -ge 2 ]] || die "--write needs a file"; WRITE=$2; shift 2 ;;
        --runs) RUNS=${2:?}; shift 2 ;;
        --seconds) RUN_SECS=${2:?}; shift 2 ;;
        --warmup) WARMUP=${2:?}; shift 2 ;;
        --depth) DEPTH=${2:?}; shift 2 ;;
        --build-dir) BUILD_DIR=${2:?}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ && $DEPTH =~ ^[1-9][0-9]*$ ]] || die "--runs and --depth must be positive integers"

# ---- build ---------------------------------------------------------------
mkdir -p "$BUILD_DIR/logs"
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)
CC=${CC:-cc}
"$CC" -O2 -Wall -Wextra -o "$BUILD_DIR/ref_server" "$BENCH_DIR/ref_server.c" -lmsgpackc
"$CC" -O2 -Wall -Wextra -o "$BUILD_DIR/rpc_client" "$BENCH_DIR/rpc_client.c" -lssl -lcrypto
CLIENT=$BUILD_DIR/rpc_client

NAMES=() CMDS=() TLS=()
if [[ $USE_REF == 1 ]]; then
    NAMES+=(ref) CMDS+=("$(printf '%q' "$BUILD_DIR/ref_server") {port}") TLS+=(0)
fi
NAMES+=(${EXTRA_NAMES[@]+"${EXTRA_NAMES[@]}"}) CMDS+=(${EXTRA_CMDS[@]+"${EXTRA_CMDS[@]}"}) TLS+=(${EXTRA_TLS[@]+"${EXTRA_TLS[@]}"})
index_of() {
    local i
    for i in "${!NAMES[@]}"; do [[ ${NAMES[$i]} == "$1" ]] && { echo "$i"; return 0; }; done
    die "--compare: no server named $1"
}
for c in ${COMPARE[@]+"${COMPARE[@]}"}; do index_of "${c%%=*}" >/dev/null; index_of "${c#*=}" >/dev/null; done
[[ ${#NAMES[@]} -gt 0 ]] || die "no servers to measure"
for c in "${CMDS[@]}"; do [[ $c == *'{port}'* ]] || die "server command lacks {port}: $c"; done

# ---- server lifecycle ------------------------------------------------------
# Each server runs in its own session/process group (setsid), so stopping it also
# stops anything it spawned.  The EXIT trap stops whatever is still running.
SERVER_PIDS=()
stop_server() {
    local pid=$1 i
    kill -TERM -- "-$pid" 2>/dev/null || return 0
    for ((i = 0; i < 40; i++)); do
        kill -0 -- "-$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    { wait "$pid"; } 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in ${SERVER_PIDS[@]+"${SERVER_PIDS[@]}"}; do stop_server "$pid"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_server NAME TEMPLATE PIN_CPU("" = unpinned) LOGTAG -> sets SRV_PID, SRV_PORT
start_server() {
    local name=$1 tmpl=$2 pin=$3 log="$BUILD_DIR/logs/$1-$4.log" attempt port pid i
    local pre=()
    if [[ -n $pin ]]; then pre=(taskset -c "$pin"); fi
    for ((attempt = 0; attempt < 10; attempt++)); do
        port=$((20000 + RANDOM % 20001))
        if port_open "$port"; then continue; fi # taken by someone else
        setsid ${pre[@]+"${pre[@]}"} bash -c "${tmpl//'{port}'/$port}" >"$log" 2>&1 </dev/null &
        pid=$!
        SERVER_PIDS+=("$pid")
        for ((i = 0; i < 400; i++)); do # up to ~20 s for the port to open
            kill -0 "$pid" 2>/dev/null || break
            if port_open "$port"; then
                sleep 0.1 # still alive after binding? (guards against a lost port race)
                if kill -0 "$pid" 2>/dev/null; then SRV_PID=$pid SRV_PORT=$port; return 0; fi
                break
            fi
            sleep 0.05
        done
        stop_server "$pid"
        echo "run.sh: server $name did not come up on port $port, retrying; log:" >&2
        tail -n 5 "$log" >&2 || true
    done
    die "could not start server $name: ${tmpl}"
}

# measure NAME PORT DEPTH PIN_CPU TLS(0|1) -> prints calls/s
measure() {
    local name=$1 port=$2 depth=$3 pin=$4 out pre=() tls=()
    if [[ -n $pin ]]; then pre=(taskset -c "$pin"); fi
    if [[ $5 == 1 ]]; then tls=(--tls); fi
    local limit
    limit=$(awk -v s="$RUN_SECS" -v w="$WARMUP" 'BEGIN { print s + w + 15 }')
    if ! out=$(timeout "$limit" ${pre[@]+"${pre[@]}"} "$CLIENT" ${tls[@]+"${tls[@]}"} 127.0.0.1 "$port" "$depth" "$RUN_SECS" "$WARMUP"); then
        die "client failed against $name (depth $depth${pin:+, pinned to CPU $pin}): ${out:-no output}"
    fi
    [[ $out =~ calls_per_sec=([0-9]+) ]] || die "unexpected client output: $out"
    echo "${BASH_REMATCH[1]}"
}

# ---- measurements ----------------------------------------------------------
declare -A RESULTS # "mode,index" -> space-separated calls/s of every run
MODES=(pipelined lockstep)
for mode in "${MODES[@]}"; do
    if [[ $mode == pipelined ]]; then depth=$DEPTH pin=""; else depth=1 pin=0; fi
    pids=() ports=()
    for i in "${!NAMES[@]}"; do
        start_server "${NAMES[$i]}" "${CMDS[$i]}" "$pin" "$mode"
        pids+=("$SRV_PID") ports+=("$SRV_PORT")
    done
    for ((run = 1; run <= RUNS; run++)); do
        for i in "${!NAMES[@]}"; do
            rate=$(measure "${NAMES[$i]}" "${ports[$i]}" "$depth" "$pin" "${TLS[$i]}")
            RESULTS[$mode,$i]+="${RESULTS[$mode,$i]:+ }$rate"
            printf 'run.sh: %-10s %-9s depth=%-4s run %d/%d: %s calls/s\n' \
                "${NAMES[$i]}" "$mode" "$depth" "$run" "$RUNS" "$rate" >&2
        done
    done
    for pid in "${pids[@]}"; do stop_server "$pid"; done
done

# ---- report ----------------------------------------------------------------
median() { printf '%s\n' $1 | sort -n | sed -n "$(( ($(wc -w <<<"$1") + 1) / 2 ))p"; }
commas() { sed ':a; s/\([0-9]\)\([0-9]\{3\}\)\($\|[ ,)]\)/\1,\2\3/; ta' <<<"$1"; }
cell() { echo "**$(commas "$(median "$1")")** ($(commas "$1"))"; }
ratio() { awk -v a="$(median "$1")" -v b="$(median "$2")" 'BEGIN { printf "%.2f", a / b }'; }

base=${NAMES[0]}
table=$(
    echo "| server | depth $DEPTH, unpinned: calls/s, median (runs) | vs $base | lock-step, both on CPU 0: calls/s, median (runs) | vs $base |"
    echo "|---|---:|---:|---:|---:|"
    for i in "${!NAMES[@]}"; do
        p=${RESULTS[pipelined,$i]} l=${RESULTS[lockstep,$i]}
        echo "| ${NAMES[$i]} | $(cell "$p") | $(ratio "$p" "${RESULTS[pipelined,0]}") | $(cell "$l") | $(ratio "$l" "${RESULTS[lockstep,0]}") |"
    done
)
# --compare NAME=BASE: medians' ratio, and the range of the per-run ratios.
run_ratios() { paste -d' ' <(printf '%s\n' $1) <(printf '%s\n' $2) | awk '{ printf "%.2f\n", $1 / $2 }' | sort -n; }
ratio_range() { local r; r=$(run_ratios "$1" "$2"); echo "$(head -n1 <<<"$r")–$(tail -n1 <<<"$r")"; }
compare_table=""
if [[ ${#COMPARE[@]} -gt 0 ]]; then
    compare_table=$(
        echo "| server vs base | depth $DEPTH, unpinned: × base (median; range of per-run ratios) | lock-step, CPU 0: × base (median; range) |"
        echo "|---|---:|---:|"
        for c in "${COMPARE[@]}"; do
            a=$(index_of "${c%%=*}") b=$(index_of "${c#*=}")
            pa=${RESULTS[pipelined,$a]} pb=${RESULTS[pipelined,$b]} la=${RESULTS[lockstep,$a]} lb=${RESULTS[lockstep,$b]}
            echo "| ${NAMES[$a]} vs ${NAMES[$b]} | **$(ratio "$pa" "$pb")** ($(ratio_range "$pa" "$pb")) | **$(ratio "$la" "$lb")** ($(ratio_range "$la" "$lb")) |"
        done
    )
fi

echo
echo "$table"
if [[ -n $compare_table ]]; then echo; echo "$compare_table"; fi

if [[ -n $WRITE ]]; then
    {
        echo "# Benchmarks"
        echo
        echo "Generated by \`bench/bench.sh\` (which runs \`bench/run.sh\`); rerun it to update this file."
        echo
        echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "- kernel: \`$(uname -r)\`, CPUs (nproc): $(nproc), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "- command: \`$CMDLINE\`"
        echo "- method: one TCP connection to 127.0.0.1; load generator \`bench/rpc_client.c\` calling \`add\` [a, b] and"
        echo "  checking every result; median of $RUNS runs of ${RUN_SECS} s (after ${WARMUP} s warm-up), runs interleaved"
        echo "  across servers. Lock-step is measured with server and client on the same CPU because cross-core"
        echo "  lock-step on this VM only measures the hypervisor's wake-up latency. Ratios are relative to \`$base\`."
        echo "- servers:"
        for i in "${!NAMES[@]}"; do
            tls_note=""
            if [[ ${TLS[$i]} == 1 ]]; then tls_note=" (TLS: the load generator connects with \`--tls\`, OpenSSL)"; fi
            echo "  - \`${NAMES[$i]}\`: \`${CMDS[$i]//"$ROOT/"/}\`$tls_note"
        done
        echo
        echo "$table"
        if [[ -n $compare_table ]]; then
            echo
            echo "TLS against plaintext, measured in the same job (each run of one right next to the same"
            echo "run of the other); goal for the pipelined TLS rate: ≥ 0.7 × plaintext."
            echo
            echo "$compare_table"
        fi
    } >"$WRITE"
    echo "run.sh: wrote $WRITE" >&2
fi
