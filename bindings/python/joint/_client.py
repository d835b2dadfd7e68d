"""Peers, clients and handler dispatch: what applications call and register, on top of
``_core`` (the context) and ``_streams`` (streaming calls and handlers).

A ``Peer`` is one connection (``Client`` is a peer that owns its connection and its context);
a ``Handler`` is a registered method: ``on_request`` runs inside ``joint_ctx_process`` and only
queues the work, which runs after process has returned.
"""
import asyncio
import concurrent.futures
import functools
import inspect
import shlex
import weakref
from typing import (TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Optional, Sequence,
                    TypeVar, Union, overload)

from . import _ffi, _streams, _tls
from ._core import (_DEFAULT, Default, Params, Timeout, E_RECURSIVE, E_TIMEOUT, E_TLS, Call, CallInfo, Context, _cstr,
                    _error_object, handling, _reply, _reply_error, encode_params, log, make_error,
                    pack_params, request_params, timeout_ms)
from ._errors import ConnectionError, EndOfInput, Error, TimeoutError, TLSError
from ._ffi import CData, ffi, lib, NULL

F = TypeVar('F', bound=Callable[..., Any])
URI = Union[str, Sequence[str]]
"""Where to connect: a URI string, or an argv list to spawn."""

_EXTENSION_STATES = {lib.JOINT_EXT_OFF: 'off', lib.JOINT_EXT_PENDING: 'pending',
                     lib.JOINT_EXT_ON: 'on', lib.JOINT_EXT_REFUSED: 'refused'}


