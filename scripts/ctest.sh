#!/usr/bin/env bash
# Configure, build and run the C/CMake test suite (tests/c, examples/c) under ctest.
#
#   scripts/ctest.sh [--sanitize] [-- CTEST_ARGS...]
#
#   (default)    Release build in build/ctest (with the leak_ and cpp_leak_ tests under
#                Valgrind when valgrind is installed)
#   --sanitize   Debug build with JOINT_SANITIZE=ON (ASan + UBSan on the C and C++ tests
#                and examples) in build/ctest-sanitize; checks with nm that the test binaries
#                really contain the sanitizer runtime (and, without --sanitize, that they
#                do not)
#   -- ARGS      passed to ctest, e.g. `-- -R '^api_'`
#
# Environment: JOINT_BUILD_DIR overrides the build directory; JOINT_TEST_TIMEOUT the
# per-test timeout in seconds (default 120; tests set their own, usually lower);
# JOINT_JOBS the parallelism (default: number of CPUs).
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=0
ctest_args=()
while [ $# -gt 0 ]; do
    case "$1" in
    --sanitize) sanitize=1 ;;
    --) shift; ctest_args=("$@"); break ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "ctest.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

jobs=${JOINT_JOBS:-$(nproc 2>/dev/null || echo 2)}
timeout=${JOINT_TEST_TIMEOUT:-120}
if [ $sanitize -eq 1 ]; then
    build=${JOINT_BUILD_DIR:-build/ctest-sanitize}
    # The joint command is only needed by build_deb, which the sanitizer build leaves out.
    config=(-DCMAKE_BUILD_TYPE=Debug -DJOINT_SANITIZE=ON -DJOINT_BUILD_CLI=OFF)
else
    build=${JOINT_BUILD_DIR:-build/ctest}
    config=(-DCMAKE_BUILD_TYPE=Release -DJOINT_SANITIZE=OFF)
fi

generator=()
if [ ! -f "$build/CMakeCache.txt" ]; then
    if command -v ninja >/dev/null; then
        generator=(-G Ninja)
    else
        echo "ctest.sh: ninja not found, using CMake's default generator" >&2
    fi
fi

step() { printf '\n==> %s\n' "$*"; }

step "configure $build (${config[*]})"
cmake -S . -B "$build" "${generator[@]}" "${config[@]}" \
    -DJOINT_BUILD_TESTS=ON -DJOINT_BUILD_EXAMPLES=ON -DJOINT_WERROR=ON

step "build"
cmake --build "$build" --parallel "$jobs"

# The sanitizer must really be in the binaries (a silently ignored flag would make a
# sanitizer run prove nothing), and must not be in the normal build.
step "sanitizer runtime check (nm)"
bins=("$build/tests/c/api_null" "$build/examples/c/epoll_loop")
# the C++ side too (tests/cpp, examples/cpp), when a C++ compiler built it
for bin in "$build/tests/cpp/cpp_rpc" "$build/examples/cpp/client_server"; do
    [ -e "$bin" ] && bins+=("$bin")
done
for bin in "${bins[@]}"; do
    syms=$(nm "$bin") || { echo "ctest.sh: nm $bin failed" >&2; exit 1; }
    case "$syms" in *__asan_init*) has=1 ;; *) has=0 ;; esac
    if [ $sanitize -eq 1 ] && [ $has -eq 0 ]; then
        echo "ctest.sh: $bin does not link __asan_init: the sanitizer is not active" >&2
        exit 1
    elif [ $sanitize -eq 0 ] && [ $has -eq 1 ]; then
        echo "ctest.sh: $bin links __asan_init in a build without --sanitize" >&2
        exit 1
    fi
    echo "$bin: __asan_init $([ $has -eq 1 ] && echo present || echo absent)"
done

step "ctest"
cd "$build"
ctest --output-on-failure --timeout "$timeout" -j "$jobs" "${ctest_args[@]}"
