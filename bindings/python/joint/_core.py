"""Contexts, calls and the codec: everything on top of the raw cffi binding that peers,
clients, servers and streams share (``_client``, ``_streams`` and ``_server`` build on it).

One ``Context`` wraps one ``joint_ctx`` (one pollable fd). It is driven either by a blocking
poll loop (``Context.wait``, used by blocking calls) or by an asyncio loop
(``loop.add_reader(fd, drive)`` plus ``loop.call_later`` from ``joint_ctx_timeout_ms``; no
helper thread). Both end up in ``Context.process``: ``joint_ctx_process`` runs the C callbacks
(which only record what happened), then the handlers they queued run in Python, outside the C
call, so a handler may itself make blocking calls on the same context.
"""
import asyncio
import collections
import contextlib
import contextvars
import enum
import logging
import math
import os
import select
import threading
import time
import weakref
from typing import (TYPE_CHECKING, Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Set,
                    Tuple, Union)

import msgpack  # type: ignore[import-untyped]

from . import _ffi
from ._errors import ConnectionError, Error, ProtocolError, RemoteError, TimeoutError, TLSError
from ._ffi import CData, ffi, lib, NULL

if TYPE_CHECKING:
    from ._client import Handler, FallbackHandler, Peer
    from ._workers import WorkerPool

log = _ffi.log
log.addHandler(logging.NullHandler())

# ---- values -----------------------------------------------------------------------------------


def packb(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True, unicode_errors='surrogateescape')
    return data


def unpackb(data: Any) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, unicode_errors='surrogateescape')


def pack_params(args: Sequence[Any], kwargs: Dict[str, Any]) -> bytes:
    """Positional args -> a MessagePack array; keyword args -> a map (keyword params).
    Mixing both is not something MessagePack-RPC can express."""
    if kwargs:
        if args:
            raise TypeError('MessagePack-RPC params are either positional (an array) or keyword '
                            '(a map), not both')
        return packb(kwargs)
    return packb(list(args))


def encode_params(params: 'Params') -> bytes:
    """``call_with``'s params: a list/tuple (positional), a dict (keyword), or None."""
    if params is None:
        return b'\x90'
    if isinstance(params, (list, tuple, dict)):
        return packb(params if not isinstance(params, tuple) else list(params))
    raise TypeError('params must be a list, a tuple, a dict or None, not %s' % type(params).__name__)


def _cstr(name: Union[str, bytes], what: str = 'method name') -> bytes:
    if isinstance(name, str):
        name = name.encode('utf-8')
    elif not isinstance(name, bytes):
        raise TypeError('%s must be str, not %s' % (what, type(name).__name__))
    if b'\0' in name:
        raise ValueError('%s must not contain NUL' % what)
    return name


def timeout_ms(timeout: Optional[float]) -> int:
    """Seconds (None: none) -> the C API's milliseconds (-1: none), rounded up."""
    if timeout is None:
        return -1
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError('timeout must be a positive number of seconds or None, not %r' % (timeout,))
    return min(int(math.ceil(timeout * 1000)), 2 ** 31 - 1)


# ---- status codes -----------------------------------------------------------------------------

E_TIMEOUT = lib.JOINT_E_TIMEOUT
E_REMOTE = lib.JOINT_E_REMOTE
E_RECURSIVE = lib.JOINT_E_RECURSIVE
E_TLS = lib.JOINT_E_TLS


def error_class(status: int) -> 'type[Error]':
    if status == lib.JOINT_E_TIMEOUT:
        return TimeoutError
    if status == E_TLS:
        return TLSError
    if -199 <= status <= -100 or status == lib.JOINT_E_ADDRESS:
        return ConnectionError
    if -299 <= status <= -200:
        return ProtocolError
    return Error


def make_error(status: int, detail: str, what: Optional[str] = None,
               subject: Optional[str] = None) -> Error:
    """The exception for a failed status: ``what: detail`` (``what`` is left out when the
    library's detail already names ``subject``, as connect errors name the URI)."""
    text = detail or _ffi.status_name(status)
    if what and not (subject and subject in text):
        text = '%s: %s' % (what, text)
    return error_class(status)(text, status)


# ---- the context ------------------------------------------------------------------------------

