"""joint.Server: serve registered Python functions over TCP, TLS, Unix sockets or UDP."""
import asyncio
import weakref
from typing import Any, Callable, Dict, List, Optional

from . import _tls
from ._client import Handlers, Peer
from ._core import Context, _cstr, make_error
from ._ffi import ffi, lib
from ._workers import DEFAULT_WORKERS, WorkerPool


class Server(Handlers):
    """A MessagePack-RPC server::

        server = joint.Server()

        @server.method
        def add(a, b):
            return a + b

        server.serve("tcp://127.0.0.1:6000")      # blocks; Ctrl-C stops it

    ``@server.fallback`` (``fn(method, *args, **kwargs)``) serves methods that have no
    registration. ``listen(uri)`` binds (port 0 picks a free port) and returns the real URI; ``serve()``
    runs until ``stop()`` or Ctrl-C; ``await aserve()`` runs it on the current asyncio loop
    (and ``attach()`` starts serving on it without waiting). One Server is one joint context:
    all its listeners and connections share its handlers. ``options``: ``max_message_size``,
    ``max_depth``, ``max_inflight``, the resource limits (``memory_budget``,
    ``output_high_water``, ``max_connections``, ``message_timeout``, ``idle_timeout``,
    ``linger``, ``listen_backlog``; see the package README); ``keepalive`` (``(interval,
    timeout)`` seconds, or ``False``); for the joint extension ``extension``
    (default True: accept it; False: serve as a stock MessagePack-RPC server), ``window``
    (items a caller may stream into a call before it needs credit; default 64).

    ``workers`` (default 8): the threads that run plain and generator handlers, so a slow one
    holds up only its own call; ``async def`` handlers run on the loop. ``workers=0`` runs
    every handler inline on the loop thread, one at a time. ``@server.method(pool=True)``
    handlers run on joint's own pool of as many threads (at least 1).
    """

    def __init__(self, *, workers: int = DEFAULT_WORKERS, **options: Any) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError('workers must be a non-negative integer, not %r' % (workers,))
        # joint's own pool (pool=True handlers) has the same size; it needs at least one thread.
        self.ctx = Context(Peer, workers=max(1, workers), **options)
        self.ctx.workers = WorkerPool(workers) if workers else None
        self.uris: List[str] = []
        self._stop_event: Optional[asyncio.Event] = None

    def listen(self, uri: str, *, tls: Optional[_tls.TLSConfig] = None) -> str:
        """Listen on ``uri`` (``tcp://HOST:PORT``, ``tcp://[::1]:PORT``, ``unix:///path``,
        ``udp://HOST:PORT``, or ``tls://HOST:PORT`` with ``tls=joint.TLSConfig(cert=...,
        key=...)``); returns the bound URI, with the real port. A TLS connection is served
        (and its handlers see ``joint.peer().peer_subject`` and the rest) once its handshake
        is done; a client that fails the handshake is closed and logged (at info level, on
        the ``joint`` logger), and the server goes on."""
        if _tls.check_uri(uri, tls, 'listen on'):
            if tls is None or tls.cert is None:
                raise ValueError('listen on %s: a TLS listener needs a certificate: '
                                 'tls=joint.TLSConfig(cert=..., key=...)' % uri)
        ctx = self.ctx
        with ctx.lock:
            ctx.ensure_open()
            out = ffi.new('joint_listener **')
            if tls is not None:
                with tls.build() as cfg:    # copied by the listener
                    st = lib.joint_ctx_listen_tls(ctx.ptr, _cstr(uri, 'uri'), cfg, out)
            else:
                st = lib.joint_ctx_listen(ctx.ptr, _cstr(uri, 'uri'), out)
            if st < 0:
                raise make_error(st, ctx.last_error(), 'listen on %s' % uri)
            bound: str = ffi.string(lib.joint_listener_uri(out[0])).decode('utf-8')
            ctx.listeners.append(out[0])
        self.uris.append(bound)
        return bound

    # -- running --------------------------------------------------------------------------

    def serve(self, *uris: str, grace: float = 5.0, tls: Optional[_tls.TLSConfig] = None) -> None:
        """Listen on ``uris`` (if any; ``tls`` is for the ``tls://`` ones), then serve until
        ``stop()`` (from any thread or a handler) or Ctrl-C (SIGINT). Then shut down gracefully: listeners close, new requests
        are refused, and requests already received get up to ``grace`` seconds to be answered
        (a second Ctrl-C stops at once). The server is closed when this returns.

        Runs a private asyncio loop, so ``async def`` handlers work here too. From inside a
        running loop use ``await server.aserve()`` instead."""
        self._listen_all(uris, tls)
        # A private loop rather than asyncio.run: a first Ctrl-C must start the graceful
        # shutdown without cancelling the tasks of async handlers (asyncio.run cancels every
        # task on KeyboardInterrupt before Python 3.11).
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            main = loop.create_task(self.aserve(grace=grace))
            try:
                loop.run_until_complete(main)
            except KeyboardInterrupt:
                self.stop()
                try:
                    loop.run_until_complete(main)     # the graceful shutdown
                except KeyboardInterrupt:
                    pass                              # a second Ctrl-C: stop now
        finally:
            try:
                tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in tasks:
                    t.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                self.close()
                asyncio.set_event_loop(None)
                loop.close()

    async def aserve(self, *uris: str, grace: float = 5.0, tls: Optional[_tls.TLSConfig] = None) -> None:
        """Serve on the running asyncio loop until ``stop()`` or until this task is
        cancelled, then shut down gracefully (see ``serve``) and close."""
        self._listen_all(uris, tls)
        loop = self.attach()
        self._stop_event = event = asyncio.Event()
        try:
            if not self.ctx.stop_requested:
                await event.wait()
        finally:
            try:
                await asyncio.shield(self._shutdown(loop, grace))
            except asyncio.CancelledError:
                pass
            self.close()

    def _listen_all(self, uris: 'tuple[str, ...]', tls: Optional[_tls.TLSConfig]) -> None:
        if tls is not None and not any(isinstance(u, str) and u.startswith('tls://') for u in uris):
            raise ValueError('tls= applies to tls://HOST:PORT URIs only, and none was given')
        for uri in uris:
            self.listen(uri, tls=tls if isinstance(uri, str) and uri.startswith('tls://') else None)

    def attach(self, loop: Optional[asyncio.AbstractEventLoop] = None) -> asyncio.AbstractEventLoop:
        """Serve on ``loop`` (the running loop by default) without blocking; returns the
        loop. ``close()`` stops."""
        ctx = self.ctx
        loop = ctx.attach(loop)
        ctx.on_drive = _weak_method(self._check_stop)
        return loop

    async def _shutdown(self, loop: asyncio.AbstractEventLoop, grace: float) -> None:
        ctx = self.ctx
        if ctx.closed:
            return
        with ctx.lock:
            lib.joint_ctx_shutdown(ctx.ptr)
        end = loop.time() + grace
        while not ctx.closed and lib.joint_ctx_unanswered(ctx.ptr) > 0 and loop.time() < end:
            await asyncio.sleep(0.01)
        # Let the answers go out before the context is freed.
        if not ctx.closed:
            ctx.process()

    def _check_stop(self) -> None:
        if self.ctx.stop_requested and self._stop_event is not None:
            self._stop_event.set()

    def stop(self) -> None:
        """Make ``serve()``/``aserve()`` return (after the graceful shutdown). Thread-safe and
        usable from handlers and signal handlers."""
        self.ctx.stop_requested = True
        self.ctx.wakeup()

    def close(self) -> None:
        """Free everything now: listeners and connections close, pending calls fail; then
        wait for the handlers still running on worker threads (their answers go nowhere)."""
        self.ctx.close()
        pool = self.ctx.workers
        if pool is not None:
            pool.close()

    @property
    def closed(self) -> bool:
        return self.ctx.closed

    @property
    def stats(self) -> Dict[str, int]:
        """Counters (a dict): ``would_block`` is how many times a streaming handler had to wait
        because its caller had granted no credit (flow control pausing the producer);
        ``inputs_held`` the most values sent into one call that waited for its handler at
        once (at most the window: they are credited back only as the handler takes them)."""
        with self.ctx._stats_lock:
            return dict(self.ctx.stats)

    def __enter__(self) -> 'Server':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return '<joint.Server %s%s>' % (' '.join(self.uris) or '(not listening)',
                                        ' closed' if self.closed else '')


def _weak_method(method: Callable[[], None]) -> Callable[[], None]:
    ref = weakref.WeakMethod(method)

    def call() -> None:
        m = ref()
        if m is not None:
            m()
    return call
