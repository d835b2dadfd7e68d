#!/usr/bin/env python3
"""joint's interop matrix: joint against MessagePack-RPC implementations nobody on this
project wrote, in both directions, over TCP, Unix sockets and TLS.

Run it through scripts/interop.sh (which installs the peers and builds joint first):

    harness.py [--peers aio,mrp,...] [--doc docs/INTEROP.md] [--skip PEER,...]

Directions
  joint->peer  the peer's server; joint is the client (tests/interop/joint_batch.c over the
               C API: this harness writes every payload and checks every answer)
  peer->joint  `joint serve`; the peer's own client runs the checks and reports one JSON line
               per check (tests/interop/{python,node,go,java})
Checks (each a separate connection for joint->peer)
  types     one call whose params and result carry every MessagePack type (pycommon.items())
  error     error replies arrive with the error object intact; the connection stays usable
  notify    a notification arrives (read back through the server's state)
  pipeline  1000 calls issued before any answer is read; replies out of order where the
            server can answer out of order
  big       16 MiB of bin each way (old-spec peers: bytes in the raw/str type)
  callback  the server calls its client while the client's call is pending (nested), for
            libraries that can (only a few: see EXPECTED_UNSUPPORTED)
Transports
  tcp, unix  plaintext
  tls        TLS over TCP, the server verified against a test CA (certificates made with the
             openssl command at the start of the run); the peer's own TLS stack (Python's ssl,
             Go's crypto/tls) on its side, rustls on joint's
  mtls       the same, and the server requires a client certificate signed by that CA
Cells that cannot work (a peer without a Unix transport, a type a peer cannot represent) are
listed with their reasons in EXPECTED_UNSUPPORTED / the peers' `exclude`; everything else must
pass, so a regression fails the run.
"""
import argparse
import concurrent.futures
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CACHE = os.path.join(HERE, ".cache")
LOGS = os.path.join(CACHE, "logs")
sys.path.insert(0, HERE)
import pycommon as C  # noqa: E402
import msgpack  # noqa: E402

JOINT = os.path.join(ROOT, "target", "release", "joint")
BATCH = os.path.join(CACHE, "bin", "joint_batch")
CHECKS = ["types", "error", "notify", "pipeline", "big", "callback"]
DIRECTIONS = ["joint->peer", "peer->joint"]
TRANSPORTS = ["tcp", "unix", "tls", "mtls"]
TLS_TRANSPORTS = ("tls", "mtls")
CERTS = None  # the directory of the TLS test certificates, made by make_certs() in main()
JOINT_OK, JOINT_E_REMOTE, JOINT_E_CLOSED, JOINT_E_TIMEOUT = 0, -300, -102, -103
JOINT_ENV = dict(os.environ, JOINT_LOG="info")  # joint's own log goes to the cell's log file
PROBE_TIMEOUT_MS = 3000
CALL_TIMEOUT_MS = 60000
STEP_TIMEOUT = 120  # seconds, one joint_batch run or one peer client run
START_TIMEOUT = 60  # seconds for a server to say it is listening (JVM, first run)

PY = lambda venv: os.path.join(CACHE, venv, "bin", "python")  # noqa: E731


# ---------------------------------------------------------------------------------------------
# Peers. `exclude`: joint->peer type items the peer cannot carry, with the reason. `expect`:
# how the peer's server legitimately changes an item it echoes (name, value) -> value.
# `fail_error` / `nomethod_error`: the error objects its server sends for an application
# error and for an unknown method.

def same(_name, v):
    return v


def mrp_expect(name, v):
    # msgpack-python 0.5.6 as msgpack-rpc-python sets it up: bin is unpacked to bytes and
    # packed back as raw (the old str type), so a bin comes back as a str with the same bytes.
    if isinstance(v, bytes):
        return v.decode("utf-8", "surrogateescape")
    if isinstance(v, list):
        return [mrp_expect(name, x) for x in v]
    if isinstance(v, dict):
        return {mrp_expect(name, k): mrp_expect(name, x) for k, x in v.items()}
    return v


def node_expect(name, v):
    # msgpack-lite: numbers outside the int32 range are packed as float64; maps are JS objects
    # (keys become strings).
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int) and not -2**31 <= v < 2**31:
        assert float(v) == v, "not exactly representable: exclude it"
        return float(v)
    if isinstance(v, list):
        return [node_expect(name, x) for x in v]
    if isinstance(v, dict):
        return {str(k): node_expect(name, x) for k, x in v.items()}
    return v


PY_NEGATIVE_EXT = ("msgpack-python's ExtType takes only type codes 0..127 (and -1 as its "
                   "Timestamp): its unpacker raises on any other negative type")

PEERS = {}  # in order of priority
PEERS["aio"] = dict(
    label="aio-msgpack-rpc 0.2.0",
    lang="Python 3.11, msgpack 1.2.4",
    server=lambda t, a: [PY("venv-aio"), os.path.join(HERE, "python", "aio_peer.py"), "server", t] + a,
    client=lambda t, a: [PY("venv-aio"), os.path.join(HERE, "python", "aio_peer.py"), "client", t] + a,
    exclude={"ext:negative-type": PY_NEGATIVE_EXT},
    expect=same,
    fail_error="boom \u2717",
    nomethod_error="'Handler' object has no attribute 'nope'",
    server_reorders=True,
    client_reorders=True,
    notes=[
        "Server and client are given `msgpack.Unpacker(strict_map_key=False)` through the "
        "library's own hooks: its default unpacker rejects maps with non-str keys and then "
        "stops reading the connection.",
        "Its server can only send strings as error objects (`str(exception)`); its client "
        "treats a falsy error object (`0`, `\"\"`) as success.",
    ],
)

