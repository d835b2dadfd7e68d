"""Callback keys (user_data -> Python object) are all released: per call when the completion
runs, per registration through free_user_data, per context when it is freed."""
import asyncio
import gc
import time
import weakref

import pytest

import joint
from joint import _ffi


def settle():
    gc.collect()
    return _ffi.registry_size()


def test_many_blocking_calls(cli_server, registry_baseline):
    with joint.connect(cli_server.tcp, timeout=10) as c:
        during = _ffi.registry_size()
        for i in range(2000):
            assert c.call('add', i, 1) == i + 1
        for _ in range(100):
            with pytest.raises(joint.RemoteError):
                c.call('add', 'x', 1)
        for _ in range(5):
            with pytest.raises(joint.TimeoutError):
                c.call('sleep', 1000, timeout=0.02)
        for i in range(100):
            c.notify('n', i)
        assert c.call('add', 0, 0) == 0
        assert _ffi.registry_size() == during      # nothing left over per call
    assert settle() == registry_baseline


def test_many_async_calls_and_cancellations(cli_server, registry_baseline):
    async def main():
        c = await joint.aconnect(cli_server.tcp, timeout=10)
        during = _ffi.registry_size()
        for _ in range(10):
            assert await asyncio.gather(*(c.call('add', i, i) for i in range(200))) == [2 * i for i in range(200)]
        tasks = [asyncio.ensure_future(c.call('sleep', 5000)) for _ in range(50)]
        await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await c.call('add', 1, 1)     # the cancelled completions have run by now
        assert _ffi.registry_size() == during
        c.close()
    asyncio.run(main())
    assert settle() == registry_baseline


def test_pending_calls_released_on_close(cli_server, registry_baseline):
    async def main():
        c = await joint.aconnect(cli_server.tcp)
        tasks = [asyncio.ensure_future(c.call('sleep', 5000)) for _ in range(20)]
        await asyncio.sleep(0.05)
        c.close()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, joint.ConnectionError) for r in results), results
    asyncio.run(main())
    assert settle() == registry_baseline


def test_server_requests_and_registrations(serve_in_thread, registry_baseline):
    server = joint.Server()
    for i in range(20):
        server.register('m%d' % i, lambda i=i: i)
    server.register('m0', lambda: 'replaced')        # the replaced registration is released
    uri = serve_in_thread(server)
    with joint.connect(uri, timeout=10) as c:
        for _ in range(200):
            assert c.call('m0') == 'replaced'
        server.unregister('m1')
        with pytest.raises(joint.RemoteError):
            c.call('m1')
    server.stop()
    for _ in range(500):
        if server.closed:
            break
        time.sleep(0.01)
    assert server.closed
    del server
    assert settle() == registry_baseline


def test_dropped_objects_free_their_context(cli_server, registry_baseline):
    c = joint.connect(cli_server.tcp)

    @c.method
    def handler():
        return 1

    ctx = weakref.ref(c.ctx)
    del c
    gc.collect()
    assert ctx() is None
    s = joint.Server()
    s.listen('tcp://127.0.0.1:0')
    sctx = weakref.ref(s.ctx)
    del s
    gc.collect()
    assert sctx() is None
    assert settle() == registry_baseline


def test_streams_release_their_keys(serve_in_thread, registry_baseline):
    server = joint.Server(window=8)

    @server.method
    def count(n):
        yield from range(n)
        return n

    @server.method
    def echo():
        x = yield
        while True:
            x = yield x

    uri = serve_in_thread(server)
    with joint.connect(uri, timeout=10) as c:
        during = _ffi.registry_size()
        for _ in range(50):
            assert list(c.call_stream('count', 20, window=3)) == list(range(20))
        for _ in range(20):                    # cancelled half-way
            s = c.call_stream('count', 10 ** 6, window=2)
            next(s)
            s.close()
        for _ in range(20):                    # dropped half-way
            s = c.call_stream('echo', client_stream=True)
            next(s)
            s.send(1)
            del s
        with pytest.raises(joint.TimeoutError):
            list(c.call_stream('count', 10 ** 6, window=1, timeout=0.05))
        assert c.call('count', 2) == [0, 1]    # a drive: the dropped streams' cancels go out
        assert _ffi.registry_size() == during
        for _ in range(200):                   # the server let go of every generator
            if not server.ctx.streams:
                break
            time.sleep(0.01)
        assert not server.ctx.streams

    async def main():
        c = await joint.aconnect(uri, timeout=10)
        during = _ffi.registry_size()
        for _ in range(20):
            assert [x async for x in c.stream('count', 10, window=2)] == list(range(10))
        s = c.stream('count', 10 ** 6, window=2)
        await s.__anext__()
        await s.aclose()
        await c.call('count', 1)
        assert _ffi.registry_size() == during
        c.close()
    asyncio.run(main())
    server.stop()
    for _ in range(500):
        if server.closed:
            break
        time.sleep(0.01)
    assert server.closed
    del server, count, echo
    assert settle() == registry_baseline


def test_fallback_keys_released(registry_baseline):
    server = joint.Server()
    base = _ffi.registry_size()
    server.fallback(lambda method: 1)
    assert _ffi.registry_size() == base + 1
    server.fallback(lambda method: 2)              # replacing frees the first
    assert _ffi.registry_size() == base + 1
    server.set_fallback(None)                      # removing frees it
    assert _ffi.registry_size() == base
    server.fallback(lambda method: 3)
    server.close()                                 # freeing the context frees it
    del server
    assert settle() == registry_baseline
