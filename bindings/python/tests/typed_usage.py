"""User code of the public API, for ``mypy --strict`` (tests/test_typing.py) and run as a
program by the same test: a server with decorated handlers, blocking and asyncio clients,
streams both ways, errors, ``joint.peer()`` and ``joint.deadline()``."""
import asyncio
import threading
from typing import Any, AsyncIterator, Dict, Generator, List, Optional

import joint

server = joint.Server(workers=2)


@server.method
def add(a: int, b: int) -> int:
    return a + b


@server.method('greet')
def say_hello(name: str, punctuation: str = '!') -> str:
    return 'hello ' + name + punctuation


@server.method(pool=True)
def crunch(n: int) -> int:
    return sum(range(n))


@server.method
async def slow_echo(value: str) -> str:
    await asyncio.sleep(0.01)
    return value


@server.method
def count(n: int) -> Generator[int, Optional[int], int]:
    for i in range(n):
        yield i
    return n


@server.method
async def ticks(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


@server.method
def whoami() -> Dict[str, Any]:
    peer: Optional[joint.Peer] = joint.peer()
    left: Optional[float] = joint.deadline()
    return {'tls': peer.tls_version if peer is not None else None, 'deadline': left}


@server.method
def fail() -> None:
    raise joint.RemoteError(5, 'no such thing')


@server.fallback
def anything(method: str, *args: Any, **kwargs: Any) -> List[Any]:
    return [method, list(args)]


def blocking(uri: str) -> None:
    client: joint.Client
    with joint.connect(uri, timeout=5) as client:
        total: Any = client.call('add', 2, 3)
        assert total == 5
        assert client.call('greet', name='Ada') == 'hello Ada!'
        assert client.call_with('add', [1, 2], timeout=None) == 3
        assert client.call('crunch', 10) == 45
        assert client.call('whoami')['tls'] is None
        assert client.call('unknown', 1) == ['unknown', [1]]
        client.notify('add', 1, 1)
        stream: joint.Stream = client.call_stream('count', 3, window=2)
        assert list(stream) == [0, 1, 2] and stream.result == 3
        try:
            client.call('fail')
        except joint.RemoteError as e:
            code: Optional[int] = e.code
            assert code == 5 and e.message == 'no such thing'
        try:
            client.call('add', 1, 2, timeout=0.000001)
        except (joint.TimeoutError, joint.RemoteError):
            pass


async def asynchronous(uri: str) -> None:
    client: joint.AsyncClient = await joint.aconnect(uri, timeout=5)
    async with client:
        results = await asyncio.gather(*(client.call('slow_echo', str(i)) for i in range(5)))
        assert results == [str(i) for i in range(5)]
        stream: joint.AsyncStream = client.stream('ticks', 3)
        assert [item async for item in stream] == [0, 1, 2]
        await client.notify('add', 1, 2)


def main() -> None:
    uri = server.listen('tcp://127.0.0.1:0')
    serving = threading.Thread(target=server.serve, kwargs={'grace': 1.0}, daemon=True)
    serving.start()
    try:
        blocking(uri)
        asyncio.run(asynchronous(uri))
        try:
            joint.connect('tcp://127.0.0.1:1', connect_timeout=2)
        except joint.ConnectionError as e:
            status: Optional[int] = e.status
            assert status is not None
    finally:
        server.stop()
        serving.join(10)
    print('ok', joint.library_version())


if __name__ == '__main__':
    main()
