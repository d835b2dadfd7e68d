"""The joint extension: streaming calls (``Stream``, ``AsyncStream``) and streaming handlers.

Calling: ``joint_conn_call_opts`` with an item/credit event callback and manual credit. Items
are decoded into a per-call deque inside ``joint_ctx_process``; the consumer takes them from
there, and credit (``joint_conn_grant``) follows what it takes, so the callee never gets
further ahead than the window. A call made with ``client_stream=True`` runs in lock-step
until its input ends: a window of 1, and one more item is granted only when the consumer asks
for it, after the value it sends (if any) — so a joint generator on the other side sees each
value as the result of exactly the ``yield`` whose item the consumer took before sending.
The wait logic is written once, as step generators that yield "wait until this is true"
conditions; ``Stream`` runs them by driving the context in a poll loop, ``AsyncStream`` by
awaiting the asyncio loop that drives it (``Context.after_process``).

Serving: a generator handler of an extended call becomes a driver that owns the request and
receives the call's events (``joint_request_set_event_cb`` with manual credit, inside
``joint_ctx_process``): values sent in wait in its inbox and are credited back to the caller
(``joint_request_grant``) only as the generator takes them, so at most a window of them is
ever held; the end of the call (cancelled, deadline, connection closed) ends the generator.
After each event the driver runs from the context's queue (outside the C call, so the
generator may make blocking calls): it resumes the generator only when the caller has room for
its next item (``joint_request_wait_writable(req, 0)``; the library then says WRITABLE when
credit comes), with the value the caller sent if one is waiting, and yields the item with
``joint_request_yield``. Async generators get a task woken by the same events; pool handlers
block on a worker thread and pull instead. A stock request is served by running the generator
to the end, the library collecting the yielded items into the one array a stock caller gets.
"""
import asyncio
import collections
import collections.abc
import inspect
import weakref
from typing import (TYPE_CHECKING, Any, AsyncGenerator, Callable, Deque, Dict, Generator, List,
                    Optional, Sequence, Tuple, Union)

from . import _ffi
from ._core import (_DEFAULT, Context, Timeout, E_RECURSIVE, E_TIMEOUT, _error_object,
                    handling, _reply, _reply_error, _cstr, CallInfo, decode_response, log, make_error, packb,
                    request_params, unpackb)
from ._errors import EndOfInput, Error, ProtocolError, RemoteError, UnsupportedError
from ._ffi import CData, ffi, lib, NULL

if TYPE_CHECKING:
    from ._client import Handler, Peer

Condition = Callable[[], Any]
Steps = Generator[Condition, None, Any]
"""A step generator: yields conditions to wait for, returns its outcome."""

CALL_ITEM = lib.JOINT_CALL_ITEM
CALL_WRITABLE = lib.JOINT_CALL_WRITABLE
WOULD_BLOCK = lib.JOINT_WOULD_BLOCK
EXT_ON = lib.JOINT_EXT_ON
EXT_PENDING = lib.JOINT_EXT_PENDING
E_UNSUPPORTED = lib.JOINT_E_UNSUPPORTED
E_STATE = lib.JOINT_E_STATE
E_CANCELLED = lib.JOINT_E_CANCELLED
E_CLOSED = lib.JOINT_E_CLOSED
E_TOO_LARGE = lib.JOINT_E_TOO_LARGE
_ENDED = (lib.JOINT_E_CANCELLED, lib.JOINT_E_TIMEOUT, lib.JOINT_E_CLOSED)
_NIL = b'\xc0'
_NOTHING: Any = object()

# ================================================================================================
# Calling
# ================================================================================================


class _ItemFailure:
    """Stands in the item queue for an item that could not be decoded."""

    __slots__ = ('exception',)

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception


class _StreamCall:
    """What C reaches for one streaming call (its user_data): items and send credit
    (``on_event``, inside joint_ctx_process), then the completion, exactly once."""

    __slots__ = ('_ctx', 'method', 'items', 'received', 'writable', 'done', 'result', 'exception',
                 'extended', 'call_id', '__weakref__')

    def __init__(self, ctx: Context, method: str) -> None:
        self._ctx = weakref.ref(ctx)
        self.method = method
        self.items: Deque[Any] = collections.deque()
        self.received = 0          # items that arrived (the callee spent that much credit)
        self.writable = False
        self.done = False
        self.result: Any = None
        self.exception: Optional[BaseException] = None
        self.extended: Optional[bool] = None       # known once items arrive or the call completes
        self.call_id: Optional[int] = None

    @property
    def ctx(self) -> Optional[Context]:
        return self._ctx()

    def on_event(self, event: int, data: Any) -> None:
        if event == CALL_ITEM:
            self.received += 1
            self.extended = True
            try:
                self.items.append(unpackb(data))
            except Exception as e:
                self.items.append(_ItemFailure(ProtocolError(
                    '%s: cannot decode a streamed item: %s' % (self.method, e), lib.JOINT_E_PROTOCOL)))
        elif event == CALL_WRITABLE:
            self.writable = True

    def complete(self, resp: CData, conn: CData) -> None:
        result, exception = decode_response(resp, self.method)
        if self.extended is None:
            self.extended = conn != NULL and lib.joint_conn_extension(conn) == EXT_ON
        if not self.extended and exception is None:
            # A stock peer cannot stream: its answer is the one item (and the result).
            self.items.append(result)
        self.result = result
        self.exception = exception
        self.done = True