class Peer:
    """One connection: call and notify over it. Clients are peers that own their connection;
    peers of accepted connections come from ``joint.peer()`` inside handlers."""

    _owned = False

    def __init__(self, ctx: Context, conn: CData, timeout: Optional[float] = None) -> None:
        self.ctx = ctx
        self._conn = conn
        self.timeout = timeout
        self._state = 'open'
        self._open_waiter: 'Optional[asyncio.Future[None]]' = None
        self._close_status = 0
        self._close_reason = ''

    # -- state ------------------------------------------------------------------------------

    def _opened(self) -> None:
        if self._state == 'connecting':
            self._state = 'open'
            self._wake_open_waiter()

    def _closed(self, status: int, reason: str) -> None:
        self._state = 'closed'
        self._close_status = status
        self._close_reason = reason
        if not self._owned:
            self._conn = NULL     # freed by the library after the CLOSED callback
        self._wake_open_waiter()

    def _wake_open_waiter(self) -> None:
        fut, self._open_waiter = self._open_waiter, None
        if fut is not None and not fut.done():
            try:
                fut.set_result(None)
            except RuntimeError:
                pass

    def _free_owned(self) -> None:
        pass

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (no new calls can be made)."""
        if self._conn == NULL or self.ctx.closed:
            return True
        return not lib.joint_conn_is_open(self._conn)

    def _conn_or_raise(self, method: str) -> CData:
        if self._conn == NULL or self.ctx.closed:
            raise self._closed_error(method)
        return self._conn

    def _closed_error(self, method: str) -> ConnectionError:
        # A connection its TLS handshake closed keeps saying so: later calls raise TLSError
        # with the cause, not a bare "closed".
        reason = (' (%s)' % self._close_reason) if self._close_reason else ''
        if self._close_status == E_TLS:
            return TLSError('%s: the connection is closed%s' % (method, reason), E_TLS)
        return ConnectionError('%s: the connection is closed%s' % (method, reason), lib.JOINT_E_CLOSED)

    # -- calls ------------------------------------------------------------------------------

    def _timeout_ms(self, timeout: Timeout) -> int:
        return timeout_ms(self.timeout if timeout is _DEFAULT else timeout)

    def _start(self, method: str, params: bytes, timeout: Timeout, future: Any = None) -> Call:
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
                if self._close_status == E_TLS:
                    raise self._closed_error(method)
                raise make_error(st, ctx.last_error(), method)
            call.call_id = cid[0]
        return call

    def _cancel(self, call: Call) -> None:
        with self.ctx.lock:
            if not call.done and self._conn != NULL and not self.ctx.closed:
                lib.joint_conn_cancel(self._conn, call.call_id)

    def _wait(self, call: Call) -> Any:
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

    def call(self, method: str, *args: Any, timeout: Timeout = _DEFAULT, **kwargs: Any) -> Any:
        """Call ``method`` and wait for its result. Positional args are sent as the params
        array, keyword args as a params map (keyword params). ``timeout`` (seconds, None for
        none) defaults to the client's. Raises ``RemoteError``, ``TimeoutError`` or
        ``ConnectionError``."""
        return self._call_blocking(method, pack_params(args, kwargs), timeout)

    def call_with(self, method: str, params: Params = None, *, timeout: Timeout = _DEFAULT) -> Any:
        """Call with explicit params: a list/tuple (positional), a dict (keyword params) or
        None. For params named ``timeout``, or an array and a map side by side."""
        return self._call_blocking(method, encode_params(params), timeout)

    def _call_blocking(self, method: str, params: bytes, timeout: Timeout) -> Any:
        ctx = self.ctx
        if not ctx.driven_elsewhere():
            return self._wait(self._start(method, params, timeout))
        # From a worker thread while the server's loop drives the context: the loop sends
        # the call and completes the future; this thread only waits.
        fut: 'concurrent.futures.Future[Any]' = concurrent.futures.Future()
        call = self._start(method, params, timeout, fut)
        ctx.wakeup()
        try:
            return fut.result()
        finally:
            call.future = None

    def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Send a notification (no answer). Returns at once, after one non-blocking drive of
        the context that sends it (inside a handler: when the handler returns)."""
        self._notify(method, pack_params(args, kwargs))

    def _notify(self, method: str, params: bytes) -> None:
        name = _cstr(method)
        ctx = self.ctx
        with ctx.lock:
            conn = self._conn_or_raise(method)
            st = lib.joint_conn_notify(conn, name, params, len(params))
            if st < 0:
                if self._close_status == E_TLS:
                    raise self._closed_error(method)
                raise make_error(st, ctx.last_error(), method)
            if ctx.driven_elsewhere():
                ctx.wakeup()      # the loop's thread sends it
            elif not ctx.busy:
                ctx.process()     # send it now, not at the next drive (a script may exit first)

    def poll(self, timeout: Optional[float] = 0) -> None:
        """Drive the context once without a call: wait up to ``timeout`` seconds (0: not at
        all) for activity, then run it (send queued output, run handlers for requests and
        notifications from the peer). A blocking client that serves methods uses this, or
        ``serve()``, to answer while it makes no calls itself."""
        ctx = self.ctx
        with ctx.lock:
            ctx.wait(timeout)

    def call_stream(self, method: str, *args: Any, timeout: Timeout = _DEFAULT, client_stream: bool = False,
                    window: Optional[int] = None, **kwargs: Any) -> '_streams.Stream':
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

    def call_stream_with(self, method: str, args: Sequence[Any] = (), kwargs: Optional[Dict[str, Any]] = None,
                         *, timeout: Timeout = _DEFAULT, client_stream: bool = False,
                         window: Optional[int] = None) -> '_streams.Stream':
        """``call_stream`` with explicit ``args`` (a list/tuple) and ``kwargs`` (a dict), for
        params named ``timeout``, ``client_stream`` or ``window``."""
        return _streams.Stream(self, method, args, kwargs, timeout, client_stream, window)

    @property
    def extension(self) -> Optional[str]:
        """Where the joint extension stands on this connection: ``"off"`` (not offered:
        ``extension=False``, UDP, stdio), ``"pending"`` (offered, no answer yet), ``"on"``
        (both ends speak it) or ``"refused"`` (a stock MessagePack-RPC peer); None once the
        connection is gone."""
        if self._conn == NULL or self.ctx.closed:
            return None
        return _EXTENSION_STATES.get(lib.joint_conn_extension(self._conn))

    # -- TLS --------------------------------------------------------------------------------
    # What the handshake settled, read from the library each time (None when the connection
    # is not TLS, before its handshake is done, or once an accepted connection is gone).

    @property
    def tls_version(self) -> Optional[str]:
        """``"TLSv1.3"`` or ``"TLSv1.2"`` on a TLS connection whose handshake is done, else
        None."""
        with self.ctx.lock:
            if self._conn == NULL or self.ctx.closed:
                return None
            v = lib.joint_conn_tls_version(self._conn)
            return ffi.string(v).decode('ascii') if v != NULL else None

    @property
    def peer_certificate(self) -> Optional[bytes]:
        """The certificate the peer presented and the handshake verified (DER bytes), or None
        (not TLS, or a client that sent none)."""
        with self.ctx.lock:
            if self._conn == NULL or self.ctx.closed:
                return None
            der = _ffi.borrowed_bytes(lib.joint_conn_peer_certificate, self._conn)
            return bytes(der) if der is not None else None

    @property
    def peer_subject(self) -> Optional[str]:
        """The subject of the peer's verified certificate, attributes in certificate order
        (``"O=joint, CN=alice"``), or None when there is no certificate."""
        with self.ctx.lock:
            if self._conn == NULL or self.ctx.closed:
                return None
            subject = ffi.string(lib.joint_conn_peer_subject(self._conn)).decode('utf-8', 'replace')
            return subject or None

    @property
    def peer_sha256(self) -> Optional[bytes]:
        """The SHA-256 fingerprint (32 bytes) of the peer's verified certificate, or None."""
        with self.ctx.lock:
            if self._conn == NULL or self.ctx.closed:
                return None
            out = ffi.new('uint8_t[32]')
            if lib.joint_conn_peer_sha256(self._conn, out) != 0:
                return None
            return bytes(ffi.buffer(out, 32))

    # -- asyncio ----------------------------------------------------------------------------

    async def acall(self, method: str, *args: Any, timeout: Timeout = _DEFAULT, **kwargs: Any) -> Any:
        """``call`` for asyncio: the context is driven by the running loop (add_reader on its
        fd); many calls may be in flight at once. Cancelling the task cancels the call."""
        return await self._acall(method, pack_params(args, kwargs), timeout)

    async def acall_with(self, method: str, params: Params = None, *, timeout: Timeout = _DEFAULT) -> Any:
        return await self._acall(method, encode_params(params), timeout)

    async def _acall(self, method: str, params: bytes, timeout: Timeout) -> Any:
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

    async def anotify(self, method: str, *args: Any, **kwargs: Any) -> None:
        """``notify`` for asyncio (sent by the running loop)."""
        self.ctx.attach()
        self._notify(method, pack_params(args, kwargs))

    def astream(self, method: str, *args: Any, timeout: Timeout = _DEFAULT, client_stream: bool = False,
                window: Optional[int] = None, **kwargs: Any) -> '_streams.AsyncStream':
        """``call_stream`` for asyncio: ``async for item in client.astream(...)``. Returns a
        ``joint.AsyncStream`` (``asend``, ``athrow``, ``aclose``, ``await write(v)``,
        ``end_input()``, ``.result``), driven by the running loop: no helper thread; credit is
        granted as the consumer takes items. The call starts at once if a loop is running,
        else at the first use."""
        return _streams.AsyncStream(self, method, args, kwargs, timeout, client_stream, window)

    def astream_with(self, method: str, args: Sequence[Any] = (), kwargs: Optional[Dict[str, Any]] = None,
                     *, timeout: Timeout = _DEFAULT, client_stream: bool = False,
                     window: Optional[int] = None) -> '_streams.AsyncStream':
        """``astream`` with explicit ``args`` and ``kwargs``."""
        return _streams.AsyncStream(self, method, args, kwargs, timeout, client_stream, window)

    def __repr__(self) -> str:
        return '<%s %s>' % (type(self).__name__, 'closed' if self.closed else 'open')


