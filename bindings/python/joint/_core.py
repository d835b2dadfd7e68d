"""Contexts, calls, peers and handler dispatch: everything on top of the raw cffi binding.

One ``Context`` wraps one ``joint_ctx`` (one pollable fd). It is driven either by a blocking
poll loop (``Context.wait``, used by blocking calls) or by an asyncio loop
(``loop.add_reader(fd, drive)`` plus ``loop.call_later`` from ``joint_ctx_timeout_ms``; no
helper thread). Both end up in ``Context.process``: ``joint_ctx_process`` runs the C callbacks
(which only record what happened), then the handlers they queued run in Python, outside the C
call, so a handler may itself make blocking calls on the same context.
"""
import asyncio
import collections
import contextvars
import functools
import inspect
import logging
import math
import os
import select
import shlex
import threading
import time
import weakref

import msgpack

from . import _ffi
from ._errors import ConnectionError, EndOfInput, Error, ProtocolError, RemoteError, TimeoutError
from ._ffi import ffi, lib, NULL

log = _ffi.log
log.addHandler(logging.NullHandler())

# ---- values -----------------------------------------------------------------------------------


def packb(obj):
    return msgpack.packb(obj, use_bin_type=True, unicode_errors='surrogateescape')


def unpackb(data):
    return msgpack.unpackb(data, raw=False, strict_map_key=False, unicode_errors='surrogateescape')


def pack_params(args, kwargs):
    """Positional args -> a MessagePack array; keyword args -> a map (keyword params).
    Mixing both is not something MessagePack-RPC can express."""
    if kwargs:
        if args:
            raise TypeError('MessagePack-RPC params are either positional (an array) or keyword '
                            '(a map), not both')
        return packb(kwargs)
    return packb(list(args))


def encode_params(params):
    """``call_with``'s params: a list/tuple (positional), a dict (keyword), or None."""
    if params is None:
        return b'\x90'
    if isinstance(params, (list, tuple, dict)):
        return packb(params if not isinstance(params, tuple) else list(params))
    raise TypeError('params must be a list, a tuple, a dict or None, not %s' % type(params).__name__)


def _cstr(name, what='method name'):
    if isinstance(name, str):
        name = name.encode('utf-8')
    elif not isinstance(name, bytes):
        raise TypeError('%s must be str, not %s' % (what, type(name).__name__))
    if b'\0' in name:
        raise ValueError('%s must not contain NUL' % what)
    return name


def timeout_ms(timeout):
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


def error_class(status):
    if status == lib.JOINT_E_TIMEOUT:
        return TimeoutError
    if -199 <= status <= -100 or status == lib.JOINT_E_ADDRESS:
        return ConnectionError
    if -299 <= status <= -200:
        return ProtocolError
    return Error


def make_error(status, detail, what=None, subject=None):
    """The exception for a failed status: ``what: detail`` (``what`` is left out when the
    library's detail already names ``subject``, as connect errors name the URI)."""
    text = detail or _ffi.status_name(status)
    if what and not (subject and subject in text):
        text = '%s: %s' % (what, text)
    return error_class(status)(text, status)


# ---- the context ------------------------------------------------------------------------------

_current_peer = contextvars.ContextVar('joint_current_peer', default=None)
_current_call = contextvars.ContextVar('joint_current_call', default=None)


def current_peer():
    """The peer (connection) whose request or notification is being handled, or None.
    Use it to call back over the same connection: ``joint.peer().call("nvim_get_mode")``.
    None in handlers that run on the worker pool."""
    return _current_peer.get()


class CallInfo:
    """What a handler may learn about the request it serves (``joint.deadline()``)."""

    __slots__ = ('arrival', 'deadline_ms', 'extended')

    def __init__(self, req):
        self.arrival = time.monotonic()
        self.deadline_ms = lib.joint_request_deadline_ms(req)
        self.extended = bool(lib.joint_request_is_extended(req))


def deadline():
    """Inside a handler: the seconds left before the caller's deadline (its ``timeout=`` of an
    extended call, counted from when the request arrived; 0.0 once passed), or None when the
    call has none (stock requests never have one). Outside a handler: None."""
    info = _current_call.get()
    if info is None or not info.deadline_ms:
        return None
    return max(0.0, info.arrival + info.deadline_ms / 1000.0 - time.monotonic())


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


def _log_level():
    level = log.getEffectiveLevel()
    if level <= logging.DEBUG:
        return lib.JOINT_LOG_DEBUG
    if level <= logging.INFO:
        return lib.JOINT_LOG_INFO
    if level <= logging.WARNING:
        return lib.JOINT_LOG_WARN
    return lib.JOINT_LOG_ERROR


