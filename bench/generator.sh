#!/usr/bin/env bash
# bench/generator.sh - `joint bench` as a load generator: appends a section to a Markdown file.
#
#   1. Generator against a raw C client: `joint bench --depth 256` and bench/rpc_client.c at
#      depth 256, each on one connection to the raw C server bench/ref_server.c, calling add;
#      RUNS interleaved runs of SECONDS s each (after 0.3 s warm-up), medians and their
#      ratio, with the range of the per-run ratios. joint bench is run with its default
#      per-call --timeout and with --timeout 0 (the library arms no timer per call).
#   2. `joint bench` against `joint serve` (add 1 2), Neovim (nvim_eval "1") and an
#      aio-msgpack-rpc server (echo 1; tests/interop/python/aio_peer.py in a venv under
#      bench/build), in the same run: depth 1, depth 256 and open loop at 1000 calls/s.
#
# Usage: bench/generator.sh [--runs N] [--seconds S] [--append FILE]   (default 5, 2,
#        docs/BENCHMARKS.md). Needs cc, libmsgpack-dev, libssl-dev, nvim, python3 with venv
#        and PyPI (the first time). Called by bench/bench.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=5 SECS=2 APPEND=docs/BENCHMARKS.md
while [[ $# -gt 0 ]]; do
    case $1 in
        --runs) RUNS=${2:?}; shift 2 ;;
        --seconds) SECS=${2:?}; shift 2 ;;
        --append) APPEND=${2:?}; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "generator.sh: unknown argument $1" >&2; exit 64 ;;
    esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "generator.sh: --runs needs a positive integer" >&2; exit 64; }