class Handler:
    """A registered method. ``on_request`` runs inside joint_ctx_process and only queues
    the work; ``run`` calls the function after process has returned. A generator (or async
    generator) result is served by a driver of ``_streams``: items streamed with
    joint_request_yield as the caller's credit allows, values sent in fed to the generator."""

    pool = False

    def __init__(self, ctx: Context, name: str, fn: Callable[..., Any],
                 signature: Union[inspect.Signature, None, Default] = _DEFAULT) -> None:
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
    def ctx(self) -> Optional[Context]:
        return self._ctx()

    def on_request(self, req: CData) -> None:
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

    def _bind(self, req: CData, args: List[Any], kwargs: Dict[str, Any]) -> bool:
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

    @property
    def blocking(self) -> bool:
        """Whether the function is a plain or generator function (not ``async``): those run
        on the server's worker pool, if it has one."""
        fn = self.fn
        return not (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn))

    def run(self, req: CData, args: List[Any], kwargs: Dict[str, Any], peer: Optional[Peer],
            info: Optional[CallInfo] = None) -> None:
        """Call the function, on the context's worker pool if it has one and the function
        blocks, else here on the loop thread; answer ``req`` (None for a notification)
        exactly once."""
        ctx = self.ctx
        workers = ctx.workers if ctx is not None else None
        if workers is not None and self.blocking:
            if not workers.submit(req, lambda: self.run_on_worker(req, args, kwargs, peer, info)):
                if req is not None:
                    lib.joint_request_free(req)      # the server is closing
            return
        self.run_inline(req, args, kwargs, peer, info)

    def run_on_worker(self, req: CData, args: List[Any], kwargs: Dict[str, Any],
                      peer: Optional[Peer], info: Optional[CallInfo]) -> None:
        """``run`` on a worker thread: the function, then its answer with the thread-safe
        request functions; a generator streams with blocking waits for credit and input;
        an awaitable goes to the loop."""
        if not self._bind(req, args, kwargs):
            return
        try:
            with handling(peer, info):
                result = self.fn(*args, **kwargs)
        except BaseException as e:  # noqa: B902 - every request is answered
            self._failed(req, e)
            return
        if inspect.isgenerator(result):
            _streams.serve_on_worker(self, req, result, peer, info)
        elif inspect.isawaitable(result) or inspect.isasyncgen(result):
            self._hand_to_loop(req, result, peer, info)
        elif req is not None:
            _reply(req, self.name, result)

    def _hand_to_loop(self, req: CData, result: Any, peer: Optional[Peer],
                      info: Optional[CallInfo]) -> None:
        ctx = self.ctx
        loop = ctx.loop if ctx is not None else None

        def on_loop() -> None:
            assert ctx is not None      # the loop belongs to it
            with ctx.lock:
                if inspect.isasyncgen(result):
                    _streams.serve_async_generator(self, req, result, peer, info)
                else:
                    self._run_async(req, result, peer, info)
        try:
            if loop is None:
                raise RuntimeError('no loop')
            loop.call_soon_threadsafe(on_loop)
        except RuntimeError:   # no loop, or it is closed
            if inspect.iscoroutine(result):
                result.close()
            self._failed(req, Error('%s: the server stopped before its answer was ready' % self.name))

    def run_inline(self, req: CData, args: List[Any], kwargs: Dict[str, Any], peer: Optional[Peer],
                   info: Optional[CallInfo] = None) -> None:
        """Call the function here (the loop thread)."""
        if not self._bind(req, args, kwargs):
            return
        try:
            with handling(peer, info):
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
        if inspect.isgenerator(result):
            _streams.serve_generator(self, req, result, peer, info)
        elif inspect.isasyncgen(result):
            _streams.serve_async_generator(self, req, result, peer, info)
        elif inspect.isawaitable(result):
            self._run_async(req, result, peer, info)
        elif req is not None:
            _reply(req, self.name, result)

    def _failed(self, req: CData, e: BaseException) -> None:
        if req is not None:
            if isinstance(e, EndOfInput):      # the generator let the end of input end it
                _reply(req, self.name, None)
            else:
                _reply_error(req, _error_object(e))
        elif isinstance(e, Exception):
            log.error('joint: notification handler %s failed', self.name, exc_info=e)

    def _run_async(self, req: CData, result: Any, peer: Optional[Peer],
                   info: Optional[CallInfo] = None) -> None:
        ctx = self.ctx
        loop = ctx.loop if ctx is not None else None
        if ctx is None or loop is None or loop.is_closed():
            if inspect.iscoroutine(result):
                result.close()
            self._failed(req, Error('async handler %s needs the context driven by asyncio '
                                    '(server.serve(), await server.aserve() or client.acall())' % self.name))
            return

        async def runner() -> None:
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

        with handling(peer, info):       # the task copies the context it is created in
            task = loop.create_task(runner())
        ctx.tasks.add(task)
        task.add_done_callback(ctx.tasks.discard)
        if req is not None and info is not None and info.extended:
            _streams.watch_task(self, req, task)   # cancelled when the caller cancels or the deadline passes


