"""asyncio: acall/aconnect/astream, concurrency, cancellation, and the server on the loop —
all driven by loop.add_reader(ctx.fd) + call_later, no helper thread."""
import asyncio
import threading
import time

import pytest

import joint


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_aconnect_and_call(cli_server):
    async def main():
        async with await joint.aconnect(cli_server.tcp, timeout=10) as c:
            assert isinstance(c, joint.AsyncClient)
            assert await c.call('add', 1, 2) == 3
            assert await c.call('add', a=2, b=5) == 7
            assert await c.call_with('add', [1, 1]) == 2
            await c.notify('anote', 'x')
            assert await c.call('last_notification') == ['anote', ['x']]
        assert c.closed
    run(main())


def test_concurrent_calls_overlap(cli_server):
    async def main():
        c = await joint.aconnect(cli_server.tcp, timeout=10)
        t = time.monotonic()
        results = await asyncio.gather(*(c.call('sleep', 300) for _ in range(100)),
                                       *(c.call('add', i, i) for i in range(100)))
        elapsed = time.monotonic() - t
        assert results[:100] == [None] * 100 and results[100:] == [2 * i for i in range(100)]
        assert elapsed < 2.0, 'calls did not run concurrently (%.2fs)' % elapsed
        c.close()
    run(main())


def test_no_helper_thread(cli_server):
    async def main():
        before = threading.active_count()
        c = await joint.aconnect(cli_server.tcp)
        await asyncio.gather(*(c.call('add', 1, i) for i in range(10)))
        assert threading.active_count() == before
        c.close()
    run(main())


def test_errors_and_timeouts(cli_server):
    async def main():
        c = await joint.aconnect(cli_server.tcp, timeout=10)
        with pytest.raises(joint.RemoteError) as ei:
            await c.call('add', 'x', 1)
        assert ei.value.code == joint.RPC_INVALID_PARAMS
        with pytest.raises(joint.TimeoutError):
            await c.call('sleep', 3000, timeout=0.1)
        assert await c.call('add', 1, 1) == 2
        c.close()
    run(main())


def test_cancellation_cancels_the_call(cli_server, registry_baseline):
    async def main():
        c = await joint.aconnect(cli_server.tcp)
        task = asyncio.ensure_future(c.call('sleep', 3000))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(c.call('sleep', 3000), 0.1)
        assert await c.call('add', 2, 2) == 4
        await asyncio.sleep(0.05)
        c.close()
    run(main())
    import gc
    gc.collect()
    assert joint._ffi.registry_size() == registry_baseline


def test_aconnect_refused():
    async def main():
        with pytest.raises(joint.ConnectionError):
            await joint.aconnect('tcp://127.0.0.1:1', timeout=5)
    run(main())


def test_blocking_client_acall(cli_server):
    async def main():
        with joint.connect(cli_server.tcp, timeout=10) as c:
            assert c.call('add', 1, 2) == 3                 # blocking
            assert await c.acall('add', 3, 4) == 7           # the same client on the loop
            assert c.call('add', 5, 6) == 11                 # blocking again
            s = c.astream('echo', [1, 2])
            assert [x async for x in s] == [] and s.result == [1, 2]   # a plain method: no items
    run(main())


def test_astream_fallback(cli_server):
    async def main():
        c = await joint.aconnect(cli_server.tcp)
        s = c.stream('echo', ['a', 'b', 'c'])
        assert [x async for x in s] == [] and s.result == ['a', 'b', 'c']
        agen = c.stream('echo', [1, 2])
        with pytest.raises(NotImplementedError):          # joint.UnsupportedError: no client_stream
            await agen.asend('to the server')
        await agen.aclose()
        c.close()
        # A stock client: the answer is the one item.
        c = await joint.aconnect(cli_server.tcp, extension=False)
        s = c.stream('echo', [1, 2], client_stream=True)
        assert await s.__anext__() == [1, 2]
        with pytest.raises(joint.UnsupportedError):
            await s.asend('to the server')
        with pytest.raises(StopAsyncIteration):
            await s.__anext__()
        assert s.result == [1, 2] and s.extended is False
        c.close()
    run(main())


