"""A Server runs plain and generator handlers on its worker pool (``workers=``, default
joint._workers.DEFAULT_WORKERS), async ones on its loop; ``workers=0`` runs them all inline."""
import asyncio
import threading
import time

import pytest

import joint
from conftest import ThreadedServer

SLOW = 1.0      # seconds the slow handler sleeps


class Recorder:
    """What the handlers saw: the threads they ran on, how many ran at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started = threading.Event()
        self.finished = threading.Event()
        self.running = 0
        self.most_running = 0
        self.threads = {}

    def enter(self, name):
        with self.lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            self.threads[name] = threading.current_thread().name
        self.started.set()

    def leave(self):
        with self.lock:
            self.running -= 1


def make_server(rec, **options):
    server = joint.Server(**options)

    @server.method
    def slow(seconds=SLOW):
        rec.enter('slow')
        try:
            time.sleep(seconds)
        finally:
            rec.leave()
            rec.finished.set()
        return 'slept'

    @server.method
    def add(a, b):
        rec.enter('add')
        rec.leave()
        return a + b

    @server.method
    async def asleep(seconds):
        rec.enter('asleep')
        try:
            await asyncio.sleep(seconds)
        finally:
            rec.leave()
        return threading.current_thread().name

    @server.method
    def count(n):
        rec.enter('count')
        try:
            for i in range(n):
                yield i
        finally:
            rec.leave()
        return n

    @server.method
    def boom():
        raise ValueError('boom')

    @server.method
    def call_back(x):
        # On a worker: a call back over the caller's connection, completed by the loop.
        peer = joint.peer()
        peer.notify('note', x)
        return [peer.call('double', x), joint.deadline() is None]

    return server


class Background:
    """A blocking call made on its own thread (so the test can do something meanwhile)."""

    def __init__(self, uri, method, *args):
        self.result = self.error = None
        self.done_at = None
        self.thread = threading.Thread(target=self._run, args=(uri, method, args), daemon=True)
        self.thread.start()

    def _run(self, uri, method, args):
        try:
            with joint.connect(uri, timeout=10) as c:
                self.result = c.call(method, *args)
        except BaseException as e:  # noqa: B902 - reported by join()
            self.error = e
        self.done_at = time.monotonic()

    def join(self):
        self.thread.join(15)
        assert not self.thread.is_alive(), 'the call did not finish'
        return self.result


def timed_add(uri):
    with joint.connect(uri, timeout=10) as c:
        t0 = time.monotonic()
        assert c.call('add', 2, 3) == 5
        return time.monotonic() - t0


def test_a_slow_sync_handler_does_not_hold_up_another_connection(serve_in_thread):
    rec = Recorder()
    uri = serve_in_thread(make_server(rec))
    a = Background(uri, 'slow')
    assert rec.started.wait(10)
    assert timed_add(uri) < 0.5 * SLOW      # B is answered while A's handler still sleeps
    assert not rec.finished.is_set()
    assert a.join() == 'slept'
    assert rec.threads['slow'].startswith('joint-worker')
    assert rec.threads['add'].startswith('joint-worker')


def test_workers_0_runs_sync_handlers_inline(serve_in_thread):
    rec = Recorder()
    server = make_server(rec, workers=0)
    uri = serve_in_thread(server)
    a = Background(uri, 'slow')
    assert rec.started.wait(10)
    # B waits behind A's handler: the loop thread is asleep in it.
    assert timed_add(uri) > 0.5 * SLOW
    assert rec.finished.is_set()
    assert a.join() == 'slept'
    assert rec.threads['slow'] == rec.threads['add'] == 'joint-server'


def test_async_handlers_run_concurrently_on_the_loop(serve_in_thread):
    rec = Recorder()
    uri = serve_in_thread(make_server(rec, workers=1))

    async def main():
        async with await joint.aconnect(uri, timeout=10) as c:
            t0 = time.monotonic()
            names = await asyncio.gather(*(c.call('asleep', 0.5) for _ in range(6)))
            return names, time.monotonic() - t0

    names, took = asyncio.run(main())
    assert set(names) == {'joint-server'}           # the server's loop thread, not a worker
    assert rec.most_running == 6                    # all at once (the pool has one thread)
    assert took < 6 * 0.5 / 2


def test_generators_stream_from_a_worker(serve_in_thread):
    rec = Recorder()
    uri = serve_in_thread(make_server(rec))
    with joint.connect(uri, timeout=10) as c:
        stream = c.call_stream('count', 100, window=4)
        assert list(stream) == list(range(100))
        assert stream.result == 100
    assert rec.threads['count'].startswith('joint-worker')
    # A stock caller gets the items as one array.
    with joint.connect(uri, timeout=10, extension=False) as c:
        assert c.call('count', 3) == [0, 1, 2]


def test_the_pool_size_bounds_concurrency(serve_in_thread):
    rec = Recorder()
    uri = serve_in_thread(make_server(rec, workers=2))
    t0 = time.monotonic()
    calls = [Background(uri, 'slow', 0.6) for _ in range(3)]
    results = [c.join() for c in calls]
    assert results == ['slept'] * 3
    assert rec.most_running == 2
    # Two ran together; the third waited for a worker, so it ended a whole sleep later.
    ends = sorted(c.done_at - t0 for c in calls)
    assert ends[2] - ends[0] > 0.4


def test_a_raising_handler_still_answers(serve_in_thread):
    rec = Recorder()
    uri = serve_in_thread(make_server(rec))
    with joint.connect(uri, timeout=10) as c:
        with pytest.raises(joint.RemoteError) as info:
            c.call('boom')
        assert info.value.code == joint.RPC_HANDLER_FAILED
        assert info.value.message == 'ValueError: boom'
        assert c.call('add', 1, 1) == 2          # the worker is fine afterwards
        # Arguments that do not fit are refused on the worker too.
        with pytest.raises(joint.RemoteError) as info:
            c.call('add', 1)
        assert info.value.code == joint.RPC_INVALID_PARAMS


def test_a_worker_calls_back_over_the_connection(serve_in_thread):
    rec = Recorder()
    uri = serve_in_thread(make_server(rec))
    notes = []
    with joint.connect(uri, timeout=10) as c:
        @c.method
        def double(x):
            return 2 * x

        @c.method
        def note(x):
            notes.append(x)

        assert c.call('call_back', 21) == [42, True]
        deadline = time.monotonic() + 10
        while not notes and time.monotonic() < deadline:
            c.poll(0.05)
    assert notes == [21]


def test_answers_on_one_connection_come_in_any_order(serve_in_thread):
    rec = Recorder()
    uri = serve_in_thread(make_server(rec))

    async def main():
        async with await joint.aconnect(uri, timeout=10) as c:
            slow = asyncio.ensure_future(c.call('slow', 0.6))
            add = asyncio.ensure_future(c.call('add', 1, 2))
            done, _ = await asyncio.wait({slow, add}, return_when=asyncio.FIRST_COMPLETED)
            first = done.pop()
            return first is add, await add, await slow

    assert asyncio.run(main()) == (True, 3, 'slept')


def test_shutdown_waits_for_running_workers_and_leaves_no_threads():
    baseline = threading.active_count()
    rec = Recorder()
    serving = ThreadedServer(make_server(rec, workers=4), grace=5.0)
    a = Background(serving.uri, 'slow', 0.5)
    assert rec.started.wait(10)
    serving.stop()
    assert rec.finished.is_set()           # serve() returned after the handler did
    assert a.join() == 'slept'             # answered within the grace period
    deadline = time.monotonic() + 10
    while threading.active_count() > baseline and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == baseline, [t.name for t in threading.enumerate()]


def test_close_drops_queued_calls_and_waits_for_the_running_one():
    rec = Recorder()
    serving = ThreadedServer(make_server(rec, workers=1), grace=0.2)
    first = Background(serving.uri, 'slow', 0.8)
    assert rec.started.wait(10)
    queued = Background(serving.uri, 'slow', 0.8)      # waits for the only worker
    time.sleep(0.1)
    t0 = time.monotonic()
    serving.stop()                             # grace 0.2 s: shorter than the sleeps
    assert rec.finished.is_set()               # close waited for the running handler
    assert time.monotonic() - t0 < 0.8 + 0.5   # but not for the queued one, which never ran
    first.join()
    queued.join()
    assert isinstance(first.error, joint.ConnectionError)
    assert isinstance(queued.error, (joint.ConnectionError, joint.RemoteError))
    assert rec.most_running == 1


def test_workers_must_be_a_count():
    for bad in (-1, 1.5, True, '2'):
        with pytest.raises(ValueError):
            joint.Server(workers=bad)