class PoolHandler(Handler):
    """A method served on joint's worker pool (``joint_ctx_register_pool``): the whole handler
    runs on a worker thread, streaming with blocking waits for credit and input."""

    pool = True

    def on_pool_request(self, req: CData) -> None:
        _streams.serve_on_pool(self, req)


def request_method(req: CData) -> str:
    """The method name of a request, as a str (invalid UTF-8 kept with surrogateescape)."""
    raw = _ffi.borrowed_bytes(lib.joint_request_method, req)
    return bytes(raw).decode('utf-8', 'surrogateescape') if raw else ''


class FallbackHandler(Handler):
    """The handler of requests for methods that have no registration
    (``joint_ctx_set_fallback``). Each request is served by a ``Handler`` for its own method
    name whose function is ``fn`` with that name bound as the first argument, so it takes the
    same path as a registered method (signature check, errors, async, generators)."""

    def __init__(self, ctx: Context, fn: Callable[..., Any]) -> None:
        super().__init__(ctx, '(fallback)', fn)
        self.bound_signature = None         # fn is not introspectable: no signature check
        if self.signature is not None:
            try:
                self.bound_signature = inspect.signature(functools.partial(fn, ''))
            except (TypeError, ValueError):
                raise TypeError('a fallback handler must accept the method name as its first '
                                'argument') from None

    def for_method(self, name: str) -> Optional[Handler]:
        ctx = self.ctx
        if ctx is None:
            return None
        return Handler(ctx, name, functools.partial(self.fn, name), self.bound_signature)

    def on_request(self, req: CData) -> None:
        handler = self.for_method(request_method(req))
        if handler is None:
            lib.joint_request_free(req)
            return
        handler.on_request(req)


