"""TLS: joint.TLSConfig, connect/listen over tls://, mutual TLS, the peer's identity on both
ends, handshake failures as joint.TLSError naming the cause (the server going on serving), and
Python's own ssl module as the peer in both directions (a stock ssl + msgpack client,
aio-msgpack-rpc over asyncio with ssl=). Certificates are made per session with the openssl
command line tool (EC P-256)."""
import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import sys

import msgpack
import pytest

import joint

from conftest import missing

try:
    import aio_msgpack_rpc
except ImportError:  # pragma: no cover
    aio_msgpack_rpc = None

EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']


class Certs:
    """Two CAs (ca, other); server (CN=server, for 127.0.0.1 and localhost) and alice
    (O=joint, CN=alice, a client certificate) signed by ca; mallory signed by other."""

    def __init__(self, d):
        self.dir = d

        def run(*args):
            subprocess.run(['openssl'] + list(args), cwd=d, check=True, timeout=30,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        for ca, cn in (('ca', 'joint test CA'), ('other', 'other CA')):
            run('req', '-x509', *EC, '-days', '2', '-subj', '/CN=' + cn,
                '-keyout', ca + '.key', '-out', ca + '.pem')
        leaves = (('server', '/CN=server', 'ca',
                   'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n'),
                  ('alice', '/O=joint/CN=alice', 'ca',
                   'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n'),
                  ('mallory', '/CN=mallory', 'other',
                   'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n'))
        for name, subj, ca, ext in leaves:
            with open(os.path.join(d, name + '.ext'), 'w') as f:
                f.write(ext)
            run('req', *EC, '-subj', subj, '-keyout', name + '.key', '-out', name + '.csr')
            run('x509', '-req', '-in', name + '.csr', '-CA', ca + '.pem', '-CAkey', ca + '.key',
                '-CAcreateserial', '-days', '2', '-extfile', name + '.ext', '-out', name + '.pem')

    def path(self, name):
        return os.path.join(self.dir, name)

    def pem(self, name):
        with open(self.path(name), 'rb') as f:
            return f.read()

    def der(self, name):
        return ssl.PEM_cert_to_DER_cert(self.pem(name + '.pem').decode())

    def sha256(self, name):
        """openssl's SHA-256 fingerprint of the certificate, as bytes."""
        out = subprocess.run(['openssl', 'x509', '-in', self.path(name + '.pem'), '-noout',
                              '-fingerprint', '-sha256'], check=True, timeout=30,
                             stdout=subprocess.PIPE, text=True).stdout
        return bytes.fromhex(out.strip().split('=', 1)[1].replace(':', ''))

    def server_tls(self, **kw):
        return joint.TLSConfig(cert=self.path('server.pem'), key=self.path('server.key'), **kw)

    def client_tls(self, who=None, ca='ca', **kw):
        if who is not None:
            kw.update(cert=self.path(who + '.pem'), key=self.path(who + '.key'))
        return joint.TLSConfig(ca=self.path(ca + '.pem'), **kw)


@pytest.fixture(scope='module')
def certs(tmp_path_factory):
    if not shutil.which('openssl'):
        missing('the openssl command')
    return Certs(str(tmp_path_factory.mktemp('tls')))


def identity(peer):
    return {'version': peer.tls_version, 'subject': peer.peer_subject,
            'sha256': peer.peer_sha256, 'der': peer.peer_certificate}


def make_server(**options):
    server = joint.Server(**options)

    @server.method
    def add(a, b):
        return a + b

    @server.method
    def whoami():
        # The connection this request came on: its TLS identity, as the handler sees it.
        return identity(joint.peer())

    return server


def call_add(uri, tls, **options):
    """add(20, 22) over a new connection with ``tls``."""
    with joint.connect(uri, timeout=10, tls=tls, **options) as c:
        return c.call('add', 20, 22)


# ---- settings -------------------------------------------------------------------------------

def test_settings_are_checked_where_they_are_made(certs):
    with pytest.raises(ValueError, match='missing.pem'):
        joint.TLSConfig(cert=certs.path('missing.pem'), key=certs.path('server.key'))
    with pytest.raises(ValueError, match='is not the key'):
        joint.TLSConfig(cert=certs.path('server.pem'), key=certs.path('alice.key'))
    with pytest.raises(ValueError, match='ca'):
        joint.TLSConfig(ca=b'not a certificate')
    with pytest.raises(ValueError, match='cert and key'):
        joint.TLSConfig(cert=certs.path('server.pem'))
    with pytest.raises(TypeError, match='both be paths or both PEM'):
        joint.TLSConfig(cert=certs.pem('server.pem'), key=certs.path('server.key'))
    with pytest.raises(TypeError, match='cert must be'):
        joint.TLSConfig(cert=1, key=2)
    with pytest.raises(ValueError, match='client_auth'):
        joint.TLSConfig(ca=certs.path('ca.pem'), client_auth='sometimes')
    with pytest.raises(ValueError, match='needs ca='):
        certs.server_tls(client_auth='required')
    with pytest.raises(ValueError, match='server_name'):
        joint.TLSConfig(server_name='')
    # Paths may be os.PathLike; PEM may be given as bytes.
    import pathlib
    tls = joint.TLSConfig(cert=pathlib.Path(certs.path('server.pem')),
                          key=pathlib.Path(certs.path('server.key')), ca=certs.pem('ca.pem'),
                          client_auth='optional')
    assert 'server.pem' in repr(tls) and 'bytes of PEM' in repr(tls) and "'optional'" in repr(tls)


def test_tls_argument_fits_the_uri(certs, tmp_path):
    server = joint.Server()
    try:
        with pytest.raises(ValueError, match='needs a certificate'):
            server.listen('tls://127.0.0.1:0')
        with pytest.raises(ValueError, match='needs a certificate'):
            server.listen('tls://127.0.0.1:0', tls=certs.client_tls())
        with pytest.raises(ValueError, match='applies to tls://'):
            server.listen('tcp://127.0.0.1:0', tls=certs.server_tls())
        with pytest.raises(TypeError, match='joint.TLSConfig'):
            server.listen('tls://127.0.0.1:0', tls={'cert': certs.path('server.pem')})
        assert server.uris == []
    finally:
        server.close()
    with pytest.raises(ValueError, match='applies to tls://'):
        joint.connect('tcp://127.0.0.1:1', timeout=5, tls=certs.client_tls())
    with pytest.raises(ValueError, match='applies to tls://'):
        joint.connect('unix://' + str(tmp_path / 'x.sock'), timeout=5, tls=certs.client_tls())
    with pytest.raises(TypeError, match='joint.TLSConfig'):
        joint.connect('tls://127.0.0.1:1', timeout=5, tls=ssl.create_default_context())


# ---- joint to joint -------------------------------------------------------------------------

def test_round_trip_and_identities(certs, serve_in_thread):
    server = make_server()
    plain = server.listen('tcp://127.0.0.1:0')
    uri = serve_in_thread(server, 'tls://127.0.0.1:0', tls=certs.server_tls())
    assert uri.startswith('tls://127.0.0.1:') and uri.rsplit(':', 1)[1] != '0'
    with joint.connect(uri, timeout=10, tls=certs.client_tls()) as c:
        assert c.call('add', 2, 3) == 5
        assert c.call('add', a='x', b='y') == 'xy'
        assert c.tls_version == 'TLSv1.3'
        assert c.peer_subject == 'CN=server'
        assert c.peer_certificate == certs.der('server')
        assert c.peer_sha256 == certs.sha256('server')
        # The server's handler: TLS, and no client certificate was asked for.
        assert c.call('whoami') == {'version': 'TLSv1.3', 'subject': None, 'sha256': None, 'der': None}
        # Streams go over TLS too.
        assert list(c.call_stream('add', 1, 1)) == [] and c.extension == 'on'
    # The host name the certificate carries (DNS:localhost); the same server over plain TCP.
    assert call_add('tls://localhost:' + uri.rsplit(':', 1)[1], certs.client_tls()) == 42
    with joint.connect(plain, timeout=10) as c:
        assert (c.tls_version, c.peer_subject, c.peer_certificate, c.peer_sha256) == (None,) * 4
        assert c.call('whoami') == {'version': None, 'subject': None, 'sha256': None, 'der': None}


def test_pem_bytes(certs, serve_in_thread):
    server = make_server()
    tls = joint.TLSConfig(cert=certs.pem('server.pem'), key=certs.pem('server.key'))
    uri = serve_in_thread(server, 'tls://127.0.0.1:0', tls=tls)
    client_tls = joint.TLSConfig(ca=certs.pem('ca.pem'), cert=certs.pem('alice.pem'),
                                 key=certs.pem('alice.key'))
    assert call_add(uri, client_tls) == 42
    assert call_add(uri, client_tls) == 42       # reusable: a C copy is made per connect


def test_mutual_tls_required(certs, serve_in_thread):
    server = make_server()
    uri = serve_in_thread(server, 'tls://127.0.0.1:0',
                          tls=certs.server_tls(ca=certs.path('ca.pem'), client_auth='required'))
    with joint.connect(uri, timeout=10, tls=certs.client_tls('alice')) as c:
        seen = c.call('whoami')
        assert seen['version'] == 'TLSv1.3'
        assert seen['subject'] == 'O=joint, CN=alice'
        assert seen['der'] == certs.der('alice')
        assert seen['sha256'] == certs.sha256('alice')
        assert c.peer_subject == 'CN=server'

    # No client certificate: refused during the handshake, and the error says so.
    with pytest.raises(joint.TLSError) as ei:
        call_add(uri, certs.client_tls())
    assert 'requires a client certificate' in str(ei.value)
    assert ei.value.status == -106 and isinstance(ei.value, joint.ConnectionError)
    assert isinstance(ei.value, ConnectionError)      # the builtin too
    # A certificate from a CA the server does not trust.
    with pytest.raises(joint.TLSError, match='refused our certificate'):
        call_add(uri, certs.client_tls('mallory'))
    # The server goes on serving.
    assert call_add(uri, certs.client_tls('alice')) == 42


def test_mutual_tls_optional(certs, serve_in_thread):
    server = make_server()
    uri = serve_in_thread(server, 'tls://127.0.0.1:0',
                          tls=certs.server_tls(ca=certs.path('ca.pem'), client_auth='optional'))
    with joint.connect(uri, timeout=10, tls=certs.client_tls()) as c:
        assert c.call('whoami')['subject'] is None
    with joint.connect(uri, timeout=10, tls=certs.client_tls('alice')) as c:
        assert c.call('whoami')['subject'] == 'O=joint, CN=alice'
    # Optional is not "anything goes": an untrusted certificate is still refused.
    with pytest.raises(joint.TLSError):
        call_add(uri, certs.client_tls('mallory'))


def test_server_verification_failures(certs, serve_in_thread):
    server = make_server()
    uri = serve_in_thread(server, 'tls://127.0.0.1:0', tls=certs.server_tls())
    cases = [
        (certs.client_tls(ca='other'), 'not signed by a trusted CA'),          # unknown issuer
        (certs.client_tls(server_name='example.com'), 'name mismatch'),
        (None, 'not signed by a trusted CA'),              # the system's roots know no test CA
    ]
    for tls, cause in cases:
        with pytest.raises(joint.TLSError) as ei:
            joint.connect(uri, timeout=10, tls=tls)
        assert cause in str(ei.value), (tls, str(ei.value))
        assert uri in str(ei.value)           # which connection failed
        assert call_add(uri, certs.client_tls()) == 42    # and the server goes on
    # server_name that the certificate does carry, with an address that is not the name.
    assert call_add(uri, certs.client_tls(server_name='localhost')) == 42


def test_tls_against_a_plaintext_port_and_back(certs, serve_in_thread):
    server = make_server()
    tls_uri = serve_in_thread(server, 'tls://127.0.0.1:0', tls=certs.server_tls())
    tcp_uri = server.listen('tcp://127.0.0.1:0')
    with pytest.raises(joint.TLSError, match='plaintext'):
        call_add('tls://' + tcp_uri[len('tcp://'):], certs.client_tls())
    # A plaintext client on the TLS port is closed before it is served: not a TLSError on
    # this side (it never spoke TLS), but a ConnectionError.
    with pytest.raises(joint.ConnectionError) as ei:
        call_add('tcp://' + tls_uri[len('tls://'):], None)
    assert not isinstance(ei.value, joint.TLSError)
    assert call_add(tls_uri, certs.client_tls()) == 42


def test_calls_that_the_handshake_failed_are_tls_errors(certs, serve_in_thread):
    server = make_server()
    uri = serve_in_thread(server, 'tls://127.0.0.1:0',
                          tls=certs.server_tls(ca=certs.path('ca.pem'), client_auth='required'))
    # connect() waits for the handshake, so the refusal normally comes from it (above). The
    # library also takes calls at once, sent once the handshake is done: make one before it
    # is (a client not yet waited for) to see a pending call fail with the cause.
    from joint._client import _new_client
    c, _ = _new_client(uri, 10, 10, certs.client_tls(), {})
    with c:
        with pytest.raises(joint.TLSError, match='requires a client certificate') as ei:
            c.call('add', 1, 2)
        assert ei.value.status == -106 and str(ei.value).startswith('add: ')
        # Later calls on the dead connection still name the cause.
        with pytest.raises(joint.TLSError, match='requires a client certificate'):
            c.call('add', 1, 2)
        with pytest.raises(joint.TLSError, match='requires a client certificate'):
            c.notify('add', 1, 2)
        assert c.closed


def test_asyncio(certs):
    async def main():
        server = make_server()
        uri = server.listen('tls://127.0.0.1:0', tls=certs.server_tls(ca=certs.path('ca.pem'),
                                                                       client_auth='required'))
        serving = asyncio.ensure_future(server.aserve())
        c = await joint.aconnect(uri, timeout=10, tls=certs.client_tls('alice'))
        results = await asyncio.gather(*(c.call('add', i, i) for i in range(20)))
        assert results == [2 * i for i in range(20)]
        assert (await c.call('whoami'))['subject'] == 'O=joint, CN=alice'
        assert c.peer_subject == 'CN=server' and c.tls_version == 'TLSv1.3'
        assert c.peer_sha256 == certs.sha256('server')
        c.close()
        with pytest.raises(joint.TLSError, match='not signed by a trusted CA'):
            await joint.aconnect(uri, timeout=10, tls=certs.client_tls('alice', ca='other'))
        server.stop()
        await asyncio.wait_for(serving, 10)
    asyncio.run(asyncio.wait_for(main(), 60))


def test_serve_with_tls_uris(certs):
    server = make_server()
    with pytest.raises(ValueError, match='applies to tls://'):
        server.serve('tcp://127.0.0.1:0', tls=certs.server_tls())

    async def main():
        serving = asyncio.ensure_future(server.aserve('tcp://127.0.0.1:0', 'tls://127.0.0.1:0',
                                                      tls=certs.server_tls()))
        await asyncio.sleep(0)
        tcp, tls = server.uris
        assert tcp.startswith('tcp://') and tls.startswith('tls://')
        c = await joint.aconnect(tls, timeout=10, tls=certs.client_tls())
        assert await c.call('add', 1, 2) == 3
        c.close()
        server.stop()
        await asyncio.wait_for(serving, 10)
    asyncio.run(asyncio.wait_for(main(), 60))


# ---- Python's ssl as the peer ---------------------------------------------------------------

def ssl_server_context(certs, require_client=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.path('server.pem'), certs.path('server.key'))
    if require_client:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(certs.path('ca.pem'))
    return ctx


def ssl_client_context(certs, who=None):
    ctx = ssl.create_default_context(cafile=certs.path('ca.pem'))
    if who:
        ctx.load_cert_chain(certs.path(who + '.pem'), certs.path(who + '.key'))
    return ctx


def host_port(uri):
    host, port = uri.split('://', 1)[1].rsplit(':', 1)
    return host, int(port)


def stock_call(uri, ctx, method, *params):
    """One MessagePack-RPC call by hand: ssl + socket + msgpack, nothing of joint."""
    host, port = host_port(uri)
    with socket.create_connection((host, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            s.sendall(msgpack.packb([0, 7, method, list(params)], use_bin_type=True))
            unpacker = msgpack.Unpacker(raw=False)
            while True:
                data = s.recv(65536)
                if not data:
                    raise ConnectionError('closed without an answer')
                unpacker.feed(data)
                for msg in unpacker:
                    return s.version(), msg


def test_stock_ssl_client_calls_joint_server(certs, serve_in_thread):
    server = make_server()
    uri = serve_in_thread(server, 'tls://127.0.0.1:0',
                          tls=certs.server_tls(ca=certs.path('ca.pem'), client_auth='required'))
    version, msg = stock_call(uri, ssl_client_context(certs, 'alice'), 'add', 40, 2)
    assert msg == [1, 7, None, 42] and version == 'TLSv1.3'
    _, (_, _, err, seen) = stock_call(uri, ssl_client_context(certs, 'alice'), 'whoami')
    assert err is None and seen['subject'] == 'O=joint, CN=alice' and seen['sha256'] == certs.sha256('alice')
    # Without a client certificate: the handshake is refused, no answer comes.
    with pytest.raises((ssl.SSLError, ConnectionError)) as ei:
        stock_call(uri, ssl_client_context(certs), 'add', 1, 2)
    assert 'CERTIFICATE_REQUIRED' in str(ei.value) or 'closed' in str(ei.value)
    # Python's ssl refuses a server whose CA it does not trust, before anything is sent.
    other = ssl.create_default_context(cafile=certs.path('other.pem'))
    with pytest.raises(ssl.SSLCertVerificationError):
        stock_call(uri, other, 'add', 1, 2)
    assert stock_call(uri, ssl_client_context(certs, 'alice'), 'add', 1, 2)[1] == [1, 7, None, 3]


def need_aio():
    if aio_msgpack_rpc is None:
        missing('aio-msgpack-rpc (pip install aio-msgpack-rpc==0.2.0)')


def aio_unpacker():
    return msgpack.Unpacker(raw=False, strict_map_key=False)


def test_aio_ssl_client_calls_joint_server(certs):
    need_aio()

    async def main():
        server = make_server()
        uri = server.listen('tls://127.0.0.1:0', tls=certs.server_tls(ca=certs.path('ca.pem'),
                                                                       client_auth='required'))
        serving = asyncio.ensure_future(server.aserve())
        host, port = host_port(uri)
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            host, port, ssl=ssl_client_context(certs, 'alice')), 10)
        c = aio_msgpack_rpc.Client(reader, writer, unpacker=aio_unpacker(), response_timeout=10)
        assert await c.call('add', 2, 3) == 5
        results = await asyncio.gather(*(c.call('add', i, 1) for i in range(10)))
        assert results == [i + 1 for i in range(10)]
        seen = await c.call('whoami')
        assert seen['subject'] == 'O=joint, CN=alice' and seen['der'] == certs.der('alice')
        c.close()
        server.stop()
        await asyncio.wait_for(serving, 10)
    asyncio.run(asyncio.wait_for(main(), 60))


class AioHandler:
    def add(self, a, b):
        return a + b


def test_joint_client_calls_aio_ssl_server(certs):
    need_aio()

    async def main():
        for require_client in (False, True):
            rpc = aio_msgpack_rpc.Server(AioHandler(), unpacker_factory=aio_unpacker)
            srv = await asyncio.start_server(rpc, '127.0.0.1', 0,
                                             ssl=ssl_server_context(certs, require_client))
            uri = 'tls://127.0.0.1:%d' % srv.sockets[0].getsockname()[1]
            async with srv:
                who = 'alice' if require_client else None
                c = await joint.aconnect(uri, timeout=10, tls=certs.client_tls(who))
                assert await c.call('add', 20, 22) == 42
                assert c.peer_subject == 'CN=server'
                assert c.peer_certificate == certs.der('server')
                assert c.tls_version == 'TLSv1.3'
                c.close()
                # joint verifies the server's certificate itself: the cause is named.
                with pytest.raises(joint.TLSError, match='name mismatch'):
                    await joint.aconnect(uri, timeout=10, tls=certs.client_tls(who, server_name='example.com'))
                if require_client:
                    # Python's ssl refuses a client without a certificate. asyncio aborts the
                    # transport on a failed handshake without sending the alert, so all this
                    # side can tell is that the peer closed the connection.
                    with pytest.raises(joint.ConnectionError, match='closed'):
                        c = await joint.aconnect(uri, timeout=10, tls=certs.client_tls())
                        try:
                            await c.call('add', 1, 2)
                        finally:
                            c.close()
                # The blocking client, while the ssl server runs on this loop.
                def blocking():
                    return call_add(uri, certs.client_tls(who))
                assert await asyncio.get_running_loop().run_in_executor(None, blocking) == 42
    asyncio.run(asyncio.wait_for(main(), 60))


# ---- the README's example -------------------------------------------------------------------

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'README.md')


def test_readme_example_runs(tmp_path):
    if not shutil.which('openssl'):
        missing('the openssl command')
    if not os.path.isfile(README):
        pytest.skip('README.md not found (tests run outside the repository)')
    with open(README, encoding='utf-8') as f:
        text = f.read()
    section = text.split('\n## TLS\n', 1)[1].split('\n## ', 1)[0]
    sh = section.split('```sh\n', 1)[1].split('```', 1)[0]
    py = section.split('```python\n', 1)[1].split('```', 1)[0]
    subprocess.run(['bash', '-euc', sh], cwd=str(tmp_path), check=True, timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    out = subprocess.run([sys.executable, '-c', py], cwd=str(tmp_path), timeout=60,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "['TLSv1.3', 'O=example, CN=alice']"
    assert lines[1] == 'CN=server'
    # With TLS 1.3 the client's side of the handshake is done before the server checks its
    # certificate: the refusal reaches connect() or the first call, whichever is waiting.
    assert lines[2].startswith(('connect to tls://127.0.0.1:', 'whoami: ')), lines[2]
    assert lines[2].endswith('TLS: the server requires a client certificate')
    assert len(lines) == 3