PEERS["mrp"] = dict(
    label="msgpack-rpc-python 0.4.1",
    lang="Python 3.11, msgpack-python 0.5.6, tornado 4.5.3",
    server=lambda t, a: [PY("venv-mrp"), os.path.join(HERE, "python", "mrp_peer.py"), "server", t] + a,
    client=lambda t, a: [PY("venv-mrp"), os.path.join(HERE, "python", "mrp_peer.py"), "client", t] + a,
    exclude={
        "ext:negative-type": PY_NEGATIVE_EXT,
        "ext:timestamp32": "msgpack-python 0.5.6 predates the timestamp type: its unpacker "
                           "raises on ext -1",
    },
    expect=mrp_expect,
    big_expect=lambda d: d.decode("utf-8", "surrogateescape"),
    fail_error="boom \u2717",
    nomethod_error="'nope' method not found",
    server_reorders=True,  # with its AsyncResult
    client_reorders=True,
    notes=[
        "Its server echoes **bin as str**: msgpack-python 0.5.6 unpacks bin to bytes and the library "
        "packs bytes as the old raw type (no `use_bin_type`), so the 16 MiB bin comes back as a "
        "16 MiB str with the same bytes (not valid UTF-8). Its client, likewise, cannot send bin: "
        "Python bytes go out as str; the peer\u2192joint big check sends 16 MiB of bytes that way "
        "(joint echoes them byte for byte) and receives `blob()`'s 16 MiB bin.",
        "TCP only (no Unix socket transport). It does not set TCP_NODELAY, so pipelined writes "
        "can wait on delayed ACKs (slower, not wrong; nothing here is timed).",
        "Its client resets msgids at 2^30; its server answers out of order only when a handler "
        "returns an `AsyncResult` (the peer's `sleep` does).",
    ],
)

PEERS["pynvim"] = dict(
    label="pynvim 0.6.0 msgpack_rpc",
    lang="Python 3.11, msgpack 1.2.4; client only",
    server=None,
    client=lambda t, a: [PY("venv-pynvim"), os.path.join(HERE, "python", "pynvim_peer.py"), "client", t] + a,
    exclude={},
    expect=same,
    client_reorders=True,
    notes=[
        "Its sessions (`tcp_session`, `socket_session`) send `nvim_set_client_info` with a **bin** "
        "method name as their first message; joint accepts it (the notify check reads it back "
        "through `last_notification`).",
        "Its default error wrapper keeps only `error[1]`; the client sets `error_wrapper` to keep "
        "the whole object. It has no public pipelined call (`Session.request` blocks), so the "
        "pipeline check uses the session's `AsyncSession`.",
    ],
)

NODE_INEXACT = ("msgpack-lite's default codec decodes 64-bit integers to the nearest double, "
                "so this value cannot come back exactly")
PEERS["node"] = dict(
    label="msgpack-rpc-lite 1.0.2",
    lang="Node 20, msgpack-lite 0.1.27",
    server=lambda t, a: ["node", os.path.join(HERE, "node", "peer.js"), "server", t] + a,
    client=lambda t, a: ["node", os.path.join(HERE, "node", "peer.js"), "client", t] + a,
    exclude={"int:%d" % (2**63 - 1): NODE_INEXACT, "int:%d" % (2**64 - 1): NODE_INEXACT},
    expect=node_expect,
    fail_error=[42, "boom \u2717", {"detail": True}],
    nomethod_error="Not Implemented",
    server_reorders=True,
    client_reorders=True,
    notes=[
        "Its server (default msgpack-lite codec) packs every integer outside the int32 range as "
        "**float64**, so such integers come back from its `echo` as floats of the same value; "
        "integers it cannot hold exactly in a double are left out. Maps come back with string "
        "keys (JavaScript objects).",
        "Its server answers a notification it has no handler for with a response "
        "`[1, -1, \"Not Implemented\", nil]`; joint ignores it (the notify check sends one).",
        "Its server dies on ECONNRESET unless an `error` handler is added to each socket "
        "(`tests/interop/node/peer.js` adds one). msgpack-lite reads ext type codes as unsigned "
        "(-5 becomes 251) but writes the same byte back.",
        "The peer\u2192joint client decodes with `{int64: true}` and sends integers outside int32 as "
        "`int64-buffer` objects (a msgpack-lite feature): the only way JavaScript carries them "
        "exactly. JavaScript cannot tell 1.0 from 1, so float-vs-int is checked by value only on "
        "that side; JavaScript has no float32 to send.",
    ],
)

PEERS["go"] = dict(
    label="neovim/go-client v1.2.1 msgpack/rpc",
    lang="Go 1.26",
    server=lambda t, a: [os.path.join(CACHE, "bin", "gopeer"), "server", t] + a,
    client=lambda t, a: [os.path.join(CACHE, "bin", "gopeer"), "client", t] + a,
    exclude={"map:int-keys": "go-client's msgpack decodes maps into map[string]interface{}; a map "
                             "with integer keys makes the call fail with \"msgpack/rpc: invalid argument\""},
    expect=same,
    fail_error=[42, "boom \u2717"],
    nomethod_error="unknown request method: nope",
    server_reorders=True,
    client_reorders=True,
    notes=[
        "A general MessagePack-RPC endpoint (both directions on one connection). Its server runs "
        "each request on its own goroutine and notifications on another, so a request can "
        "overtake the notification sent before it: the peer's `last_note` waits for the note.",
        "Its msgids wrap at 2^31. It packs float32 as float64. Ext values are received through "
        "its extension map (`rpc.WithExtensions`) and sent through `msgpack.Marshaler`.",
    ],
)

JAVA_DIR = os.path.join(HERE, "java")


def java_cmd(role, msgpack_jar):
    def build(t, a):
        lib = os.path.join(JAVA_DIR, "target", "lib")
        jars = [os.path.join(lib, j) for j in sorted(os.listdir(lib)) if not j.startswith("msgpack-0.")]
        jars.append(msgpack_jar)
        cp = ":".join([os.path.join(JAVA_DIR, "target", "classes")] + jars)
        return ["java", "-Xss4m", "-cp", cp, "interop.Peer", role, t] + a
    return build