class Context:
    """One ``joint_ctx``: its fd, its drivers, its registrations and the peers seen on it."""

    def __init__(self, connect_timeout=None, max_message_size=None, max_depth=None,
                 max_inflight=None, memory_budget=None, output_high_water=None,
                 max_connections=None, listen_backlog=None, message_timeout=None,
                 idle_timeout=None, linger=None, extension=True, window=None, workers=None):
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
            for name, value, setter in (('message_timeout', message_timeout, lib.joint_config_set_message_timeout_ms),
                                        ('idle_timeout', idle_timeout, lib.joint_config_set_idle_timeout_ms)):
                if value is not None:
                    ms = -1 if value == math.inf else timeout_ms(value)
                    setter(config, ms)
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
        # Streaming handlers (and async handlers of extended calls) being served: polled after
        # every joint_ctx_process for credit, input and cancellation (see _streams).
        self.streams = set()
        # asyncio futures of stream operations waiting for something: woken after each process.
        self.after_process = set()
        # (peer weakref, call) to cancel at the next process: streams dropped unfinished
        # (their __del__ may run on any thread).
        self.cancels = collections.deque()
        self.stats = collections.Counter()
        self.poll_at = None       # monotonic time the streams must be polled at (deadlines)
        self._stats_lock = threading.Lock()
        self.closing = False
        self.lock = threading.RLock()
        # Guards the pointer against joint_ctx_free for the one call other threads make
        # without the main lock (wakeup, from Server.stop).
        self._free_lock = threading.RLock()
        self.queue = collections.deque()   # work queued by callbacks, run after process
        # conn address -> Peer, weakly: a Client is owned by the application, a peer of an
        # accepted connection by whoever holds it (joint.peer()); the library owns neither.
        self.peers = weakref.WeakValueDictionary()
        # Listener handles (joint_listener *): freed with the context; freeing one closes it.
        self.listeners = []
        self.methods = {}                  # name -> Handler (requests and notifications)
        self.fallback = None               # FallbackHandler (requests for unregistered methods)
        self.tasks = set()                 # asyncio tasks of async handlers
        self.closed = False
        self.stop_requested = False
        self._processing = False
        self._draining = 0
        self._close_pending = False
        self._deferred = []
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)
        self.loop = None
        self._timer = None
        self.on_drive = None          # called after every asyncio-driven process (Server.stop)
        # Per-context callbacks: one registration each, dispatched in Python. What C can reach
        # refers to the context weakly, so dropping the Client/Server frees it (__del__).
        ref = _ContextRef(self)
        self._check(lib.joint_ctx_set_conn_cb(self.ptr, _ffi.conn_trampoline, _ffi.register(ref),
                                              _ffi.free_trampoline), 'joint_ctx_set_conn_cb')
        self._check(lib.joint_ctx_set_notification_cb(self.ptr, _ffi.notification_trampoline,
                                                      _ffi.register(ref), _ffi.free_trampoline),
                    'joint_ctx_set_notification_cb')

    @property
    def ctx(self):          # for _ffi._report
        return self

    # -- errors -----------------------------------------------------------------------------

    def last_error(self):
        if self.ptr == NULL:
            return ''
        return ffi.string(lib.joint_ctx_last_error(self.ptr)).decode('utf-8', 'replace')

    def _check(self, status, what, use_last_error=True):
        if status < 0:
            detail = self.last_error() if use_last_error else ''
            raise make_error(status, detail or _ffi.status_name(status), what)
        return status

    def check(self, status, what):
        return self._check(status, what)

    def defer_exception(self, exc):
        self._deferred.append(exc)

    def count(self, what, n=1):
        """Bump a statistics counter (any thread)."""
        with self._stats_lock:
            self.stats[what] += n

    def _raise_deferred(self):
        if self._deferred:
            excs, self._deferred = self._deferred, []
            # Interrupts first; otherwise the first error (the rest are logged).
            excs.sort(key=lambda e: isinstance(e, Exception))
            for e in excs[1:]:
                log.error('joint: further error in a callback', exc_info=e)
            raise excs[0]

    def ensure_open(self):
        if self.closed:
            raise ConnectionError('the context is closed', lib.JOINT_E_CLOSED)

    # -- driving ----------------------------------------------------------------------------

    @property
    def processing(self):
        """Inside joint_ctx_process (a C callback is running)."""
        return self._processing

    @property
    def busy(self):
        """Inside process, or running the handlers it queued."""
        return self._processing or self._draining > 0

    def process(self):
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
                if self.streams:
                    self._poll_streams()
            finally:
                if self.after_process:
                    self._wake_after_process()
                if self._close_pending:
                    self.close()
            self._raise_deferred()

    def _poll_streams(self):
        """Served extended calls: resume those that have credit or input, end those the caller
        cancelled or whose deadline passed (joint's request state, read without blocking)."""
        self._draining += 1
        try:
            for driver in list(self.streams):
                if driver in self.streams:
                    driver.poll()
        finally:
            self._draining -= 1
            times = [t for t in (d.wake_at() for d in self.streams) if t is not None]
            self.poll_at = min(times) if times else None

    def timeout_ms(self):
        """``joint_ctx_timeout_ms``, shortened to the next time the streams need a poll."""
        ms = lib.joint_ctx_timeout_ms(self.ptr)
        if self.poll_at is not None and self.streams:
            p = max(0, int(math.ceil((self.poll_at - time.monotonic()) * 1000)))
            ms = p if ms < 0 else min(ms, p)
        return ms

    def _wake_after_process(self):
        futures, self.after_process = self.after_process, set()
        for fut in futures:
            if not fut.done():
                try:
                    fut.set_result(None)
                except RuntimeError:    # its loop is closed
                    pass

    def _run_queue(self):
        queue = self.queue
        self._draining += 1
        try:
            while queue:
                fn, _req = queue.popleft()
                fn()
        finally:
            self._draining -= 1

    def wait(self, timeout=None):
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

    def run_until(self, done):
        with self.lock:
            while not done():
                self.wait()

    # -- asyncio ----------------------------------------------------------------------------

    def attach(self, loop=None):
        """Drive this context from ``loop`` (the running loop by default)."""
        if loop is None:
            loop = asyncio.get_running_loop()
        if self.loop is loop:
            return loop
        self.ensure_open()
        self.detach()
        loop.add_reader(self.fd, _drive_weak, weakref.ref(self))
        self.loop = loop
        self._rearm()
        return loop

    def detach(self):
        loop, self.loop = self.loop, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self.fd)

    def _drive(self):
        try:
            self.process()
        finally:
            if self.loop is not None and not self.closed:
                self._rearm()
                if self.queue:    # a handler raised BaseException: run the rest soon
                    self.loop.call_soon(_drive_weak, weakref.ref(self))
            if self.on_drive is not None:
                self.on_drive()

    def _on_timer(self):
        self._timer = None
        self._drive()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _rearm(self):
        loop = self.loop
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

    def wakeup(self):
        """Make the fd readable (any thread)."""
        with self._free_lock:
            if self.ptr != NULL:
                lib.joint_ctx_wakeup(self.ptr)

    # -- callbacks from C -------------------------------------------------------------------

    def peer_for(self, conn):
        if conn == NULL:
            return None
        addr = int(ffi.cast('uintptr_t', conn))
        peer = self.peers.get(addr)
        if peer is None:
            peer = Peer(self, conn)
            self.peers[addr] = peer
        return peer

    def on_conn(self, conn, event, status, reason):
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

    def on_notification(self, conn, method, params):
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

    def close(self):
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

    def __init__(self, ctx):
        self._ref = weakref.ref(ctx)

    @property
    def ctx(self):
        return self._ref()

    def on_conn(self, *args):
        ctx = self._ref()
        if ctx is not None:
            ctx.on_conn(*args)

    def on_notification(self, *args):
        ctx = self._ref()
        if ctx is not None:
            ctx.on_notification(*args)


