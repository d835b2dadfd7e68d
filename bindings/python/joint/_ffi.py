"""cffi (ABI mode) binding of libjoint: the cdef, the library, the callback trampolines and
the registry that maps ``user_data`` keys to Python objects.

The cdef comes mechanically from include/joint.h (see _cdefgen.py). An installed package
bundles both ``_cdef.h`` and ``libjoint.so`` next to this file; from a source tree (no build
step) the header and ``target/release/libjoint.so`` of the enclosing repository are used.
``JOINT_LIBRARY`` overrides the library path.

Callbacks: cffi's ABI mode cannot use ``@ffi.def_extern``, so each C callback type has ONE
``ffi.callback`` object, created here at import and kept alive for the life of the process.
Its ``user_data`` is an integer key into ``_registry``; registrations pass ``free_trampoline``
as their ``free_user_data`` so the key is dropped when the library releases it, and per-call
completions drop their key when they run (they run exactly once). No trampoline lets an
exception reach C: errors are caught and handed to the owning context, which raises them once
``joint_ctx_process`` has returned.
"""
import itertools
import logging
import os
from typing import Any, Callable, Dict, Optional

import cffi  # type: ignore[import-untyped]

# cffi's pointers and the opened library are untyped: C values are Any to the checker.
CData = Any

_HERE = os.path.dirname(os.path.abspath(__file__))


def _source_tree() -> Optional[str]:
    """The repository that contains this package (bindings/python/joint -> ../../..)."""
    root = os.environ.get('JOINT_SOURCE_DIR') or os.path.normpath(os.path.join(_HERE, '..', '..', '..'))
    return root if os.path.isfile(os.path.join(root, 'include', 'joint.h')) else None


def _load_cdef() -> str:
    bundled = os.path.join(_HERE, '_cdef.h')
    if os.path.isfile(bundled):
        with open(bundled, encoding='utf-8') as f:
            return f.read()
    root = _source_tree()
    if root is None:
        raise ImportError('joint: the package has no _cdef.h and is not inside a joint source tree; '
                          'install it with `pip install bindings/python`')
    from . import _cdefgen
    return str(_cdefgen.generate(os.path.join(root, 'include', 'joint.h')))


def _library_path() -> str:
    env = os.environ.get('JOINT_LIBRARY')
    if env:
        return env
    bundled = os.path.join(_HERE, 'libjoint.so')
    if os.path.isfile(bundled):
        return bundled
    root = _source_tree()
    if root is not None:
        built = os.path.join(root, 'target', 'release', 'libjoint.so')
        if os.path.isfile(built):
            return built
    raise ImportError('joint: libjoint.so not found: install the package with `pip install bindings/python` '
                      '(it builds and bundles the library), or set JOINT_LIBRARY')


CDEF = _load_cdef()
ffi: Any = cffi.FFI()
ffi.cdef(CDEF)
LIBRARY_PATH = _library_path()
lib: Any = ffi.dlopen(LIBRARY_PATH)
NULL: CData = ffi.NULL

# ---- the registry -----------------------------------------------------------------------------

_registry: Dict[int, Any] = {}
_keys = itertools.count(1)


def register(obj: object) -> CData:
    """Store ``obj``; return the ``void *`` user_data that names it."""
    key = next(_keys)
    _registry[key] = obj
    return ffi.cast('void *', key)


def _key(user_data: CData) -> int:
    return int(ffi.cast('uintptr_t', user_data))


def lookup(user_data: CData) -> Any:
    return _registry.get(_key(user_data))


def unregister(user_data: CData) -> Any:
    return _registry.pop(_key(user_data), None)


def registry_size() -> int:
    """How many Python objects are currently reachable from C (for leak tests)."""
    return len(_registry)


def _report(owner: object, exc: BaseException) -> None:
    """Hand an exception caught in a callback to its context (raised after process returns)."""
    ctx = getattr(owner, 'ctx', None)
    if ctx is not None:
        ctx.defer_exception(exc)
    else:  # pragma: no cover - every owner has a context
        logging.getLogger('joint').error('joint: error in a callback of %r', owner, exc_info=exc)


# ---- trampolines ------------------------------------------------------------------------------
# Each looks up (or pops) its Python object and calls its method. The objects are internal
# (Call, Registration, ...), whose methods catch their own errors; the guards here are the last
# line of defence and also catch BaseException (KeyboardInterrupt arriving during a callback).