_current_peer: 'contextvars.ContextVar[Optional[Peer]]' = contextvars.ContextVar('joint_current_peer', default=None)
_current_call: 'contextvars.ContextVar[Optional[CallInfo]]' = contextvars.ContextVar('joint_current_call', default=None)


@contextlib.contextmanager
def handling(peer: 'Optional[Peer]', info: 'Optional[CallInfo]') -> Iterator[None]:
    """What ``joint.peer()`` and ``joint.deadline()`` say while a handler's code runs here."""
    token = _current_peer.set(peer)
    ctoken = _current_call.set(info)
    try:
        yield
    finally:
        _current_call.reset(ctoken)
        _current_peer.reset(token)


def current_peer() -> 'Optional[Peer]':
    """The peer (connection) whose request or notification is being handled, or None.
    Use it to call back over the same connection: ``joint.peer().call("nvim_get_mode")``.
    None in ``pool=True`` handlers, which run on joint's own threads."""
    return _current_peer.get()


class CallInfo:
    """What a handler may learn about the request it serves (``joint.deadline()``)."""

    __slots__ = ('arrival', 'deadline_ms', 'extended')

    def __init__(self, req: CData) -> None:
        self.arrival = time.monotonic()
        self.deadline_ms = lib.joint_request_deadline_ms(req)
        self.extended = bool(lib.joint_request_is_extended(req))


def deadline() -> Optional[float]:
    """Inside a handler: the seconds left before the caller's deadline (its ``timeout=`` of an
    extended call, counted from when the request arrived; 0.0 once passed), or None when the
    call has none (stock requests never have one). Outside a handler: None."""
    info = _current_call.get()
    if info is None or not info.deadline_ms:
        return None
    left: float = info.arrival + info.deadline_ms / 1000.0 - time.monotonic()
    return max(0.0, left)


_CONFIG_SETTERS = {
    'max_message_size': 'joint_config_set_max_message_size',
    'max_depth': 'joint_config_set_max_depth',
    'max_inflight': 'joint_config_set_max_inflight',
    'memory_budget': 'joint_config_set_memory_budget',
    'output_high_water': 'joint_config_set_output_high_water',
    'max_connections': 'joint_config_set_max_connections',
    'listen_backlog': 'joint_config_set_listen_backlog',
    'window': 'joint_config_set_window',
    'workers': 'joint_config_set_workers',
}

DEFAULT_WINDOW = 64     # the library's default flow-control window (joint_config_set_window)


def _log_level() -> int:
    level = log.getEffectiveLevel()
    if level <= logging.DEBUG:
        return int(lib.JOINT_LOG_DEBUG)
    if level <= logging.INFO:
        return int(lib.JOINT_LOG_INFO)
    if level <= logging.WARNING:
        return int(lib.JOINT_LOG_WARN)
    return int(lib.JOINT_LOG_ERROR)


