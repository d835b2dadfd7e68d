"""A third-party Python MessagePack-RPC implementation, aio-msgpack-rpc 0.2.0 (PyPI): our
client calls its server, and its client calls our server."""
import asyncio
import os

import msgpack
import pytest

import joint

from conftest import missing

try:
    import aio_msgpack_rpc
    from aio_msgpack_rpc.error import RPCResponseError
except ImportError:  # pragma: no cover
    aio_msgpack_rpc = None


@pytest.fixture(autouse=True)
def need_aio():
    if aio_msgpack_rpc is None:
        missing('aio-msgpack-rpc (pip install aio-msgpack-rpc==0.2.0)')


def unpacker():
    # Its default unpacker refuses maps with non-str keys; msgpack 1.x wants this spelled out.
    return msgpack.Unpacker(raw=False, strict_map_key=False)


class AioHandler:
    def __init__(self):
        self.notes = []

    def echo(self, x):
        return x

    def sum(self, *xs):
        return sum(xs)

    def fail(self):
        raise Exception('aio says no')       # aio-msgpack-rpc answers str(exception)

    def note(self, *params):
        self.notes.append(list(params))

    def notes_seen(self):
        return self.notes

    async def sleep(self, seconds, tag):
        await asyncio.sleep(seconds)
        return tag


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.mark.parametrize('transport', ['tcp', 'unix'])
def test_our_client_calls_aio_server(transport, tmp_path):
    async def main():
        handler = AioHandler()
        rpc = aio_msgpack_rpc.Server(handler, unpacker_factory=unpacker)
        if transport == 'tcp':
            srv = await asyncio.start_server(rpc, '127.0.0.1', 0)
            uri = 'tcp://127.0.0.1:%d' % srv.sockets[0].getsockname()[1]
        else:
            path = str(tmp_path / 'aio.sock')
            srv = await asyncio.start_unix_server(rpc, path)
            uri = 'unix://' + path
        async with srv:
            c = await joint.aconnect(uri, timeout=10)
            value = {'s': 'str \u2713', 'b': b'\x00bin', 'l': [1, -2, 3.5, None, True], 'n': {'deep': [{}]}}
            assert await c.call('echo', value) == value
            assert await c.call('sum', 1, 2, 3) == 6
            with pytest.raises(joint.RemoteError) as ei:
                await c.call('fail')
            assert ei.value.error == 'aio says no'
            assert ei.value.message == 'aio says no' and ei.value.code is None
            await c.notify('note', 'hello', 1)
            assert await c.call('notes_seen') == [['hello', 1]]
            # Pipelined calls answered out of order.
            tags = await asyncio.gather(*(c.call('sleep', (10 - i) / 100.0, i) for i in range(10)))
            assert tags == list(range(10))
            with pytest.raises(joint.TimeoutError):
                await c.call('sleep', 2, 'late', timeout=0.1)
            c.close()

            # The blocking client too (aio's server keeps running on this loop meanwhile).
            def blocking():
                with joint.connect(uri, timeout=10) as bc:
                    return bc.call('sum', 40, 2), bc.call('echo', [b'x'])
            assert await asyncio.get_running_loop().run_in_executor(None, blocking) == (42, [b'x'])
    run(main())


def make_server():
    server = joint.Server()
    notes = []

    @server.method
    def add(a, b):
        return a + b

    @server.method
    def echo(x):
        return x

    @server.method
    def fail():
        raise ValueError('joint says no')

    @server.method
    async def slow(seconds, tag):
        await asyncio.sleep(seconds)
        return tag

    @server.method
    def count(n):
        yield from range(n)

    @server.method
    def note(*params):
        notes.append(list(params))

    @server.method
    def notes_seen():
        return notes

    return server


@pytest.mark.parametrize('transport', ['tcp', 'unix'])
def test_aio_client_calls_our_server(transport, tmp_path):
    async def main():
        server = make_server()
        if transport == 'tcp':
            uri = server.listen('tcp://127.0.0.1:0')
            host, port = uri[len('tcp://'):].rsplit(':', 1)
            opened = asyncio.open_connection(host, int(port))
        else:
            path = str(tmp_path / 'joint.sock')
            uri = server.listen('unix://' + path)
            opened = asyncio.open_unix_connection(path)
        serving = asyncio.ensure_future(server.aserve())
        reader, writer = await opened
        c = aio_msgpack_rpc.Client(reader, writer, unpacker=unpacker(), response_timeout=10)
        assert await c.call('add', 2, 3) == 5
        value = {'s': 'str', 'b': b'\x01', 'l': [1, [2, None]], 'f': 0.5}
        assert await c.call('echo', value) == value
        with pytest.raises(RPCResponseError) as ei:
            await c.call('fail')
        assert ei.value.args[0] == [0, 'ValueError: joint says no']
        with pytest.raises(RPCResponseError) as ei:
            await c.call('nope')
        assert ei.value.args[0][0] == joint.RPC_NO_METHOD
        assert await c.call('count', 3) == [0, 1, 2]     # generator handler: the stock fallback
        await c.notify('note', 'from aio')
        assert await c.call('notes_seen') == [['from aio']]
        tags = await asyncio.gather(*(c.call('slow', (5 - i) / 50.0, i) for i in range(5)))
        assert tags == list(range(5))
        c.close()
        server.stop()
        await asyncio.wait_for(serving, 10)
    run(main())