def _drive_weak(ref):
    ctx = ref()
    if ctx is not None:
        ctx._drive()


def _timer_weak(ref):
    ctx = ref()
    if ctx is not None:
        ctx._on_timer()


def _split_params(params):
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


def decode_response(resp, method):
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

    def __init__(self, ctx, method, future=None):
        self._ctx = weakref.ref(ctx)
        self.method = method
        self.future = future
        self.done = False
        self.result = None
        self.exception = None
        self.call_id = None

    def complete(self, resp, conn=None):
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
    def ctx(self):
        return self._ctx()

    def outcome(self):
        if self.exception is not None:
            exc, self.exception = self.exception, None   # no traceback cycles through the call
            raise exc
        return self.result


_DEFAULT = object()

_EXTENSION_STATES = {lib.JOINT_EXT_OFF: 'off', lib.JOINT_EXT_PENDING: 'pending',
                     lib.JOINT_EXT_ON: 'on', lib.JOINT_EXT_REFUSED: 'refused'}


class Peer:
    """One connection: call and notify over it. Clients are peers that own their connection;
    peers of accepted connections come from ``joint.peer()`` inside handlers."""

    _owned = False

    def __init__(self, ctx, conn, timeout=None):
        self.ctx = ctx
        self._conn = conn
        self.timeout = timeout
        self._state = 'open'
        self._close_status = 0
        self._close_reason = ''

    # -- state ------------------------------------------------------------------------------

    _open_waiter = None

    def _opened(self):
        if self._state == 'connecting':
            self._state = 'open'
            self._wake_open_waiter()

    def _closed(self, status, reason):
        self._state = 'closed'
        self._close_status = status
        self._close_reason = reason
        if not self._owned:
            self._conn = NULL     # freed by the library after the CLOSED callback
        self._wake_open_waiter()

    def _wake_open_waiter(self):
        fut, self._open_waiter = self._open_waiter, None
        if fut is not None and not fut.done():
            try:
                fut.set_result(None)
            except RuntimeError:
                pass

    def _free_owned(self):
        pass

    @property
    def closed(self):
        """Whether the connection is closed (no new calls can be made)."""
        if self._conn == NULL or self.ctx.closed:
            return True
        return not lib.joint_conn_is_open(self._conn)

    def _conn_or_raise(self, method):
        if self._conn == NULL or self.ctx.closed:
            raise ConnectionError('%s: the connection is closed%s' % (
                method, (' (%s)' % self._close_reason) if self._close_reason else ''), lib.JOINT_E_CLOSED)
        return self._conn

    # -- calls ------------------------------------------------------------------------------

    def _timeout_ms(self, timeout):
        return timeout_ms(self.timeout if timeout is _DEFAULT else timeout)

    def _start(self, method, params, timeout, future=None):
        ms = self._timeout_ms(timeout)
        name = _cstr(method)
        ctx = self.ctx
        with ctx.lock:
            conn = self._conn_or_raise(method)
            call = Call(ctx, method, future)
            ud = _ffi.register(call)
            cid = ffi.new('uint64_t *')
            st = lib.joint_conn_call(conn, name, params, len(params), ms, _ffi.response_trampoline, ud, cid)
            if st < 0:
                _ffi.unregister(ud)     # the callback never runs when the call fails to start
                raise make_error(st, ctx.last_error(), method)
            call.call_id = cid[0]
        return call

    def _cancel(self, call):
        with self.ctx.lock:
            if not call.done and self._conn != NULL and not self.ctx.closed:
                lib.joint_conn_cancel(self._conn, call.call_id)

    def _wait(self, call):
        ctx = self.ctx
        with ctx.lock:
            if not call.done and ctx.processing:
                self._cancel(call)
                raise Error('%s: a blocking call cannot be made from inside a joint callback of the '
                            'same context' % call.method, E_RECURSIVE)
            try:
                ctx.run_until(lambda: call.done)
            except BaseException:
                self._cancel(call)    # Ctrl-C or an error while waiting: the call completes as cancelled
                raise
        return call.outcome()

    def call(self, method, *args, timeout=_DEFAULT, **kwargs):
        """Call ``method`` and wait for its result. Positional args are sent as the params
        array, keyword args as a params map (keyword params). ``timeout`` (seconds, None for
        none) defaults to the client's. Raises ``RemoteError``, ``TimeoutError`` or
        ``ConnectionError``."""
        return self._wait(self._start(method, pack_params(args, kwargs), timeout))

    def call_with(self, method, params=None, *, timeout=_DEFAULT):
        """Call with explicit params: a list/tuple (positional), a dict (keyword params) or
        None. For params named ``timeout``, or an array and a map side by side."""
        return self._wait(self._start(method, encode_params(params), timeout))

    def notify(self, method, *args, **kwargs):
        """Send a notification (no answer). Returns at once, after one non-blocking drive of
        the context that sends it (inside a handler: when the handler returns)."""
        self._notify(method, pack_params(args, kwargs))

    def _notify(self, method, params):
        name = _cstr(method)
        ctx = self.ctx
        with ctx.lock:
            conn = self._conn_or_raise(method)
            st = lib.joint_conn_notify(conn, name, params, len(params))
            if st < 0:
                raise make_error(st, ctx.last_error(), method)
            if not ctx.busy:
                ctx.process()     # send it now, not at the next drive (a script may exit first)

    def poll(self, timeout=0):
        """Drive the context once without a call: wait up to ``timeout`` seconds (0: not at
        all) for activity, then run it (send queued output, run handlers for requests and
        notifications from the peer). A blocking client that serves methods uses this, or
        ``serve()``, to answer while it makes no calls itself."""
        ctx = self.ctx
        with ctx.lock:
            ctx.wait(timeout)

    def call_stream(self, method, *args, timeout=_DEFAULT, client_stream=False, window=None, **kwargs):
        """Call ``method`` and return a ``joint.Stream``: a generator of the items it streams,
        whose return value (``StopIteration.value``, also ``stream.result``) is the call's
        result. The call starts at once.

        ``timeout`` covers the whole call and is also the callee's deadline. ``window``: items
        the callee may stream ahead of the consumer (default: the client's ``window``); credit
        is granted as items are taken, so a slow consumer slows the producer.
        ``client_stream=True`` makes a call that takes values: ``stream.send(v)`` sends ``v``
        and returns the next item (lock-step, like a local generator), ``stream.write(v)``
        sends without waiting for an item, ``stream.end_input()`` ends the input.
        ``stream.throw(exc)`` throws ``exc`` into the callee, ``stream.close()`` cancels.
        Positional and keyword args may be mixed (keyword params of the extension). Against a
        stock MessagePack-RPC peer the stream has exactly one item, the peer's answer, which is
        also its result; sending raises ``joint.UnsupportedError``. See the README."""
        return _streams.Stream(self, method, args, kwargs, timeout, client_stream, window)

    def call_stream_with(self, method, args=(), kwargs=None, *, timeout=_DEFAULT, client_stream=False,
                         window=None):
        """``call_stream`` with explicit ``args`` (a list/tuple) and ``kwargs`` (a dict), for
        params named ``timeout``, ``client_stream`` or ``window``."""
        return _streams.Stream(self, method, args, kwargs, timeout, client_stream, window)

    @property
    def extension(self):
        """Where the joint extension stands on this connection: ``"off"`` (not offered:
        ``extension=False``, UDP, stdio), ``"pending"`` (offered, no answer yet), ``"on"``
        (both ends speak it) or ``"refused"`` (a stock MessagePack-RPC peer); None once the
        connection is gone."""
        if self._conn == NULL or self.ctx.closed:
            return None
        return _EXTENSION_STATES.get(lib.joint_conn_extension(self._conn))

    # -- asyncio ----------------------------------------------------------------------------

    async def acall(self, method, *args, timeout=_DEFAULT, **kwargs):
        """``call`` for asyncio: the context is driven by the running loop (add_reader on its
        fd); many calls may be in flight at once. Cancelling the task cancels the call."""
        return await self._acall(method, pack_params(args, kwargs), timeout)

    async def acall_with(self, method, params=None, *, timeout=_DEFAULT):
        return await self._acall(method, encode_params(params), timeout)

    async def _acall(self, method, params, timeout):
        loop = self.ctx.attach()
        fut = loop.create_future()
        call = self._start(method, params, timeout, fut)
        try:
            return await fut
        except asyncio.CancelledError:
            self._cancel(call)
            raise
        finally:
            call.future = None

    async def anotify(self, method, *args, **kwargs):
        """``notify`` for asyncio (sent by the running loop)."""
        self.ctx.attach()
        self._notify(method, pack_params(args, kwargs))

    def astream(self, method, *args, timeout=_DEFAULT, client_stream=False, window=None, **kwargs):
        """``call_stream`` for asyncio: ``async for item in client.astream(...)``. Returns a
        ``joint.AsyncStream`` (``asend``, ``athrow``, ``aclose``, ``await write(v)``,
        ``end_input()``, ``.result``), driven by the running loop: no helper thread; credit is
        granted as the consumer takes items. The call starts at once if a loop is running,
        else at the first use."""
        return _streams.AsyncStream(self, method, args, kwargs, timeout, client_stream, window)

    def astream_with(self, method, args=(), kwargs=None, *, timeout=_DEFAULT, client_stream=False,
                     window=None):
        """``astream`` with explicit ``args`` and ``kwargs``."""
        return _streams.AsyncStream(self, method, args, kwargs, timeout, client_stream, window)

    def __repr__(self):
        return '<%s %s>' % (type(self).__name__, 'closed' if self.closed else 'open')


