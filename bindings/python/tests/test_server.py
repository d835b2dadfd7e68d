"""joint.Server in-process: handlers, errors, keyword params, generators, notifications,
listening, stopping, Ctrl-C; called by the joint client and by the `joint call` CLI."""
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import joint


def make_server():
    server = joint.Server()
    seen = []

    @server.method
    def add(a, b):
        return a + b

    @server.method('greet')
    def hello(name, punctuation='!'):
        return 'hello ' + name + punctuation

    @server.method
    def varargs(*args, **kwargs):
        return [list(args), kwargs]

    @server.method
    def fail(message):
        raise ValueError(message)

    @server.method
    def fail_bare():
        raise RuntimeError

    @server.method
    def fail_remote(code, message):
        raise joint.RemoteError(code, message)

    @server.method
    def fail_string():
        raise joint.RemoteError('just a string')

    class CodedError(Exception):
        code = 42

    @server.method
    def fail_coded():
        raise CodedError('with a code')

    @server.method
    def count(n):
        for i in range(n):
            yield i

    @server.method
    def count_then_fail(n):
        for i in range(n):
            yield i
        raise IndexError('stream broke')

    @server.method
    def unencodable():
        return object()

    @server.method
    def data():
        return {'bytes': b'\x00\x01', 'tuple': (1, 2), 'nested': [{'x': None}]}

    @server.method
    def note(*args, **kwargs):
        seen.append((args, kwargs))

    @server.method
    def seen_notes():
        return [[list(a), k] for a, k in seen]

    @server.method
    def ask_back(x):
        # Call the client that is calling us, over the same connection, while we serve it.
        return joint.peer().call('twice', x, timeout=5)

    @server.method
    def ask_back_named(method, x):
        return joint.peer().call(method, x, timeout=5)

    @server.method
    def stop_server():
        server.stop()
        return 'stopping'

    return server


@pytest.fixture
def served(serve_in_thread):
    server = make_server()
    uri = serve_in_thread(server)
    with joint.connect(uri, timeout=10) as c:
        yield server, uri, c


def test_calls(served):
    _, _, c = served
    assert c.call('add', 1, 2) == 3
    assert c.call('greet', 'Ada') == 'hello Ada!'
    assert c.call('greet', name='Ada', punctuation='?') == 'hello Ada?'
    assert c.call('varargs', 1, 2) == [[1, 2], {}]
    assert c.call('varargs', a=1) == [[], {'a': 1}]
    assert c.call('varargs') == [[], {}]
    assert c.call('data') == {'bytes': b'\x00\x01', 'tuple': [1, 2], 'nested': [{'x': None}]}


def test_handler_exception_becomes_error_reply(served):
    _, _, c = served
    with pytest.raises(joint.RemoteError) as ei:
        c.call('fail', 'bad thing')
    assert ei.value.error == [0, 'ValueError: bad thing']
    assert ei.value.code == joint.RPC_HANDLER_FAILED
    assert ei.value.message == 'ValueError: bad thing'
    with pytest.raises(joint.RemoteError) as ei:
        c.call('fail_bare')
    assert ei.value.error == [0, 'RuntimeError']


def test_remote_error_raised_by_a_handler(served):
    _, _, c = served
    with pytest.raises(joint.RemoteError) as ei:
        c.call('fail_remote', 17, 'custom')
    assert ei.value.error == [17, 'custom'] and ei.value.code == 17 and ei.value.message == 'custom'
    with pytest.raises(joint.RemoteError) as ei:
        c.call('fail_string')
    assert ei.value.error == 'just a string' and ei.value.code is None
    with pytest.raises(joint.RemoteError) as ei:
        c.call('fail_coded')
    assert ei.value.error == [42, 'with a code']


def test_invalid_params(served):
    _, _, c = served
    with pytest.raises(joint.RemoteError) as ei:
        c.call('add', 1)
    assert ei.value.code == joint.RPC_INVALID_PARAMS
    assert "'b'" in ei.value.message
    with pytest.raises(joint.RemoteError) as ei:
        c.call('greet', nom='x')
    assert ei.value.code == joint.RPC_INVALID_PARAMS
    with pytest.raises(joint.RemoteError) as ei:
        c.call_with('varargs', {1: 'non-string key'})
    assert ei.value.code == joint.RPC_INVALID_PARAMS


def test_unknown_method(served):
    _, _, c = served
    with pytest.raises(joint.RemoteError) as ei:
        c.call('nope')
    assert ei.value.code == joint.RPC_NO_METHOD


def make_fallback_server():
    server = make_server()
    calls = []

    @server.fallback
    def anything(method, *args, **kwargs):
        calls.append(method)
        if method == 'explode':
            raise ValueError('no ' + args[0])
        if method == 'explode_remote':
            raise joint.RemoteError(23, 'custom from fallback')
        if method.startswith('gen_'):
            return (method + str(i) for i in range(args[0]))
        return {'method': method, 'args': list(args), 'kwargs': kwargs}

    return server, calls


