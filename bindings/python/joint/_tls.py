"""TLS settings (``joint.TLSConfig``): what ``connect(..., tls=)`` and ``Server.listen(...,
tls=)`` turn into a ``joint_tls_config`` for the one C call that needs it. The library copies
the settings (``joint_ctx_listen_tls``/``joint_ctx_connect_tls``), so the C object is freed
right after; a TLSConfig holds only Python values and may be reused and shared.
"""
import contextlib
import os
from typing import Iterator, Optional, Tuple, Union

from ._ffi import CData, ffi, lib, NULL

# A file path (str or os.PathLike) or the PEM data itself (bytes).
PEM = Union[str, 'os.PathLike[str]', bytes, bytearray, memoryview]

_CLIENT_AUTH = {
    'none': lib.JOINT_TLS_CLIENT_AUTH_NONE,
    'optional': lib.JOINT_TLS_CLIENT_AUTH_OPTIONAL,
    'required': lib.JOINT_TLS_CLIENT_AUTH_REQUIRED,
}


def _pem_or_path(value: Optional['PEM'], what: str) -> Tuple[bool, bytes]:
    """(True, bytes) for PEM data, (False, encoded path) for a path."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return True, bytes(value)
    if isinstance(value, (str, os.PathLike)):
        path = os.fsencode(value)
        if b'\0' in path:
            raise ValueError('%s path must not contain NUL' % what)
        return False, path
    raise TypeError('%s must be a file path (str or os.PathLike) or PEM bytes, not %s'
                    % (what, type(value).__name__))


class TLSConfig:
    """TLS settings for ``tls://`` URIs.

    Server (``server.listen("tls://HOST:PORT", tls=...)``): ``cert`` (the certificate chain,
    leaf first) and ``key`` (its private key: PKCS#8, PKCS#1 or SEC1) are needed; ``ca`` and
    ``client_auth="optional"``/``"required"`` ask clients for certificates signed by that CA.

    Client (``joint.connect("tls://HOST:PORT", tls=...)``; without ``tls=`` the server is
    verified against the system's trusted roots): ``ca`` to trust instead of the system's
    roots, ``cert``/``key`` for servers that ask for a client certificate, ``server_name``
    the DNS name (or IP address) the server's certificate must carry instead of the URI's host.

    ``cert``, ``key`` and ``ca`` are file paths (str or os.PathLike) or the PEM data itself
    (bytes). They are read and checked here (a missing file, a key that is not the
    certificate's: ``ValueError`` naming the cause), and again, by the library, at each
    listen or connect.
    """

    __slots__ = ('cert', 'key', 'ca', 'client_auth', 'server_name')

    def __init__(self, *, cert: Optional[PEM] = None, key: Optional[PEM] = None,
                 ca: Optional[PEM] = None, client_auth: str = 'none',
                 server_name: Optional[str] = None) -> None:
        if (cert is None) != (key is None):
            raise ValueError('TLSConfig: cert and key go together (a certificate needs its key)')
        if cert is not None:
            if _pem_or_path(cert, 'cert')[0] != _pem_or_path(key, 'key')[0]:
                raise TypeError('TLSConfig: cert and key must both be paths or both PEM bytes')
        if ca is not None:
            _pem_or_path(ca, 'ca')
        if client_auth not in _CLIENT_AUTH:
            raise ValueError('TLSConfig: client_auth must be "none", "optional" or "required", not %r'
                             % (client_auth,))
        if client_auth != 'none' and ca is None:
            raise ValueError('TLSConfig: client_auth=%r needs ca= (the CA client certificates '
                             'must be signed by)' % client_auth)
        if server_name is not None:
            if not isinstance(server_name, str):
                raise TypeError('TLSConfig: server_name must be a str, not %s' % type(server_name).__name__)
            if not server_name or '\0' in server_name:
                raise ValueError('TLSConfig: server_name must be a non-empty name without NUL')
        self.cert = cert
        self.key = key
        self.ca = ca
        self.client_auth = client_auth
        self.server_name = server_name
        with self.build():       # read and check the files now, where the mistake was made
            pass

    @contextlib.contextmanager
    def build(self) -> Iterator[CData]:
        """A ``joint_tls_config *`` with these settings, freed when the block ends."""
        out = ffi.new('joint_tls_config **')
        if lib.joint_tls_config_new(out) < 0:
            raise MemoryError('joint_tls_config_new failed')
        tls = out[0]
        try:
            if self.cert is not None:
                is_pem, cert = _pem_or_path(self.cert, 'cert')
                _, key = _pem_or_path(self.key, 'key')
                if is_pem:
                    st = lib.joint_tls_config_set_certificate_pem(tls, cert, len(cert), key, len(key))
                else:
                    st = lib.joint_tls_config_set_certificate_files(tls, cert, key)
                _check(tls, st, 'cert/key')
            if self.ca is not None:
                is_pem, ca = _pem_or_path(self.ca, 'ca')
                if is_pem:
                    st = lib.joint_tls_config_set_ca_pem(tls, ca, len(ca))
                else:
                    st = lib.joint_tls_config_set_ca_file(tls, ca)
                _check(tls, st, 'ca')
            _check(tls, lib.joint_tls_config_set_client_auth(tls, _CLIENT_AUTH[self.client_auth]),
                   'client_auth')
            if self.server_name is not None:
                _check(tls, lib.joint_tls_config_set_server_name(tls, self.server_name.encode('utf-8')),
                       'server_name')
            yield tls
        finally:
            lib.joint_tls_config_free(tls)

    def __repr__(self) -> str:
        def show(v: Optional[PEM]) -> Optional[str]:
            return '<%d bytes of PEM>' % len(v) if isinstance(v, (bytes, bytearray, memoryview)) else repr(v)
        parts = ['%s=%s' % (name, show(getattr(self, name))) for name in ('cert', 'key', 'ca')
                 if getattr(self, name) is not None]
        if self.client_auth != 'none':
            parts.append('client_auth=%r' % self.client_auth)
        if self.server_name is not None:
            parts.append('server_name=%r' % self.server_name)
        return 'joint.TLSConfig(%s)' % ', '.join(parts)


def _check(tls: CData, status: int, what: str) -> None:
    if status < 0:
        detail = ffi.string(lib.joint_tls_config_error(tls)).decode('utf-8', 'replace')
        raise ValueError('TLSConfig: %s: %s' % (what, detail or 'refused'))


def check_uri(uri: object, tls: Optional['TLSConfig'], what: str) -> bool:
    """``tls`` (a TLSConfig or None) fits ``uri``: the settings only mean something for tls://."""
    if tls is not None and not isinstance(tls, TLSConfig):
        raise TypeError('tls must be a joint.TLSConfig, not %s' % type(tls).__name__)
    is_tls = isinstance(uri, str) and uri.startswith('tls://')
    if tls is not None and not is_tls:
        raise ValueError('%s %s: tls= applies to tls://HOST:PORT URIs only' % (what, uri))
    return is_tls


@contextlib.contextmanager
def maybe_build(tls: Optional['TLSConfig']) -> Iterator[CData]:
    """``tls.build()``, or NULL for None (the library's defaults: the system's roots)."""
    if tls is None:
        yield NULL
    else:
        with tls.build() as ptr:
            yield ptr