# ---- serving ----------------------------------------------------------------------------------


def _error_object(exc):
    """The error object a handler's exception is answered with."""
    if isinstance(exc, RemoteError):
        return exc.error
    code = getattr(exc, 'code', None)
    if isinstance(code, int) and not isinstance(code, bool):
        return [code, str(exc)]
    text = str(exc)
    return [lib.JOINT_RPC_HANDLER_FAILED,
            '%s: %s' % (type(exc).__name__, text) if text else type(exc).__name__]


def _reply_error(req, error):
    try:
        data = packb(error)
    except Exception:
        data = packb([lib.JOINT_RPC_HANDLER_FAILED, repr(error)])
    lib.joint_request_reply_error(req, data, len(data))


_ENDED = (lib.JOINT_E_CANCELLED, lib.JOINT_E_TIMEOUT, lib.JOINT_E_CLOSED)


def _reply(req, name, result):
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


def request_params(req, name):
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


class Handler:
    """A registered method. ``on_request`` runs inside joint_ctx_process and only queues
    the work; ``run`` calls the function after process has returned. A generator (or async
    generator) result is served by a driver of ``_streams``: items streamed with
    joint_request_yield as the caller's credit allows, values sent in fed to the generator."""

    pool = False

    def __init__(self, ctx, name, fn, signature=_DEFAULT):
        self._ctx = weakref.ref(ctx)
        self.name = name
        self.fn = fn
        if signature is _DEFAULT:
            try:
                signature = inspect.signature(fn)
            except (TypeError, ValueError):
                signature = None
        self.signature = signature

    @property
    def ctx(self):
        return self._ctx()

    def on_request(self, req):
        ctx = self.ctx
        if ctx is None:
            lib.joint_request_free(req)
            return
        info = CallInfo(req)
        try:
            args, kwargs = request_params(req, self.name)
        except Exception as e:
            lib.joint_request_reply_error_msg(req, lib.JOINT_RPC_INVALID_PARAMS,
                                              ('%s: bad params: %s' % (self.name, e)).encode('utf-8', 'replace'))
            return
        peer = ctx.peer_for(lib.joint_request_conn(req))
        ctx.queue.append((lambda: self.run(req, args, kwargs, peer, info), req))

    def _bind(self, req, args, kwargs):
        """Check the arguments against the signature; answer INVALID_PARAMS if they do not fit."""
        if self.signature is None:
            return True
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as e:
            if req is not None:
                _reply_error(req, [lib.JOINT_RPC_INVALID_PARAMS, 'invalid params for %s(): %s' % (self.name, e)])
            else:
                log.warning('joint: notification %s: %s', self.name, e)
            return False
        return True

    def run(self, req, args, kwargs, peer, info=None):
        """Call the function; answer ``req`` (None for a notification) exactly once."""
        if not self._bind(req, args, kwargs):
            return
        token = _current_peer.set(peer)
        ctoken = _current_call.set(info)
        try:
            result = self.fn(*args, **kwargs)
            if req is None and inspect.isgenerator(result):
                for _ in result:     # a notification: run the generator, drop its items
                    pass
                return
        except BaseException as e:  # noqa: B902 - every request is answered
            self._failed(req, e)
            if not isinstance(e, Exception):
                raise
            return
        finally:
            _current_call.reset(ctoken)
            _current_peer.reset(token)
        if inspect.isgenerator(result):
            _streams.serve_generator(self, req, result, peer, info)
        elif inspect.isasyncgen(result):
            _streams.serve_async_generator(self, req, result, peer, info)
        elif inspect.isawaitable(result):
            self._run_async(req, result, peer, info)
        elif req is not None:
            _reply(req, self.name, result)

    def _failed(self, req, e):
        if req is not None:
            if isinstance(e, EndOfInput):      # the generator let the end of input end it
                _reply(req, self.name, None)
            else:
                _reply_error(req, _error_object(e))
        elif isinstance(e, Exception):
            log.error('joint: notification handler %s failed', self.name, exc_info=e)

    def _run_async(self, req, result, peer, info=None):
        ctx = self.ctx
        loop = ctx.loop
        if loop is None or loop.is_closed():
            if inspect.iscoroutine(result):
                result.close()
            self._failed(req, Error('async handler %s needs the context driven by asyncio '
                                    '(server.serve(), await server.aserve() or client.acall())' % self.name))
            return

        async def runner():
            try:
                value = await result
                if inspect.isgenerator(value):
                    value = list(value)
            except BaseException as e:  # noqa: B902
                self._failed(req, e)
                if not isinstance(e, (Exception, asyncio.CancelledError)):
                    raise
                return
            if req is not None:
                _reply(req, self.name, value)

        token = _current_peer.set(peer)
        ctoken = _current_call.set(info)
        try:
            task = loop.create_task(runner())
        finally:
            _current_call.reset(ctoken)
            _current_peer.reset(token)
        ctx.tasks.add(task)
        task.add_done_callback(ctx.tasks.discard)
        if req is not None and info is not None and info.extended:
            _streams.watch_task(ctx, req, task)   # cancelled when the caller cancels or the deadline passes