JAVA_066 = os.path.join(JAVA_DIR, "target", "lib", "msgpack-0.6.6.jar")
JAVA_0612 = os.path.join(JAVA_DIR, "target", "lib-msgpack-0.6.12", "msgpack-0.6.12.jar")
JAVA_NO_EXT = "msgpack-java 0.6 has no ext type (its unpacker rejects 0xc7-0xc9, 0xd4-0xd8)"
JAVA_EXT = {n: JAVA_NO_EXT for n, v in C.items() if n.startswith("ext:")}
JAVA_STR8 = ("32..255-byte strings (`str:non-ascii` is 32 bytes of UTF-8) are str8 (0xd9) in "
             "every encoder since the 2013 spec, joint included, and msgpack-java 0.6.6 cannot "
             "read str8")
JAVA_NOTES = [
    "Its server hands each message to a worker pool, so a request can overtake the notification "
    "sent just before it on the same connection (seen while building this matrix: `last_note` "
    "answered nil); the peer's `last_note` waits for the note.",
    "An `RPCError` thrown by a handler is sent as error = its code string "
    "(`\"RemoteError.NoMethodError\"`) with `[message]` in the *result* field "
    "(`[1, id, \"RemoteError.NoMethodError\", [\"nope\"]]`); joint surfaces the error object and "
    "ignores the result, as the spec says.",
    "It reads a msgid with `IntegerValue.getInt()`, so msgids from 2^31 up would fail; joint "
    "numbers calls from 1 per connection, so only a connection with 2^31 calls would get there.",
    "TCP only (Netty 3 NIO; no Unix socket transport). Its client cannot send bin: byte[] is "
    "packed as the old raw type, so its peer\u2192joint big check sends 16 MiB of bytes as a str "
    "(not valid UTF-8), which joint echoes byte for byte.",
]
PEERS["java"] = dict(
    label="msgpack-rpc-java 0.7.1 (msgpack-java 0.6.6)",
    lang="Java 17, Netty 3.2; as published: com.github.stampery:msgpack-rpc:0.7.1",
    server=java_cmd("server", JAVA_066),
    client=java_cmd("client", JAVA_066),
    exclude=dict({"bin:" + k: "msgpack-java 0.6.6 implements the pre-2013 spec and cannot read "
                  "bin (0xc4-0xc6)" for k in ("empty", "bytes", "bin16", "bin32")},
                 **{"str:str8": JAVA_STR8, "str:non-ascii": JAVA_STR8},
                 **JAVA_EXT),
    expect=same,
    big_kind="raw",
    fail_error=[42, "boom \u2717"],
    nomethod_error="RemoteError.NoMethodError",
    server_reorders=True,
    client_reorders=True,
    notes=["**Old-spec peer.** msgpack-java 0.6.6 reads neither str8 nor bin nor ext: a call "
           "from joint that carries a string of 32..255 bytes or any bin gets no answer, and "
           "joint has no option to write only the pre-2013 types. The 0.6.12 variant is the same "
           "library with a codec that reads str8 and bin. The joint\u2192peer big check sends "
           "16 MiB of bytes as the old raw (str) type instead of bin."] + JAVA_NOTES,
)
PEERS["java0612"] = dict(
    label="msgpack-rpc-java 0.7.1 + msgpack-java 0.6.12",
    lang="Java 17, Netty 3.2; the same library with msgpack-java's last 0.6 release",
    server=java_cmd("server", JAVA_0612),
    client=java_cmd("client", JAVA_0612),
    exclude=JAVA_EXT,
    expect=mrp_expect,
    big_expect=lambda d: d.decode("utf-8", "surrogateescape"),
    fail_error=[42, "boom \u2717"],
    nomethod_error="RemoteError.NoMethodError",
    server_reorders=True,
    client_reorders=True,
    notes=["msgpack-java 0.6.12 reads str8 and bin, but as its one raw type: its server echoes "
           "**bin as str** (same bytes), like msgpack-rpc-python."] + JAVA_NOTES,
)

# (peer, direction, transport, check) -> reason; check None = the whole cell.
NO_CALLBACK = {
    "aio": ("its server has no way to call its client", "its client only takes responses (a request "
            "from the server is logged as \"received non-response object\" and dropped)"),
    "mrp": ("its server has no way to call its client", "its client has no request handler "
            "(`on_request` raises NotImplementedError)"),
    "node": ("its server has no way to call its client", "its client takes every message as a "
             "response (a request from the server would be taken for the answer to the client's "
             "own call with that msgid)"),
    "java": ("its server has no way to call its client", "its client drops requests from the "
             "server (RpcMessageHandler answers requests only inside a Server)"),
}
NO_CALLBACK["java0612"] = NO_CALLBACK["java"]
EXPECTED_UNSUPPORTED = {(p, d, t, "callback"): NO_CALLBACK[p][d == "peer->joint"]
                        for p in NO_CALLBACK for d in DIRECTIONS for t in TRANSPORTS}
EXPECTED_UNSUPPORTED.update({
    ("java", "joint->peer", "unix", None): "msgpack-rpc-java has a TCP transport only",
    ("java", "peer->joint", "unix", None): "msgpack-rpc-java has a TCP transport only",
    ("java0612", "joint->peer", "unix", None): "msgpack-rpc-java has a TCP transport only",
    ("java0612", "peer->joint", "unix", None): "msgpack-rpc-java has a TCP transport only",
    ("pynvim", "joint->peer", "tcp", None): "pynvim's msgpack_rpc is a client only",
    ("pynvim", "joint->peer", "unix", None): "pynvim's msgpack_rpc is a client only",
    ("mrp", "joint->peer", "unix", None): "msgpack-rpc-python has a TCP transport only",
    ("mrp", "peer->joint", "unix", None): "msgpack-rpc-python has a TCP transport only",
})
NO_TLS = {
    "mrp": "msgpack-rpc-python's transport is a plain Tornado TCP stream (no TLS option)",
    "pynvim": "pynvim's msgpack_rpc connects over TCP, Unix sockets, stdio or a child process: no TLS",
    "node": "msgpack-rpc-lite opens its own plain `net` sockets (no TLS option)",
    "java": "msgpack-rpc-java's Netty 3 transport has no TLS option",
    "java0612": "msgpack-rpc-java's Netty 3 transport has no TLS option",
}
EXPECTED_UNSUPPORTED.update({(p, d, t, None): reason for p, reason in NO_TLS.items()
                             for d in DIRECTIONS for t in TLS_TRANSPORTS})