class Context:
    """One ``joint_ctx``: its fd, its drivers, its registrations and the peers seen on it.
    ``make_peer(ctx, conn)`` makes the peer of a connection the context meets first in a
    callback (``_client.Peer``; passed in so this module does not depend on its users)."""

    def __init__(self, make_peer: 'Callable[[Context, CData], Peer]',
                 connect_timeout: Optional[float] = None, max_message_size: Optional[int] = None,
                 max_depth: Optional[int] = None, max_inflight: Optional[int] = None,
                 memory_budget: Optional[int] = None, output_high_water: Optional[int] = None,
                 max_connections: Optional[int] = None, listen_backlog: Optional[int] = None,
                 message_timeout: Optional[float] = None, idle_timeout: Optional[float] = None,
                 linger: Optional[float] = None, extension: bool = True,
                 window: Optional[int] = None, workers: Optional[int] = None,
                 keepalive: 'Union[Tuple[float, float], bool, None]' = None) -> None:
        cfg = ffi.new('joint_config **')
        self._check(lib.joint_config_new(cfg), 'joint_config_new', use_last_error=False)
        config = cfg[0]
        try:
            opts = dict(max_message_size=max_message_size, max_depth=max_depth,
                        max_inflight=max_inflight, memory_budget=memory_budget,
                        output_high_water=output_high_water, max_connections=max_connections,
                        listen_backlog=listen_backlog, window=window, workers=workers)
            for name, value in opts.items():
                if value is not None:
                    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                        raise ValueError('%s must be a non-negative integer, not %r' % (name, value))
                    st = getattr(lib, _CONFIG_SETTERS[name])(config, value)
                    if st < 0:
                        raise ValueError('%s=%r: %s' % (name, value, _ffi.status_name(st)))
            lib.joint_config_set_extension(config, bool(extension))
            if connect_timeout is not None:
                lib.joint_config_set_connect_timeout_ms(config, timeout_ms(connect_timeout))
            # Seconds; math.inf means no limit (None keeps the library's default).
            for seconds, setter in ((message_timeout, lib.joint_config_set_message_timeout_ms),
                                    (idle_timeout, lib.joint_config_set_idle_timeout_ms)):
                if seconds is not None:
                    ms = -1 if seconds == math.inf else timeout_ms(seconds)
                    setter(config, ms)
            # keepalive: (interval, timeout) in seconds, or False to never ping (None keeps
            # the library's 30 s / 30 s).
            if keepalive is not None:
                if keepalive is False:
                    st = lib.joint_config_set_keepalive_ms(config, -1, -1)
                else:
                    try:
                        interval, timeout = keepalive  # type: ignore[misc]  # checked here
                    except (TypeError, ValueError):
                        raise ValueError('keepalive must be (interval, timeout) in seconds, or False, not %r' % (keepalive,))
                    st = lib.joint_config_set_keepalive_ms(config, timeout_ms(interval), timeout_ms(timeout))
                if st < 0:
                    raise ValueError('keepalive=%r: %s' % (keepalive, _ffi.status_name(st)))
            if linger is not None:
                if isinstance(linger, bool) or not isinstance(linger, (int, float)) or linger < 0:
                    raise ValueError('linger must be a number of seconds >= 0, not %r' % (linger,))
                lib.joint_config_set_linger_ms(config, min(int(math.ceil(linger * 1000)), 2 ** 31 - 1))
            if not os.environ.get('JOINT_LOG'):
                # Log lines go to the "joint" logger (JOINT_LOG=... keeps the library's stderr log).
                lib.joint_config_set_log_cb(config, _log_level(), _ffi.log_trampoline, NULL, NULL)
            out = ffi.new('joint_ctx **')
            self._check(lib.joint_ctx_new(config, out), 'joint_ctx_new', use_last_error=False)
        finally:
            lib.joint_config_free(config)
        self.ptr = out[0]
        self.fd = lib.joint_ctx_fd(self.ptr)
        self.extension = bool(extension)
        self.window = window or DEFAULT_WINDOW
        # Served extended calls whose handlers are running (_streams drivers): they go on when
        # their call's event callback wakes them; abandoned if the context closes first.
        self.streams: Set[Any] = set()                 # _streams._ServedCall
        # asyncio futures of stream operations waiting for something: woken after each process.
        self.after_process: 'Set[asyncio.Future[None]]' = set()
        # (peer weakref, call) to cancel at the next process: streams dropped unfinished
        # (their __del__ may run on any thread).
        self.cancels: 'Deque[Tuple[weakref.ref[Peer], Call]]' = collections.deque()
        self.stats: 'collections.Counter[str]' = collections.Counter()
        self._stats_lock = threading.Lock()
        self.closing = False
        self.lock = threading.RLock()
        # Guards the pointer against joint_ctx_free for the one call other threads make
        # without the main lock (wakeup, from Server.stop).
        self._free_lock = threading.RLock()
        self.queue: Deque[Tuple[Callable[[], None], CData]] = collections.deque()   # work queued by callbacks, run after process
        # conn address -> Peer, weakly: a Client is owned by the application, a peer of an
        # accepted connection by whoever holds it (joint.peer()); the library owns neither.
        self.peers: 'weakref.WeakValueDictionary[int, Peer]' = weakref.WeakValueDictionary()
        self._make_peer = make_peer        # make_peer(ctx, conn): the Peer class (of _client)
        # Listener handles (joint_listener *): freed with the context; freeing one closes it.
        self.listeners: List[CData] = []
        self.methods: 'Dict[str, Handler]' = {}    # requests and notifications
        self.fallback: 'Optional[FallbackHandler]' = None   # FallbackHandler (requests for unregistered methods)
        self.tasks: 'Set[asyncio.Task[None]]' = set()   # asyncio tasks of async handlers
        self.closed = False
        self.stop_requested = False
        self._processing = False
        self._draining = 0
        self._close_pending = False
        self._deferred: List[BaseException] = []
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.loop_thread: Optional[int] = None       # threading.get_ident() of the thread that runs self.loop
        # A Server's pool for its plain handlers (_workers.WorkerPool); None: they run inline.
        self.workers: 'Optional[WorkerPool]' = None
        self._timer: Optional[asyncio.TimerHandle] = None
        self.on_drive: Optional[Callable[[], None]] = None          # called after every asyncio-driven process (Server.stop)
        # Per-context callbacks: one registration each, dispatched in Python. What C can reach
        # refers to the context weakly, so dropping the Client/Server frees it (__del__).
        ref = _ContextRef(self)
        self._check(lib.joint_ctx_set_conn_cb(self.ptr, _ffi.conn_trampoline, _ffi.register(ref),
                                              _ffi.free_trampoline), 'joint_ctx_set_conn_cb')
        self._check(lib.joint_ctx_set_notification_cb(self.ptr, _ffi.notification_trampoline,
                                                      _ffi.register(ref), _ffi.free_trampoline),
                    'joint_ctx_set_notification_cb')

    @property
    def ctx(self) -> 'Context':          # for _ffi._report
        return self

    # -- errors -----------------------------------------------------------------------------

    def last_error(self) -> str:
        if self.ptr == NULL:
            return ''
        return str(ffi.string(lib.joint_ctx_last_error(self.ptr)).decode('utf-8', 'replace'))

    def _check(self, status: int, what: str, use_last_error: bool = True) -> int:
        if status < 0:
            detail = self.last_error() if use_last_error else ''
            raise make_error(status, detail or _ffi.status_name(status), what)
        return status

    def check(self, status: int, what: str) -> int:
        return self._check(status, what)

    def defer_exception(self, exc: BaseException) -> None:
        self._deferred.append(exc)

    def count(self, what: str, n: int = 1) -> None:
        """Bump a statistics counter (any thread)."""
        with self._stats_lock:
            self.stats[what] += n

    def peak(self, what: str, value: int) -> None:
        """Keep the highest value seen of a statistic (any thread)."""
        with self._stats_lock:
            if value > self.stats[what]:
                self.stats[what] = value

    def _raise_deferred(self) -> None:
        if self._deferred:
            excs, self._deferred = self._deferred, []
            # Interrupts first; otherwise the first error (the rest are logged).
            excs.sort(key=lambda e: isinstance(e, Exception))
            for e in excs[1:]:
                log.error('joint: further error in a callback', exc_info=e)
            raise excs[0]

    def ensure_open(self) -> None:
        if self.closed:
            raise ConnectionError('the context is closed', lib.JOINT_E_CLOSED)

    # -- driving ----------------------------------------------------------------------------

    @property
    def processing(self) -> bool:
        """Inside joint_ctx_process (a C callback is running)."""
        return self._processing

    @property
    def busy(self) -> bool:
        """Inside process, or running the handlers it queued."""
        return self._processing or self._draining > 0

    def process(self) -> None:
        """``joint_ctx_process``, then the work its callbacks queued (handlers)."""
        with self.lock:
            if self.closed:
                return
            if self._processing:
                raise Error('joint: cannot drive a context from inside one of its own callbacks',
                            E_RECURSIVE)
            while self.cancels:
                peer_ref, call = self.cancels.popleft()
                peer = peer_ref()
                if peer is not None and peer._conn != NULL and not call.done:
                    lib.joint_conn_cancel(peer._conn, call.call_id)
            self._processing = True
            try:
                st = lib.joint_ctx_process(self.ptr)
            finally:
                self._processing = False
            if st < 0:
                raise make_error(st, self.last_error(), 'joint_ctx_process')
            try:
                self._run_queue()
            finally:
                if self.after_process:
                    self._wake_after_process()
                if self._close_pending:
                    self.close()
            self._raise_deferred()

    def timeout_ms(self) -> int:
        """``joint_ctx_timeout_ms``: the library's timers are the only deadlines."""
        return int(lib.joint_ctx_timeout_ms(self.ptr))

    def _wake_after_process(self) -> None:
        futures, self.after_process = self.after_process, set()
        for fut in futures:
            if not fut.done():
                try:
                    fut.set_result(None)
                except RuntimeError:    # its loop is closed
                    pass

    def _run_queue(self) -> None:
        queue = self.queue
        self._draining += 1
        try:
            while queue:
                fn, _req = queue.popleft()
                fn()
        finally:
            self._draining -= 1

    def wait(self, timeout: Optional[float] = None) -> None:
        """Block until the fd is readable, a library deadline is due or ``timeout`` seconds
        (None: no limit) pass, then process. Signal handlers (Ctrl-C) run during the wait."""
        if self.closed:
            raise ConnectionError('the context is closed', lib.JOINT_E_CLOSED)
        if not self.queue:
            ms = self.timeout_ms()
            if timeout is not None:
                t = max(0, int(math.ceil(timeout * 1000)))
                ms = t if ms < 0 else min(ms, t)
            if ms != 0:
                self._poll.poll(ms)
        self.process()

    def run_until(self, done: Callable[[], bool]) -> None:
        with self.lock:
            while not done():
                self.wait()

    # -- asyncio ----------------------------------------------------------------------------

    def attach(self, loop: Optional[asyncio.AbstractEventLoop] = None) -> asyncio.AbstractEventLoop:
        """Drive this context from ``loop`` (the running loop by default)."""
        if loop is None:
            loop = asyncio.get_running_loop()
        if self.loop is loop:
            return loop
        self.ensure_open()
        self.detach()
        loop.add_reader(self.fd, _drive_weak, weakref.ref(self))
        self.loop = loop
        self.loop_thread = threading.get_ident()
        self._rearm()
        return loop

    def detach(self) -> None:
        loop, self.loop = self.loop, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self.fd)

    def driven_elsewhere(self) -> bool:
        """Whether a loop on another thread drives this context (the caller is a worker):
        then calls wait for the loop to complete them rather than drive the context here."""
        return self.loop is not None and threading.get_ident() != self.loop_thread

    def _drive(self) -> None:
        self.loop_thread = threading.get_ident()
        try:
            self.process()
        finally:
            if self.loop is not None and not self.closed:
                self._rearm()
                if self.queue:    # a handler raised BaseException: run the rest soon
                    self.loop.call_soon(_drive_weak, weakref.ref(self))
            if self.on_drive is not None:
                self.on_drive()

    def _on_timer(self) -> None:
        self._timer = None
        self._drive()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _rearm(self) -> None:
        loop = self.loop
        if loop is None:
            return
        ms = self.timeout_ms()
        if ms < 0:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        when = loop.time() + ms / 1000.0
        if self._timer is not None:
            if self._timer.when() <= when:
                return          # fires no later than needed; it re-arms then
            self._timer.cancel()
        self._timer = loop.call_at(when, _timer_weak, weakref.ref(self))

    def wakeup(self) -> None:
        """Make the fd readable (any thread)."""
        with self._free_lock:
            if self.ptr != NULL:
                lib.joint_ctx_wakeup(self.ptr)

    # -- callbacks from C -------------------------------------------------------------------

    def peer_for(self, conn: CData) -> 'Optional[Peer]':
        if conn == NULL:
            return None
        addr = int(ffi.cast('uintptr_t', conn))
        peer: 'Optional[Peer]' = self.peers.get(addr)
        if peer is None:
            peer = self._make_peer(self, conn)
            self.peers[addr] = peer
        return peer

    def on_conn(self, conn: CData, event: int, status: int, reason: str) -> None:
        addr = int(ffi.cast('uintptr_t', conn))
        peer = self.peers.get(addr)
        if event == lib.JOINT_CONN_OPEN:
            if peer is not None:
                peer._opened()
        elif event == lib.JOINT_CONN_CLOSED:
            if peer is not None:
                if not peer._owned:
                    del self.peers[addr]   # accepted connections are freed after this callback
                peer._closed(status, reason)

    def on_notification(self, conn: CData, method: bytes, params: Any) -> None:
        name = method.decode('utf-8', 'surrogateescape')
        handler = self.methods.get(name)
        if handler is None:
            log.debug('joint: notification %r has no handler', name)
            return
        try:
            args, kwargs = _split_params(unpackb(params) if len(params) else [])
        except Exception as e:  # malformed params of a notification: nobody to tell but the log
            log.warning('joint: notification %r: bad params: %s', name, e)
            return
        peer = self.peer_for(conn)
        self.queue.append((lambda: handler.run(None, args, kwargs, peer), None))

    # -- close ------------------------------------------------------------------------------

    def close(self) -> None:
        """Free the context: pending calls fail (cancelled), registrations are released."""
        with self.lock:
            if self.closed:
                return
            if self._processing:
                self._close_pending = True   # joint_ctx_free is ignored inside a callback
                return
            self.closing = True
            self.detach()
            for peer in list(self.peers.values()):
                peer._free_owned()
            # One last process sends what is queued (a notification just before close) and
            # completes the cancelled calls; the free below does not flush.
            self._processing = True
            try:
                lib.joint_ctx_process(self.ptr)
            finally:
                self._processing = False
            self.closed = True
            with self._free_lock:
                ptr, self.ptr = self.ptr, NULL
                lib.joint_ctx_free(ptr)      # runs completions (cancelled) and free_user_data
            for listener in self.listeners:  # the handles outlive the context
                lib.joint_listener_free(listener)
            self.listeners = []
            self._deferred = []
            while self.queue:            # handlers that will never run: release their requests
                _fn, req = self.queue.popleft()
                if req is not None:
                    lib.joint_request_free(req)
            for driver in list(self.streams):   # streaming handlers: their finally blocks run
                driver.abandon()
            self.streams.clear()
            self._wake_after_process()
            for peer in list(self.peers.values()):
                peer._closed(lib.JOINT_E_CANCELLED, 'closed by the application')
            self.peers.clear()
            for task in list(self.tasks):
                task.cancel()


