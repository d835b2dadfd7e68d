"""joint: MessagePack-RPC for Python, on the joint C library (libjoint, bundled).

Blocking::

    client = joint.connect("tcp://127.0.0.1:6000", timeout=5)
    client.call("add", 1, 2)                 # 3
    client.call("greet", name="Ada")         # keyword params: the params are a map
    client.notify("log", "hello")

asyncio::

    client = await joint.aconnect("tcp://127.0.0.1:6000")
    await client.call("add", 1, 2)

Serving::

    server = joint.Server()

    @server.method
    def add(a, b):
        return a + b

    server.serve("tcp://127.0.0.1:6000")

Values are converted with the ``msgpack`` package: str <-> str, bytes <-> bin, list/tuple ->
array, dict <-> map, and msgpack.ExtType/Timestamp for ext values.
"""
from ._errors import ConnectionError, Error, ProtocolError, RemoteError, TimeoutError
from ._core import (AsyncClient, Client, ConnectTimeoutError, Peer, aconnect, connect,
                    current_peer as peer)
from ._server import Server
from . import _ffi

__all__ = [
    'connect', 'aconnect', 'spawn', 'Client', 'AsyncClient', 'Peer', 'Server', 'peer',
    'Error', 'TimeoutError', 'ConnectionError', 'ConnectTimeoutError', 'ProtocolError',
    'RemoteError', 'library_version', '__version__',
    'RPC_HANDLER_FAILED', 'RPC_INVALID_PARAMS', 'RPC_NO_METHOD', 'RPC_INVALID_REQUEST',
    'RPC_TOO_LARGE', 'RPC_TOO_MANY_REQUESTS', 'RPC_SHUTTING_DOWN', 'RPC_NOT_ANSWERED',
]

__version__ = '0.1.0'

# Codes of joint's [code, message] error objects (docs/PROTOCOL.md).
RPC_HANDLER_FAILED = _ffi.lib.JOINT_RPC_HANDLER_FAILED
RPC_INVALID_PARAMS = _ffi.lib.JOINT_RPC_INVALID_PARAMS
RPC_NO_METHOD = _ffi.lib.JOINT_RPC_NO_METHOD
RPC_INVALID_REQUEST = _ffi.lib.JOINT_RPC_INVALID_REQUEST
RPC_TOO_LARGE = _ffi.lib.JOINT_RPC_TOO_LARGE
RPC_TOO_MANY_REQUESTS = _ffi.lib.JOINT_RPC_TOO_MANY_REQUESTS
RPC_SHUTTING_DOWN = _ffi.lib.JOINT_RPC_SHUTTING_DOWN
RPC_NOT_ANSWERED = _ffi.lib.JOINT_RPC_NOT_ANSWERED


def library_version():
    """The version of the loaded libjoint, such as "0.1.0"."""
    return _ffi.ffi.string(_ffi.lib.joint_version()).decode()


def spawn(argv, timeout=None, **options):
    """Run ``argv`` and talk MessagePack-RPC over its stdin/stdout (as ``nvim --embed``
    needs); a blocking Client. Same options as ``connect``."""
    return connect(list(argv), timeout, **options)