class _StreamBase:
    """The state and the steps shared by Stream and AsyncStream (see the module docstring).

    Steps are generators: they yield a condition (a callable) to wait for, and return their
    outcome. They run with the context lock held (blocking) or on the loop thread (asyncio)."""

    def _setup(self, peer: 'Peer', method: str, args: Sequence[Any], kwargs: Optional[Dict[str, Any]],
               timeout: Timeout, client_stream: bool, window: Optional[int]) -> None:
        if not isinstance(args, (list, tuple)):
            raise TypeError('args must be a list or a tuple, not %s' % type(args).__name__)
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError('kwargs must be a dict, not %s' % type(kwargs).__name__)
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise ValueError('window must be a positive integer, not %r' % (window,))
        self._peer = peer
        self._ctx = peer.ctx
        self.method = method
        self._name = _cstr(method)
        self._params = packb(list(args))
        self._kwargs = packb(kwargs) if kwargs else None
        self._timeout_ms = peer._timeout_ms(timeout)
        self._client_stream = bool(client_stream)
        self._lockstep = self._client_stream      # until the input ends
        self._input_open = self._client_stream
        # Lock-step calls start with room for one item; the others with the window.
        self._window = 1 if client_stream else (window or self._ctx.window)
        self._tail_window = window or self._ctx.window
        self._granted = 0
        self._started = False
        self._finished = False
        self._call: Any = None     # the _StreamCall, once the call has started

    def _start_call(self) -> None:
        """Make the extended call (a stock request to a stock peer)."""
        ctx = self._ctx
        with ctx.lock:
            conn = self._peer._conn_or_raise(self.method)
            out = ffi.new('joint_call_opts **')
            ctx.check(lib.joint_call_opts_new(out), 'joint_call_opts_new')
            opts = out[0]
            try:
                lib.joint_call_opts_set_timeout_ms(opts, self._timeout_ms)
                if self._kwargs is not None:
                    ctx.check(lib.joint_call_opts_set_kwargs(opts, self._kwargs, len(self._kwargs)),
                              '%s: keyword params' % self.method)
                lib.joint_call_opts_set_client_stream(opts, self._client_stream)
                lib.joint_call_opts_set_window(opts, self._window)
                lib.joint_call_opts_set_manual_credit(opts, True)
                call = _StreamCall(ctx, self.method)
                ud = _ffi.register(call)
                # The call's registration is its event callback's user data too (released
                # by its completion, so the options free nothing).
                lib.joint_call_opts_set_event_cb(opts, _ffi.call_event_trampoline, ud, NULL)
                cid = ffi.new('uint64_t *')
                st = lib.joint_conn_call_opts(conn, self._name, self._params, len(self._params), opts,
                                              _ffi.response_trampoline, ud, cid)
                if st < 0:
                    _ffi.unregister(ud)   # the completion never runs when the call fails to start
                    raise make_error(st, ctx.last_error(), self.method)
            finally:
                lib.joint_call_opts_free(opts)
            call.call_id = cid[0]
            self._call = call
            self._conn = conn

    # -- state --------------------------------------------------------------------------------

    @property
    def call_id(self) -> Optional[int]:
        """The call's id (``joint_conn_cancel`` and friends), None before it started."""
        return None if self._call is None else self._call.call_id

    @property
    def done(self) -> bool:
        """Whether the call has completed (items may still be waiting to be taken)."""
        return self._call is not None and self._call.done

    @property
    def result(self) -> Any:
        """The call's result once it has completed successfully (None before)."""
        return None if self._call is None else self._call.result

    @property
    def extended(self) -> Optional[bool]:
        """True if the call runs as a joint extended call (items are streamed), False if it
        went to a stock peer as an ordinary request, None while that is not known yet."""
        call = self._call
        if call is None:
            return None
        if call.extended is not None:
            return bool(call.extended)
        state = self._ext_state()
        if state == EXT_ON:
            return True
        return None if state == EXT_PENDING else False

    def _ext_state(self) -> int:
        if self._peer._conn == NULL or self._ctx.closed:
            return -1
        return int(lib.joint_conn_extension(self._peer._conn))

    def _alive(self) -> bool:
        return not self._call.done and self._peer._conn != NULL and not self._ctx.closed

    def _grant(self, n: int) -> None:
        if self._alive() and lib.joint_conn_grant(self._conn, self._call.call_id, n) == 0:
            self._granted += n

    def _room(self) -> int:
        """Items the callee may still send before it needs more credit from us."""
        return int(self._window + self._granted - self._call.received)

    def _demand(self) -> None:
        """Lock-step: ask for exactly one more item when the consumer wants one."""
        call = self._call
        if self._lockstep and not call.items and self._room() <= 0:
            self._grant(1)

    def _writable_or_unstuck(self) -> bool:
        """Wait condition of a blocked send. In lock-step, a callee that answers each value
        with an item may be waiting for room for one before it takes the next value: give it
        (again each time an item arrives), so writing without taking items cannot deadlock."""
        call = self._call
        if call.writable or call.done:
            return True
        if self._lockstep and self._room() <= 0:
            self._grant(1)
        return False

    def _cancel(self) -> None:
        call = self._call
        if call is not None and self._alive():
            lib.joint_conn_cancel(self._conn, call.call_id)

    def _take(self) -> Any:
        item = self._call.items.popleft()
        if isinstance(item, _ItemFailure):
            self._finished = True
            self._cancel()
            raise item.exception
        if not self._lockstep:
            self._grant(1)          # credit follows consumption (joint batches it: half a window)
        return item

    # -- steps --------------------------------------------------------------------------------

    def _steps_next(self, value: Any = _NOTHING, write: bool = True) -> Steps:
        """The next item: returns ('item', x) or ('end', result), or raises the call's error.
        ``value``: send it first. In lock-step, a resume after the first sends None (as
        ``next(gen)`` is ``gen.send(None)``)."""
        call = self._call
        if value is not _NOTHING:
            yield from self._steps_write(packb(value), lenient=True)
        elif write and self._lockstep and self._started and self._input_open and not call.done \
                and self._ext_state() == EXT_ON:
            yield from self._steps_write(_NIL, lenient=True)
        self._started = True
        self._demand()
        while not call.items and not call.done:
            yield lambda: call.items or call.done
        if call.items:
            return 'item', self._take()
        self._finished = True
        if call.exception is not None:
            exc, call.exception = call.exception, None
            raise exc
        return 'end', call.result

    def _wait_negotiation(self) -> Condition:
        call = self._call
        return lambda: call.done or self._ext_state() != EXT_PENDING

    def _unsupported(self, what: str) -> UnsupportedError:
        state = self._ext_state()
        if state != EXT_ON or self._call.extended is False:
            return UnsupportedError('%s: %s needs the joint extension, and the peer is a stock '
                                    'MessagePack-RPC peer' % (self.method, what), E_UNSUPPORTED)
        if not self._client_stream:
            return UnsupportedError('%s: %s needs a call made with client_stream=True'
                                    % (self.method, what), E_UNSUPPORTED)
        return UnsupportedError('%s: %s: the input has already ended' % (self.method, what), E_UNSUPPORTED)

    def _steps_write(self, data: bytes, lenient: bool = False) -> Steps:
        """Send one encoded value into the call, waiting for send credit. ``lenient``: a call
        that has finished drops the value (as sending into a finished generator only ends it)."""
        call = self._call
        if self._client_stream and not self._input_open:
            raise UnsupportedError('%s: the input has already ended (end_input)' % self.method, E_UNSUPPORTED)
        while True:
            if call.done:
                if not call.extended or not self._client_stream:
                    raise self._unsupported('sending values into a call')
                if lenient:
                    return
                if call.exception is not None:
                    raise call.exception
                raise Error('%s: the call has finished; it takes no more values' % self.method, E_STATE)
            st = lib.joint_conn_send(self._peer._conn_or_raise(self.method), call.call_id, data, len(data))
            if st == 0:
                return
            if st == WOULD_BLOCK:
                call.writable = False
                yield self._writable_or_unstuck
            elif st == E_UNSUPPORTED:
                if self._ext_state() == EXT_PENDING:
                    yield self._wait_negotiation()
                    continue
                raise self._unsupported('sending values into a call')
            elif st == E_STATE:            # not running any more: its completion is on its way
                yield lambda: call.done
            else:
                raise make_error(st, self._ctx.last_error(), self.method)

    def _steps_end_input(self) -> Steps:
        call = self._call
        if not self._input_open:
            return
        while not call.done:
            st = lib.joint_conn_end_input(self._peer._conn_or_raise(self.method), call.call_id)
            if st == E_UNSUPPORTED and self._ext_state() == EXT_PENDING:
                yield self._wait_negotiation()
                continue
            if st < 0 and st not in (E_UNSUPPORTED, E_STATE):
                raise make_error(st, self._ctx.last_error(), self.method)
            break           # ended (or nothing to end: a stock peer, or the call is over)
        self._input_open = False
        if self._lockstep:
            self._lockstep = False
            self._grant(self._tail_window)     # the rest may stream ahead

    def _steps_throw(self, exc: BaseException) -> Steps:
        if isinstance(exc, EndOfInput):
            yield from self._steps_end_input()
            return (yield from self._steps_next(write=False))
        call = self._call
        if call.done and not call.extended:
            raise self._unsupported('throwing into a call')
        try:
            data = packb(_error_object(exc))
        except Exception:
            data = packb([lib.JOINT_RPC_HANDLER_FAILED, repr(exc)])
        while not call.done:
            st = lib.joint_conn_throw(self._peer._conn_or_raise(self.method), call.call_id, data, len(data))
            if st == E_UNSUPPORTED:
                if self._ext_state() == EXT_PENDING:
                    yield self._wait_negotiation()
                    continue
                raise self._unsupported('throwing into a call')
            if st < 0 and st != E_STATE:
                raise make_error(st, self._ctx.last_error(), self.method)
            break
        return (yield from self._steps_next(write=False))

    def _drop(self) -> None:
        """Dropped unfinished (garbage): cancel at the context's next process."""
        call = self._call
        if call is not None and not call.done and not self._finished:
            ctx = self._ctx
            if not ctx.closed and self._peer._conn != NULL:
                ctx.cancels.append((weakref.ref(self._peer), call))
                ctx.wakeup()

    def __repr__(self) -> str:
        call = self._call
        state = 'not started' if call is None else 'done' if call.done else 'running'
        return '<joint.%s %s %s>' % (type(self).__name__, self.method, state)