class _ContextRef:
    """What the context's own registrations point at: forwards to the context if it lives."""

    __slots__ = ('_ref',)

    def __init__(self, ctx: 'Context') -> None:
        self._ref = weakref.ref(ctx)

    @property
    def ctx(self) -> 'Optional[Context]':
        return self._ref()

    def on_conn(self, *args: Any) -> None:
        ctx = self._ref()
        if ctx is not None:
            ctx.on_conn(*args)

    def on_notification(self, *args: Any) -> None:
        ctx = self._ref()
        if ctx is not None:
            ctx.on_notification(*args)


def _drive_weak(ref: 'weakref.ref[Context]') -> None:
    ctx = ref()
    if ctx is not None:
        ctx._drive()


def _timer_weak(ref: 'weakref.ref[Context]') -> None:
    ctx = ref()
    if ctx is not None:
        ctx._on_timer()


def _split_params(params: Any) -> Tuple[List[Any], Dict[str, Any]]:
    if isinstance(params, dict):
        for k in params:
            if not isinstance(k, str):
                raise TypeError('keyword params must have string keys, got %r' % (k,))
        return [], params
    if params is None:
        return [], {}
    if isinstance(params, list):
        return params, {}
    raise TypeError('params must be an array or a map, not %s' % type(params).__name__)