EXPECTED_UNSUPPORTED.update({("pynvim", "joint->peer", t, None): "pynvim's msgpack_rpc is a client only"
                             for t in TLS_TRANSPORTS})


# ---------------------------------------------------------------------------------------------
# TLS certificates

def make_certs(d):
    """A test CA, a server certificate for 127.0.0.1 and localhost and a client certificate,
    both signed by it (openssl; EC P-256): ca.pem, server.pem, server-key.pem, client.pem,
    client-key.pem in `d`."""
    def openssl(*args):
        subprocess.run(["openssl"] + list(args), check=True, cwd=d, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=joint interop CA")
    for name, san in (("server", "subjectAltName=DNS:localhost,IP:127.0.0.1"), ("client", None)):
        openssl("req", *ec, "-keyout", name + "-key.pem", "-out", name + ".csr", "-subj", "/CN=" + name)
        ext = os.path.join(d, name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n" + (san + "\n" if san else ""))
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", ext)
    return d


def mtls_refuses_j2p(uri, log):
    """joint_batch without a client certificate against the peer's mtls server: its call must
    fail. Returns (ok, detail)."""
    saved, BATCH_TLS[uri] = BATCH_TLS[uri], BATCH_TLS[uri][:1]
    try:
        [(_, st, data)] = run_batch(uri, call("echo", pack(["x"])), log, PROBE_TIMEOUT_MS)
    finally:
        BATCH_TLS[uri] = saved
    return st != JOINT_OK, "without a client certificate: joint status %d (%s)" % (st, data.decode("utf-8", "replace"))


def mtls_refuses_p2j(port):
    """Python's ssl, without a client certificate, against joint serve's mtls listener: the
    request must get no answer. Returns (ok, detail)."""
    ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(pack([0, 1, "echo", ["x"]]))
                got = tls.recv(1 << 16)
        return got == b"", "without a client certificate: %s" % ("connection closed" if got == b"" else "answered %r" % got)
    except (ssl.SSLError, OSError) as e:
        return True, "without a client certificate: refused (%s)" % e


# ---------------------------------------------------------------------------------------------
# Processes

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Address:
    def __init__(self, transport, tmpdir, tag):
        self.transport = transport
        if transport == "tcp":
            self.host, self.port = "127.0.0.1", free_port()
            self.uri = "tcp://127.0.0.1:%d" % self.port
            self.args = [self.host, str(self.port)]
        elif transport in TLS_TRANSPORTS:
            self.host, self.port = "127.0.0.1", free_port()
            self.uri = "tls://127.0.0.1:%d" % self.port
            self.args = [self.host, str(self.port), CERTS]
        else:
            self.path = os.path.join(tmpdir, tag + ".sock")
            self.uri = "unix://" + self.path
            self.args = [self.path]


class Server:
    """A server process that says it is ready with a line (on stdout or stderr) containing
    `ready`. Its output goes to `log`."""

    def __init__(self, argv, ready, log, cwd=None, env=None):
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=cwd, env=env, start_new_session=True)
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, args=(ready,), daemon=True)
        self.reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not start: %s (see %s)" % (" ".join(argv), log))

    def _read(self, ready):
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            if ready in line:
                self.ready.set()

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """SIGTERM, then SIGKILL after 5 s. Returns the exit status (negative: signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.reader.join(5)
        return self.proc.returncode


# ---------------------------------------------------------------------------------------------
# joint -> peer: scripts for joint_batch

def rec(kind, method, params):
    m = method.encode()
    return kind + struct.pack("<I", len(m)) + m + struct.pack("<I", len(params)) + params


def call(method, params):
    return rec(b"C", method, params)


def notify(method, params):
    return rec(b"N", method, params)


def pack(v):
    return msgpack.packb(v, use_bin_type=True)


def unpack(b):
    return msgpack.unpackb(b, raw=False, strict_map_key=False, unicode_errors="surrogateescape",
                           ext_hook=lambda code, data: C.Ext(code, data))


BATCH_TLS = {}  # tls:// URI -> joint_batch's CA_FILE [CERT_FILE KEY_FILE] arguments


def run_batch(uri, script, log, timeout_ms=CALL_TIMEOUT_MS):
    """Run joint_batch; returns [(index, status, bytes)] in completion order."""
    argv = [BATCH, uri, str(timeout_ms)]
    if uri.startswith("tls://"):
        argv += BATCH_TLS[uri]
    with open(log, "ab") as err:
        p = subprocess.run(argv, input=script, stdout=subprocess.PIPE,
                           stderr=err, timeout=STEP_TIMEOUT, env=JOINT_ENV)
    if p.returncode != 0:
        raise RuntimeError("joint_batch exited %d (see %s)" % (p.returncode, log))
    out, pos, res = p.stdout, 0, []
    while pos < len(out):
        idx, st, n = struct.unpack_from("<IiI", out, pos)
        pos += 12
        res.append((idx, st, out[pos:pos + n]))
        pos += n
    return res


def describe(st, data):
    if st == JOINT_OK:
        return "result %s" % C.short(unpack(data))
    if st == JOINT_E_REMOTE:
        return "remote error %s" % C.short(unpack(data))
    return "status %d (%s)" % (st, data.decode("utf-8", "replace"))


FLOAT32_ITEMS = [("float32:0.25", 0.25), ("float32:-1.5", -1.5)]


def types_payload(peer):
    """(params bytes, expected items, names): echo's one argument is the array of items."""
    chosen = [(n, v) for n, v in C.items() if n not in peer["exclude"]]
    body = b"".join(C.pack_item(v) for _, v in chosen)
    body += b"".join(msgpack.packb(v, use_single_float=True) for _, v in FLOAT32_ITEMS)
    chosen += FLOAT32_ITEMS
    n = len(chosen)
    header = bytes([0xdc]) + struct.pack(">H", n) if n >= 16 else bytes([0x90 + n])
    expected = [peer["expect"](name, v) for name, v in chosen]
    return b"\x91" + header + body, expected, [name for name, _ in chosen]


