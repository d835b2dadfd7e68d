#!/usr/bin/env bash
# The README's C example must compile warning-free and serve add(2, 3) = 5 to the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
cargo build --release --locked -p joint -p joint-cli >/dev/null
awk '/^```c$/{f=1;next} /^```$/{f=0} f' README.md > "$tmp/readme.c"
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