def make_async_server():
    server = joint.Server()

    @server.method
    async def slow(seconds, tag):
        await asyncio.sleep(seconds)
        return tag

    @server.method
    def add(a, b):
        return a + b

    @server.method
    async def squares(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i * i

    @server.method
    async def afail():
        await asyncio.sleep(0)
        raise ValueError('async failure')

    @server.method
    async def ask_back(x):
        return await joint.peer().acall('twice', x)

    return server


def test_server_under_asyncio_with_client_on_the_same_loop():
    async def main():
        server = make_async_server()
        uri = server.listen('tcp://127.0.0.1:0')
        serving = asyncio.ensure_future(server.aserve())
        c = await joint.aconnect(uri, timeout=10)

        @c.method
        def twice(x):
            return 2 * x

        t = time.monotonic()
        tags = await asyncio.gather(*(c.call('slow', 0.2, i) for i in range(50)))
        assert tags == list(range(50))
        assert time.monotonic() - t < 2.0
        assert await c.call('add', 1, 2) == 3
        assert await c.call('squares', 4) == [0, 1, 4, 9]
        assert [x async for x in c.stream('squares', 3)] == [0, 1, 4]
        with pytest.raises(joint.RemoteError) as ei:
            await c.call('afail')
        assert ei.value.error == [0, 'ValueError: async failure']
        assert await c.call('ask_back', 21) == 42
        c.close()
        server.stop()
        await asyncio.wait_for(serving, 10)
        assert server.closed
    run(main())


def test_async_fallback_under_asyncio():
    async def main():
        server = joint.Server()

        @server.fallback
        async def anything(method, *args):
            await asyncio.sleep(0)
            if method == 'afail':
                raise ValueError('async fallback failure')
            if method == 'back':
                return await joint.peer().acall(*args)
            return [method] + list(args)

        uri = server.listen('tcp://127.0.0.1:0')
        serving = asyncio.ensure_future(server.aserve())
        c = await joint.aconnect(uri, timeout=10)

        @c.fallback
        def client_side(method, x):
            return '%s:%s' % (method, x)

        assert await c.call('echo', 1, 2) == ['echo', 1, 2]
        with pytest.raises(joint.RemoteError) as ei:
            await c.call('afail')
        assert ei.value.error == [0, 'ValueError: async fallback failure']
        assert await c.call('back', 'anything', 7) == 'anything:7'
        c.close()
        server.stop()
        await asyncio.wait_for(serving, 10)
        assert server.closed
    run(main())


def test_aserve_cancelled_shuts_down():
    async def main():
        server = make_async_server()
        uri = server.listen('tcp://127.0.0.1:0')
        serving = asyncio.ensure_future(server.aserve(grace=5))
        c = await joint.aconnect(uri, timeout=10)
        pending = asyncio.ensure_future(c.call('slow', 0.3, 'answered'))
        await asyncio.sleep(0.1)
        serving.cancel()
        # The request already received is answered during the graceful shutdown.
        assert await pending == 'answered'
        with pytest.raises(asyncio.CancelledError):
            await serving
        assert server.closed
        c.close()
    run(main())


def test_attach_without_waiting():
    async def main():
        server = make_async_server()
        uri = server.listen('tcp://127.0.0.1:0')
        server.attach()
        c = await joint.aconnect(uri)
        assert await c.call('add', 5, 5) == 10
        c.close()
        server.close()
    run(main())


def test_async_handler_on_a_blocking_server_runs(serve_in_thread):
    # serve() runs a private asyncio loop, so async handlers work there too.
    server = make_async_server()
    uri = serve_in_thread(server)
    with joint.connect(uri, timeout=10) as c:
        assert c.call('slow', 0.01, 'x') == 'x'
        assert c.call('squares', 3) == [0, 1, 4]
