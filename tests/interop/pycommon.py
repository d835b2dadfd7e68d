"""Shared by the harness and the Python peers (aio-msgpack-rpc, msgpack-rpc-python, pynvim).

Works with msgpack 1.x and with the msgpack-python 0.5.6 that msgpack-rpc-python pins, and
with no third-party import at all in the parts the harness needs before the venvs exist.
The item list is the interop matrix's "every MessagePack type" value; peers in other
languages (node/peer.js, go/main.go, java/.../Peer.java) build the same items by name.
"""

import collections
import json
import struct
import sys

try:
    import msgpack
    from msgpack import ExtType
except ImportError:  # only the bootstrap path of the harness
    msgpack = None
    ExtType = None

class Ext(collections.namedtuple("Ext", "code data")):
    """An ext value, any type code -128..127 (msgpack-python's ExtType takes only 0..127)."""


def native(v):
    """An item as the Python peers send it: Ext -> msgpack.ExtType (0..127) or
    msgpack.Timestamp (-1, msgpack >= 1.0 only); other negative codes cannot be sent."""
    if isinstance(v, Ext):
        if v.code == -1 and getattr(msgpack, "Timestamp", None):
            return msgpack.Timestamp.from_bytes(v.data)
        return ExtType(v.code, v.data)
    return v


def pack_item(v):
    """Exact wire form of an item for the harness (any ext code)."""
    if isinstance(v, Ext):
        n = len(v.data)
        code = struct.pack(">b", v.code)
        fix = {1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8}
        if n in fix:
            return bytes([fix[n]]) + code + v.data
        if n < 256:
            return b"\xc7" + struct.pack(">B", n) + code + v.data
        if n < 65536:
            return b"\xc8" + struct.pack(">H", n) + code + v.data
        return b"\xc9" + struct.pack(">I", n) + code + v.data
    return msgpack.packb(v, use_bin_type=True)


# Big payload: 16 MiB, byte i is i % 251 (a prime, so it never lines up with 256).
BIG_LEN = 16 * 1024 * 1024


def big_bytes():
    block = bytes(i % 251 for i in range(251 * 1024))
    n = BIG_LEN // len(block) + 1
    return (block * n)[:BIG_LEN]