class PoolHandler(Handler):
    """A method served on joint's worker pool (``joint_ctx_register_pool``): the whole handler
    runs on a worker thread, streaming with blocking waits for credit and input."""

    pool = True

    def on_pool_request(self, req):
        _streams.serve_on_pool(self, req)


def request_method(req):
    """The method name of a request, as a str (invalid UTF-8 kept with surrogateescape)."""
    raw = _ffi.borrowed_bytes(lib.joint_request_method, req)
    return bytes(raw).decode('utf-8', 'surrogateescape') if raw else ''


class FallbackHandler(Handler):
    """The handler of requests for methods that have no registration
    (``joint_ctx_set_fallback``). Each request is served by a ``Handler`` for its own method
    name whose function is ``fn`` with that name bound as the first argument, so it takes the
    same path as a registered method (signature check, errors, async, generators)."""

    def __init__(self, ctx, fn):
        super().__init__(ctx, '(fallback)', fn)
        self.bound_signature = None         # fn is not introspectable: no signature check
        if self.signature is not None:
            try:
                self.bound_signature = inspect.signature(functools.partial(fn, ''))
            except (TypeError, ValueError):
                raise TypeError('a fallback handler must accept the method name as its first '
                                'argument') from None

    def for_method(self, name):
        ctx = self.ctx
        if ctx is None:
            return None
        return Handler(ctx, name, functools.partial(self.fn, name), self.bound_signature)

    def on_request(self, req):
        handler = self.for_method(request_method(req))
        if handler is None:
            lib.joint_request_free(req)
            return
        handler.on_request(req)


