#!/usr/bin/env bash
# Test the Go binding (bindings/go): build the C library and the joint CLI (a test server),
# then gofmt, go vet, build the example, go test, and go test -race.
#
#   bindings/go/run-tests.sh [GO TEST ARGS...]      e.g. -run Stream -v
#
# Environment: JOINT_GO_RACE=0 skips the -race run; JOINT_GO_TEST_TIMEOUT (seconds per go
# test run, default 600); JOINT_REQUIRE_NVIM=1 fails rather than skips the Neovim tests when
# nvim is missing; CARGO_TARGET_DIR is honoured. Needs go (1.22 or later), cargo and cc, and
# the Go module proxy (or a module cache) for github.com/vmihailenco/msgpack/v5 on the first
# run.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TIMEOUT=${JOINT_GO_TEST_TIMEOUT:-600}

step() { printf '\n==> go: %s\n' "$*"; }

command -v go >/dev/null || { echo "run-tests: go not found (install Go 1.22 or later)" >&2; exit 1; }
go version

step "cargo build --release -p joint -p joint-cli"
(cd "$ROOT" && cargo build --release -p joint -p joint-cli)
export JOINT_CLI=$TARGET/release/joint
[ -x "$JOINT_CLI" ] || { echo "run-tests: $JOINT_CLI was not built" >&2; exit 1; }
[ -f "$TARGET/release/libjoint.a" ] || { echo "run-tests: $TARGET/release/libjoint.a was not built" >&2; exit 1; }

export CGO_ENABLED=1
TAGS=()
if [ "$(cd "$TARGET" && pwd -P)" != "$(cd "$ROOT/target" 2>/dev/null && pwd -P || true)" ]; then
    # The library is not where the package's #cgo directive looks: link it explicitly.
    TAGS=(-tags joint_external)
    export CGO_LDFLAGS="$TARGET/release/libjoint.a -lgcc_s -lutil -lrt -lpthread -lm -ldl ${CGO_LDFLAGS:-}"
fi
# A test that needs the CLI fails instead of skipping; Neovim follows JOINT_REQUIRE_NVIM.
export JOINT_GO_REQUIRE_ALL=1

cd "$HERE"
step "go mod download"
timeout 300 go mod download

step "gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
    echo "run-tests: not gofmt-ed:" >&2
    echo "$unformatted" >&2
    exit 1
fi

step "go vet"
timeout 600 go vet "${TAGS[@]}" ./...

step "example (go run ./examples/hello)"
out=$(timeout 120 go run "${TAGS[@]}" ./examples/hello)
[ "$out" = "hello, world" ] || { echo "run-tests: examples/hello printed: $out" >&2; exit 1; }
echo "$out"

# examples/hello as a program of another module, which finds the binding through a replace
# directive, then through a go.work workspace (README, "Using the package from another module").
outside=$(mktemp -d "${TMPDIR:-/tmp}/joint-go-outside.XXXXXX")
trap 'rm -rf "$outside"' EXIT
module_path=$(go list -m)
for how in replace workspace; do
    step "examples/hello from another module ($how)"
    app="$outside/$how"
    mkdir -p "$app"
    cp examples/hello/main.go "$app/"
    printf 'module example.com/hello\n\ngo 1.22\n' >"$app/go.mod"
    if [ "$how" = replace ]; then
        printf '\nrequire %s v0.0.0\n\nreplace %s => %s\n' "$module_path" "$module_path" "$HERE" >>"$app/go.mod"
        (cd "$app" && GOWORK=off timeout 300 go mod tidy && GOWORK=off timeout 300 go build "${TAGS[@]}" -o hello .)
    else
        # No require line: the workspace provides the module (a require of an unpublished
        # version would send go to the module proxy for it).
        (cd "$app" && timeout 60 go work init . "$HERE" && timeout 300 go build "${TAGS[@]}" -o hello .)
    fi
    out=$(timeout 60 "$app/hello")
    [ "$out" = "hello, world" ] || { echo "run-tests: hello from another module ($how) printed: $out" >&2; exit 1; }
    echo "$out"
done

step "go test"
timeout -k 10 "$TIMEOUT" go test "${TAGS[@]}" -count=1 -timeout "${TIMEOUT}s" "$@" .

if [ "${JOINT_GO_RACE:-1}" != 0 ]; then
    step "go test -race"
    timeout -k 10 "$TIMEOUT" go test "${TAGS[@]}" -race -count=1 -timeout "${TIMEOUT}s" "$@" .
fi

step "all Go tests passed"
