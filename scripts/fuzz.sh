#!/usr/bin/env bash
# Coverage-guided fuzzing with cargo-fuzz: seed the corpora from tests/corpus (fuzz/seed.sh),
# then run each target of fuzz/ for SECONDS (default 60), one after another, on one core:
#
#   scripts/fuzz.sh [SECONDS]
#
# Needs a nightly toolchain (`cargo +nightly`); without one it says so and exits 0. Installs
# cargo-fuzz if missing. Exits 1 if a target crashed (a panic, a violated invariant, a
# timeout or running out of memory), printing the input that did it (fuzz/artifacts/...).
# The targets are plain functions in src/fuzz_targets.rs, which `cargo test --test
# fuzz_corpus` replays on stable; the corpora the fuzzers grow stay in fuzz/corpus/.
#
# Built without a sanitizer: the code under test has no `unsafe`, so AddressSanitizer would
# only slow the search down (about 3x); debug assertions and overflow checks are on.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
targets=(decoder session_bytes session_messages)

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: nightly toolchain not present; skipped"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz"
    timeout 900 cargo install cargo-fuzz --locked
fi

fuzz/seed.sh
cd fuzz
flags=(-s none --debug-assertions)
timeout 1800 cargo +nightly fuzz build "${flags[@]}"

mkdir -p target/logs
failed=()
for target in "${targets[@]}"; do
    mkdir -p "artifacts/$target"
    before=$(ls "artifacts/$target")
    log="target/logs/$target.log"
    echo "fuzz.sh: $target for ${seconds}s (log: fuzz/$log)"
    if timeout $((seconds + 600)) cargo +nightly fuzz run "${flags[@]}" "$target" -- \
        -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
        >"$log" 2>&1; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1)
        echo "fuzz.sh: $target: ok, ${execs:-?} runs, $cov"
    else
        failed+=("$target")
        echo "fuzz.sh: $target FAILED; the end of its log:"
        grep -v '^#' "$log" | tail -n 40
        for f in $(ls "artifacts/$target"); do
            if ! grep -qxF "$f" <<<"$before"; then
                echo "fuzz.sh: $target: input that failed: fuzz/artifacts/$target/$f"
                echo "  replay: (cd fuzz && cargo +nightly fuzz run ${flags[*]} $target artifacts/$target/$f)"
            fi
        done
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashes found in: ${failed[*]}"
    exit 1
fi
echo "fuzz.sh: all targets ran ${seconds}s without a crash"
