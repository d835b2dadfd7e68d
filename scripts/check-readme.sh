#!/usr/bin/env bash
# The README's C example must compile warning-free and serve add(2, 3) = 5 to the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
cargo build --release --locked -p joint -p joint-cli >/dev/null
# The first ```c block is the plain server; the second, the TLS example (run below).
awk '/^```c$/{n++; f=(n==1); next} /^```$/{f=0} f' README.md > "$tmp/readme.c"
cc -std=c99 -Wall -Wextra -Werror -Iinclude "$tmp/readme.c" -Ltarget/release -ljoint \
    -Wl,-rpath,"$PWD/target/release" -o "$tmp/readme"
"$tmp/readme" & pid=$!
for _ in $(seq 50); do
    out=$(timeout 5 target/release/joint call --timeout 1000 tcp://127.0.0.1:7000 add 2 3 2>/dev/null) && break
    sleep 0.1
done
[ "${out:-}" = 5 ] || { echo "check-readme: expected 5, got '${out:-}'" >&2; exit 1; }
if timeout 5 target/release/joint call tcp://127.0.0.1:7000 add x 3 2>/dev/null; then
    echo "check-readme: add(x, 3) should fail" >&2; exit 1
fi
echo "README C example: ok"

# The TLS commands (with the CLI from this build, on a free port) and the TLS C example,
# run in a directory holding the certificates the commands make.
mkdir "$tmp/tls"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
awk '/^```sh$/{n++; f=0} /openssl req -x509/{f=(n==3)} /^```$/{f=0} f' README.md | sed '/^joint /d' > "$tmp/tls/certs.sh"
grep -q "openssl x509 -req" "$tmp/tls/certs.sh" || { echo "check-readme: no certificate commands in the TLS section" >&2; exit 1; }
(cd "$tmp/tls" && bash certs.sh >/dev/null 2>&1) || { echo "check-readme: the certificate commands failed" >&2; exit 1; }
J=$PWD/target/release/joint
(cd "$tmp/tls" && exec "$J" serve --listen "tls://127.0.0.1:$port" --tls-cert server.pem --tls-key server.key --tls-client-ca ca.pem 2>/dev/null) & tls_pid=$!
trap 'kill "${pid:-}" "${tls_pid:-}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do
    out=$(cd "$tmp/tls" && timeout 5 "$J" call --timeout 1000 --tls-ca ca.pem --tls-cert alice.pem --tls-key alice.key "tls://127.0.0.1:$port" add 2 3 2>/dev/null) && break
    sleep 0.1
done
[ "${out:-}" = 5 ] || { echo "check-readme: TLS call: expected 5, got '${out:-}'" >&2; exit 1; }
err=$(cd "$tmp/tls" && timeout 5 "$J" call --tls-ca ca.pem "tls://127.0.0.1:$port" add 2 3 2>&1 >/dev/null) && { echo "check-readme: a TLS call without a client certificate succeeded" >&2; exit 1; }
case "$err" in *"requires a client certificate"*) ;; *) echo "check-readme: unexpected error: $err" >&2; exit 1 ;; esac
kill "$tls_pid"
awk '/^```c$/{n++; f=(n==2); next} /^```$/{f=0} f' README.md > "$tmp/readme_tls.c"
cc -std=c99 -Wall -Wextra -Werror -Iinclude "$tmp/readme_tls.c" -Ltarget/release -ljoint \
    -Wl,-rpath,"$PWD/target/release" -o "$tmp/readme_tls"
out=$(cd "$tmp/tls" && timeout 30 "$tmp/readme_tls")
[ "$out" = "served CN=alice over TLSv1.3" ] || { echo "check-readme: the TLS C example printed '$out'" >&2; exit 1; }
echo "README TLS example: ok"

# The C++ example compiles warning-free and runs.
awk '/^```cpp$/{f=1;next} /^```$/{f=0} f' README.md > "$tmp/readme.cpp"
c++ -std=c++17 -Wall -Wextra -Werror -Iinclude "$tmp/readme.cpp" -Ltarget/release -ljoint \
    -Wl,-rpath,"$PWD/target/release" -o "$tmp/readme_cpp"
timeout 30 "$tmp/readme_cpp"
echo "README C++ example: ok"

# The Python example prints what its comment says (needs bindings/python/.venv, made by
# bindings/python/run-tests.sh).
if [ -x bindings/python/.venv/bin/python ]; then
    awk '/^```python$/{f=1;next} /^```$/{f=0} f' README.md > "$tmp/readme.py"
    out=$(timeout 60 bindings/python/.venv/bin/python "$tmp/readme.py")
    [ "$out" = "[0, 1, 2]" ] || { echo "check-readme: the Python example printed '$out'" >&2; exit 1; }
    echo "README Python example: ok"
fi