def _on_response(conn: CData, resp: CData, user_data: CData) -> None:
    obj = unregister(user_data)   # a completion runs exactly once: drop its key now
    if obj is None:
        return
    try:
        obj.complete(resp, conn)
    except BaseException as e:  # noqa: B902 - must not unwind into C
        _report(obj, e)


def _deliver_event(event: int, data: CData, length: int, user_data: CData) -> None:
    obj = lookup(user_data)
    if obj is None:
        return
    try:
        obj.on_event(event, ffi.buffer(data, length) if length else b'')
    except BaseException as e:  # noqa: B902
        _report(obj, e)


def _on_call_event(conn: CData, call_id: int, event: int, data: CData, length: int,
                   user_data: CData) -> None:
    # The call's key: dropped by its completion, which runs last.
    _deliver_event(event, data, length, user_data)


def _on_request_event(req: CData, event: int, data: CData, length: int, user_data: CData) -> None:
    # A served call's driver: released when the call ends.
    _deliver_event(event, data, length, user_data)


def _on_request(req: CData, user_data: CData) -> None:
    obj = lookup(user_data)
    if obj is None:
        lib.joint_request_free(req)
        return
    try:
        obj.on_request(req)
    except BaseException as e:  # noqa: B902
        _report(obj, e)


def _on_pool_request(req: CData, user_data: CData) -> None:
    # On one of joint's worker threads (cffi takes the GIL): touch nothing of the loop's, so
    # errors are logged here rather than handed to the context.
    obj = lookup(user_data)
    if obj is None:
        lib.joint_request_free(req)
        return
    try:
        obj.on_pool_request(req)
    except BaseException:  # noqa: B902
        log.exception('joint: pool handler failed')


def _on_notification(conn: CData, method: CData, method_len: int, params: CData, params_len: int,
                     user_data: CData) -> None:
    obj = lookup(user_data)
    if obj is None:
        return
    try:
        name = ffi.unpack(ffi.cast('char *', method), method_len) if method_len else b''
        obj.on_notification(conn, name, ffi.buffer(params, params_len) if params_len else b'')
    except BaseException as e:  # noqa: B902
        _report(obj, e)


def _on_conn(conn: CData, event: int, status: int, reason: CData, user_data: CData) -> None:
    obj = lookup(user_data)
    if obj is None:
        return
    try:
        obj.on_conn(conn, event, status, ffi.string(reason).decode('utf-8', 'replace') if reason != NULL else '')
    except BaseException as e:  # noqa: B902
        _report(obj, e)


_LOG_LEVELS = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG}
log = logging.getLogger('joint')


def _on_log(level: int, message: CData, user_data: CData) -> None:
    try:
        log.log(_LOG_LEVELS.get(level, logging.DEBUG), '%s', ffi.string(message).decode('utf-8', 'replace'))
    except BaseException:  # noqa: B902 - logging must never break the library
        pass


def _on_free(user_data: CData) -> None:
    unregister(user_data)


response_trampoline = ffi.callback('joint_response_cb', _on_response)
request_trampoline = ffi.callback('joint_request_cb', _on_request)
pool_request_trampoline = ffi.callback('joint_request_cb', _on_pool_request)
call_event_trampoline = ffi.callback('joint_call_event_cb', _on_call_event)
request_event_trampoline = ffi.callback('joint_request_event_cb', _on_request_event)
notification_trampoline = ffi.callback('joint_notification_cb', _on_notification)
conn_trampoline = ffi.callback('joint_conn_cb', _on_conn)
log_trampoline = ffi.callback('joint_log_cb', _on_log)
free_trampoline = ffi.callback('joint_free_fn', _on_free)


def status_name(status: int) -> str:
    return str(ffi.string(lib.joint_status_str(status)).decode('utf-8', 'replace'))


def take_buf(buf: CData) -> Optional[bytes]:
    """Copy a ``joint_buf *`` out as bytes and free it (NULL: None)."""
    if buf == NULL:
        return None
    try:
        data = ffi.new('const uint8_t **')
        size = ffi.new('size_t *')
        if lib.joint_buf_data(buf, data, size) != 0:
            return None
        return ffi.buffer(data[0], size[0])[:] if size[0] else b''
    finally:
        lib.joint_buf_free(buf)


def borrowed_bytes(fn: Callable[..., int], obj: CData) -> Any:
    """Call an accessor ``fn(obj, &data, &len)``; a memoryview of the borrowed bytes, or None."""
    data = ffi.new('const uint8_t **')
    size = ffi.new('size_t *')
    if fn(obj, data, size) != 0:
        return None
    if size[0] == 0:
        return b''
    return ffi.buffer(data[0], size[0])