@pytest.fixture
def fallback_served(serve_in_thread):
    server, calls = make_fallback_server()
    uri = serve_in_thread(server)
    with joint.connect(uri, timeout=10) as c:
        yield server, calls, c


def test_fallback_receives_unregistered_methods(fallback_served):
    _, calls, c = fallback_served
    assert c.call('nope') == {'method': 'nope', 'args': [], 'kwargs': {}}
    assert c.call('some.method', 1, 'two', [3]) == {'method': 'some.method', 'args': [1, 'two', [3]],
                                                     'kwargs': {}}
    assert c.call('kw', x=2) == {'method': 'kw', 'args': [], 'kwargs': {'x': 2}}
    assert c.call('ünïcode') == {'method': 'ünïcode', 'args': [], 'kwargs': {}}
    assert calls == ['nope', 'some.method', 'kw', 'ünïcode']
    # An extended call carries positional and keyword params together.
    s = c.call_stream('mixed', 1, x=2)
    assert list(s) == [] and s.result == {'method': 'mixed', 'args': [1], 'kwargs': {'x': 2}}


def test_fallback_leaves_registered_methods_alone(fallback_served):
    _, calls, c = fallback_served
    assert c.call('add', 1, 2) == 3
    assert c.call('greet', 'Ada') == 'hello Ada!'
    assert c.call('count', 3) == [0, 1, 2]
    with pytest.raises(joint.RemoteError) as ei:
        c.call('add', 1)                       # a registered method's bad params: not the fallback
    assert ei.value.code == joint.RPC_INVALID_PARAMS
    assert calls == []


def test_fallback_errors_reach_the_caller(fallback_served):
    _, _, c = fallback_served
    with pytest.raises(joint.RemoteError) as ei:
        c.call('explode', 'luck')
    assert ei.value.error == [0, 'ValueError: no luck']
    assert ei.value.code == joint.RPC_HANDLER_FAILED
    with pytest.raises(joint.RemoteError) as ei:
        c.call('explode_remote')
    assert ei.value.error == [23, 'custom from fallback']


def test_fallback_generators_stream(fallback_served):
    _, _, c = fallback_served
    assert c.call('gen_x', 3) == ['gen_x0', 'gen_x1', 'gen_x2']
    assert list(c.call_stream('gen_y', 2)) == ['gen_y0', 'gen_y1']


def test_fallback_signature_is_checked(serve_in_thread):
    server = joint.Server()

    @server.fallback
    def strict(method, a, b=0):
        return [method, a, b]

    uri = serve_in_thread(server)
    with joint.connect(uri, timeout=10) as c:
        assert c.call('m', 1) == ['m', 1, 0]
        assert c.call('m', a=1, b=2) == ['m', 1, 2]
        with pytest.raises(joint.RemoteError) as ei:
            c.call('m')
        assert ei.value.code == joint.RPC_INVALID_PARAMS
        assert 'invalid params for m()' in ei.value.message


def test_fallback_must_take_the_method_name():
    server = joint.Server()
    with pytest.raises(TypeError):
        server.fallback(lambda: None)
    with pytest.raises(TypeError):
        server.fallback('not callable')
    server.close()


def test_fallback_replaced_and_removed(serve_in_thread):
    server = joint.Server()
    server.fallback(lambda method: 'first ' + method)
    uri = serve_in_thread(server)
    with joint.connect(uri, timeout=10) as c:
        assert c.call('x') == 'first x'
        server.fallback(lambda method: 'second ' + method)
        assert c.call('x') == 'second x'
        server.set_fallback(None)
        with pytest.raises(joint.RemoteError) as ei:
            c.call('x')
        assert ei.value.code == joint.RPC_NO_METHOD


def test_unknown_method_without_a_fallback(served):
    _, _, c = served
    with pytest.raises(joint.RemoteError) as ei:
        c.call('not_registered', 1, 2)
    assert ei.value.code == joint.RPC_NO_METHOD
    assert 'not_registered' in ei.value.message


def test_client_fallback_serves_calls_from_the_peer(served):
    _, _, c = served

    @c.fallback
    def back(method, x):
        return [method, x]

    @c.method
    def twice(x):
        return 2 * x

    assert c.call('ask_back', 21) == 42           # the registered method still wins
    assert c.call('ask_back_named', 'whatever', 5) == ['whatever', 5]


def test_generator_handler_fallback(served):
    _, _, c = served
    # A stock client gets the items as one list...
    assert c.call('count', 4) == [0, 1, 2, 3]
    # ...and call_stream iterates them.
    assert list(c.call_stream('count', 3)) == [0, 1, 2]
    with pytest.raises(joint.RemoteError) as ei:
        c.call('count_then_fail', 2)
    assert ei.value.error == [0, 'IndexError: stream broke']


def test_unencodable_result(served):
    _, _, c = served
    with pytest.raises(joint.RemoteError) as ei:
        c.call('unencodable')
    assert ei.value.code == joint.RPC_HANDLER_FAILED
    assert 'cannot encode' in ei.value.message


