"""The blocking client against the `joint serve` CLI server."""
import builtins
import os
import time

import msgpack
import pytest

import joint


VALUES = [
    None, True, False, 0, 1, -1, 127, 128, -33, 2 ** 31, -2 ** 63, 2 ** 64 - 1, 1.5, -0.25,
    '', 'hello', 'h\u00e9llo \u2713', b'', b'\x00\xffbin', [], [1, [2, [3]]], {}, {'a': 1, 'b': [None]},
    {1: 'int key'}, msgpack.ExtType(5, b'ext'),
]


def test_add(client):
    assert client.call('add', 2, 3) == 5
    assert client.call('add', 1.5, 2) == 3.5


@pytest.mark.parametrize('value', VALUES, ids=repr)
def test_echo_round_trip(client, value):
    assert client.call('echo', value) == value


def test_keyword_params(client):
    # Keyword arguments are sent as a params map; the CLI's add accepts {"a":..,"b":..}.
    assert client.call('add', a=40, b=2) == 42
    assert client.call_with('add', {'a': 1, 'b': 2}) == 3
    assert client.call_with('add', [3, 4]) == 7
    assert client.call_with('add', (5, 6)) == 11


def test_positional_and_keyword_together_is_a_type_error(client):
    with pytest.raises(TypeError):
        client.call('add', 1, b=2)


def test_notify(client):
    client.notify('note', 1, 'two', [3])
    assert client.call('last_notification') == ['note', [1, 'two', [3]]]
    client.notify('kw_note', x=1)
    assert client.call('last_notification') == ['kw_note', {'x': 1}]


def test_notify_then_close_is_sent(cli_server):
    c = joint.connect(cli_server.tcp)
    c.notify('before_close', 7)
    c.close()
    with joint.connect(cli_server.tcp, timeout=5) as c2:
        assert c2.call('last_notification') == ['before_close', [7]]


def test_remote_error_invalid_params(client):
    with pytest.raises(joint.RemoteError) as ei:
        client.call('add', 'x', 1)
    e = ei.value
    assert isinstance(e, joint.Error)
    assert e.code == joint.RPC_INVALID_PARAMS
    assert e.message == 'add(a, b) needs two numbers'
    assert e.error == [1, 'add(a, b) needs two numbers']
    assert e.method == 'add'
    assert 'add(a, b) needs two numbers' in str(e)
    assert client.call('add', 1, 1) == 2      # the connection is still fine


def test_remote_error_no_method(client):
    with pytest.raises(joint.RemoteError) as ei:
        client.call('no_such_method', 1)
    assert ei.value.code == joint.RPC_NO_METHOD
    assert 'no_such_method' in ei.value.message


def test_timeout(client):
    t = time.monotonic()
    with pytest.raises(joint.TimeoutError) as ei:
        client.call('sleep', 2000, timeout=0.1)
    assert 0.09 < time.monotonic() - t < 1.5
    assert isinstance(ei.value, builtins.TimeoutError)
    assert isinstance(ei.value, joint.Error)
    assert 'sleep' in str(ei.value) and 'timed out' in str(ei.value)
    assert client.call('add', 1, 2) == 3      # a late answer is ignored


def test_default_timeout_from_connect(cli_server):
    with joint.connect(cli_server.tcp, timeout=0.1) as c:
        with pytest.raises(joint.TimeoutError):
            c.call('sleep', 2000)
        assert c.call('sleep', 10, timeout=5) is None     # per-call override
        assert c.call('sleep', 200, timeout=None) is None  # no timeout at all


@pytest.mark.parametrize('bad', [0, -1, 'soon', True])
def test_invalid_timeout(client, bad):
    with pytest.raises(ValueError):
        client.call('add', 1, 2, timeout=bad)


def test_unix_socket(cli_server):
    with joint.connect(cli_server.unix, timeout=5) as c:
        assert c.call('add', 20, 22) == 42


def test_connection_refused():
    with pytest.raises(joint.ConnectionError) as ei:
        joint.connect('tcp://127.0.0.1:1', timeout=5)
    assert isinstance(ei.value, builtins.ConnectionError)
    assert 'refused' in str(ei.value).lower()
    assert 'tcp://127.0.0.1:1' in str(ei.value)


@pytest.mark.parametrize('uri', ['bogus://x', 'tcp://no-port', 'unix:///nonexistent/dir/sock'])
def test_bad_addresses(uri):
    with pytest.raises(joint.ConnectionError) as ei:
        joint.connect(uri, timeout=5)
    assert uri in str(ei.value)