def j2p_types(peer, uri, log):
    params, expected, names = types_payload(peer)
    [(_, st, data)] = run_batch(uri, call("echo", params), log)
    if st != JOINT_OK:
        return False, describe(st, data)
    got = unpack(data)
    if not isinstance(got, list) or len(got) != len(expected):
        return False, "echo returned %s" % C.short(got)
    bad = []
    for name, e, g in zip(names, expected, got):
        d = C.diff(e, g, name)
        if d:
            bad.append(d)
    if bad:
        return False, "; ".join(bad[:4]) + (" (+%d more)" % (len(bad) - 4) if len(bad) > 4 else "")
    return True, "%d items" % len(names)


def j2p_error(peer, uri, log):
    script = call("fail", pack([])) + call("nope", pack([1])) + call("echo", pack(["still alive"]))
    res = sorted(run_batch(uri, script, log))
    out, ok = [], True
    for (idx, st, data), (what, want) in zip(res, (("fail()", peer["fail_error"]),
                                                  ("nope()", peer["nomethod_error"]))):
        if st != JOINT_E_REMOTE:
            ok = False
            out.append("%s: %s" % (what, describe(st, data)))
            continue
        d = C.diff(want, unpack(data), what)
        ok = ok and d is None
        out.append(d or "%s -> %s" % (what, C.short(unpack(data), 50)))
    _, st, data = res[2]
    if st != JOINT_OK or unpack(data) != "still alive":
        ok = False
        out.append("echo after errors: %s" % describe(st, data))
    return ok, "; ".join(out)


def j2p_notify(peer, uri, log):
    script = (notify("nope_note", pack(["unknown notification"])) + notify("note", pack(C.NOTE_PARAMS))
              + call("last_note", pack([])) + call("echo", pack(["alive"])))
    res = sorted(run_batch(uri, script, log))
    (_, st, data), (_, st2, data2) = res
    if st != JOINT_OK:
        return False, "last_note(): %s" % describe(st, data)
    d = C.diff(peer["expect"]("note", C.NOTE_PARAMS), unpack(data), "last_note()")
    if st2 != JOINT_OK:
        return False, "echo after notifications: %s" % describe(st2, data2)
    return d is None, d or "last_note() = %s" % C.short(unpack(data), 50)


def j2p_pipeline(peer, uri, log):
    n = C.PIPELINE_N
    script = b"".join(call("sleep", pack([n - k, k])) for k in range(n))
    res = run_batch(uri, script, log)
    order = [idx for idx, _, _ in res]
    bad = [(idx, st, data) for idx, st, data in res if st != JOINT_OK or unpack(data) != idx]
    reordered = order != sorted(order)
    ok = len(res) == n and sorted(order) == list(range(n)) and not bad
    detail = "%d/%d answered correctly" % (n - len(bad), n) if ok else (
        "%d answers, %d wrong; first: %s" % (len(res), len(bad), describe(bad[0][1], bad[0][2]) if bad else "-"))
    return ok, detail, reordered


def j2p_big(peer, uri, log):
    data = C.big_bytes()
    if peer.get("big_kind", "bin") == "bin":
        params = b"\x91" + pack(data)
        want = peer.get("big_expect", lambda d: d)(data)
    else:  # the old spec's only way to carry bytes: the raw (str) type, here not valid UTF-8
        params = b"\x91" + msgpack.packb(data, use_bin_type=False)
        want = data.decode("utf-8", "surrogateescape")
    [(_, st, out)] = run_batch(uri, call("echo", params), log)
    if st != JOINT_OK:
        return False, describe(st, out)
    got = unpack(out)
    if type(got) is not type(want) or got != want:
        return False, "echo(16 MiB) came back as %s of %d" % (type(got).__name__, len(got) if hasattr(got, "__len__") else -1)
    sent = "bin" if peer.get("big_kind", "bin") == "bin" else "str (raw bytes, not UTF-8)"
    back = "bin" if isinstance(got, bytes) else "str"
    return True, "16 MiB %s sent, %s" % (sent, "echoed intact" if sent.startswith(back) else "echoed intact as %s" % back)


def j2p_callback(peer, uri, log):
    """The peer's server calls echo back on joint (joint_batch serves it) while joint's call is
    pending, and passes on the error of a callback to a method joint does not have."""
    script = call("call_back", pack(["ping \u2713"])) + call("call_back_fail", pack([]))
    (_, st, data), (_, st2, data2) = sorted(run_batch(uri, script, log))
    if st != JOINT_OK:
        return False, "call_back(): %s" % describe(st, data)
    d = C.diff("ping \u2713", unpack(data), "call_back()")
    if d:
        return False, d
    if st2 != JOINT_E_REMOTE:
        return False, "call_back_fail(): %s" % describe(st2, data2)
    d = C.diff([2, "no such method: nope_cb"], unpack(data2), "call_back_fail()")
    return d is None, d or ("the peer called echo on joint -> %r; its call to a method joint lacks "
                            "came back as %r" % (unpack(data), unpack(data2)))


