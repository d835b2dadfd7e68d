"""The joint extension from Python: streaming both ways with flow control, throw, cancel,
deadlines, keyword params, the stock fallbacks in both directions, pool handlers, asyncio, the
`joint serve` CLI's streaming methods, and the shared protocol test vectors."""
import asyncio
import gc
import json
import os
import subprocess
import threading
import time
import zlib

import msgpack
import pytest

import joint

from conftest import ROOT


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def expect_deadline(stream):
    """A stream whose timeout passed while nobody drove the client: its own timer
    (TimeoutError) and the callee's deadline answer ([9, ...]) race; either ends it."""
    try:
        list(stream)
    except joint.TimeoutError:
        return
    except joint.RemoteError as e:
        assert e.code == joint.RPC_DEADLINE_EXCEEDED, e
        return
    pytest.fail('the stream did not time out')


def wait_for(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


class Probe:
    """What the handlers report back to the test (they run on the server's thread)."""

    def __init__(self):
        self.events = []
        self.produced = 0
        self.finally_ran = threading.Event()
        self.deadlines = []
        self.threads = []
        self.lock = threading.Lock()


def make_server(probe, **options):
    server = joint.Server(**options)

    @server.method
    def count(n):
        for i in range(n):
            probe.produced += 1
            yield i
        return n

    @server.method
    def empty():
        return
        yield  # noqa: unreachable - a generator that yields nothing

    @server.method
    def echo(greeting='ready'):
        x = yield greeting
        try:
            while True:
                x = yield x
        except joint.EndOfInput:
            return 'bye'

    @server.method
    def total():
        acc = 0
        try:
            while True:
                value = yield
                acc += value
        except joint.EndOfInput:
            return acc

    @server.method
    def resilient():
        out = 'start'
        while True:
            try:
                x = yield out
                out = ['got', x]
            except joint.RemoteError as e:       # thrown in by the caller
                out = ['caught', e.code, e.message]

    @server.method
    def ticker():
        i = 0
        try:
            while True:
                yield i
                i += 1
        except joint.RemoteError as e:
            return ['stopped', e.code, e.message]

    @server.method
    def forever():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            probe.finally_ran.set()

    @server.method
    def deadline_stream():
        probe.deadlines.append(joint.deadline())
        try:
            while True:
                yield joint.deadline()
        finally:
            probe.deadlines.append(joint.deadline())
            probe.finally_ran.set()

    @server.method
    async def async_sleeper(seconds):
        try:
            await asyncio.sleep(seconds)
            return 'woke'
        finally:
            probe.deadlines.append(joint.deadline())
            probe.finally_ran.set()

    @server.method
    def kw(a, b=2, *rest, **extra):
        yield [a, b, list(rest), extra]
        return 'kw done'

    @server.method
    def plain_kw(a, b=2, **extra):
        return [a, b, extra]

    @server.method
    def fail_after(n):
        for i in range(n):
            yield i
        raise ValueError('broke after %d' % n)

    @server.method
    def bad_item():
        yield 1
        yield object()

    @server.method
    async def asquares(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i * i

    @server.method
    async def aecho():
        x = yield 'ready'
        try:
            while True:
                x = yield x
        except joint.EndOfInput:
            pass

    @server.method
    async def aforever():
        try:
            i = 0
            while True:
                await asyncio.sleep(0.001)
                yield i
                i += 1
        finally:
            probe.finally_ran.set()

    @server.method(pool=True)
    def pool_total():
        acc = 0
        try:
            while True:
                acc += yield
        except joint.EndOfInput:
            return acc

    @server.method
    async def atotal():
        acc = 0
        try:
            while True:
                acc += yield
        except joint.EndOfInput:
            pass
        probe.events.append(acc)

    @server.method(pool=True)
    def pool_count(n):
        with probe.lock:
            probe.threads.append(threading.get_ident())
        for i in range(n):
            probe.produced += 1
            yield i
        return n

    @server.method(pool=True)
    def pool_echo():
        x = yield 'ready'
        try:
            while True:
                x = yield [x, threading.get_ident()]
        except joint.EndOfInput:
            return 'pool bye'

    @server.method(pool=True)
    def pool_sleep(seconds):
        time.sleep(seconds)
        return threading.get_ident()

    @server.method(pool=True)
    def pool_forever():
        try:
            while True:
                yield joint.deadline()
        finally:
            probe.finally_ran.set()

    @server.method
    def loop_thread():
        return threading.get_ident()

    @server.method
    def stream_back(n):
        # A stream over the connection the request came on (the client serves 'work').
        s = joint.peer().call_stream('work', n, window=2)
        return [list(s), s.result]

    return server


@pytest.fixture
def served(serve_in_thread):
    probe = Probe()
    server = make_server(probe, window=16, workers=3)
    uri = serve_in_thread(server)
    with joint.connect(uri, timeout=10) as c:
        yield server, uri, c, probe


# ---- streaming items to the caller -------------------------------------------------------------

def test_server_streaming_1000_items_window_4(served):
    server, _, c, _ = served
    s = c.call_stream('count', 1000, window=4)
    assert list(s) == list(range(1000))
    assert s.result == 1000 and s.extended is True and s.done
    assert c.extension == 'on'
    # 1000 items through a window of 4: the producer waited for credit many times.
    assert server.stats['would_block'] >= 100
    # StopIteration.value is the result, so `yield from` returns it.

    def delegate():
        result = yield from c.call_stream('count', 3)
        return result

    g = delegate()
    assert [next(g), next(g), next(g)] == [0, 1, 2]
    with pytest.raises(StopIteration) as ei:
        next(g)
    assert ei.value.value == 3


def test_slow_consumer_slows_a_bounded_producer(served):
    server, _, c, probe = served
    before = server.stats.get('would_block', 0)
    probe.produced = 0
    window = 4
    s = c.call_stream('count', 60, window=window)
    ahead = []
    for taken, item in enumerate(s, 1):
        assert item == taken - 1
        time.sleep(0.005)                    # a slow consumer
        ahead.append(probe.produced - taken)
    assert s.result == 60
    # The generator is resumed only when there is room: never more than a window ahead.
    assert max(ahead) <= window, ahead
    assert server.stats['would_block'] - before >= 60 // window - 1


def test_generator_errors_end_the_stream(served):
    _, _, c, _ = served
    s = c.call_stream('fail_after', 3)
    assert [next(s), next(s), next(s)] == [0, 1, 2]
    with pytest.raises(joint.RemoteError) as ei:
        next(s)
    assert ei.value.error == [0, 'ValueError: broke after 3']
    with pytest.raises(StopIteration):
        next(s)                          # finished
    s = c.call_stream('bad_item')
    assert next(s) == 1
    with pytest.raises(joint.RemoteError, match='cannot encode a streamed item'):
        next(s)
    s = c.call_stream('empty')
    assert list(s) == [] and s.result is None


# ---- values into the call ----------------------------------------------------------------------

def test_client_streaming_sum(served):
    _, _, c, _ = served
    s = c.call_stream('total', client_stream=True)
    assert next(s) is None                     # the generator's first (bare) yield
    for i in range(1, 101):
        assert s.send(i) is None
    with pytest.raises(StopIteration) as ei:
        s.throw(joint.EndOfInput)              # = end_input(), then the next item
    assert ei.value.value == 5050 and s.result == 5050


def test_client_streaming_push_without_taking_items(serve_in_thread):
    # write() sends without waiting for items. The server's window is 8, so the writer keeps
    # running out of send credit while the generator answers every value with an item.
    # Inline (workers=0): the loop's event-driven driver is the one that holds values.
    probe = Probe()
    server = make_server(probe, window=8, workers=0)
    uri = serve_in_thread(server)
    with joint.connect(uri, timeout=10) as c:
        s = c.call_stream('total', client_stream=True)
        for i in range(1, 301):
            s.write(i)
        s.end_input()
        items = list(s)
        assert set(items) == {None} and len(items) == 301
        assert s.result == 300 * 301 // 2
        # The values waited for the generator (it had no room for items) within the window:
        # they are credited back only as it takes them.
        assert 1 <= server.stats['inputs_held'] <= 8, server.stats
        with pytest.raises(joint.UnsupportedError, match='ended'):
            s.write(1)


def test_bidirectional_echo(served):
    _, _, c, _ = served
    s = c.call_stream('echo', client_stream=True)
    assert next(s) == 'ready'
    for value in [1, 'two', [3, {'four': b'\x04'}], None, 5.5]:
        assert s.send(value) == value
    assert next(s) is None                     # next() is send(None), as for a generator
    s.end_input()
    assert list(s) == [] and s.result == 'bye'
    # keyword params reach the generator too
    s = c.call_stream('echo', client_stream=True, greeting='hi')
    assert next(s) == 'hi' and s.send(7) == 7
    s.close()


def test_throw_into_the_call(served):
    _, _, c, _ = served
    s = c.call_stream('resilient', client_stream=True)
    assert next(s) == 'start'
    assert s.send(1) == ['got', 1]
    assert s.throw(ValueError('bad value')) == ['caught', 0, 'ValueError: bad value']
    assert s.send(2) == ['got', 2]

    class Coded(Exception):
        code = 42

    assert s.throw(Coded('with a code')) == ['caught', 42, 'with a code']
    assert s.throw(joint.RemoteError(7, 'remote style')) == ['caught', 7, 'remote style']
    s.close()
    # Not caught: the generator ends with the error thrown in, which the caller gets back.
    s = c.call_stream('echo', client_stream=True)
    next(s)
    with pytest.raises(joint.RemoteError) as ei:
        s.throw(KeyError('k'))
    assert ei.value.error == [0, "KeyError: 'k'"]
    # Into a stream running ahead (no client_stream): it lands at the generator's next resume.
    s = c.call_stream('ticker', window=2)
    assert next(s) == 0
    try:
        s.throw(joint.RemoteError(5, 'stop'))
        list(s)
    except StopIteration:
        pass
    assert s.result == ['stopped', 5, 'stop']


def test_cancel_with_close_runs_the_generators_finally(served):
    _, _, c, probe = served
    s = c.call_stream('forever', window=2)
    assert [next(s), next(s), next(s)] == [0, 1, 2]
    s.close()
    assert probe.finally_ran.wait(10)
    with pytest.raises(StopIteration):
        next(s)
    assert c.call('loop_thread')           # the connection is fine
    # A stream dropped unfinished is cancelled too (at the client's next drive).
    probe.finally_ran.clear()
    s = c.call_stream('forever', window=2)
    next(s)
    del s
    c.poll(0.1)
    assert probe.finally_ran.wait(10)


def test_deadline_reaches_the_handler(served):
    _, _, c, probe = served
    s = c.call_stream('deadline_stream', timeout=0.5, window=1)
    first = next(s)
    assert 0.2 < first <= 0.5                      # joint.deadline(): the seconds left
    assert 0.2 < probe.deadlines[0] <= 0.5
    time.sleep(0.7)                                 # take nothing: the producer waits, then the deadline passes
    expect_deadline(s)
    assert probe.finally_ran.wait(10)
    assert probe.deadlines[-1] == 0.0               # the generator was closed at the deadline
    # An async handler of an extended call is cancelled at the deadline.
    probe.finally_ran.clear()
    with pytest.raises(joint.TimeoutError):
        list(c.call_stream('async_sleeper', 10, timeout=0.2))
    assert probe.finally_ran.wait(10)
    # Stock requests have no deadline; outside a handler there is none either.
    assert joint.deadline() is None


def test_keyword_params(served):
    _, _, c, _ = served
    s = c.call_stream('kw', 1, b=3, z=9)
    assert list(s) == [[1, 3, [], {'z': 9}]] and s.result == 'kw done'
    assert list(c.call_stream('kw', 1, 2, 3, 4, z=9)) == [[1, 2, [3, 4], {'z': 9}]]
    s = c.call_stream_with('plain_kw', [5], {'timeout': 1, 'window': 2})
    assert list(s) == [] and s.result == [5, 2, {'timeout': 1, 'window': 2}]
    with pytest.raises(joint.RemoteError) as ei:
        list(c.call_stream('plain_kw', nope=1))
    assert ei.value.code == joint.RPC_INVALID_PARAMS


# ---- stock peers -------------------------------------------------------------------------------

def test_stock_server_fallback(serve_in_thread):
    probe = Probe()
    server = make_server(probe, extension=False)
    uri = serve_in_thread(server)
    with joint.connect(uri, timeout=10) as c:
        s = c.call_stream('count', 5, window=2)
        assert list(s) == [[0, 1, 2, 3, 4]]        # the stock answer: one item...
        assert s.result == [0, 1, 2, 3, 4]          # ...which is also the result
        assert s.extended is False and c.extension == 'refused'
        s = c.call_stream('count', 2, client_stream=True)
        assert next(s) == [0, 1]                     # a stock caller of a generator: its items as a list
        with pytest.raises(joint.UnsupportedError, match='stock MessagePack-RPC peer'):
            s.send(1)
        with pytest.raises(joint.UnsupportedError):
            s.throw(ValueError('x'))
        assert c.call('count', 3) == [0, 1, 2]
        assert c.call('empty') == []


def test_stock_client_of_a_streaming_server(served, cli):
    _, uri, _, _ = served
    with joint.connect(uri, timeout=10, extension=False) as c:
        assert c.call('count', 4) == [0, 1, 2, 3]             # joint collects the items
        assert c.call('empty') == []
        assert c.call('asquares', 4) == [0, 1, 4, 9]
        assert c.call('pool_count', 3) == [0, 1, 2]
        with pytest.raises(joint.RemoteError) as ei:
            c.call('fail_after', 2)
        assert ei.value.error == [0, 'ValueError: broke after 2']
    # The `joint call` CLI without --stream is a stock request too.
    p = subprocess.run([cli, 'call', uri, 'count', '3'], capture_output=True, text=True, timeout=30)
    assert (p.returncode, json.loads(p.stdout)) == (0, [0, 1, 2])


def test_joint_cli_streams_from_our_server(served, cli):
    _, uri, _, _ = served
    p = subprocess.run([cli, 'call', '--stream', uri, 'count', '3'], capture_output=True, text=True, timeout=30)
    if p.returncode == 64:
        pytest.skip('this joint CLI has no --stream')
    assert p.returncode == 0, p.stderr
    assert [json.loads(line) for line in p.stdout.splitlines()] == [0, 1, 2, {'result': 3}]


# ---- the `joint serve` CLI's streaming methods -------------------------------------------------

def cli_streaming(client):
    try:
        client.call('count', 0)
    except joint.RemoteError as e:
        if e.code == joint.RPC_NO_METHOD:
            pytest.skip('this `joint serve` has no streaming methods (count/sum/download/upload)')
        raise


def test_joint_serve_streaming_methods(client):
    cli_streaming(client)
    s = client.call_stream('count', 500, window=4)
    assert list(s) == list(range(500)) and s.result == 500
    s = client.call_stream('sum', client_stream=True)      # a consumer: it yields nothing
    for i in range(1, 1001):
        s.write(i)
    s.end_input()
    assert list(s) == [] and s.result == 1000 * 1001 // 2
    size, chunk = 100000, 4096
    s = client.call_stream('download', size, chunk, window=3)
    data = b''.join(s)
    assert s.result == size and data == bytes(i % 251 for i in range(size))
    blob = os.urandom(200000)
    s = client.call_stream('upload', client_stream=True)
    for i in range(0, len(blob), 8192):
        s.write(blob[i:i + 8192])
    s.end_input()
    assert list(s) == [] and s.result == [len(blob), zlib.crc32(blob)]
    # the stock face of the same methods
    with joint.connect(client.uri, timeout=10, extension=False) as stock:
        assert stock.call('count', 3) == [0, 1, 2]
        assert list(stock.call_stream('count', 2)) == [[0, 1]]


def test_joint_serve_cancel_and_deadline(client):
    cli_streaming(client)
    s = client.call_stream('count', 10 ** 9, window=2)
    assert [next(s), next(s)] == [0, 1]
    s.close()
    s = client.call_stream('count', 10 ** 9, window=2, timeout=0.2)
    next(s)
    time.sleep(0.4)
    expect_deadline(s)
    assert client.call('add', 1, 2) == 3


# ---- the worker pool ---------------------------------------------------------------------------

def test_pool_handlers(served):
    server, uri, c, probe = served
    loop_thread = c.call('loop_thread')
    probe.produced = 0
    s = c.call_stream('pool_count', 200, window=2)
    ahead = []
    for taken, item in enumerate(s, 1):
        ahead.append(probe.produced - taken)
    assert s.result == 200 and max(ahead) <= 2
    assert probe.threads and loop_thread not in probe.threads
    assert server.stats['would_block'] > 0
    # values into a pool generator (joint_request_next_input on the worker)
    s = c.call_stream('pool_echo', client_stream=True)
    assert next(s) == 'ready'
    for i in range(20):
        value, tid = s.send(i)
        assert value == i and tid != loop_thread
    s.end_input()
    assert list(s) == [] and s.result == 'pool bye'
    # a blocking pool handler does not hold up the loop
    with joint.connect(uri, timeout=10) as other:
        probe.events.clear()
        t = threading.Thread(target=lambda: probe.events.append(other.call('pool_sleep', 1.0)))
        t.start()
        time.sleep(0.1)
        assert c.call('loop_thread') == loop_thread
        assert not probe.events                 # answered while the pool handler still sleeps
        t.join(10)
        assert probe.events and probe.events[0] != loop_thread
    # cancel and deadline reach a pool generator
    probe.finally_ran.clear()
    s = c.call_stream('pool_forever', window=1, timeout=0.3)
    assert 0 < next(s) <= 0.3
    time.sleep(0.5)
    expect_deadline(s)
    assert probe.finally_ran.wait(10)
    other_server = joint.Server()
    with pytest.raises(TypeError):
        other_server.method(pool=True)(_async_handler)
    other_server.close()


async def _async_handler():
    pass


def test_server_close_with_a_pool_handler_waiting(serve_in_thread):
    probe = Probe()
    server = make_server(probe, workers=2)
    uri = serve_in_thread(server)
    c = joint.connect(uri, timeout=10)
    s = c.call_stream('pool_forever', window=1)
    next(s)                      # the worker now waits for credit
    server.stop()
    assert wait_for(lambda: server.closed)
    assert probe.finally_ran.wait(10)
    c.close()


def test_extension_options(served):
    for bad in (dict(window=0), dict(workers=-1), dict(workers=1.5), dict(window=-1), dict(window=1.5)):
        with pytest.raises(ValueError):
            joint.Server(**bad)
    joint.Server(extension=False, window=3, workers=1).close()
    joint.Server(workers=0).close()             # a Server's workers=0: handlers run inline
    # The client side: its window is the default of its streams; its pool serves its own
    # pool methods, which the server streams from over joint.peer().
    _, uri, _, _ = served
    with joint.connect(uri, timeout=10, window=5, workers=2) as c:
        assert c.ctx.window == 5
        main = threading.get_ident()

        @c.method(pool=True)
        def work(n):
            for i in range(n):
                yield [i, threading.get_ident() != main]
            return 'worked'

        assert c.call('stream_back', 4) == [[[i, True] for i in range(4)], 'worked']
        assert list(c.call_stream('count', 7)) == list(range(7))


# ---- asyncio -----------------------------------------------------------------------------------

def test_asyncio_streams():
    probe = Probe()

    async def main():
        server = make_server(probe, window=16)
        uri = server.listen('tcp://127.0.0.1:0')
        serving = asyncio.ensure_future(server.aserve())
        c = await joint.aconnect(uri, timeout=10)
        s = c.stream('count', 300, window=3)
        assert [x async for x in s] == list(range(300)) and s.result == 300
        assert server.stats['would_block'] > 0
        # an async generator handler streams too
        assert [x async for x in c.stream('asquares', 5, window=2)] == [0, 1, 4, 9, 16]
        # values in, both ways, against sync and async generators
        for method in ('echo', 'aecho'):
            s = c.stream(method, client_stream=True)
            assert await s.__anext__() == 'ready'
            assert await s.asend('x') == 'x'
            assert await s.asend([1, 2]) == [1, 2]
            await s.end_input()
            assert [x async for x in s] == []
        s = c.stream('total', client_stream=True)
        await s.__anext__()
        for i in range(50):
            await s.write(i)
        await s.end_input()
        assert len([x async for x in s]) == 50 and s.result == sum(range(50))
        # throw
        s = c.stream('resilient', client_stream=True)
        await s.__anext__()
        assert await s.athrow(ValueError('v')) == ['caught', 0, 'ValueError: v']
        await s.aclose()
        loop = asyncio.get_running_loop()

        async def finally_ran():
            ran = await loop.run_in_executor(None, probe.finally_ran.wait, 10)
            probe.finally_ran.clear()
            return ran

        # aclose cancels: the async generator's finally runs
        probe.finally_ran.clear()
        s = c.stream('aforever', window=2)
        assert [await s.__anext__(), await s.__anext__()] == [0, 1]
        await s.aclose()
        assert await finally_ran()
        # cancelling the task that awaits the stream cancels the call (and the handler's task)
        s = c.stream('async_sleeper', 10)
        task = asyncio.ensure_future(s.__anext__())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await finally_ran()
        # a stream dropped unfinished is cancelled by the loop
        s = c.stream('forever', window=1)
        assert await s.__anext__() == 0
        del s
        gc.collect()
        assert await finally_ran()
        # many streams at once on one connection
        streams = [c.stream('count', 50, window=2) for _ in range(20)]

        async def drain(st):
            return [x async for x in st]
        assert await asyncio.gather(*(drain(st) for st in streams)) == [list(range(50))] * 20
        # the blocking client's astream
        assert [x async for x in c.client.astream('count', 3)] == [0, 1, 2]
        c.close()
        server.stop()
        await asyncio.wait_for(serving, 10)
    run(main())


def test_astream_against_a_stock_server(serve_in_thread):
    probe = Probe()
    server = make_server(probe, extension=False)
    uri = serve_in_thread(server)

    async def main():
        c = await joint.aconnect(uri, timeout=10)
        s = c.stream('count', 3)
        assert [x async for x in s] == [[0, 1, 2]] and s.result == [0, 1, 2]
        s = c.stream('count', 1, client_stream=True)
        assert await s.__anext__() == [0]
        with pytest.raises(joint.UnsupportedError):
            await s.write(1)
        c.close()
    run(main())


# ---- the shared protocol test vectors ----------------------------------------------------------

def _from_json(value):
    if isinstance(value, dict):
        if set(value) == {'$bin'}:
            return bytes.fromhex(value['$bin'])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def test_protocol_vectors_decode_to_their_messages():
    path = os.path.join(ROOT, 'tests', 'vectors', 'protocol.json')
    if not os.path.isfile(path):
        pytest.skip('no tests/vectors/protocol.json (not a source checkout)')
    with open(path, encoding='utf-8') as f:
        vectors = json.load(f)['vectors']
    assert len(vectors) >= 20
    names = set()
    for v in vectors:
        decoded = msgpack.unpackb(bytes.fromhex(v['hex']), raw=False, strict_map_key=False)
        assert decoded == _from_json(v['message']), v['name']
        # ...and packing the message gives the same bytes (joint encodes in the smallest form).
        assert msgpack.packb(_from_json(v['message']), use_bin_type=True).hex() == v['hex'], v['name']
        names.add(v['name'])
    assert {'call', 'yield', 'send', 'end', 'cancel', 'throw', 'more-yields', 'more-sends'} <= names


# ---- callers that push values eagerly ----------------------------------------------------------

def test_foreign_client_streaming_into_generators(served, cli, monkeypatch):
    """`joint call --send-json-lines` streams values in as fast as credit allows (window 64),
    without taking items. With the CALL's CLIENT_STREAM flag known (joint_request_flags, when
    the C API has it), a generator is resumed once per value, never with a None for a value
    that has not arrived yet."""
    _, uri, _, probe = served
    import joint._streams as streams
    if not hasattr(joint._ffi.lib, 'joint_request_flags'):
        monkeypatch.setattr(streams, 'takes_input', lambda req: True)   # what the flag would say
    p = subprocess.run([cli, 'call', '--help'], capture_output=True, text=True, timeout=30)
    if '--send-json-lines' not in p.stdout + p.stderr:
        pytest.skip('this joint CLI has no --send-json-lines')
    values = '\n'.join(str(i) for i in range(1, 201))
    probe.events.clear()
    for method in ('total', 'pool_total', 'atotal'):
        p = subprocess.run([cli, 'call', '--send-json-lines', '-', uri, method], input=values,
                           capture_output=True, text=True, timeout=30)
        assert (p.returncode, p.stderr) == (0, ''), method
        result = json.loads(p.stdout)
        if method == 'atotal':            # an async generator has no return value
            assert result is None and probe.events == [200 * 201 // 2]
        else:
            assert result == 200 * 201 // 2, method
    # ...and Python's lock-step client works the same against input-driven generators.
    with joint.connect(uri, timeout=10) as c:
        s = c.call_stream('echo', client_stream=True)
        assert next(s) == 'ready' and s.send(1) == 1 and next(s) is None and s.send('x') == 'x'
        s.end_input()
        assert list(s) == [] and s.result == 'bye'
        s = c.call_stream('pool_echo', client_stream=True)
        assert next(s) == 'ready' and s.send(3)[0] == 3
        s.close()


def test_calls_that_end_before_their_generator_runs(serve_in_thread):
    # Callers that start a streaming call and cancel it at once: the call ends (cancelled) in
    # the same process as it arrives, before the server runs its handler. The server ends
    # those quietly and keeps serving.
    probe = Probe()
    server = make_server(probe, window=4)
    uri = serve_in_thread(server)
    for _ in range(40):
        c = joint.connect(uri, timeout=10)
        assert c.call('empty') == [] and c.extension == 'on'
        s = c.call_stream('forever', window=4)
        s.close()                # the call and its cancel leave in one write
        c.close()
    with joint.connect(uri, timeout=10) as c:
        assert list(c.call_stream('count', 3)) == [0, 1, 2]
    assert wait_for(lambda: server.ctx.streams == set())