class Handlers:
    """Method registration, shared by Server and Client (a client serves calls its peer
    makes back over the connection, as Neovim does)."""

    ctx: Context

    @overload
    def method(self, name: F, *, pool: bool = False) -> F: ...

    @overload
    def method(self, name: Optional[str] = None, *, pool: bool = False) -> Callable[[F], F]: ...

    def method(self, name: Union[F, str, None] = None, *, pool: bool = False) -> Union[F, Callable[[F], F]]:
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
            self.register(name.__name__, name, pool=pool)
            return name

        def decorate(fn: F) -> F:
            self.register(name or fn.__name__, fn, pool=pool)
            return fn
        return decorate

    def register(self, name: str, fn: F, *, pool: bool = False) -> F:
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

    def unregister(self, name: str) -> None:
        ctx = self.ctx
        with ctx.lock:
            ctx.ensure_open()
            ctx.check(lib.joint_ctx_unregister(ctx.ptr, _cstr(name)), 'unregister %s' % name)
            ctx.methods.pop(name, None)

    def fallback(self, fn: F) -> F:
        """Decorator: ``@obj.fallback`` serves every request for a method that has no
        registration (instead of the ``joint.RPC_NO_METHOD`` error). The function receives the
        method name (a str) first, then the params as a method handler does (positional
        params as arguments, keyword params as keyword arguments); it answers like a method
        handler too (return a value, raise, be ``async``, or be a generator). Notifications
        are not passed to it. Replaces an earlier fallback; ``set_fallback(None)`` removes it."""
        self.set_fallback(fn)
        return fn

    def set_fallback(self, fn: Optional[F]) -> Optional[F]:
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

    def __init__(self, ctx: Context, conn: CData, timeout: Optional[float], uri: str) -> None:
        Peer.__init__(self, ctx, conn, timeout)
        self.uri = uri
        # Only TCP (and TLS, which opens once its handshake is done) has a connect phase to
        # wait for: Unix sockets, pipes and UDP are open (or failed) when
        # joint_ctx_connect/spawn returns. Not driving the context before the caller registers
        # its handlers matters for servers on stdio, whose client may call at once.
        self._state = 'connecting' if uri.startswith(('tcp://', 'tls://')) else 'open'

    def _wait_open(self, connect_timeout: Optional[float]) -> None:
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

    async def _await_open(self, connect_timeout: Optional[float]) -> None:
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

    def serve(self) -> None:
        """Answer the peer's calls (registered with ``@client.method``) until the connection
        closes: a plugin started by Neovim connects with ``joint.connect("stdio:")`` and serves."""
        ctx = self.ctx
        with ctx.lock:
            while self._state != 'closed' and not ctx.closed:
                ctx.wait()

    def _free_owned(self) -> None:
        conn, self._conn = self._conn, NULL
        if conn != NULL:
            lib.joint_conn_free(conn)

    def close(self) -> None:
        """Close the connection and free the context; pending calls fail with
        ConnectionError."""
        ctx = self.ctx
        if ctx is not None and not ctx.closed:
            ctx.close()

    def __enter__(self) -> 'Client':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> 'Client':
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return '<joint.Client %s %s>' % (self.uri, 'closed' if self.closed else 'open')