def probe(value, uri, log):
    """Send one left-out item alone (echo(item), fresh connection) and say what happened."""
    [(_, st, data)] = run_batch(uri, call("echo", b"\x91" + C.pack_item(value)), log, PROBE_TIMEOUT_MS)
    if st == JOINT_OK:
        got = unpack(data)
        d = C.diff(value, got)
        return "echoed intact" if d is None else "came back changed (%s)" % d.replace("$: ", "")
    if st == JOINT_E_REMOTE:
        return "error reply %s" % C.short(unpack(data), 80)
    if st == JOINT_E_CLOSED:
        return "the peer closed the connection"
    if st == JOINT_E_TIMEOUT:
        return "no reply within %d ms (the peer stopped answering on that connection)" % PROBE_TIMEOUT_MS
    return "joint status %d: %s" % (st, data.decode("utf-8", "replace"))


PROBES = {}  # (peer, transport) -> {item: what happened when it was sent alone}
P2J_SKIPPED = {}  # peer -> {item: reason} reported by its client


def run_j2p(name, peer, transport, tmp):
    tag = "%s-j2p-%s" % (name, transport)
    addr = Address(transport, tmp, tag)
    if transport in TLS_TRANSPORTS:
        BATCH_TLS[addr.uri] = [os.path.join(CERTS, "ca.pem")] + (
            [os.path.join(CERTS, "client.pem"), os.path.join(CERTS, "client-key.pem")] if transport == "mtls" else [])
    log = os.path.join(LOGS, tag + ".log")
    open(log, "wb").close()
    results = {}

    def start():
        return Server(peer["server"](transport, addr.args), b"READY", os.path.join(LOGS, tag + "-server.log"),
                      cwd=peer.get("cwd"))
    open(os.path.join(LOGS, tag + "-server.log"), "wb").close()
    try:
        srv = start()
    except Exception as e:
        return {c: ("fail", str(e)) for c in CHECKS}
    try:
        for check, fn in (("types", j2p_types), ("error", j2p_error), ("notify", j2p_notify),
                          ("pipeline", j2p_pipeline), ("big", j2p_big), ("callback", j2p_callback)):
            if (name, "joint->peer", transport, check) in EXPECTED_UNSUPPORTED:
                results[check] = ("n/a", EXPECTED_UNSUPPORTED[(name, "joint->peer", transport, check)])
                continue
            t0 = time.monotonic()
            try:
                r = fn(peer, addr.uri, log)
            except Exception as e:
                r = (False, "harness: %s" % e)
            dt = time.monotonic() - t0
            ok, detail = r[0], r[1]
            if check == "pipeline" and ok:
                reordered = r[2]
                if peer["server_reorders"] and not reordered:
                    ok, detail = False, detail + "; replies came in order (this server answers out of order)"
                else:
                    detail += "; replies %s" % ("out of order" if reordered else "in order (server is sequential)")
            results[check] = ("pass" if ok else "fail", detail)
            print("  %-9s %-4s %.2fs  %s" % (check, "ok" if ok else "FAIL", dt, detail), flush=True)
            if not srv.alive():
                detail = "peer server exited (%s)" % srv.proc.returncode
                for c in CHECKS:
                    results.setdefault(c, ("fail", detail))
                break
        if transport == "mtls" and "types" in results:
            ok, detail = mtls_refuses_j2p(addr.uri, log)
            print("  mtls      %-4s %s" % ("ok" if ok else "FAIL", detail), flush=True)
            st, d = results["types"]
            results["types"] = ("pass" if st == "pass" and ok else "fail", d + "; " + detail)
        # What the left-out items actually do to this peer (recorded, not judged): each item
        # alone on its own connection; the items left out for one reason go concurrently.
        values = dict(C.items())
        for _reason, items in grouped(peer["exclude"]):
            if not srv.alive():
                srv.stop()
                srv = start()
            with concurrent.futures.ThreadPoolExecutor(len(items)) as pool:
                futures = {item: pool.submit(probe, values[item], addr.uri, log) for item in items}
            for item, f in futures.items():
                try:
                    outcome = f.result()
                except Exception as e:
                    outcome = "harness: %s" % e
                if not srv.alive():
                    outcome += "; the peer server process exited"
                PROBES.setdefault((name, transport), {})[item] = outcome
        if peer["exclude"]:
            print("  probed %d left-out items" % len(peer["exclude"]), flush=True)
    finally:
        srv.stop()
    return results


# ---------------------------------------------------------------------------------------------
# peer -> joint

