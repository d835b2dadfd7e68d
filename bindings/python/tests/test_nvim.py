"""Against Neovim: spawned (`nvim --embed`) and over its --listen socket, both directions,
including nested calls (Neovim calls us while we call it, and we call it back from there)."""
import asyncio
import os
import subprocess
import time

import pytest

import joint

EMBED = 'exec:nvim --embed --headless --clean -n -i NONE'


@pytest.fixture
def nv(nvim):
    c = joint.connect(EMBED, timeout=20)
    yield c
    try:
        c.notify('nvim_command', 'qa!')
    except joint.Error:
        pass
    c.close()


def channel(c):
    return c.call('nvim_get_api_info')[0]


def test_eval_and_functions(nv):
    assert nv.call('nvim_eval', '1+2') == 3
    assert nv.call('nvim_call_function', 'toupper', ['joint']) == 'JOINT'
    nv.call('nvim_set_var', 'joint_test', {'a': [1, 2.5, 'x']})
    assert nv.call('nvim_get_var', 'joint_test') == {'a': [1, 2.5, 'x']}
    nv.call('nvim_buf_set_lines', 0, 0, -1, True, ['one', 'two'])
    assert nv.call('nvim_buf_get_lines', 0, 0, -1, True) == ['one', 'two']


def test_errors(nv):
    with pytest.raises(joint.RemoteError) as ei:
        nv.call('nvim_eval', 'no_such_function()')
    assert 'E117' in ei.value.message
    assert isinstance(ei.value.error, list) and ei.value.code in (0, 1)
    with pytest.raises(joint.RemoteError):
        nv.call('nvim_no_such_api_function')
    assert nv.call('nvim_eval', '2*3') == 6


def test_nvim_calls_us_and_we_call_back(nv):
    ch = channel(nv)

    @nv.method
    def py_add(a, b):
        return a + b

    @nv.method
    def nested(x):
        # Called by Neovim during our nvim_eval; calls Neovim again before answering.
        return joint.peer().call('nvim_eval', '%d * 10' % x) + 1

    @nv.method
    def py_fail():
        raise ValueError('from python')

    assert nv.call('nvim_eval', 'rpcrequest(%d, "py_add", 20, 22)' % ch) == 42
    assert nv.call('nvim_eval', 'rpcrequest(%d, "nested", 4)' % ch) == 41
    with pytest.raises(joint.RemoteError) as ei:
        nv.call('nvim_eval', 'rpcrequest(%d, "py_fail")' % ch)
    assert 'ValueError: from python' in ei.value.message


def test_notifications_from_nvim(nv):
    ch = channel(nv)
    got = []

    @nv.method
    def py_event(*args):
        got.append(list(args))

    nv.call('nvim_command', 'call rpcnotify(%d, "py_event", 1, "two")' % ch)
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        nv.poll(0.05)
    assert got == [[1, 'two']]


def test_listen_socket(nvim, tmp_path):
    sock = str(tmp_path / 'nvim.sock')
    proc = subprocess.Popen(['nvim', '--headless', '--clean', '-n', '-i', 'NONE', '--listen', sock],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            assert time.monotonic() < deadline, 'nvim did not create its socket'
            assert proc.poll() is None, 'nvim exited'
            time.sleep(0.05)
        with joint.connect('unix://' + sock, timeout=10) as c:
            assert c.call('nvim_eval', '"joint" . "!"') == 'joint!'
            c.notify('nvim_command', 'qa!')
            # Neovim quits on the notification, and the connection closes.
            while not c.closed and time.monotonic() < deadline:
                c.poll(0.1)
            assert c.closed
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_asyncio_with_nvim(nvim):
    async def main():
        c = await joint.aconnect(EMBED, timeout=20)
        ch = (await c.call('nvim_get_api_info'))[0]

        @c.method
        async def py_async(x):
            return await joint.peer().acall('nvim_eval', '%d + 1' % x)

        results = await asyncio.gather(*(c.call('nvim_eval', '%d * 2' % i) for i in range(20)))
        assert results == [i * 2 for i in range(20)]
        # Neovim calls an async handler that calls Neovim back, while our call is pending.
        assert await c.call('nvim_exec_lua', 'return vim.rpcrequest(...)', [ch, 'py_async', 41]) == 42
        await c.notify('nvim_command', 'qa!')
        c.close()
    asyncio.run(asyncio.wait_for(main(), 60))