BUILD=bench/build
mkdir -p "$BUILD/logs"
cargo build --release --locked -p joint-cli >&2
cc -O2 -Wall -Wextra -o "$BUILD/ref_server" bench/ref_server.c -lmsgpackc
cc -O2 -Wall -Wextra -o "$BUILD/rpc_client" bench/rpc_client.c -lssl -lcrypto
JOINT=target/release/joint
VENV=$BUILD/aio-venv
if [[ ! -x $VENV/bin/python ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet -r tests/interop/python/requirements-aio.txt >&2
fi

# Each server runs in its own process group, stopped on exit.
PIDS=()
cleanup() { local p; for p in ${PIDS[@]+"${PIDS[@]}"}; do kill -TERM -- "-$p" 2>/dev/null || true; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# start NAME 'CMD {port}' -> sets PORT once CMD listens on it
start() {
    local name=$1 tmpl=$2 port i
    for ((;;)); do
        port=$((20000 + RANDOM % 20001))
        port_open "$port" || break
    done
    setsid bash -c "${tmpl//'{port}'/$port}" >"$BUILD/logs/generator-$name.log" 2>&1 </dev/null &
    PIDS+=($!)
    for ((i = 0; i < 400; i++)); do
        if port_open "$port"; then PORT=$port; return 0; fi
        sleep 0.05
    done
    echo "generator.sh: $name did not listen on $port; log:" >&2
    tail -n 5 "$BUILD/logs/generator-$name.log" >&2
    exit 1
}
field() { [[ $1 =~ \"$2\":([0-9.]+) ]] && echo "${BASH_REMATCH[1]}"; }
bench_json() { timeout $((${SECS%.*} + 30)) "$JOINT" bench "$@" --json; }
median() { printf '%s\n' $1 | sort -g | sed -n "$((($(wc -w <<<"$1") + 1) / 2))p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ratio_range() {
    paste -d' ' <(printf '%s\n' $1) <(printf '%s\n' $2) | awk '{ printf "%.2f\n", $1 / $2 }' | sort -g | sed -n '1p;$p' | paste -sd'-' | sed 's/-/–/'
}
commas() { printf '%.0f' "$1" | sed ':a; s/\B[0-9]\{3\}\>/,&/; ta'; }

# ---- 1. generator against the raw C client ---------------------------------
start ref "$BUILD/ref_server {port}"
ref_port=$PORT
raw="" gen="" gen0=""
for ((run = 1; run <= RUNS; run++)); do
    out=$(timeout $((${SECS%.*} + 30)) "$BUILD/rpc_client" 127.0.0.1 "$ref_port" 256 "$SECS" 0.3)
    [[ $out =~ calls_per_sec=([0-9]+) ]] || { echo "generator.sh: rpc_client: $out" >&2; exit 1; }
    raw+=" ${BASH_REMATCH[1]}"
    gen+=" $(field "$(bench_json "tcp://127.0.0.1:$ref_port" add 1 2 --depth 256 --duration "$SECS" --warmup 0.3)" calls_per_sec)"
    gen0+=" $(field "$(bench_json "tcp://127.0.0.1:$ref_port" add 1 2 --depth 256 --duration "$SECS" --warmup 0.3 --timeout 0)" calls_per_sec)"
    echo "generator.sh: run $run/$RUNS: rpc_client${raw##* } joint bench${gen##* } (--timeout 0:${gen0##* }) calls/s" >&2
done

# ---- 2. joint bench against stock servers ----------------------------------
start serve "$JOINT serve --listen tcp://127.0.0.1:{port}"
serve_port=$PORT
start nvim "nvim --headless --clean --listen 127.0.0.1:{port}"
nvim_port=$PORT
start aio "$VENV/bin/python tests/interop/python/aio_peer.py server tcp 127.0.0.1 {port}"
aio_port=$PORT
servers=("joint serve|$serve_port|add|1 2" "Neovim $(nvim --version | head -n1 | cut -d' ' -f2)|$nvim_port|nvim_eval|\"1\"" "aio-msgpack-rpc 0.2.0|$aio_port|echo|1")
rows=""
for mode in "--depth 1" "--depth 256" "--rate 1000 --depth 256"; do
    for s in "${servers[@]}"; do
        IFS='|' read -r name port method args <<<"$s"
        # shellcheck disable=SC2086 # $mode and $args are word lists
        v=$(bench_json "tcp://127.0.0.1:$port" "$method" $args $mode --duration "$SECS" --warmup 0.3)
        echo "generator.sh: $name $mode: $v" >&2
        rows+="| $name | \`$method $args\` | \`$mode\` | $(commas "$(field "$v" calls_per_sec)") | $(field "$v" errors) | $(field "$v" p50) | $(field "$v" p99) | $(field "$v" p999) | $(field "$v" max) |"$'\n'
    done
done

raw_m=$(median "$raw") gen_m=$(median "$gen") gen0_m=$(median "$gen0")
{
    echo
    echo "## \`joint bench\` as a load generator"
    echo
    echo "Command: \`bench/generator.sh --runs $RUNS --seconds $SECS\` (run by \`bench/bench.sh\`), $(date -u '+%Y-%m-%d %H:%M UTC'),"
    echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs."
    echo
    echo "Against the raw C client: one connection to the raw C server (\`bench/ref_server.c\`), calling"
    echo "\`add\` [1, 2] at depth 256, $RUNS interleaved runs of $SECS s (after 0.3 s warm-up). The raw client"
    echo "(\`bench/rpc_client.c\`) only counts answers; \`joint bench\` also timestamps every call and"
    echo "records its latency. Goal: ≥ 0.8 × the raw client."
    echo
    echo "| generator | calls/s, median (runs) | × raw C client (median; range of per-run ratios) |"
    echo "|---|---:|---:|"
    echo "| \`bench/rpc_client 127.0.0.1 PORT 256\` | **$(commas "$raw_m")** ($(for r in $raw; do commas "$r"; echo -n ' '; done | sed 's/ $//')) | 1.00 |"
    echo "| \`joint bench URI add 1 2 --depth 256\` (default \`--timeout 10000\`) | **$(commas "$gen_m")** ($(for r in $gen; do commas "$r"; echo -n ' '; done | sed 's/ $//')) | **$(ratio "$gen_m" "$raw_m")** ($(ratio_range "$gen" "$raw")) |"
    echo "| \`joint bench URI add 1 2 --depth 256 --timeout 0\` | **$(commas "$gen0_m")** ($(for r in $gen0; do commas "$r"; echo -n ' '; done | sed 's/ $//')) | **$(ratio "$gen0_m" "$raw_m")** ($(ratio_range "$gen0" "$raw")) |"
    echo
    echo "Against stock servers, in the same run: one connection each, $SECS s after 0.3 s warm-up;"
    echo "\`--rate 1000\` is open loop (latency from each call's scheduled send time). Latency in ms."
    echo
    echo "| server | call | mode | calls/s | errors | p50 | p99 | p99.9 | max |"
    echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
    printf '%s' "$rows"
} >>"$APPEND"
echo "generator.sh: appended to $APPEND" >&2
