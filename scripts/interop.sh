#!/usr/bin/env bash
# The interop matrix: joint against third-party MessagePack-RPC implementations (Python
# aio-msgpack-rpc, msgpack-rpc-python and pynvim, Node msgpack-rpc-lite, Go neovim/go-client,
# Java msgpack-rpc), both directions, TCP, Unix sockets and TLS (plain and mutual). See tests/interop/harness.py.
#
#   scripts/interop.sh                    set up, run everything, rewrite docs/INTEROP.md
#   scripts/interop.sh --peers aio,go     a subset (docs/INTEROP.md is left alone)
#   scripts/interop.sh --setup-only       install and build, run nothing
#
# Idempotent: peers install into tests/interop/.cache (venvs, pip/npm/Go/Maven caches;
# gitignored) and are reinstalled only when their pinned versions change, so a second run
# needs no network. Needs python3, node/npm, go, java/mvn, cc, cargo and openssl. A peer whose setup
# fails makes its cells fail (the run exits non-zero), it does not silently drop out.
# Exit status: 0 every expected cell passed; 1 a cell failed; 2 joint or the harness could
# not be built.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
IT=$ROOT/tests/interop
CACHE=$IT/.cache
mkdir -p "$CACHE/bin" "$CACHE/logs"
SETUP_TIMEOUT=${INTEROP_SETUP_TIMEOUT:-900}   # seconds, per install/build step

setup_only=0
args=()
for a in "$@"; do
    if [ "$a" = --setup-only ]; then setup_only=1; else args+=("$a"); fi
done

t_start=$(date +%s)
phase() { printf '\n### %s (t=%ss)\n' "$1" "$(( $(date +%s) - t_start ))"; }
failed_peers=()
fail_peer() { echo "interop: setup of $1 failed: $2" >&2; failed_peers+=("$1"); }
have() { command -v "$1" >/dev/null 2>&1; }
stamp_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

# ---- joint and the joint-side client --------------------------------------------------------
phase "build joint (cargo build --release -p joint -p joint-cli)"
if ! (cd "$ROOT" && timeout "$SETUP_TIMEOUT" cargo build --release -p joint -p joint-cli); then
    echo "interop: cargo build failed" >&2
    exit 2
fi
if ! cc -std=c99 -O2 -Wall -Wextra -Werror -I"$ROOT/include" "$IT/joint_batch.c" \
        -L"$ROOT/target/release" -ljoint -Wl,-rpath,"$ROOT/target/release" -o "$CACHE/bin/joint_batch"; then
    echo "interop: building tests/interop/joint_batch.c failed" >&2
    exit 2
fi

# ---- Python venvs (one per peer: msgpack-rpc-python's msgpack-python clashes with msgpack) ----
export PIP_CACHE_DIR=$CACHE/pip PIP_DISABLE_PIP_VERSION_CHECK=1
venv() { # NAME REQUIREMENTS
    local dir=$CACHE/venv-$1 req=$IT/python/requirements-$1.txt stamp
    stamp=$(stamp_of "$req")
    if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.interop-stamp" 2>/dev/null)" = "$stamp" ]; then
        echo "venv-$1: up to date"
        return 0
    fi
    rm -rf "$dir"
    python3 -m venv "$dir" &&
        timeout "$SETUP_TIMEOUT" "$dir/bin/pip" install -q -r "$req" &&
        echo "$stamp" > "$dir/.interop-stamp"
}
phase "python venvs"
if ! have python3; then
    echo "interop: python3 is required" >&2
    exit 2
fi
venv harness || { echo "interop: the harness venv (msgpack) could not be set up" >&2; exit 2; }
venv aio || fail_peer aio "pip install -r tests/interop/python/requirements-aio.txt"
venv mrp || fail_peer mrp "pip install -r tests/interop/python/requirements-mrp.txt"
venv pynvim || fail_peer pynvim "pip install -r tests/interop/python/requirements-pynvim.txt"

# ---- Node: msgpack-rpc-lite (package-lock.json is committed) ---------------------------------
phase "node (npm ci)"
node_setup() {
    have node && have npm || { echo "node/npm not found"; return 1; }
    local stamp
    stamp=$(stamp_of "$IT/node/package.json" "$IT/node/package-lock.json")
    if [ "$(cat "$IT/node/node_modules/.interop-stamp" 2>/dev/null)" = "$stamp" ]; then
        echo "node_modules: up to date"
        return 0
    fi
    (cd "$IT/node" && timeout "$SETUP_TIMEOUT" npm ci --cache "$CACHE/npm" --prefer-offline \
        --no-audit --no-fund --loglevel=error) && echo "$stamp" > "$IT/node/node_modules/.interop-stamp"
}
node_setup || fail_peer node "npm ci in tests/interop/node"

# ---- Go: neovim/go-client's msgpack/rpc (go.mod and go.sum are committed) --------------------
phase "go (go build)"
go_setup() {
    have go || { echo "go not found"; return 1; }
    (cd "$IT/go" && GOMODCACHE=$CACHE/gomod GOCACHE=$CACHE/gobuild GOFLAGS=-modcacherw GOTOOLCHAIN=local \
        timeout "$SETUP_TIMEOUT" go build -o "$CACHE/bin/gopeer" .)
}
go_setup || fail_peer go "go build in tests/interop/go"

# ---- Java: msgpack-rpc 0.7.1 from Maven Central --------------------------------------------
phase "java (mvn package)"
java_setup() {
    have java && have mvn || { echo "java/mvn not found"; return 1; }
    local stamp
    stamp=$(stamp_of "$IT/java/pom.xml" "$IT"/java/src/main/java/interop/*.java)
    if [ "$(cat "$IT/java/target/.interop-stamp" 2>/dev/null)" = "$stamp" ] &&
        [ -f "$IT/java/target/lib-msgpack-0.6.12/msgpack-0.6.12.jar" ]; then
        echo "java peer: up to date"
        return 0
    fi
    (cd "$IT/java" && timeout "$SETUP_TIMEOUT" mvn -B -q -Dmaven.repo.local="$CACHE/m2" package) &&
        echo "$stamp" > "$IT/java/target/.interop-stamp"
}
if ! java_setup; then
    fail_peer java "mvn package in tests/interop/java"
    failed_peers+=(java0612)
fi

[ "$setup_only" = 1 ] && { phase "setup done"; exit 0; }

# ---- the matrix ------------------------------------------------------------------------------
phase "matrix (tests/interop/harness.py)"
doc=()
[ ${#args[@]} -eq 0 ] && doc=(--doc "$ROOT/docs/INTEROP.md")
skip=$(IFS=,; echo "${failed_peers[*]:-}")
"$CACHE/venv-harness/bin/python" "$IT/harness.py" --skip "$skip" "${doc[@]}" "${args[@]}"
status=$?
phase "done (exit $status); logs in tests/interop/.cache/logs"
exit $status
