"""keepalive=: a stopped joint server (SIGSTOP) is found by the keepalive and the pending
call fails with ConnectionError within about interval + timeout, instead of hanging; the
option's values are checked."""
import os
import signal
import time

import pytest

import joint


def test_a_stopped_server_fails_the_pending_call(fresh_cli_server):
    c = joint.connect(fresh_cli_server.tcp, timeout=30, keepalive=(0.1, 0.3))
    try:
        assert c.call('echo', 1) == 1
        os.kill(fresh_cli_server.proc.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            with pytest.raises(joint.ConnectionError) as e:
                c.call('sleep', 60000)
            waited = time.monotonic() - t0
        finally:
            os.kill(fresh_cli_server.proc.pid, signal.SIGCONT)
        assert 'keepalive' in str(e.value), e.value
        assert 0.3 <= waited < 5, waited
    finally:
        c.close()


def test_keepalive_off_and_bad_values(cli_server):
    with joint.connect(cli_server.tcp, timeout=10, keepalive=False) as c:
        assert c.call('echo', 2) == 2
    for bad in [(0, 1), (1, 0), 5, ('a', 'b')]:
        with pytest.raises((ValueError, TypeError)):
            joint.connect(cli_server.tcp, timeout=10, keepalive=bad)