class ConnectTimeoutError(TimeoutError, ConnectionError):
    """Connecting took longer than the timeout (both a TimeoutError and a ConnectionError)."""


def _connect_error(status: int, reason: str, uri: str) -> ConnectionError:
    text = reason or _ffi.status_name(status)
    if uri not in text:
        text = 'connect to %s: %s' % (uri, text)
    cls = ConnectTimeoutError if status == E_TIMEOUT else TLSError if status == E_TLS else ConnectionError
    return cls(text, status)


def _open(ctx: Context, uri: 'URI', tls: Optional[_tls.TLSConfig] = None) -> 'tuple[CData, str]':
    out = ffi.new('joint_conn **')
    if _tls.check_uri(uri, tls, 'connect to'):
        assert isinstance(uri, str)        # check_uri: a tls:// URI
        with _tls.maybe_build(tls) as cfg:
            st = lib.joint_ctx_connect_tls(ctx.ptr, _cstr(uri, 'uri'), cfg, out)
        if st < 0:
            raise make_error(st, ctx.last_error(), 'connect to %s' % uri, uri)
        return out[0], str(uri)
    argv: List[str]
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


def _new_client(uri: 'URI', timeout: Optional[float], connect_timeout: Timeout,
                tls: Optional[_tls.TLSConfig], options: Dict[str, Any]) -> 'tuple[Client, Optional[float]]':
    if connect_timeout is _DEFAULT:
        connect_timeout = timeout if timeout is not None else 10.0
    timeout_ms(timeout)            # validate before anything is created
    _tls.check_uri(uri, tls, 'connect to')
    ctx = Context(Peer, connect_timeout=connect_timeout, **options)
    try:
        conn, uri = _open(ctx, uri, tls)
    except BaseException:
        ctx.close()
        raise
    client = Client(ctx, conn, timeout, uri)
    ctx.peers[int(ffi.cast('uintptr_t', conn))] = client
    return client, connect_timeout