def _exception(typ: Any, val: Any = None, tb: Any = None) -> BaseException:
    if val is None:
        val = typ() if isinstance(typ, type) else typ
    elif not isinstance(val, BaseException):
        val = typ(val)
    if tb is not None:
        val = val.with_traceback(tb)
    exc: BaseException = val
    return exc


class Stream(_StreamBase, Generator[Any, Any, Any]):
    """A streaming call (``client.call_stream(...)``), as a generator.

    ``next(stream)`` / iteration: the next item the callee streamed (waiting for it); at the
    end ``StopIteration.value`` (and ``stream.result``) is the call's result, or the call's
    error is raised. ``send(v)``: send ``v`` into the call (``client_stream=True``), then the
    next item. ``write(v)``: send without waiting for an item. ``end_input()``: no more
    values (also ``throw(joint.EndOfInput)``). ``throw(exc)``: throw ``exc`` into the callee
    (``[0, "ExcType: message"]``, or the error object of a RemoteError, or ``[exc.code,
    str(exc)]``), then the next item. ``close()``: cancel the call.

    Waiting drives the client's context (requests from the peer are served meanwhile);
    Ctrl-C cancels the call. In a call with ``client_stream=True`` the items are lock-step
    until the input ends: each resume after the first sends a value (``send(v)``, or None for
    ``next()``) and asks for exactly one item."""

    def __init__(self, peer: 'Peer', method: str, args: Sequence[Any] = (),
                 kwargs: Optional[Dict[str, Any]] = None, timeout: Timeout = _DEFAULT,
                 client_stream: bool = False, window: Optional[int] = None) -> None:
        self._setup(peer, method, args, kwargs, timeout, client_stream, window)
        self._start_call()

    def _run(self, steps: Steps) -> Any:
        ctx = self._ctx
        with ctx.lock:
            if ctx.processing:
                raise Error('%s: a stream cannot be used from inside a joint callback of the same '
                            'context' % self.method, E_RECURSIVE)
            try:
                cond = next(steps)
            except StopIteration as e:
                return e.value
            while True:
                try:
                    ctx.run_until(cond)
                except BaseException:    # Ctrl-C, a closed context: the call is cancelled
                    self._finished = True
                    self._cancel()
                    raise
                try:
                    cond = steps.send(None)
                except StopIteration as e:
                    return e.value

    def _outcome(self, steps: Steps) -> Any:
        kind, value = self._run(steps)
        if kind == 'item':
            return value
        raise StopIteration(value)

    def __iter__(self) -> 'Stream':
        return self

    def __next__(self) -> Any:
        if self._finished:
            raise StopIteration
        return self._outcome(self._steps_next())

    def send(self, value: Any) -> Any:
        if value is None:
            return self.__next__()
        if self._finished:
            raise StopIteration
        return self._outcome(self._steps_next(value))

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        exc = _exception(typ, val, tb)
        if isinstance(exc, GeneratorExit):
            self.close()
            raise exc
        if self._finished:
            raise exc
        return self._outcome(self._steps_throw(exc))

    def write(self, value: Any) -> None:
        """Send ``value`` into the call (made with ``client_stream=True``) without waiting for
        an item; waits only while the callee has granted no credit (flow control). Raises
        ``joint.UnsupportedError`` against a stock peer."""
        self._run(self._steps_write(packb(value)))

    def end_input(self) -> None:
        """No more values will be sent (the callee's generator gets ``joint.EndOfInput``); the
        remaining items may then stream ahead (``window``). A no-op when there is no input to
        end (a stock peer, a call without ``client_stream``, an input already ended)."""
        self._run(self._steps_end_input())

    def close(self) -> None:
        """Cancel the call if it is still running (the callee is told: a joint generator gets
        GeneratorExit, so its finally blocks run). Items not taken are dropped."""
        call = self._call
        self._finished = True
        if call is None or call.done:
            return
        ctx = self._ctx
        with ctx.lock:
            self._cancel()
            if not ctx.busy and not ctx.closed:
                ctx.process()      # send the CANCEL now and complete the call

    def __del__(self) -> None:
        try:
            self._drop()
        except Exception:
            pass