class Handlers:
    """Method registration, shared by Server and Client (a client serves calls its peer
    makes back over the connection, as Neovim does)."""

    def method(self, name=None, *, pool=False):
        """Decorator: ``@obj.method`` registers the function under its own name,
        ``@obj.method("name")`` under another, ``@obj.method(pool=True)`` on joint's worker
        pool. The function receives the positional params as arguments and the keyword params
        (a params map, or the extension's kwargs) as keyword arguments. It may return a value,
        raise (the caller gets ``[0, "ExcType: message"]``, or the error object of a
        ``joint.RemoteError``, or ``[e.code, str(e)]``), be ``async``, or be a generator (or
        async generator): its items are streamed to a joint caller, values the caller sends in
        are the results of its ``yield`` expressions, and a stock caller gets the list of its
        items. Registered methods also receive notifications of the same name."""
        if callable(name):
            fn = name
            self.register(fn.__name__, fn, pool=pool)
            return fn

        def decorate(fn):
            self.register(name or fn.__name__, fn, pool=pool)
            return fn
        return decorate

    def register(self, name, fn, *, pool=False):
        """Register ``fn`` as ``name`` (replacing an earlier registration). ``pool=True``: run
        it on joint's worker pool (``workers=`` threads) instead of the loop thread, for
        handlers that block or compute; it must be a plain function or a generator function,
        and ``joint.peer()`` is None there."""
        if not callable(fn):
            raise TypeError('a handler must be callable')
        if pool and (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
            raise TypeError('%s: async handlers run on the asyncio loop, not on the worker pool' % name)
        ctx = self.ctx
        cname = _cstr(name)
        handler = (PoolHandler if pool else Handler)(ctx, name, fn)
        with ctx.lock:
            ctx.ensure_open()
            ud = _ffi.register(handler)
            if pool:
                st = lib.joint_ctx_register_pool(ctx.ptr, cname, _ffi.pool_request_trampoline, ud,
                                                 _ffi.free_trampoline)
            else:
                st = lib.joint_ctx_register(ctx.ptr, cname, _ffi.request_trampoline, ud, _ffi.free_trampoline)
            if st < 0:
                _ffi.unregister(ud)   # a failed registration does not take the user data
                raise make_error(st, ctx.last_error(), 'register %s' % name)
            ctx.methods[name] = handler
        return fn

    def unregister(self, name):
        ctx = self.ctx
        with ctx.lock:
            ctx.ensure_open()
            ctx.check(lib.joint_ctx_unregister(ctx.ptr, _cstr(name)), 'unregister %s' % name)
            ctx.methods.pop(name, None)

    def fallback(self, fn):
        """Decorator: ``@obj.fallback`` serves every request for a method that has no
        registration (instead of the ``joint.RPC_NO_METHOD`` error). The function receives the
        method name (a str) first, then the params as a method handler does (positional
        params as arguments, keyword params as keyword arguments); it answers like a method
        handler too (return a value, raise, be ``async``, or be a generator). Notifications
        are not passed to it. Replaces an earlier fallback; ``set_fallback(None)`` removes it."""
        self.set_fallback(fn)
        return fn

    def set_fallback(self, fn):
        """Serve unregistered methods with ``fn`` (see ``fallback``); None restores the
        default ``joint.RPC_NO_METHOD`` error."""
        ctx = self.ctx
        if fn is None:
            with ctx.lock:
                ctx.ensure_open()
                ctx.check(lib.joint_ctx_set_fallback(ctx.ptr, NULL, NULL, NULL), 'remove the fallback')
                ctx.fallback = None
            return None
        if not callable(fn):
            raise TypeError('a handler must be callable')
        handler = FallbackHandler(ctx, fn)
        with ctx.lock:
            ctx.ensure_open()
            ud = _ffi.register(handler)
            st = lib.joint_ctx_set_fallback(ctx.ptr, _ffi.request_trampoline, ud, _ffi.free_trampoline)
            if st < 0:
                _ffi.unregister(ud)   # a failed registration does not take the user data
                raise make_error(st, ctx.last_error(), 'set the fallback')
            ctx.fallback = handler
        return fn


# ---- clients ----------------------------------------------------------------------------------


class Client(Peer, Handlers):
    """A connection this program made (``joint.connect``), with its own context.

    Blocking calls drive the context while they wait; ``acall``/``astream`` drive it from the
    running asyncio loop. A client may be shared by threads (its calls are then serialised);
    for concurrency use asyncio or one client per thread."""

    _owned = True

    def __init__(self, ctx, conn, timeout, uri):
        Peer.__init__(self, ctx, conn, timeout)
        self.uri = uri
        # Only TCP has a connect phase to wait for: Unix sockets, pipes and UDP are open (or
        # failed) when joint_ctx_connect/spawn returns. Not driving the context before the
        # caller registers its handlers matters for servers on stdio, whose client may call
        # at once.
        self._state = 'connecting' if uri.startswith('tcp://') else 'open'

    def _wait_open(self, connect_timeout):
        deadline_ms = timeout_ms(connect_timeout)
        import time
        end = None if deadline_ms < 0 else time.monotonic() + deadline_ms / 1000.0
        ctx = self.ctx
        with ctx.lock:
            while self._state == 'connecting':
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    raise ConnectTimeoutError('connect to %s: timed out' % self.uri, E_TIMEOUT)
                ctx.wait(left)
        if self._state == 'closed':
            st = self._close_status
            raise _connect_error(st, self._close_reason, self.uri)

    async def _await_open(self, connect_timeout):
        loop = self.ctx.attach()
        ms = timeout_ms(connect_timeout)
        if self._state == 'connecting':
            self._open_waiter = fut = loop.create_future()
            try:
                await asyncio.wait_for(fut, None if ms < 0 else ms / 1000.0)
            except asyncio.TimeoutError:
                raise ConnectTimeoutError('connect to %s: timed out' % self.uri, E_TIMEOUT) from None
        if self._state == 'closed':
            st = self._close_status
            raise _connect_error(st, self._close_reason, self.uri)

    def serve(self):
        """Answer the peer's calls (registered with ``@client.method``) until the connection
        closes: a plugin started by Neovim connects with ``joint.connect("stdio:")`` and serves."""
        ctx = self.ctx
        with ctx.lock:
            while self._state != 'closed' and not ctx.closed:
                ctx.wait()

    def _free_owned(self):
        conn, self._conn = self._conn, NULL
        if conn != NULL:
            lib.joint_conn_free(conn)

    def close(self):
        """Close the connection and free the context; pending calls fail with
        ConnectionError."""
        ctx = self.ctx
        if ctx is not None and not ctx.closed:
            ctx.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        return '<joint.Client %s %s>' % (self.uri, 'closed' if self.closed else 'open')


class ConnectTimeoutError(TimeoutError, ConnectionError):
    """Connecting took longer than the timeout (both a TimeoutError and a ConnectionError)."""


def _connect_error(status, reason, uri):
    text = reason or _ffi.status_name(status)
    if uri not in text:
        text = 'connect to %s: %s' % (uri, text)
    cls = ConnectTimeoutError if status == E_TIMEOUT else ConnectionError
    return cls(text, status)


def _open(ctx, uri):
    out = ffi.new('joint_conn **')
    if isinstance(uri, (list, tuple)):
        argv, uri = list(uri), 'exec:' + ' '.join(shlex.quote(a) for a in uri)
    elif not isinstance(uri, str):
        raise TypeError('uri must be a str (or an argv list to spawn), not %s' % type(uri).__name__)
    elif uri.startswith('exec:'):
        argv = shlex.split(uri[5:])
    elif uri == 'stdio:':
        ctx.check(lib.joint_ctx_open_stdio(ctx.ptr, out), 'open stdio')
        return out[0], uri
    else:
        st = lib.joint_ctx_connect(ctx.ptr, _cstr(uri, 'uri'), out)
        if st < 0:
            raise make_error(st, ctx.last_error(), 'connect to %s' % uri, uri)
        return out[0], uri
    if not argv:
        raise ValueError('exec: needs a program to run')
    cargs = [ffi.new('char[]', _cstr(a, 'argument')) for a in argv]
    arr = ffi.new('char *[]', cargs + [NULL])
    st = lib.joint_ctx_spawn(ctx.ptr, ffi.cast('const char *const *', arr), out)
    if st < 0:
        raise make_error(st, ctx.last_error(), 'spawn %s' % argv[0], argv[0])
    return out[0], uri


def _new_client(uri, timeout, connect_timeout, options):
    if connect_timeout is _DEFAULT:
        connect_timeout = timeout if timeout is not None else 10.0
    timeout_ms(timeout)            # validate before anything is created
    ctx = Context(connect_timeout=connect_timeout, **options)
    try:
        conn, uri = _open(ctx, uri)
    except BaseException:
        ctx.close()
        raise
    client = Client(ctx, conn, timeout, uri)
    ctx.peers[int(ffi.cast('uintptr_t', conn))] = client
    return client, connect_timeout


def connect(uri, timeout=None, *, connect_timeout=_DEFAULT, **options):
    """Connect and return a blocking ``Client``.

    ``uri``: ``tcp://HOST:PORT``, ``unix:///path``, ``udp://HOST:PORT``, ``exec:PROGRAM ARGS``
    (run a program and talk over its stdin/stdout, e.g. ``exec:nvim --embed --headless``;
    words split as by a POSIX shell) or an argv list, or ``stdio:`` (this process's own
    stdin/stdout). ``timeout``: default seconds for each call (None: wait forever), also the
    connect timeout unless ``connect_timeout`` is given (default 10 s). ``options``:
    ``max_message_size``, ``max_depth``, ``max_inflight``, the resource limits (see the
    package README: ``memory_budget``, ``output_high_water``, ``max_connections``,
    ``message_timeout``, ``idle_timeout``, ``linger``, ``listen_backlog``); ``extension``
    (default True: offer the joint extension; False: a stock client), ``window`` (the default
    flow-control window of streaming calls, 64), ``workers`` (pool threads for
    ``@client.method(pool=True)``).
    Waits until the connection is up; raises ``joint.ConnectionError`` if it cannot be made.
    """
    client, ct = _new_client(uri, timeout, connect_timeout, options)
    try:
        client._wait_open(ct)
    except BaseException:
        client.close()
        raise
    return client


async def aconnect(uri, timeout=None, *, connect_timeout=_DEFAULT, **options):
    """Connect from asyncio; returns an ``AsyncClient`` driven by the running loop."""
    client, ct = _new_client(uri, timeout, connect_timeout, options)
    try:
        await client._await_open(ct)
    except BaseException:
        client.close()
        raise
    return AsyncClient(client)


class AsyncClient:
    """The asyncio face of a Client: ``await c.call(...)``, ``await c.notify(...)``,
    ``async for x in c.stream(...)``. ``c.client`` is the underlying Client (which also has
    the blocking methods)."""

    def __init__(self, client):
        self.client = client

    @property
    def ctx(self):
        return self.client.ctx

    @property
    def closed(self):
        return self.client.closed

    async def call(self, method, *args, timeout=_DEFAULT, **kwargs):
        return await self.client.acall(method, *args, timeout=timeout, **kwargs)

    async def call_with(self, method, params=None, *, timeout=_DEFAULT):
        return await self.client.acall_with(method, params, timeout=timeout)

    async def notify(self, method, *args, **kwargs):
        await self.client.anotify(method, *args, **kwargs)

    def stream(self, method, *args, timeout=_DEFAULT, **kwargs):
        return self.client.astream(method, *args, timeout=timeout, **kwargs)

    def method(self, name=None):
        return self.client.method(name)

    def register(self, name, fn):
        return self.client.register(name, fn)

    def fallback(self, fn):
        return self.client.fallback(fn)

    def set_fallback(self, fn):
        return self.client.set_fallback(fn)

    def close(self):
        self.client.close()

    async def aclose(self):
        self.client.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.client.close()

    def __repr__(self):
        return '<joint.AsyncClient %s %s>' % (self.client.uri, 'closed' if self.closed else 'open')


from . import _streams  # noqa: E402  (streams build on everything above)