# ---- calls ------------------------------------------------------------------------------------


def decode_response(resp: CData, method: str) -> Tuple[Any, Optional[Error]]:
    """(result, exception) of a completed call."""
    status = lib.joint_response_status(resp)
    try:
        if status == 0:
            data = _ffi.borrowed_bytes(lib.joint_response_result, resp)
            return (unpackb(data) if data else None), None
        if status == E_REMOTE:
            data = _ffi.borrowed_bytes(lib.joint_response_error, resp)
            error = unpackb(data) if data else None
            code = None
            if data:
                c = ffi.new('int64_t *')
                if lib.joint_error_code(ffi.from_buffer(data), len(data), c) == 0:
                    code = c[0]
            message = ffi.string(lib.joint_response_message(resp)).decode('utf-8', 'replace')
            return None, RemoteError(error, code=code, message=message, method=method)
        message = ffi.string(lib.joint_response_message(resp)).decode('utf-8', 'replace')
        return None, make_error(status, message, method)
    except Exception as e:  # undecodable result
        return None, ProtocolError('%s: cannot decode the answer: %s' % (method, e), lib.JOINT_E_PROTOCOL)


class Call:
    """One pending call. ``complete`` runs inside joint_ctx_process (from the response
    trampoline, exactly once) and only records the outcome."""

    __slots__ = ('_ctx', 'method', 'future', 'done', 'result', 'exception', 'call_id')

    def __init__(self, ctx: 'Context', method: str, future: Any = None) -> None:
        self._ctx = weakref.ref(ctx)
        self.method = method
        self.future = future
        self.done = False
        self.result: Any = None
        self.exception: Optional[BaseException] = None
        self.call_id: Optional[int] = None

    def complete(self, resp: CData, conn: CData = None) -> None:
        self.done = True
        self.result, self.exception = decode_response(resp, self.method)
        fut = self.future
        if fut is not None and not fut.done():
            try:
                if self.exception is not None:
                    fut.set_exception(self.exception)
                else:
                    fut.set_result(self.result)
            except RuntimeError:   # its loop is closed: nobody is waiting any more
                pass

    @property
    def ctx(self) -> 'Optional[Context]':
        return self._ctx()

    def outcome(self) -> Any:
        if self.exception is not None:
            exc, self.exception = self.exception, None   # no traceback cycles through the call
            raise exc
        return self.result