def test_server_goes_away(fresh_cli_server):
    c = joint.connect(fresh_cli_server.tcp, timeout=10)
    assert c.call('add', 1, 2) == 3
    fresh_cli_server.proc.kill()
    fresh_cli_server.proc.wait()
    with pytest.raises(joint.ConnectionError) as ei:
        c.call('add', 1, 2)
    assert 'add' in str(ei.value)
    assert c.closed
    with pytest.raises(joint.ConnectionError):
        c.call('add', 1, 2)
    c.close()


def test_pending_call_fails_when_the_server_dies(fresh_cli_server):
    import threading
    c = joint.connect(fresh_cli_server.tcp, timeout=10)
    threading.Timer(0.2, fresh_cli_server.proc.kill).start()
    with pytest.raises(joint.ConnectionError):
        c.call('sleep', 5000)
    c.close()


def test_closed_client(cli_server):
    c = joint.connect(cli_server.tcp)
    c.close()
    c.close()                                 # twice is fine
    assert c.closed
    with pytest.raises(joint.ConnectionError):
        c.call('add', 1, 2)
    with pytest.raises(joint.ConnectionError):
        c.notify('x')


def test_spawn_uri(cli):
    with joint.connect('exec:%s serve --stdio' % cli, timeout=10) as c:
        assert c.call('add', 1, 2) == 3
        c.notify('n', 1)
        assert c.call('last_notification') == ['n', [1]]


def test_spawn_argv(cli):
    with joint.spawn([cli, 'serve', '--stdio'], timeout=10) as c:
        assert c.call('echo', 'over a pipe') == 'over a pipe'


def test_spawn_missing_program():
    with pytest.raises(joint.ConnectionError) as ei:
        joint.connect('exec:/nonexistent/program --flag')
    assert '/nonexistent/program' in str(ei.value)


def test_server_calls_back_into_the_client(client):
    # `callback(method, params)` makes the server call `method` on this client over the same
    # connection; the blocking call serves it while it waits.
    @client.method
    def mul(a, b):
        return a * b

    @client.method('fails')
    def failing():
        raise KeyError('k')

    assert client.call('callback', 'mul', [6, 7]) == 42
    with pytest.raises(joint.RemoteError) as ei:
        client.call('callback', 'fails', [])
    assert ei.value.error == [0, "KeyError: 'k'"]


def test_interrupt_in_a_handler_reaches_the_caller(client):
    @client.method
    def interrupt():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.call('callback', 'interrupt', [])
    # The server got an error answer for its call; the client keeps working.
    assert client.call('add', 2, 2) == 4


def test_large_payload(client):
    data = os.urandom(4 * 1024 * 1024)
    assert client.call('echo', data) == data
    blob = client.call('blob', 1000000)
    assert len(blob) == 1000000 and blob[:3] == b'\x00\x01\x02'


def test_call_stream_of_a_plain_method(client):
    # joint serve speaks the extension: a method that does not stream has no items, and its
    # answer is the stream's result (StopIteration.value).
    s = client.call_stream('echo', [1, 'two', [3]])
    assert list(s) == [] and s.result == [1, 'two', [3]] and s.extended is True
    gen = client.call_stream('echo', ['a', 'b'])
    with pytest.raises(StopIteration) as ei:
        next(gen)
    assert ei.value.value == ['a', 'b']
    gen = client.call_stream('echo', [1, 2, 3])
    with pytest.raises(joint.UnsupportedError, match='client_stream=True'):
        gen.send('value for the server')      # not a client-streaming call
    gen.close()
    with pytest.raises(joint.RemoteError):
        list(client.call_stream('nope'))


def test_call_stream_stock_fallback(cli_server):
    # A stock client (extension=False) cannot stream: the answer is the one item, and the result.
    with joint.connect(cli_server.tcp, timeout=10, extension=False) as c:
        assert c.extension == 'off'
        s = c.call_stream('echo', [1, 'two', [3]])
        assert list(s) == [[1, 'two', [3]]] and s.result == [1, 'two', [3]] and s.extended is False
        gen = c.call_stream('echo', ['a', 'b'], client_stream=True)
        assert next(gen) == ['a', 'b']
        with pytest.raises(joint.UnsupportedError, match='stock'):
            gen.send('value for the server')
        with pytest.raises(NotImplementedError):  # UnsupportedError is also a NotImplementedError
            gen.write('value')
        gen.end_input()                            # nothing to end: a no-op
        with pytest.raises(StopIteration) as ei:
            next(gen)
        assert ei.value.value == ['a', 'b']
        with pytest.raises(joint.RemoteError):
            list(c.call_stream('nope'))


def test_repr_and_uri(client, cli_server):
    assert client.uri == cli_server.tcp
    assert 'open' in repr(client)
