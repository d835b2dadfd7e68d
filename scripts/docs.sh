#!/usr/bin/env bash
# Generate the HTML API reference (C: include/joint.h; C++: include/joint.hpp and
# include/joint/*.hpp) with Doxygen and docs/Doxyfile, and fail on any Doxygen warning.
#
#   scripts/docs.sh [OUTPUT_DIR]      # default build/docs; open OUTPUT_DIR/html/index.html
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v doxygen >/dev/null; then
    echo "docs.sh: doxygen not found (Debian: apt-get install doxygen, or scripts/install-deps.sh)" >&2
    exit 2
fi

out=${1:-build/docs}
mkdir -p "$out"
JOINT_DOCS_DIR=$(cd "$out" && pwd)
JOINT_VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
export JOINT_DOCS_DIR JOINT_VERSION
rm -rf "$JOINT_DOCS_DIR/html" "$JOINT_DOCS_DIR/warnings.log"

status=0
doxygen docs/Doxyfile || status=$?
if [ -s "$JOINT_DOCS_DIR/warnings.log" ]; then
    cat "$JOINT_DOCS_DIR/warnings.log" >&2
    echo "docs.sh: doxygen reported $(grep -c . "$JOINT_DOCS_DIR/warnings.log") warning line(s); fix the doc comments (src/ffi/*.rs for joint.h, then scripts/gen-header.sh; the .hpp files directly)" >&2
    exit 1
fi
if [ $status -ne 0 ]; then
    echo "docs.sh: doxygen failed (exit $status)" >&2
    exit 1
fi
[ -f "$JOINT_DOCS_DIR/html/index.html" ] || { echo "docs.sh: no html/index.html was written" >&2; exit 1; }
echo "docs.sh: $JOINT_DOCS_DIR/html/index.html (no warnings)"
