"""The exception hierarchy. Everything joint raises is a ``joint.Error``."""
import builtins
from typing import Any, Optional, Tuple


class Error(Exception):
    """Base class of joint's errors. ``status`` is the library status code (``JOINT_E_*``,
    negative) when one applies, else None."""

    def __init__(self, message: str = '', status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


class TimeoutError(Error, builtins.TimeoutError):  # noqa: A001 - deliberately shadows the builtin
    """A call (or connect) did not complete in time. Also a builtin ``TimeoutError``."""


class ConnectionError(Error, builtins.ConnectionError):  # noqa: A001
    """The connection could not be made, was closed or was lost. Also a builtin
    ``ConnectionError``."""


class TLSError(ConnectionError):
    """The TLS handshake failed (``JOINT_E_TLS``): the peer's certificate was not trusted
    (unknown issuer, name mismatch, expired), a client certificate was missing or refused, or
    the peer does not speak TLS. The message names the cause. A ``joint.ConnectionError``
    (and a builtin ``ConnectionError``) too."""


class ProtocolError(Error):
    """The peer broke the protocol, or a message was larger than the configured limit."""


class UnsupportedError(Error, NotImplementedError):
    """The operation needs the joint extension, which this call does not have: the peer is a
    stock MessagePack-RPC peer, or the call was not made for it (sending values into a call
    made without ``client_stream=True``). Also a builtin ``NotImplementedError``."""


class EndOfInput(Error):
    """Thrown into a streaming handler's generator at its ``yield`` when the caller has ended
    its input (``stream.end_input()``). Letting it propagate ends the call cleanly (the
    result is None); catching it lets the generator return a result or keep yielding.
    ``stream.throw(joint.EndOfInput)`` on the calling side ends the input."""


class RemoteError(Error):
    """The peer answered a call with an error object.

    ``error`` is the decoded error object as the peer sent it (joint servers send
    ``[code, message]``; many others send a string). ``code`` is its integer code (from
    ``[code, ...]`` or a map's ``"code"``) or None, ``message`` its text (a string error, the
    first string of an array, or a map's ``"message"``), ``method`` the method called.

    Handlers may raise it to answer with a specific error object:
    ``raise joint.RemoteError(3, "no such file")`` answers ``[3, "no such file"]`` and
    ``raise joint.RemoteError("boom")`` answers ``"boom"``.
    """

    def __init__(self, *args: Any, code: Optional[int] = None, message: Optional[str] = None,
                 method: Optional[str] = None) -> None:
        error: Any
        if len(args) == 2 and isinstance(args[0], int) and not isinstance(args[0], bool):
            error = [args[0], args[1]]
        elif len(args) == 1:
            error = args[0]
        elif not args:
            error = [code, message] if code is not None else message
        else:
            raise TypeError('RemoteError(error) or RemoteError(code, message)')
        if code is None:
            code = _code_of(error)
        if message is None:
            message = _message_of(error)
        self.error: Any = error
        self.code: Optional[int] = code
        self.message: str = message
        self.method: Optional[str] = method
        text = message if message else repr(error)
        if code is not None:
            text = '%s (code %d)' % (text, code)
        if method:
            text = '%s: %s' % (method, text)
        super().__init__(text)

    def __reduce__(self) -> Tuple[Any, Tuple[Any, Optional[int], str, Optional[str]]]:
        return (_rebuild_remote_error, (self.error, self.code, self.message, self.method))


def _rebuild_remote_error(error: Any, code: Optional[int], message: str,
                          method: Optional[str]) -> 'RemoteError':
    return RemoteError(error, code=code, message=message, method=method)


def _code_of(error: Any) -> Optional[int]:
    if isinstance(error, (list, tuple)) and error:
        first = error[0]
    elif isinstance(error, dict):
        first = error.get('code')
    else:
        return None
    return first if isinstance(first, int) and not isinstance(first, bool) else None


def _message_of(error: Any) -> str:
    if isinstance(error, str):
        return error
    if isinstance(error, (list, tuple)):
        for item in error:
            if isinstance(item, str):
                return item
        return ''
    if isinstance(error, dict):
        m = error.get('message')
        return m if isinstance(m, str) else ''
    if isinstance(error, bytes):
        return error.decode('utf-8', 'replace')
    return ''