class Default(enum.Enum):
    """``timeout=<default>``: the client's own timeout (``connect(uri, timeout=...)``);
    None means no timeout, so it cannot be the marker."""

    DEFAULT = 'default'

    def __repr__(self) -> str:
        return '<default>'


_DEFAULT = Default.DEFAULT
Timeout = Union[float, None, Default]
"""A ``timeout=``: seconds, None (no timeout) or ``<default>`` (the client's)."""

Params = Union[List[Any], Tuple[Any, ...], Dict[str, Any], None]
"""``call_with``'s params: positional (a list or tuple), keyword (a dict) or none."""

# ---- serving ----------------------------------------------------------------------------------


def _error_object(exc: BaseException) -> Any:
    """The error object a handler's exception is answered with."""
    if isinstance(exc, RemoteError):
        return exc.error
    code = getattr(exc, 'code', None)
    if isinstance(code, int) and not isinstance(code, bool):
        return [code, str(exc)]
    text = str(exc)
    return [lib.JOINT_RPC_HANDLER_FAILED,
            '%s: %s' % (type(exc).__name__, text) if text else type(exc).__name__]


def _reply_error(req: CData, error: Any) -> None:
    try:
        data = packb(error)
    except Exception:
        data = packb([lib.JOINT_RPC_HANDLER_FAILED, repr(error)])
    lib.joint_request_reply_error(req, data, len(data))


