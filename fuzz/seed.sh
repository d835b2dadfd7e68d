#!/usr/bin/env bash
# Seed the fuzz corpora from tests/corpus/*.bin (idempotent; existing files are kept). The
# copies keep the .bin names, which .gitignore leaves out; the minimized corpus that is kept
# in fuzz/corpus/ is named by SHA-1 (libFuzzer merge).
#
# Every target gets each file as is. decoder and session_bytes read their first byte as a
# control byte (limits and split style; session mode), so they also get each file behind the
# control bytes that select each session mode (00 stock, 01 extension negotiated, 02 small
# limits) and, for decoder, big and small limits (00: 1 MiB, depth 128, byte-by-byte; 6d: 1 KiB,
# depth 15, pieces of 1-8 bytes), named <byte>__<file>.
set -euo pipefail
cd "$(dirname "$0")"
src=../tests/corpus
for target in decoder session_bytes session_messages; do
    mkdir -p "corpus/$target"
done
n=0
for f in "$src"/*.bin; do
    name=$(basename "$f")
    for target in decoder session_bytes session_messages; do
        [ -e "corpus/$target/$name" ] || { cp "$f" "corpus/$target/$name"; n=$((n + 1)); }
    done
    for b in 00 01 02; do
        out="corpus/session_bytes/${b}__$name"
        [ -e "$out" ] || { { printf "\\x$b"; cat "$f"; } >"$out"; n=$((n + 1)); }
    done
    for b in 00 6d; do
        out="corpus/decoder/${b}__$name"
        [ -e "$out" ] || { { printf "\\x$b"; cat "$f"; } >"$out"; n=$((n + 1)); }
    done
done
echo "seed.sh: $n files added under fuzz/corpus/ ($(find corpus -type f | wc -l) in all)"
