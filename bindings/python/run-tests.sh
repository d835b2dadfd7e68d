#!/usr/bin/env bash
# Test the Python binding: make a venv (bindings/python/.venv, reused when present), install the
# package from this checkout (its build runs `cargo build --release -p joint` and bundles
# libjoint.so), pytest, mypy (tests/test_typing.py) and the peers, build the joint CLI (a test
# server), run pytest.
#
#   bindings/python/run-tests.sh [PYTEST ARGS...]
#
# Environment: PYTHON (default python3), JOINT_PY_VENV (default bindings/python/.venv),
# JOINT_PY_TEST_TIMEOUT (seconds for the whole pytest run, default 600), JOINT_REQUIRE_NVIM=1
# (fail rather than skip the Neovim tests when nvim is missing). Needs python3 with venv, cargo,
# cc, and network access to PyPI (or a pip cache/mirror) for the first run.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=${JOINT_PY_VENV:-$HERE/.venv}
PYTHON=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

step() { printf '\n==> python: %s\n' "$*"; }

step "venv ($VENV)"
if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" --version

step "test requirements"
"$VENV/bin/pip" install -q "msgpack>=1,<2" "cffi>=1.15" pytest pytest-timeout "aio-msgpack-rpc==0.2.0" mypy

step "pip install bindings/python (cargo build --release -p joint)"
"$VENV/bin/pip" install -q --force-reinstall --no-deps "$HERE"

step "joint CLI (cargo build --release -p joint-cli)"
(cd "$ROOT" && cargo build --release -p joint-cli)
export JOINT_CLI=${CARGO_TARGET_DIR:-$ROOT/target}/release/joint
[ -x "$JOINT_CLI" ] || { echo "run-tests: $JOINT_CLI was not built" >&2; exit 1; }

step "pytest"
export JOINT_PY_REQUIRE_ALL=1 JOINT_PY_INSTALLED=1
# The console script (not `python -m pytest`), so that the source tree's joint/ is not on
# sys.path: the tests exercise the installed package.
cd "$HERE"
exec timeout -k 10 "${JOINT_PY_TEST_TIMEOUT:-600}" "$VENV/bin/pytest" -p no:cacheprovider -rs -q "$@"
