"""Fixtures: the `joint serve` CLI server, an in-process joint Server, Neovim.

Environment:
    JOINT_CLI              the joint CLI binary (default: <repo>/target/release/joint)
    JOINT_PY_REQUIRE_ALL   1: a missing joint CLI or aio-msgpack-rpc fails its tests instead
                           of skipping them (run-tests.sh sets it: it provides both)
    JOINT_REQUIRE_NVIM     1: a missing Neovim fails its tests (scripts/test.sh sets it)
    JOINT_PY_INSTALLED     1: fail unless `joint` is the installed package (with its bundled
                           libjoint.so and cdef), not the source tree (run-tests.sh sets it)
"""
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

import joint

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, '..', '..', '..'))
REQUIRE_ALL = os.environ.get('JOINT_PY_REQUIRE_ALL') == '1'


def pytest_report_header(config):
    return 'joint %s from %s; libjoint %s from %s' % (
        joint.__version__, os.path.dirname(joint.__file__), joint.library_version(), joint._ffi.LIBRARY_PATH)


def pytest_sessionstart(session):
    if os.environ.get('JOINT_PY_INSTALLED') == '1':
        pkg = os.path.dirname(os.path.abspath(joint.__file__))
        bundled = os.path.join(pkg, 'libjoint.so')
        if not (os.path.isfile(os.path.join(pkg, '_cdef.h')) and
                os.path.abspath(joint._ffi.LIBRARY_PATH) == bundled):
            raise pytest.UsageError('joint was imported from %s, not from an installed package '
                                    '(run pytest from outside bindings/python, or use its '
                                    'console script rather than python -m pytest)' % pkg)


def missing(what, required=REQUIRE_ALL):
    """Skip (or, when required, fail) a test whose peer is not installed."""
    if required:
        pytest.fail('%s is required here (JOINT_PY_REQUIRE_ALL/JOINT_REQUIRE_NVIM) but missing' % what)
    pytest.skip('%s not available' % what)


def cli_path():
    return os.environ.get('JOINT_CLI') or os.path.join(ROOT, 'target', 'release', 'joint')


@pytest.fixture(scope='session')
def cli():
    path = cli_path()
    if not os.access(path, os.X_OK):
        missing('the joint CLI (%s; build it with `cargo build --release -p joint-cli`)' % path)
    return path


class CliServer:
    """`joint serve` in a child process, listening on TCP (port 0) and a Unix socket."""

    def __init__(self, cli, tmpdir):
        self.sock = os.path.join(str(tmpdir), 'joint-serve.sock')
        self.log = os.path.join(str(tmpdir), 'joint-serve.log')
        self.err = open(self.log, 'w')
        self.proc = subprocess.Popen([cli, 'serve', '--listen', 'tcp://127.0.0.1:0',
                                      '--listen', 'unix://' + self.sock],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.err)
        uris = []
        deadline = time.monotonic() + 20
        while len(uris) < 2:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                with open(self.log) as f:
                    raise RuntimeError('joint serve did not start:\n' + f.read())
            time.sleep(0.02)
            with open(self.log) as f:
                uris = re.findall(r'listening on (\S+)', f.read())
        self.tcp = next(u for u in uris if u.startswith('tcp://'))
        self.unix = next(u for u in uris if u.startswith('unix://'))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()          # (SIGTERM would wait for requests tests left unanswered)
            self.proc.wait()
        self.err.close()


@pytest.fixture(scope='session')
def cli_server(cli, tmp_path_factory):
    server = CliServer(cli, tmp_path_factory.mktemp('cli'))
    yield server
    server.stop()


@pytest.fixture
def fresh_cli_server(cli, tmp_path):
    """A `joint serve` of the test's own (for tests that kill it)."""
    server = CliServer(cli, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def client(cli_server):
    c = joint.connect(cli_server.tcp, timeout=10)
    yield c
    c.close()


# ---- an in-process joint Server in a thread ---------------------------------------------------

class ThreadedServer:
    def __init__(self, server, uri='tcp://127.0.0.1:0', tls=None, grace=2.0):
        self.server = server
        self.uri = server.listen(uri, tls=tls)
        self.grace = grace
        self.error = None
        self.thread = threading.Thread(target=self._run, name='joint-server', daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.server.serve(grace=self.grace)
        except BaseException as e:  # noqa: B902 - reported by stop()
            self.error = e

    def stop(self):
        self.server.stop()
        self.thread.join(15)
        assert not self.thread.is_alive(), 'the server thread did not stop'
        if self.error is not None:
            raise self.error


@pytest.fixture
def serve_in_thread():
    started = []

    def start(server, uri='tcp://127.0.0.1:0', tls=None):
        t = ThreadedServer(server, uri, tls)
        started.append(t)
        return t.uri

    yield start
    for t in started:
        t.stop()


# ---- Neovim -----------------------------------------------------------------------------------

@pytest.fixture(scope='session')
def nvim():
    path = shutil.which('nvim')
    if not path:
        missing('nvim', os.environ.get('JOINT_REQUIRE_NVIM') == '1')
    return path


@pytest.fixture
def registry_baseline():
    """The callback-key registry size before the test (for leak checks)."""
    import gc
    gc.collect()
    return joint._ffi.registry_size()


def python_exe():
    return sys.executable