def connect(uri: 'URI', timeout: Optional[float] = None, *, connect_timeout: Timeout = _DEFAULT,
            tls: Optional[_tls.TLSConfig] = None, **options: Any) -> 'Client':
    """Connect and return a blocking ``Client``.

    ``uri``: ``tcp://HOST:PORT``, ``tls://HOST:PORT`` (TLS over TCP: ``tls=`` a
    ``joint.TLSConfig`` to trust a CA, present a client certificate or verify another server
    name; without it the server is verified against the system's trusted roots; a failed
    handshake raises ``joint.TLSError`` naming the cause), ``unix:///path``,
    ``udp://HOST:PORT``, ``exec:PROGRAM ARGS``
    (run a program and talk over its stdin/stdout, e.g. ``exec:nvim --embed --headless``;
    words split as by a POSIX shell) or an argv list, or ``stdio:`` (this process's own
    stdin/stdout). ``timeout``: default seconds for each call (None: wait forever), also the
    connect timeout unless ``connect_timeout`` is given (default 10 s). ``options``:
    ``max_message_size``, ``max_depth``, ``max_inflight``, the resource limits (see the
    package README: ``memory_budget``, ``output_high_water``, ``max_connections``,
    ``message_timeout``, ``idle_timeout``, ``linger``, ``listen_backlog``); ``keepalive``
    (``(interval, timeout)`` seconds, default 30/30: while calls wait on a joint server that
    sends nothing for ``interval``, ping it, and close the connection if nothing comes within
    ``timeout``; ``False``: never); ``extension``
    (default True: offer the joint extension; False: a stock client), ``window`` (the default
    flow-control window of streaming calls, 64), ``workers`` (pool threads for
    ``@client.method(pool=True)``).
    Waits until the connection is up; raises ``joint.ConnectionError`` if it cannot be made.
    """
    client, ct = _new_client(uri, timeout, connect_timeout, tls, options)
    try:
        client._wait_open(ct)
    except BaseException:
        client.close()
        raise
    return client


async def aconnect(uri: 'URI', timeout: Optional[float] = None, *, connect_timeout: Timeout = _DEFAULT,
                   tls: Optional[_tls.TLSConfig] = None, **options: Any) -> 'AsyncClient':
    """Connect from asyncio; returns an ``AsyncClient`` driven by the running loop. Same
    arguments as ``connect``."""
    client, ct = _new_client(uri, timeout, connect_timeout, tls, options)
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

    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def ctx(self) -> Context:
        return self.client.ctx

    @property
    def closed(self) -> bool:
        return self.client.closed

    @property
    def tls_version(self) -> Optional[str]:
        return self.client.tls_version

    @property
    def peer_certificate(self) -> Optional[bytes]:
        return self.client.peer_certificate

    @property
    def peer_subject(self) -> Optional[str]:
        return self.client.peer_subject

    @property
    def peer_sha256(self) -> Optional[bytes]:
        return self.client.peer_sha256

    async def call(self, method: str, *args: Any, timeout: Timeout = _DEFAULT, **kwargs: Any) -> Any:
        return await self.client.acall(method, *args, timeout=timeout, **kwargs)

    async def call_with(self, method: str, params: Params = None, *, timeout: Timeout = _DEFAULT) -> Any:
        return await self.client.acall_with(method, params, timeout=timeout)

    async def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        await self.client.anotify(method, *args, **kwargs)

    def stream(self, method: str, *args: Any, timeout: Timeout = _DEFAULT, **kwargs: Any) -> '_streams.AsyncStream':
        return self.client.astream(method, *args, timeout=timeout, **kwargs)

    @overload
    def method(self, name: F) -> F: ...

    @overload
    def method(self, name: Optional[str] = None) -> Callable[[F], F]: ...

    def method(self, name: Union[F, str, None] = None) -> Union[F, Callable[[F], F]]:
        return self.client.method(name)

    def register(self, name: str, fn: F) -> F:
        return self.client.register(name, fn)

    def fallback(self, fn: F) -> F:
        return self.client.fallback(fn)

    def set_fallback(self, fn: Optional[F]) -> Optional[F]:
        return self.client.set_fallback(fn)

    def close(self) -> None:
        self.client.close()

    async def aclose(self) -> None:
        self.client.close()

    async def __aenter__(self) -> 'AsyncClient':
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return '<joint.AsyncClient %s %s>' % (self.client.uri, 'closed' if self.closed else 'open')
