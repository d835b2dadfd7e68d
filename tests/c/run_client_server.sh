#!/bin/sh
# Run examples/c/server and examples/c/client against each other (ctest int_client_server_*).
#
#   run_client_server.sh SERVER CLIENT LISTEN_URI     client checks, "shutdown" stops server
#   run_client_server.sh --signal SIG SERVER LISTEN_URI   the server must exit 0 on SIG
#
# The server is started on LISTEN_URI (port 0: the system picks one), its first stdout line
# "listening on URI" gives the address, and the client runs against it. The server must then
# exit by itself with status 0 (after the client's "shutdown" notification), and must have
# printed the client's "note" notification. Every wait is bounded; the server is killed on
# any failure.
set -u

signal=
if [ "${1:-}" = "--signal" ]; then
    signal=$2
    shift 2
fi
server=$1
if [ -n "$signal" ]; then
    client=
    listen=$2
else
    client=$2
    listen=$3
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/joint-cs.XXXXXX") || exit 1
out="$tmp/server.out"
pid=

cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

fail() {
    echo "run_client_server: FAIL: $*" >&2
    echo "--- server output:" >&2
    cat "$out" >&2
    exit 1
}

# Unix socket URIs in the temporary directory: unix://@TMP@/s -> unix:///tmp/joint-cs.X/s
listen=$(printf '%s' "$listen" | sed "s|@TMP@|$tmp|")

"$server" "$listen" >"$out" 2>&1 &
pid=$!

# Wait up to 10 s for "listening on URI".
uri=
i=0
while [ $i -lt 100 ]; do
    line=$(head -n 1 "$out" 2>/dev/null)
    case "$line" in
    "listening on "*)
        uri=${line#listening on }
        break
        ;;
    esac
    kill -0 "$pid" 2>/dev/null || fail "the server exited before listening"
    sleep 0.1
    i=$((i + 1))
done
[ -n "$uri" ] || fail "no 'listening on' line from the server within 10 s"
echo "server listening on $uri"

if [ -n "$signal" ]; then
    kill -"$signal" "$pid"
else
    timeout 30 "$client" "$uri"
    rc=$?
    [ $rc -eq 0 ] || fail "client exited with status $rc"
fi

# The server must now exit by itself, promptly and with status 0.
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
kill -0 "$pid" 2>/dev/null && fail "the server is still running 10 s later"
wait "$pid"
rc=$?
pid=
[ $rc -eq 0 ] || fail "server exited with status $rc"

if [ -z "$signal" ]; then
    grep -q '^notification note (1 params)$' "$out" || fail "the server did not receive the note notification"
fi
echo "--- server output:"
cat "$out"
echo "run_client_server: ok"