def run_p2j(name, peer, transport, tmp):
    tag = "%s-p2j-%s" % (name, transport)
    addr = Address(transport, tmp, tag)
    results = {}
    try:
        argv = [JOINT, "serve", "--listen", addr.uri]
        if transport in TLS_TRANSPORTS:
            argv += ["--tls-cert", os.path.join(CERTS, "server.pem"), "--tls-key", os.path.join(CERTS, "server-key.pem")]
        if transport == "mtls":
            argv += ["--tls-client-ca", os.path.join(CERTS, "ca.pem")]
        srv = Server(argv, b"listening on",
                     os.path.join(LOGS, tag + "-joint.log"), env=JOINT_ENV)
    except Exception as e:
        return {c: ("fail", str(e)) for c in CHECKS}
    reports = {}
    open(os.path.join(LOGS, tag + "-joint.log"), "wb").close()
    t0 = time.monotonic()
    try:
        with open(os.path.join(LOGS, tag + "-client.log"), "wb") as err:
            p = subprocess.run(peer["client"](transport, addr.args), stdout=subprocess.PIPE, stderr=err,
                               stdin=subprocess.DEVNULL, timeout=STEP_TIMEOUT, cwd=peer.get("cwd"))
        out, rc = p.stdout, p.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = e.stdout or b"", "timeout"
    dt = time.monotonic() - t0
    for line in out.decode("utf-8", "replace").splitlines():
        try:
            r = json.loads(line)
            reports[r["check"]] = r
        except (ValueError, KeyError):
            pass
    refused = mtls_refuses_p2j(addr.port) if transport == "mtls" else None
    if "types" in reports:
        P2J_SKIPPED.setdefault(name, {}).update(reports["types"].get("skipped") or {})
    joint_alive = srv.alive()
    status = srv.stop()
    for check in CHECKS:
        key = (name, "peer->joint", transport, check)
        if key in EXPECTED_UNSUPPORTED:
            results[check] = ("n/a", EXPECTED_UNSUPPORTED[key])
            continue
        r = reports.get(check)
        if r is None:
            results[check] = ("fail", "no report from the peer client (exit %s)" % rc)
            continue
        ok, detail = r["ok"], r.get("detail", "")
        if check == "pipeline" and ok:
            if peer["client_reorders"] and not r.get("reordered"):
                ok, detail = False, detail + "; completions came in order (joint serve answers out of order)"
            elif "reordered" in r:
                detail += "; completions %s" % ("out of order" if r["reordered"] else "in order")
        if check == "types" and refused is not None:
            ok, detail = ok and refused[0], detail + "; " + refused[1]
        results[check] = ("pass" if ok else "fail", detail)
    if not joint_alive or status not in (0, None):
        for c in CHECKS:
            results[c] = ("fail", "joint serve died or exited %s; " % status + results[c][1])
    print("  client run %.2fs (exit %s)" % (dt, rc), flush=True)
    for c in CHECKS:
        print("  %-9s %-4s %s" % (c, {"pass": "ok", "fail": "FAIL", "n/a": "n/a"}[results[c][0]], results[c][1]), flush=True)
    return results


# ---------------------------------------------------------------------------------------------
# Report

MARK = {"pass": "\u2713", "fail": "\u2717", "n/a": "\u2014"}
ARROW = {"joint->peer": "joint\u2192peer", "peer->joint": "peer\u2192joint"}


def grouped(reasons):
    """{item: reason} -> [(reason, [items])], in item order."""
    out = {}
    for item, reason in reasons.items():
        out.setdefault(reason, []).append(item)
    return list(out.items())


def items_md(items):
    return ", ".join("`%s`" % i for i in items)


def write_doc(path, results, peers):
    L = []
    add = L.append
    add("# Interoperability matrix")
    add("")
    add("<!-- Generated by scripts/interop.sh (tests/interop/harness.py). Do not edit by hand. -->")
    add("")
    add("joint against MessagePack-RPC implementations that nobody on this project wrote, installed "
        "from the public registries (PyPI, npm, the Go module proxy, Maven Central), in both "
        "directions, over TCP, Unix sockets and TLS. `scripts/interop.sh` installs the peers into "
        "`tests/interop/.cache`, builds joint, runs every cell below and rewrites this file; it "
        "exits non-zero when a cell that is expected to pass fails. Run it again after changing "
        "the codec, the protocol state machine or the transports.")
    add("")
    add("- **joint\u2192peer**: the peer's own server; joint is the client "
        "(`tests/interop/joint_batch.c`, a type-blind batch client on the C API: the harness "
        "writes every payload and checks every answer, and joint writes all 1000 pipelined calls "
        "before it reads a reply).")
    add("- **peer\u2192joint**: `joint serve`; the peer's own client runs the checks "
        "(`tests/interop/{python,node,go,java}`).")
    add("")
    add("| check | what it proves |")
    add("|---|---|")
    add("| types | one call whose params and result carry every MessagePack type: nil, true/false, "
        "integers on every format boundary (0, -1, -32/-33, 127/128, 255/256, -128/-129, "
        "65535/65536, -32768/-32769, 2^31-1, 2^31, 2^32-1, 2^32, -2^31, -2^31-1, 2^53, -2^63, "
        "2^63-1, 2^63, 2^64-1), float64 (1.5, -0.1, 1e308, 5e-324) and float32, str of every "
        "size class with 2-, 3- and 4-byte UTF-8, bin of every size class, nested arrays and maps and "
        "arrays and maps of every size class, a map with integer keys, ext of every size class, a negative ext type "
        "and the timestamp type; items a peer cannot represent are left out and named below. "
        "peer\u2192joint also calls `add()` across the 64-bit boundaries, so joint must decode "
        "the numbers, not only echo bytes |")
    add("| error | an application error and an unknown method: the error object arrives intact, "
        "and the connection still answers afterwards |")
    add("| notify | a notification arrives: read back from the server's state "
        "(`last_notification` on joint, `last_note` on the peers); joint\u2192peer first sends a "
        "notification the peer has no handler for |")
    add("| pipeline | 1000 calls written before any reply is read; the first calls sleep longest "
        "(1000 ms down to 1), so a server that can answer out of order must, and every reply "
        "must reach its own call |")
    add("| big | 16 MiB of bin in the request and 16 MiB back (a peer that has no bin type uses "
        "str, noted below) |")
    add("| callback | the server calls its client while the client's own call is pending, and an "
        "error from that nested call comes back intact (joint\u2192peer: the peer's server calls "
        "`echo` on joint, then a method joint lacks; peer\u2192joint: `joint serve`'s "
        "`callback(method, params)` calls the peer client's `twice` and `fail_cb`). Few "
        "libraries can be called by their server or call their client |")
    add("")
    add("\u2713 pass, \u2717 fail, \u2014 the peer does not support it (expected; reasons below). "
        "A transport or direction a peer cannot do at all has no row; its reason is below. "
        "tls: TLS over TCP, the server verified against a test CA; mtls: and the server "
        "requires a client certificate. The peer's side uses its own TLS stack (Python's "
        "`ssl`, Go's `crypto/tls`).")
    add("")
    add("| peer | direction | transport | " + " | ".join(CHECKS) + " |")
    add("|---|---|---|" + "---|" * len(CHECKS))
    for name in peers:
        for direction in DIRECTIONS:
            for transport in TRANSPORTS:
                row = results.get((name, direction, transport))
                if row and not all(r[0] == "n/a" for r in row.values()):
                    add("| %s | %s | %s | %s |" % (PEERS[name]["label"], ARROW[direction], transport,
                                                   " | ".join(MARK[row[c][0]] for c in CHECKS)))
    add("")
    counts = {k: sum(1 for row in results.values() for r in row.values() if r[0] == k) for k in MARK}
    add("%d passed, %d failed, %d not supported by the peer." % (counts["pass"], counts["fail"], counts["n/a"]))
    add("")
    failures = [(k, c, r) for k, row in results.items() for c, r in row.items() if r[0] == "fail"]
    if failures:
        add("## Failures")
        add("")
        for (name, direction, transport), c, r in failures:
            add("- %s %s %s **%s**: %s" % (PEERS[name]["label"], ARROW[direction], transport, c, r[1]))
        add("")
    add("## Peers: what each cannot do, and its quirks")
    add("")
    for name in peers:
        peer = PEERS[name]
        add("### %s" % peer["label"])
        add("")
        add("%s." % peer["lang"])
        add("")
        unsupported = {}
        for (p, direction, transport, check), reason in EXPECTED_UNSUPPORTED.items():
            if p == name and (check is None or (p, direction, transport, None) not in EXPECTED_UNSUPPORTED):
                unsupported.setdefault((direction, check, reason), []).append(transport)
        for (direction, check, reason), transports in sorted(unsupported.items(), key=lambda kv: kv[0][1] is not None):
            add("- Not supported: %s%s (%s) \u2014 %s." % (
                ARROW[direction], "" if check is None else " " + check, ", ".join(transports), reason))
        if peer["exclude"]:
            add("- Left out of the joint\u2192peer types call (each was then sent alone, and what "
                "the peer did is recorded):")
            for reason, items in grouped(peer["exclude"]):
                seen = {}
                for transport in TRANSPORTS:
                    for item in items:
                        o = PROBES.get((name, transport), {}).get(item)
                        if o:
                            seen.setdefault(o, set()).add(transport)
                what = "; ".join("%s (%s)" % (o, "/".join(sorted(ts))) for o, ts in seen.items())
                add("  - %s: %s.%s" % (items_md(items), reason, " Observed: %s." % what if what else ""))
        if P2J_SKIPPED.get(name):
            add("- Left out of the peer\u2192joint types call by its client:")
            for reason, items in grouped(P2J_SKIPPED[name]):
                add("  - %s: %s." % (items_md(items), reason))
        for note in peer["notes"]:
            add("- " + note)
        add("")
    add("## Details of the last run")
    add("")
    for name in peers:
        for direction in DIRECTIONS:
            for transport in TRANSPORTS:
                key = (name, direction, transport)
                if key not in results or all(results[key][c][0] == "n/a" for c in CHECKS):
                    continue
                add("- **%s, %s, %s**" % (PEERS[name]["label"], ARROW[direction], transport))
                for c in CHECKS:
                    st, detail = results[key][c]
                    add("  - %s %s %s" % (c, MARK[st], detail.replace("|", "\\|")))
    add("")
    with open(path, "w") as f:
        f.write("\n".join(L))


# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of: " + ", ".join(PEERS))
    ap.add_argument("--doc", help="write the Markdown report here")
    ap.add_argument("--skip", default="", help="peers whose setup failed: their cells fail without running")
    args = ap.parse_args()
    peers = [p for p in args.peers.split(",") if p]
    for p in peers:
        if p not in PEERS:
            ap.error("unknown peer %r" % p)
    skipped = {p for p in args.skip.split(",") if p}
    os.makedirs(LOGS, exist_ok=True)
    results = {}
    t_all = time.monotonic()
    global CERTS
    with tempfile.TemporaryDirectory(prefix="joint-interop-") as tmp:
        os.makedirs(os.path.join(tmp, "certs"))
        CERTS = make_certs(os.path.join(tmp, "certs"))
        for name in peers:
            peer = PEERS[name]
            for direction in DIRECTIONS:
                for transport in TRANSPORTS:
                    key = (name, direction, transport)
                    print("== %s %s %s" % (name, direction, transport), flush=True)
                    whole = EXPECTED_UNSUPPORTED.get((name, direction, transport, None))
                    if whole is not None:
                        results[key] = {c: ("n/a", whole) for c in CHECKS}
                        print("  n/a: " + whole, flush=True)
                        continue
                    if name in skipped:
                        results[key] = {c: ("fail", "peer setup failed (see scripts/interop.sh output)") for c in CHECKS}
                        print("  FAIL: setup failed", flush=True)
                        continue
                    t0 = time.monotonic()
                    if direction == "joint->peer":
                        results[key] = run_j2p(name, peer, transport, tmp)
                    else:
                        results[key] = run_p2j(name, peer, transport, tmp)
                    print("  (%.1fs)" % (time.monotonic() - t0), flush=True)
    failures = [(k, c) for k, row in results.items() for c, r in row.items() if r[0] == "fail"]
    passes = sum(1 for row in results.values() for r in row.values() if r[0] == "pass")
    na = sum(1 for row in results.values() for r in row.values() if r[0] == "n/a")
    if args.doc:
        write_doc(args.doc, results, peers)
        print("wrote " + args.doc)
    for (name, direction, transport), c in failures:
        print("  FAILED: %s %s %s %s: %s" % (name, direction, transport, c, results[(name, direction, transport)][c][1]))
    print("interop: %.1fs; skipped = cells the peer does not support (docs/INTEROP.md says why)" % (
        time.monotonic() - t_all))
    print("interop: %d passed, %d failed, %d skipped" % (passes, len(failures), na))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