_ENDED = (lib.JOINT_E_CANCELLED, lib.JOINT_E_TIMEOUT, lib.JOINT_E_CLOSED)


def _reply(req: CData, name: str, result: Any) -> None:
    try:
        data = packb(result)
    except Exception as e:
        _reply_error(req, [lib.JOINT_RPC_HANDLER_FAILED,
                           '%s: cannot encode the result: %s: %s' % (name, type(e).__name__, e)])
        return
    st = lib.joint_request_reply(req, data, len(data))
    if st in _ENDED:
        log.debug('joint: %s: the call had already ended (%s); the answer was dropped',
                  name, _ffi.status_name(st))
    elif st < 0:
        log.warning('joint: %s: the result could not be sent (%s); the caller got an error',
                    name, _ffi.status_name(st))


def request_params(req: CData, name: str) -> Tuple[List[Any], Dict[str, Any]]:
    """(args, kwargs) of a request: the positional params and, when the peer sent a map (stock
    keyword style) or extension kwargs, the keyword params."""
    raw = _ffi.borrowed_bytes(lib.joint_request_params, req)
    args = unpackb(raw) if raw else []
    raw = _ffi.borrowed_bytes(lib.joint_request_kwargs, req)
    kwargs = unpackb(raw) if raw else {}
    if not isinstance(args, list):
        raise TypeError('params must be an array, not %s' % type(args).__name__)
    if not isinstance(kwargs, dict):
        raise TypeError('keyword params must be a map, not %s' % type(kwargs).__name__)
    for k in kwargs:
        if not isinstance(k, str):
            raise TypeError('keyword params must have string keys, got %r' % (k,))
    return args, kwargs
