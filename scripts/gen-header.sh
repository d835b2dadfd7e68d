#!/usr/bin/env bash
# Generate include/joint.h from src/ffi with the pinned cbindgen, adding the version macros
# from Cargo.toml. `--check` regenerates into a temporary file and fails if the committed
# header differs (run in CI).
set -euo pipefail
CBINDGEN_VERSION=0.29.4
cd "$(dirname "$0")/.."

if ! cbindgen --version 2>/dev/null | grep -qx "cbindgen $CBINDGEN_VERSION"; then
    echo "gen-header.sh: needs cbindgen $CBINDGEN_VERSION: cargo install cbindgen --version $CBINDGEN_VERSION --locked" >&2
    exit 2
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
IFS=. read -r major minor patch <<<"$version"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
{
    # after_includes is a top-level key, so it goes before cbindgen.toml's tables.
    cat <<TOML
after_includes = """
/** The major version of this header (joint_version() is the library's). */
#define JOINT_VERSION_MAJOR $major
/** The minor version of this header; before 1.0 each minor may change the ABI. */
#define JOINT_VERSION_MINOR $minor
/** The patch version of this header. */
#define JOINT_VERSION_PATCH $patch
/** The version of this header as a string, "MAJOR.MINOR.PATCH". */
#define JOINT_VERSION_STRING "$version"
/** The version of this header as one number, (MAJOR << 16) | (MINOR << 8) | PATCH, for preprocessor tests. */
#define JOINT_VERSION_NUMBER ((JOINT_VERSION_MAJOR << 16) | (JOINT_VERSION_MINOR << 8) | JOINT_VERSION_PATCH)

#ifndef JOINT_API
#  if defined(_WIN32) && defined(JOINT_SHARED)
#    define JOINT_API __declspec(dllimport)
#  else
#    define JOINT_API
#  endif
#endif
"""
TOML
    cat cbindgen.toml
} >"$tmp/cbindgen.toml"
cbindgen --quiet --config "$tmp/cbindgen.toml" --crate joint --output "$tmp/joint.h"

# Everything the header declares must carry the joint_/JOINT_ prefix.
leaks=$(grep -E '^#define |^JOINT_API |^typedef ' "$tmp/joint.h" \
    | grep -vE '^#define (JOINT_|JOINT_H)|^typedef struct joint_|^typedef [a-z0-9_ ]+\(\*joint_|^typedef int32_t joint_|^JOINT_API ' || true)
bad_fns=$(grep -oE '^JOINT_API [^(]*\(' "$tmp/joint.h" | grep -vE '[ *]joint_[a-z0-9_]+\($' || true)
if [ -n "$leaks$bad_fns" ]; then
    echo "gen-header.sh: items without the joint_/JOINT_ prefix would be exported:" >&2
    printf '%s\n%s\n' "$leaks" "$bad_fns" >&2
    exit 1
fi

if [ "${1:-}" = "--check" ]; then
    if ! diff -u include/joint.h "$tmp/joint.h"; then
        echo "gen-header.sh: include/joint.h is stale; run scripts/gen-header.sh and commit it" >&2
        exit 1
    fi
    echo "include/joint.h is up to date"
else
    mkdir -p include
    cp "$tmp/joint.h" include/joint.h
    echo "wrote include/joint.h"
fi