def test_notifications_reach_handlers(served):
    _, _, c = served
    c.notify('note', 1, 2)
    c.notify('note', k='v')
    c.notify('unregistered_notification', 1)      # ignored
    c.notify('fail', 'a failing notification handler is only logged')
    assert c.call('seen_notes') == [[[1, 2], {}], [[], {'k': 'v'}]]


def test_peer_callback_over_the_same_connection(served):
    _, _, c = served

    @c.method
    def twice(x):
        return 2 * x

    assert c.call('ask_back', 21) == 42


def test_concurrent_clients_in_threads(served):
    _, uri, _ = served
    errors = []

    def worker(k):
        try:
            with joint.connect(uri, timeout=10) as c:
                for i in range(50):
                    assert c.call('add', k, i) == k + i
        except BaseException as e:  # noqa: B902
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_shared_client_across_threads(served):
    _, _, c = served
    errors = []

    def worker(k):
        try:
            for i in range(50):
                assert c.call('add', k, i) == k + i
        except BaseException as e:  # noqa: B902
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_listen_port_zero_and_unix(tmp_path, serve_in_thread):
    server = make_server()
    tcp = server.listen('tcp://127.0.0.1:0')
    assert tcp.startswith('tcp://127.0.0.1:') and not tcp.endswith(':0')
    path = str(tmp_path / 's.sock')
    unix = serve_in_thread(server, 'unix://' + path)
    assert unix == 'unix://' + path
    for uri in (tcp, unix):
        with joint.connect(uri, timeout=5) as c:
            assert c.call('add', 2, 2) == 4


def test_listen_errors():
    server = joint.Server()
    uri = server.listen('tcp://127.0.0.1:0')
    with pytest.raises(joint.ConnectionError) as ei:
        server.listen(uri)                       # address in use
    assert 'in use' in str(ei.value).lower()
    with pytest.raises(joint.ConnectionError):
        server.listen('nonsense')
    server.close()


def test_stop_from_a_handler(serve_in_thread):
    server = make_server()
    uri = serve_in_thread(server)
    with joint.connect(uri, timeout=5) as c:
        assert c.call('stop_server') == 'stopping'
    for _ in range(200):
        if server.closed:
            break
        time.sleep(0.01)
    assert server.closed
    with pytest.raises(joint.ConnectionError):
        joint.connect(uri, timeout=2)


def test_joint_cli_calls_our_server(cli, served):
    _, uri, _ = served

    def call(*args):
        p = subprocess.run([cli, 'call', uri] + list(args), capture_output=True, text=True, timeout=30)
        return p.returncode, p.stdout.strip(), p.stderr.strip()

    assert call('add', '2', '3') == (0, '5', '')
    assert call('greet', '"Bob"')[1] == '"hello Bob!"'
    rc, out, err = call('fail', '"x"')
    assert rc == 1 and 'ValueError: x' in out + err
    assert json.loads(call('count', '3')[1]) == [0, 1, 2]


SERVER_SCRIPT = textwrap.dedent('''
    import sys, time, asyncio, joint
    server = joint.Server()

    @server.method
    def add(a, b):
        return a + b

    @server.method
    async def slow(seconds):
        await asyncio.sleep(seconds)
        return "finished"

    print(server.listen("tcp://127.0.0.1:0"), flush=True)
    server.serve(grace=5)
    print("serve returned", server.closed, flush=True)
''')


def test_serve_stops_gracefully_on_sigint(tmp_path):
    script = tmp_path / 'server.py'
    script.write_text(SERVER_SCRIPT)
    # start_new_session: a SIGINT for the child only; default SIGINT disposition even when the
    # test runner was started in the background.
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        uri = proc.stdout.readline().strip()
        assert uri.startswith('tcp://'), uri
        with joint.connect(uri, timeout=10) as c:
            assert c.call('add', 1, 2) == 3
            result = {}
            t = threading.Thread(target=lambda: result.setdefault('slow', c.call('slow', 0.5)))
            t.start()
            time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            t.join(10)
            assert result.get('slow') == 'finished'       # answered during the graceful shutdown
        assert proc.wait(10) == 0
        assert 'serve returned True' in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_resource_limits_are_options(serve_in_thread):
    # A 1 MiB memory budget: an answer of 2 MiB does not fit and becomes error code 10
    # (resource exhausted); smaller ones work, on the same connection.
    server = joint.Server(memory_budget=1 << 20, max_connections=8, message_timeout=5,
                          idle_timeout=math.inf, linger=0, listen_backlog=16,
                          output_high_water=1 << 16)

    @server.method
    def blob(n):
        return bytes(n)

    uri = serve_in_thread(server)
    with joint.connect(uri, timeout=10, memory_budget=64 << 20) as c:
        with pytest.raises(joint.RemoteError) as info:
            c.call('blob', 2 << 20)
        assert info.value.code == 10, info.value
        assert c.call('blob', 1000) == bytes(1000)
    with pytest.raises(ValueError):
        joint.Server(linger=-1)
    with pytest.raises(ValueError):
        joint.Server(memory_budget=-5)
