"""The package is typed (py.typed): ``mypy --strict`` is clean on the installed package and on
user code of its public API (tests/typed_usage.py), catches misuse, and signatures print
readably (no ``<object object at 0x...>`` defaults)."""
import importlib.util
import inspect
import os
import subprocess
import sys

import pytest

import joint

from conftest import missing

HERE = os.path.dirname(os.path.abspath(__file__))
USAGE = os.path.join(HERE, 'typed_usage.py')


def mypy(tmp_path, *args):
    """``mypy --strict ARGS`` from a directory outside the source tree (so ``joint`` is the
    installed package); (exit status, output)."""
    if importlib.util.find_spec('mypy') is None:
        missing('mypy (run-tests.sh installs it)')
    proc = subprocess.run([sys.executable, '-m', 'mypy', '--strict', '--no-color-output',
                           '--cache-dir', str(tmp_path / 'cache'), *args],
                          cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=240)
    return proc.returncode, proc.stdout


def test_mypy_strict_is_clean_on_the_installed_package(tmp_path):
    status, out = mypy(tmp_path, '-p', 'joint')
    assert status == 0, out
    assert 'Success: no issues found' in out


def test_mypy_strict_is_clean_on_user_code(tmp_path):
    status, out = mypy(tmp_path, USAGE)
    assert status == 0, out


def test_mypy_strict_catches_misuse(tmp_path):
    # The checks have teeth: the public API is not Any.
    bad = tmp_path / 'bad.py'
    bad.write_text(
        'import joint\n'
        'c = joint.connect("tcp://127.0.0.1:1", timeout="5")\n'
        'c.call(42)\n'
        'n: int = joint.deadline()\n'
        'server = joint.Server(workers=2)\n'
        '@server.method\n'
        'def f(x: int) -> int:\n'
        '    return x\n'
        's: str = f(1)\n')
    status, out = mypy(tmp_path, str(bad))
    assert status == 1, out
    for line in (2, 3, 4, 9):          # every line above with a wrong type, and only those
        assert 'bad.py:%d: error' % line in out, out
    assert out.count(': error:') == 4, out


def test_the_typed_usage_runs(tmp_path):
    proc = subprocess.run([sys.executable, USAGE], cwd=str(tmp_path), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.startswith('ok ')


PUBLIC = [joint.connect, joint.aconnect, joint.spawn, joint.peer, joint.deadline,
          joint.Client.call, joint.Client.call_with, joint.Client.call_stream, joint.Client.acall,
          joint.Client.astream, joint.AsyncClient.call, joint.AsyncClient.stream,
          joint.Server.__init__, joint.Server.serve, joint.Server.method, joint.Stream.__init__,
          joint.AsyncStream.__init__, joint.RemoteError.__init__, joint.TLSConfig.__init__]


@pytest.mark.parametrize('fn', PUBLIC, ids=lambda f: f.__qualname__)
def test_signatures_print_readably(fn):
    text = str(inspect.signature(fn))
    assert 'object at 0x' not in text, text
    params = inspect.signature(fn).parameters
    if 'timeout' in params and fn not in (joint.connect, joint.aconnect, joint.spawn):   # theirs: None, no timeout
        assert params['timeout'].default is not inspect.Parameter.empty
        assert repr(params['timeout'].default) == '<default>'


def test_connect_signature():
    text = str(inspect.signature(joint.connect))
    assert 'timeout: Optional[float] = None' in text, text
    assert 'connect_timeout: Union[float, NoneType, joint._core.Default] = <default>' in text, text
    assert str(inspect.signature(joint.Client.call)).endswith(
        "timeout: Union[float, NoneType, joint._core.Default] = <default>, **kwargs: Any) -> Any")