class AsyncStream(_StreamBase, AsyncGenerator[Any, Any]):
    """A streaming call for asyncio (``client.astream(...)``): ``async for item in stream``,
    ``await stream.asend(v)``, ``await stream.athrow(exc)``, ``await stream.aclose()``,
    ``await stream.write(v)``, ``await stream.end_input()`` and ``stream.result`` — as
    ``joint.Stream``, driven by the running loop. Cancelling the task that waits cancels the
    call. (Async generators have no return value: the result is ``stream.result``.)"""

    def __init__(self, peer: 'Peer', method: str, args: Sequence[Any] = (),
                 kwargs: Optional[Dict[str, Any]] = None, timeout: Timeout = _DEFAULT,
                 client_stream: bool = False, window: Optional[int] = None) -> None:
        self._setup(peer, method, args, kwargs, timeout, client_stream, window)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return                  # started at the first use, on the loop that uses it
        self._ctx.attach()
        self._start_call()

    async def _run(self, steps: Steps) -> Any:
        ctx = self._ctx
        loop = ctx.attach()
        if self._call is None:
            self._start_call()
        try:
            cond = next(steps)
        except StopIteration as e:
            return e.value
        while True:
            try:
                while not cond():
                    fut = loop.create_future()
                    ctx.after_process.add(fut)
                    try:
                        await fut
                    finally:
                        ctx.after_process.discard(fut)
                    if ctx.closed and not cond():
                        raise Error('%s: the client was closed' % self.method, lib.JOINT_E_CANCELLED)
            except BaseException:       # cancelled task: cancel the call
                self._finished = True
                self._cancel()
                raise
            try:
                cond = steps.send(None)
            except StopIteration as e:
                return e.value

    async def _outcome(self, steps: Steps) -> Any:
        kind, value = await self._run(steps)
        if kind == 'item':
            return value
        raise StopAsyncIteration

    def __aiter__(self) -> 'AsyncStream':
        return self

    async def __anext__(self) -> Any:
        if self._finished:
            raise StopAsyncIteration
        return await self._outcome(self._steps_next())

    async def asend(self, value: Any) -> Any:
        if value is None:
            return await self.__anext__()
        if self._finished:
            raise StopAsyncIteration
        return await self._outcome(self._steps_next(value))

    async def athrow(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        exc = _exception(typ, val, tb)
        if isinstance(exc, GeneratorExit):
            await self.aclose()
            raise exc
        if self._finished:
            raise exc
        return await self._outcome(self._steps_throw(exc))

    async def write(self, value: Any) -> None:
        """See ``Stream.write``."""
        await self._run(self._steps_write(packb(value)))

    async def end_input(self) -> None:
        """See ``Stream.end_input``."""
        await self._run(self._steps_end_input())

    async def aclose(self) -> None:
        """Cancel the call if it is still running (see ``Stream.close``)."""
        self._finished = True
        if self._call is not None and not self._call.done:
            self._cancel()      # the loop sends the CANCEL (the context's fd is now readable)

    def close(self) -> None:
        """``aclose`` without awaiting."""
        self._finished = True
        self._cancel()

    def __del__(self) -> None:
        try:
            self._drop()
        except Exception:
            pass


# ================================================================================================
# Serving
# ================================================================================================


class _ItemError(Exception):
    def __init__(self, error: Any) -> None:
        super().__init__(error)
        self.error = error


def _pack_item(name: str, item: Any) -> bytes:
    try:
        return packb(item)
    except Exception as e:
        raise _ItemError([lib.JOINT_RPC_HANDLER_FAILED, '%s: cannot encode a streamed item: %s: %s'
                          % (name, type(e).__name__, e)]) from None


def _yield_error(name: str, status: int) -> Any:
    """The error object that ends a call whose item could not be streamed."""
    if status == E_TOO_LARGE:
        return [lib.JOINT_RPC_TOO_LARGE, '%s: the items exceed the message size limit' % name]
    return [lib.JOINT_RPC_HANDLER_FAILED, '%s: an item could not be streamed: %s'
            % (name, _ffi.status_name(status))]


def _input(code: int, data: Any, name: str) -> Tuple[str, Any]:
    """One event of a served call (``JOINT_INPUT_*`` and its data) as (kind, value): ('send',
    value), ('throw', exception), ('ended', status), or ('next', None) for WRITABLE."""
    if code == lib.JOINT_INPUT_VALUE:
        try:
            return 'send', unpackb(data)
        except Exception as e:
            return 'throw', ProtocolError('%s: cannot decode a value sent in: %s' % (name, e), lib.JOINT_E_PROTOCOL)
    if code == lib.JOINT_INPUT_END:
        return 'throw', EndOfInput('%s: the caller ended its input' % name)
    if code == lib.JOINT_INPUT_THROW:
        try:
            return 'throw', RemoteError(unpackb(data) if data else None)
        except Exception as e:
            return 'throw', ProtocolError('%s: cannot decode the error thrown in: %s' % (name, e), lib.JOINT_E_PROTOCOL)
    if code == lib.JOINT_INPUT_CANCELLED:
        return 'ended', E_CANCELLED
    if code == lib.JOINT_INPUT_TIMEOUT:
        return 'ended', E_TIMEOUT
    if code == lib.JOINT_INPUT_CLOSED:
        return 'ended', E_CLOSED
    return 'next', None


def _pull(req: CData, name: str, timeout_ms: int = 0) -> Tuple[str, Any]:
    """The caller's next event, pulled (pool threads), waiting up to ``timeout_ms``: as
    ``_input``, ('next', None) when there is none."""
    ev = ffi.new('int32_t *')
    buf = ffi.new('joint_buf **')
    st = lib.joint_request_next_input(req, timeout_ms, ev, buf)
    if st == lib.JOINT_WOULD_BLOCK:
        return 'next', None
    if st < 0:
        return 'ended', st
    return _input(ev[0], _ffi.take_buf(buf[0]), name)


_CLIENT_STREAM = 4       # the CALL flag: the caller will send values (docs/PROTOCOL.md)

if hasattr(lib, 'joint_request_flags'):
    def takes_input(req: CData) -> bool:
        """Whether the caller of this extended call streams values into it."""
        return bool(lib.joint_request_flags(req) & _CLIENT_STREAM)
else:
    def takes_input(req: CData) -> bool:
        # The C API does not expose the CALL's flags (yet): a generator is resumed whenever
        # the caller has room for an item, with the value waiting or None (see the README).
        return False


def _resume(gen: Generator[Any, Any, Any], kind: str, value: Any, peer: 'Optional[Peer]',
            info: Optional[CallInfo]) -> Any:
    with handling(peer, info):
        if kind == 'send':
            return gen.send(value)
        if kind == 'throw':
            return gen.throw(value)
        return next(gen)


def _close_generator(gen: Generator[Any, Any, Any], name: str, peer: 'Optional[Peer]',
                     info: Optional[CallInfo]) -> None:
    with handling(peer, info):
        try:
            gen.close()          # GeneratorExit at its yield: its finally blocks run
        except Exception:
            log.exception('joint: %s: closing the generator failed', name)


def _serve_stock(handler: 'Handler', req: CData, gen: Generator[Any, Any, Any], peer: 'Optional[Peer]',
                 info: Optional[CallInfo]) -> None:
    """A stock caller: run the generator to the end; joint collects the items and answers the
    array (an empty one if there were none)."""
    name = handler.name
    count = 0
    while True:
        try:
            item = _resume(gen, 'next', None, peer, info)
        except StopIteration:
            break
        except BaseException as e:  # noqa: B902
            handler._failed(req, e)
            if not isinstance(e, Exception):
                raise
            return
        try:
            data = _pack_item(name, item)
        except _ItemError as e:
            _close_generator(gen, name, peer, info)
            _reply_error(req, e.error)
            return
        st = lib.joint_request_yield(req, data, len(data))
        if st < 0:
            _close_generator(gen, name, peer, info)
            _reply_error(req, _yield_error(name, st))
            return
        count += 1
    # With items, joint replaces the answer by their array; without, say it: [].
    _reply(req, name, None if count else [])


class _ServedCall:
    """The events of one served extended call, from its request event callback (inside
    joint_ctx_process) with manual credit: the values, end and throws of its input wait in
    ``inbox`` — at most a window of them, as credit goes back only when the handler takes one
    (``_take_input``) — and the end of the call (cancelled, deadline, connection closed) is
    ``ended``. After each event ``_wake`` lets the driver go on; credit for the next item comes
    as an event too (JOINT_INPUT_WRITABLE, due once ``joint_request_wait_writable`` or
    ``joint_request_yield`` found none)."""

    handler: 'Handler'

    def _wake(self) -> None:
        raise NotImplementedError

    def _listen(self, ctx: Context, req: CData) -> None:
        self._ctx = weakref.ref(ctx)
        self.req = req
        self.inbox: Deque[Tuple[str, Any, bool]] = collections.deque()
        self.values_held = 0       # VALUE events in the inbox: at most the window
        self.ended: Optional[int] = None
        self.done = False
        # Manual credit first: registering the callback delivers the values already queued.
        st = lib.joint_request_set_manual_credit(req, True)
        if st == E_STATE:
            self.ended = E_CANCELLED   # ended before its handler ran: the driver ends at once
            ctx.streams.add(self)
            return
        if st < 0:
            raise make_error(st, ctx.last_error(), 'joint_request_set_manual_credit')
        ud = _ffi.register(self)
        st = lib.joint_request_set_event_cb(req, _ffi.request_event_trampoline, ud, _ffi.free_trampoline)
        if st < 0:
            _ffi.unregister(ud)
            raise make_error(st, ctx.last_error(), 'joint_request_set_event_cb')
        ctx.streams.add(self)

    @property
    def ctx(self) -> Optional[Context]:
        return self._ctx()

    def on_event(self, event: int, data: Any) -> None:
        kind, value = _input(event, data, self.handler.name)
        if kind == 'ended':
            if self.ended is None:
                self.ended = value
        elif kind != 'next':
            credited = event == lib.JOINT_INPUT_VALUE
            self.inbox.append((kind, value, credited))
            if credited:
                self.values_held += 1
                ctx = self._ctx()
                if ctx is not None:
                    ctx.peak('inputs_held', self.values_held)
        if not self.done:
            self._wake()

    def _take_input(self) -> Any:
        """The next event sent in, as (kind, value); ('next', None) if none is waiting."""
        if not self.inbox:
            return 'next', None
        kind, value, credited = self.inbox.popleft()
        if credited:
            self.values_held -= 1
            lib.joint_request_grant(self.req, 1)
        return kind, value

    def _finish(self) -> None:
        self.done = True
        ctx = self._ctx()
        if ctx is not None:
            ctx.streams.discard(self)


def serve_generator(handler: 'Handler', req: CData, gen: Generator[Any, Any, Any],
                    peer: 'Optional[Peer]', info: Optional[CallInfo]) -> None:
    """Serve a generator handler's result (loop thread)."""
    if info is None or not info.extended:
        _serve_stock(handler, req, gen, peer, info)
        return
    ctx = handler.ctx
    if ctx is None:
        _close_generator(gen, handler.name, peer, info)
        lib.joint_request_free(req)
        return
    driver = _GeneratorDriver(handler, gen, peer, info)
    driver._listen(ctx, req)
    driver.pump()


class _GeneratorDriver(_ServedCall):
    """A generator handler of an extended call, on the loop thread (see the module docstring):
    run from the context's queue after each event of its call."""

    def __init__(self, handler: 'Handler', gen: Generator[Any, Any, Any], peer: 'Optional[Peer]',
                 info: Optional[CallInfo]) -> None:
        self.handler = handler
        self.gen = gen
        self.peer = peer
        self.info = info
        self.started = False
        self.waiting = False
        self.running = False
        self.again = False
        self.scheduled = False
        self.pending: Optional[bytes] = None    # an encoded item that met WOULD_BLOCK
        self.input_open: Optional[bool] = None

    def _wake(self) -> None:
        if self.running:
            self.again = True      # an event during a nested drive inside the generator
        elif not self.scheduled:
            ctx = self._ctx()
            if ctx is not None:
                self.scheduled = True
                ctx.queue.append((self.pump, None))

    def pump(self) -> None:
        self.scheduled = False
        if self.running or self.done:
            return
        if self.input_open is None:
            # A client-streaming call: each resume after the first waits for the caller's next
            # event (a value, the end of input, a throw), so values never race the credit.
            self.input_open = takes_input(self.req)
        self.running = True
        try:
            while True:
                self.again = False
                self._pump()
                if self.done or not self.again:
                    break
        finally:
            self.running = False

    def _pump(self) -> None:
        req = self.req
        name = self.handler.name
        while True:
            if self.ended is not None:
                self._ended(self.ended)
                return
            st = lib.joint_request_wait_writable(req, 0)
            if st == WOULD_BLOCK:              # no credit: the producer waits for WRITABLE
                if not self.waiting:
                    self.waiting = True
                    ctx = self._ctx()
                    if ctx is not None:
                        ctx.count('would_block')
                return
            self.waiting = False
            if st < 0:
                self._ended(st)
                return
            if self.pending is None:
                if self.started:
                    if self.input_open and not self.inbox:
                        return                 # wait for the caller's next event
                    kind, value = self._take_input()
                    if isinstance(value, EndOfInput):
                        self.input_open = False
                else:
                    kind, value = 'next', None
                    self.started = True
                try:
                    item = _resume(self.gen, kind, value, self.peer, self.info)
                except StopIteration as e:
                    self._finish()
                    _reply(req, name, e.value)
                    return
                except BaseException as e:  # noqa: B902
                    self._finish()
                    self.handler._failed(req, e)
                    if not isinstance(e, Exception):
                        raise
                    return
                if self.done:                  # ended during a nested drive inside the generator
                    return
                try:
                    self.pending = _pack_item(name, item)
                except _ItemError as e:
                    self._finish()
                    _close_generator(self.gen, name, self.peer, self.info)
                    _reply_error(req, e.error)
                    return
            data = self.pending
            assert data is not None
            st = lib.joint_request_yield(req, data, len(data))
            if st == 0:
                self.pending = None
                continue
            if st == WOULD_BLOCK:
                continue            # credit went away: wait for it above
            if st in _ENDED:
                self._ended(st)
                return
            self._finish()
            _close_generator(self.gen, name, self.peer, self.info)
            _reply_error(req, _yield_error(name, st))
            return

    def _ended(self, status: int) -> None:
        """The call ended without the handler (cancelled, deadline, connection closed)."""
        self._finish()
        log.debug('joint: %s: the call ended (%s); closing the generator',
                  self.handler.name, _ffi.status_name(status))
        _close_generator(self.gen, self.handler.name, self.peer, self.info)
        lib.joint_request_free(self.req)

    def abandon(self) -> None:
        """The context is closing."""
        if not self.done:
            self._ended(E_CLOSED)


class _Ended(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def serve_async_generator(handler: 'Handler', req: CData, agen: AsyncGenerator[Any, Any],
                          peer: 'Optional[Peer]', info: Optional[CallInfo]) -> None:
    """Serve an async generator handler's result: a task on the context's loop."""
    ctx = handler.ctx
    loop = ctx.loop if ctx is not None else None
    if ctx is None or loop is None or loop.is_closed():
        handler._failed(req, Error('async handler %s needs the context driven by asyncio '
                                   '(server.serve(), await server.aserve() or client.acall())' % handler.name))
        return
    driver = _AsyncGeneratorDriver(ctx, handler, req, agen, peer, info)
    if driver.extended:
        driver._listen(ctx, req)
    with handling(peer, info):       # the task copies the context it is created in
        driver.task = task = loop.create_task(driver.run())
    ctx.tasks.add(task)
    task.add_done_callback(ctx.tasks.discard)


class _AsyncGeneratorDriver(_ServedCall):
    """An async generator handler: stock callers get the list, extended calls stream; the
    task waits for its call's events on ``waiter``."""

    def __init__(self, ctx: Context, handler: 'Handler', req: CData, agen: AsyncGenerator[Any, Any],
                 peer: 'Optional[Peer]', info: Optional[CallInfo]) -> None:
        self._ctx = weakref.ref(ctx)
        self.handler = handler
        self.req = req
        self.agen = agen
        self.info = info
        self.task: 'Optional[asyncio.Task[None]]' = None
        self.waiter: 'Optional[asyncio.Future[None]]' = None
        self.ended = None
        self.done = False
        self.inbox = collections.deque()
        self.extended = req is not None and info is not None and info.extended
        self.input_open = self.extended and takes_input(req)
        self.wants_input = False
        self.cancelled = False

    def _wake(self) -> None:
        task = self.task
        if task is None or task.done():
            return
        if self.ended is not None:
            if not self.cancelled:
                self.cancelled = True
                task.cancel()             # at whatever the generator awaits, or its yield
        elif self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def abandon(self) -> None:
        if self.task is not None and not self.task.done():
            self.ended = E_CLOSED
            self.cancelled = True
            self.task.cancel()

    async def run(self) -> None:
        if self.extended:
            await self._run_extended()
        else:
            await self._run_stock()

    async def _run_stock(self) -> None:
        req, name, agen = self.req, self.handler.name, self.agen
        count = 0
        try:
            async for item in agen:
                if req is None:
                    continue            # a notification
                data = _pack_item(name, item)
                st = lib.joint_request_yield(req, data, len(data))
                if st < 0:
                    await agen.aclose()
                    self._finish()
                    _reply_error(req, _yield_error(name, st))
                    return
                count += 1
        except _ItemError as e:
            await agen.aclose()
            self._finish()
            _reply_error(req, e.error)
            return
        except BaseException as e:  # noqa: B902
            self._finish()
            self.handler._failed(req, e)
            if not isinstance(e, (Exception, asyncio.CancelledError)):
                raise
            return
        self._finish()
        if req is not None:
            _reply(req, name, None if count else [])

    async def _credit(self) -> None:
        """Wait until the caller has room for an item (and, with ``wants_input``, until it
        has sent something)."""
        ctx = self._ctx()
        while True:
            st = lib.joint_request_wait_writable(self.req, 0)
            if st < 0:
                raise _Ended(st)
            if st == 0 and not (self.wants_input and not self.inbox):
                return
            if st == WOULD_BLOCK and ctx is not None:
                ctx.count('would_block')
            self.waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self.waiter = None

    async def _run_extended(self) -> None:
        req, name, agen = self.req, self.handler.name, self.agen
        first = True
        try:
            while True:
                await self._credit()
                if first:
                    kind, value = 'next', None
                    first = False
                else:
                    while self.input_open and not self.inbox:     # wait for the caller's next event
                        self.wants_input = True
                        try:
                            await self._credit()
                        finally:
                            self.wants_input = False
                    kind, value = self._take_input()
                    if isinstance(value, EndOfInput):
                        self.input_open = False
                try:
                    if kind == 'send':
                        item = await agen.asend(value)
                    elif kind == 'throw':
                        item = await agen.athrow(_exception(value))
                    else:
                        item = await agen.__anext__()
                except StopAsyncIteration:
                    self._finish()
                    _reply(req, name, None)
                    return
                data = _pack_item(name, item)
                while True:
                    st = lib.joint_request_yield(req, data, len(data))
                    if st != WOULD_BLOCK:
                        break
                    await self._credit()
                if st in _ENDED:
                    raise _Ended(st)
                if st < 0:
                    await agen.aclose()
                    self._finish()
                    _reply_error(req, _yield_error(name, st))
                    return
        except _Ended as e:
            self._finish()
            await self._close_after_end(e.status)
        except _ItemError as e:
            self._finish()
            await agen.aclose()
            _reply_error(req, e.error)
        except asyncio.CancelledError:
            self._finish()
            if self.ended is not None:     # the caller cancelled, or the deadline passed
                await self._close_after_end(self.ended)
                return
            self.handler._failed(req, asyncio.CancelledError())   # shutting down
            await agen.aclose()
            raise
        except BaseException as e:  # noqa: B902 - from the generator
            self._finish()
            self.handler._failed(req, e)
            if not isinstance(e, Exception):
                raise

    async def _close_after_end(self, status: int) -> None:
        log.debug('joint: %s: the call ended (%s); closing the generator',
                  self.handler.name, _ffi.status_name(status))
        try:
            await self.agen.aclose()      # GeneratorExit at its yield (no-op if it already ended)
        except BaseException:  # noqa: B902
            log.exception('joint: %s: closing the async generator failed', self.handler.name)
        lib.joint_request_free(self.req)


class _TaskWatch(_ServedCall):
    """An async (coroutine) handler of an extended call: its task is cancelled when the caller
    cancels, the deadline passes or the connection closes (joint has answered the call by
    then). Values sent in are not taken: they wait, within the window."""

    def __init__(self, handler: 'Handler', task: 'asyncio.Task[Any]') -> None:
        self.handler = handler
        self.task = task

    def _wake(self) -> None:
        if self.ended is not None:
            if not self.task.done():
                self.task.cancel()
            self._finish()

    def abandon(self) -> None:
        self._finish()


def watch_task(handler: 'Handler', req: CData, task: 'asyncio.Task[Any]') -> None:
    ctx = handler.ctx
    if ctx is None:
        task.cancel()
        lib.joint_request_free(req)
        return
    watch = _TaskWatch(handler, task)
    watch._listen(ctx, req)
    task.add_done_callback(lambda _t: watch._finish())


# ---- the worker pool ---------------------------------------------------------------------------


def serve_on_pool(handler: 'Handler', req: CData) -> None:
    """A request of a pool method, on a joint worker thread (see PoolHandler). Only request
    functions that are safe on any thread are used; the loop's state is never touched."""
    ctx = handler.ctx
    if ctx is None or ctx.closing:
        lib.joint_request_free(req)
        return
    name = handler.name
    info = CallInfo(req)
    try:
        args, kwargs = request_params(req, name)
    except Exception as e:
        lib.joint_request_reply_error_msg(req, lib.JOINT_RPC_INVALID_PARAMS,
                                          ('%s: bad params: %s' % (name, e)).encode('utf-8', 'replace'))
        return
    if not handler._bind(req, args, kwargs):
        return
    try:
        with handling(None, info):      # pool handlers have no joint.peer()
            result = handler.fn(*args, **kwargs)
    except BaseException as e:  # noqa: B902
        handler._failed(req, e)
        return
    if inspect.isgenerator(result):
        if info.extended:
            _serve_blocking(ctx, handler, req, result, info)
        else:
            _serve_stock(handler, req, result, None, info)
    elif inspect.isawaitable(result) or inspect.isasyncgen(result):
        if inspect.iscoroutine(result):
            result.close()
        handler._failed(req, Error('%s: a pool handler returned an awaitable; async handlers '
                                   'run on the asyncio loop, not on the pool' % name))
    else:
        _reply(req, name, result)


_POOL_WAIT_MS = 100      # a blocked pool handler checks this often whether the server closes


def serve_on_worker(handler: 'Handler', req: CData, gen: Generator[Any, Any, Any],
                    peer: 'Optional[Peer]', info: Optional[CallInfo]) -> None:
    """A generator a handler returned on a Server's worker thread (``_workers``): served the
    way pool handlers are, with ``joint.peer()`` set while it runs."""
    ctx = handler.ctx
    if req is None:                       # a notification: run it, drop its items
        try:
            while True:
                _resume(gen, 'next', None, peer, info)
        except StopIteration:
            pass
        except Exception:
            log.exception('joint: notification handler %s failed', handler.name)
        return
    if ctx is None or ctx.closing:
        _close_generator(gen, handler.name, peer, info)
        lib.joint_request_free(req)
    elif info is not None and info.extended:
        _serve_blocking(ctx, handler, req, gen, info, peer)
    else:
        _serve_stock(handler, req, gen, peer, info)


def _serve_blocking(ctx: Context, handler: 'Handler', req: CData, gen: Generator[Any, Any, Any],
                    info: CallInfo, peer: 'Optional[Peer]' = None) -> None:
    """A generator on a worker thread: block (GIL released) for credit, then resume it with
    the value waiting, if any."""
    name = handler.name
    started = False
    input_open = takes_input(req)
    while True:
        st = lib.joint_request_wait_writable(req, 0)
        if st == WOULD_BLOCK:
            ctx.count('would_block')
            while st == WOULD_BLOCK:
                if ctx.closing:
                    st = E_CLOSED
                    break
                st = lib.joint_request_wait_writable(req, _POOL_WAIT_MS)
        if st < 0:
            _close_generator(gen, name, peer, info)
            lib.joint_request_free(req)
            return
        if started:
            kind, value = _pull(req, name)
            if input_open:
                while kind == 'next':             # block (GIL released) for the caller's next event
                    if ctx.closing:
                        kind, value = 'ended', E_CLOSED
                        break
                    kind, value = _pull(req, name, _POOL_WAIT_MS)
                if isinstance(value, EndOfInput):
                    input_open = False
            if kind == 'ended':
                _close_generator(gen, name, peer, info)
                lib.joint_request_free(req)
                return
        else:
            kind, value = 'next', None
            started = True
        try:
            item = _resume(gen, kind, value, peer, info)
        except StopIteration as e:
            _reply(req, name, e.value)
            return
        except BaseException as e:  # noqa: B902
            handler._failed(req, e)
            return
        try:
            data = _pack_item(name, item)
        except _ItemError as e:
            _close_generator(gen, name, peer, info)
            _reply_error(req, e.error)
            return
        while True:
            st = lib.joint_request_yield(req, data, len(data))
            if st != WOULD_BLOCK:
                break
            lib.joint_request_wait_writable(req, _POOL_WAIT_MS)
        if st in _ENDED:
            _close_generator(gen, name, peer, info)
            lib.joint_request_free(req)
            return
        if st < 0:
            _close_generator(gen, name, peer, info)
            _reply_error(req, _yield_error(name, st))
            return
