"""joint: MessagePack-RPC for Python, on the joint C library (libjoint, bundled).

Blocking::

    client = joint.connect("tcp://127.0.0.1:6000", timeout=5)
    client.call("add", 1, 2)                 # 3
    client.call("greet", name="Ada")         # keyword params: the params are a map
    client.notify("log", "hello")

TLS::

    client = joint.connect("tls://127.0.0.1:6001", timeout=5, tls=joint.TLSConfig(ca="ca.pem"))
    server.listen("tls://0.0.0.0:6001", tls=joint.TLSConfig(cert="server.pem", key="server.key"))

asyncio::

    client = await joint.aconnect("tcp://127.0.0.1:6000")
    await client.call("add", 1, 2)

Serving::

    server = joint.Server()

    @server.method
    def add(a, b):
        return a + b

    @server.method
    def count(n):                # a generator streams its items (joint extension)
        for i in range(n):
            yield i
        return n

    server.serve("tcp://127.0.0.1:6000")

Streaming::

    stream = client.call_stream("count", 1000)
    for item in stream: ...
    stream.result                # 1000 (also StopIteration.value)

Values are converted with the ``msgpack`` package: str <-> str, bytes <-> bin, list/tuple ->
array, dict <-> map, and msgpack.ExtType/Timestamp for ext values.
"""
from typing import Any, Optional, Sequence

from ._errors import (ConnectionError, EndOfInput, Error, ProtocolError, RemoteError, TimeoutError,
                      TLSError, UnsupportedError)
from ._tls import TLSConfig
from ._core import current_peer as peer, deadline
from ._streams import AsyncStream, Stream
from ._client import AsyncClient, Client, ConnectTimeoutError, Peer, aconnect, connect
from ._server import Server
from . import _ffi

__all__ = [
    'connect', 'aconnect', 'spawn', 'Client', 'AsyncClient', 'Peer', 'Server', 'peer',
    'deadline', 'Stream', 'AsyncStream', 'TLSConfig',
    'Error', 'TimeoutError', 'ConnectionError', 'ConnectTimeoutError', 'TLSError', 'ProtocolError',
    'RemoteError', 'UnsupportedError', 'EndOfInput', 'library_version', '__version__',
    'RPC_HANDLER_FAILED', 'RPC_INVALID_PARAMS', 'RPC_NO_METHOD', 'RPC_INVALID_REQUEST',
    'RPC_TOO_LARGE', 'RPC_TOO_MANY_REQUESTS', 'RPC_SHUTTING_DOWN', 'RPC_NOT_ANSWERED',
    'RPC_CANCELLED', 'RPC_DEADLINE_EXCEEDED',
]

__version__ = '0.2.0'

# Codes of joint's [code, message] error objects (docs/PROTOCOL.md).
RPC_HANDLER_FAILED: int = _ffi.lib.JOINT_RPC_HANDLER_FAILED
RPC_INVALID_PARAMS: int = _ffi.lib.JOINT_RPC_INVALID_PARAMS
RPC_NO_METHOD: int = _ffi.lib.JOINT_RPC_NO_METHOD
RPC_INVALID_REQUEST: int = _ffi.lib.JOINT_RPC_INVALID_REQUEST
RPC_TOO_LARGE: int = _ffi.lib.JOINT_RPC_TOO_LARGE
RPC_TOO_MANY_REQUESTS: int = _ffi.lib.JOINT_RPC_TOO_MANY_REQUESTS
RPC_SHUTTING_DOWN: int = _ffi.lib.JOINT_RPC_SHUTTING_DOWN
RPC_NOT_ANSWERED: int = _ffi.lib.JOINT_RPC_NOT_ANSWERED
RPC_CANCELLED: int = _ffi.lib.JOINT_RPC_CANCELLED
RPC_DEADLINE_EXCEEDED: int = _ffi.lib.JOINT_RPC_DEADLINE_EXCEEDED


def library_version() -> str:
    """The version of the loaded libjoint, such as "0.2.0"."""
    return str(_ffi.ffi.string(_ffi.lib.joint_version()).decode())


def spawn(argv: Sequence[str], timeout: Optional[float] = None, **options: Any) -> Client:
    """Run ``argv`` and talk MessagePack-RPC over its stdin/stdout (as ``nvim --embed``
    needs); a blocking Client. Same options as ``connect``."""
    return connect(list(argv), timeout, **options)