def blob_bytes(n):
    """What joint serve's blob(n) returns: byte i is i % 256."""
    block = bytes(range(256))
    return (block * (n // 256 + 1))[:n]


NON_ASCII = "h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c\u8a9e \U0001F389"  # 2-, 3- and 4-byte UTF-8


def items():
    """(name, value) pairs: every MessagePack type, integer boundaries, each size class."""
    it = [
        ("nil", None),
        ("true", True),
        ("false", False),
    ]
    for v in (0, -1, -32, -33, 127, 128, 255, 256, -128, -129, 65535, 65536, -32768, -32769,
              2**31 - 1, 2**31, 2**32 - 1, 2**32, -2**31, -2**31 - 1,
              2**53, -2**63, 2**63 - 1, 2**63, 2**64 - 1):
        it.append(("int:%d" % v, v))
    it += [
        ("float64:1.5", 1.5),
        ("float64:-0.1", -0.1),
        ("float64:1e308", 1e308),
        ("float64:5e-324", 5e-324),
        ("str:empty", ""),
        ("str:ascii", "ascii"),
        ("str:non-ascii", NON_ASCII),
        ("str:str8", "x" * 40),
        ("str:str16", NON_ASCII * 20),
        ("str:str32", "y" * 70000),
        ("bin:empty", b""),
        ("bin:bytes", b"\x00\x01\x7f\x80\xfe\xff"),
        ("bin:bin16", bytes(range(256)) + bytes(44)),
        ("bin:bin32", bytes(i % 256 for i in range(70000))),
        ("array:empty", []),
        ("array:nested", [1, [2, [3, [4, []]]], "deep"]),
        ("array:array16", list(range(20))),
        ("array:array32", list(range(70000))),
        ("map:empty", {}),
        ("map:nested", {"a": 1, "nested": {"k": [True, None, "v"]}, "\u00fcml": "\u00e4"}),
        ("map:map16", {"k%02d" % i: i for i in range(20)}),
        ("map:map32", {"k%05d" % i: i for i in range(70000)}),
        ("map:int-keys", {1: "one", -1: "minus one"}),
    ]
    it += [
        ("ext:fixext1", Ext(1, b"\x01")),
        ("ext:fixext2", Ext(2, b"\x01\x02")),
        ("ext:fixext4", Ext(4, b"\x01\x02\x03\x04")),
        ("ext:fixext8", Ext(8, bytes(range(8)))),
        ("ext:fixext16", Ext(16, bytes(range(16)))),
        ("ext:ext8", Ext(5, b"abc")),
        ("ext:ext16", Ext(127, bytes(300))),
        ("ext:ext32", Ext(6, bytes(i % 256 for i in range(70000)))),
        ("ext:negative-type", Ext(-5, b"neg")),
        # the timestamp extension (type -1), 32-bit form: 2021-01-01T00:00:00Z
        ("ext:timestamp32", Ext(-1, (1609459200).to_bytes(4, "big"))),
    ]
    return it


def normalize(v):
    """Decoded values as the harness compares them: ext (msgpack.ExtType, and msgpack 1.x's
    Timestamp for type -1) as Ext, tuples as lists."""
    if isinstance(v, Ext):
        return v
    ts = getattr(msgpack, "Timestamp", None) if msgpack else None
    if ts is not None and isinstance(v, ts):
        return Ext(-1, v.to_bytes())
    if ExtType is not None and isinstance(v, ExtType):
        return Ext(v.code, v.data)
    if isinstance(v, (list, tuple)):
        return [normalize(x) for x in v]
    if isinstance(v, dict):
        return {normalize_key(k): normalize(x) for k, x in v.items()}
    return v


def normalize_key(k):
    return tuple(k) if isinstance(k, list) else k


def _kind(v):
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    if isinstance(v, (bytes, bytearray)):
        return "bin"
    if isinstance(v, Ext):
        return "ext"
    if isinstance(v, (list, tuple)):
        return "array"
    if isinstance(v, dict):
        return "map"
    return type(v).__name__


def diff(expected, actual, path="$"):
    """None if equal with types (1 != 1.0 != True, str != bin), else a short description."""
    expected, actual = normalize(expected), normalize(actual)
    ke, ka = _kind(expected), _kind(actual)
    if ke != ka:
        return "%s: expected %s %s, got %s %s" % (path, ke, short(expected), ka, short(actual))
    if ke == "array":
        if len(expected) != len(actual):
            return "%s: expected %d elements, got %d" % (path, len(expected), len(actual))
        for i, (e, a) in enumerate(zip(expected, actual)):
            d = diff(e, a, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    if ke == "map":
        if set(expected) != set(actual):
            return "%s: expected keys %s, got %s" % (path, short(sorted(map(repr, expected))), short(sorted(map(repr, actual))))
        for k in expected:
            d = diff(expected[k], actual[k], "%s[%r]" % (path, k))
            if d:
                return d
        return None
    if ke == "float":
        if expected != actual and not (expected != expected and actual != actual):
            return "%s: expected %r, got %r" % (path, expected, actual)
        return None
    if expected != actual:
        return "%s: expected %s, got %s" % (path, short(expected), short(actual))
    return None


def short(v, n=60):
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def report(check, ok, detail="", **extra):
    """One JSON line per check on stdout: what the peer clients hand back to the harness."""
    rec = {"check": check, "ok": bool(ok), "detail": detail}
    rec.update(extra)
    sys.stdout.write(json.dumps(rec) + "\n")
    sys.stdout.flush()


PY_NEGATIVE_EXT = "msgpack-python's ExtType cannot hold type codes below 0 other than -1 (Timestamp)"

# The joint side of the checks (what joint serve answers), shared by the Python clients.
NOTE_PARAMS = ["notify \u2713", 42]
NOMETHOD_ERROR = [2, "no such method: nope"]
BADPARAMS_ERROR = [1, "add(a, b) needs two numbers"]
ADD_CASES = [  # (a, b, a + b): joint must decode the integers and floats, not just echo bytes
    (2**63 - 1, 0, 2**63 - 1),
    (2**63 - 1, 1, 2**63),
    (2**64 - 2, 1, 2**64 - 1),
    (-2**63, 0, -2**63),
    (-2**63, 2**64 - 1, 2**63 - 1),
    (2**32 - 1, 1, 2**32),
    (-1, -2**31, -2**31 - 1),
    (1.5, 0.25, 1.75),
    (1, 0.5, 1.5),
]
PIPELINE_N = 1000


def pipeline_plan(n=PIPELINE_N):
    """Calls for the pipelining check against joint serve: even k sleep(n-k) ms (1000 ms
    down to 1 ms, so the earliest calls finish last with a wide margin), odd k echo(k)
    (answered at once). Returns
    [(method, params, expected_result)]."""
    plan = []
    for k in range(n):
        if k % 2 == 0:
            plan.append(("sleep", [n - k], None))
        else:
            plan.append(("echo", [k], k))
    return plan


# The "types" and "error" checks of the synchronous Python clients (msgpack-rpc-python,
# pynvim): `call(method, *params)` makes one blocking call on joint serve and returns its
# result; a remote error raises `error_cls` with the error object as args[0].
# (aio-msgpack-rpc's client is async and keeps its own copies.)

def check_types(call, skip):
    """echo() every item not named in skip, then add() across the 64-bit boundaries."""
    chosen = [(n, v) for n, v in items() if n not in skip]
    vals = [native(v) for _, v in chosen]
    got = call("echo", vals)
    d = diff(vals, got)
    for a, b, total in ADD_CASES:
        d = d or diff(total, call("add", a, b), "add(%r, %r)" % (a, b))
    report("types", d is None, d or "%d items echoed, %d add() cases" % (len(vals), len(ADD_CASES)),
           items=[n for n, _ in chosen], skipped=skip)


def check_errors(call, error_cls):
    """An unknown method and bad params: joint's error objects arrive intact, and the
    connection still answers afterwards."""
    details, ok = [], True
    for method, params, want in (("nope", [1], NOMETHOD_ERROR), ("add", ["x", 1], BADPARAMS_ERROR)):
        try:
            res = call(method, *params)
            ok = False
            details.append("%s: no error, result %r" % (method, res))
        except error_cls as e:
            d = diff(want, e.args[0], method)
            ok = ok and d is None
            details.append(d or "%s -> %r" % (method, e.args[0]))
    ok = ok and call("echo", "still alive") == "still alive"
    report("error", ok, "; ".join(details))
