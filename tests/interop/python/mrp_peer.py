"""msgpack-rpc-python 0.4.1 peer (server and client) for joint's interop matrix.

    mrp_peer.py server tcp HOST PORT     serve; prints READY when listening
    mrp_peer.py client tcp HOST PORT     run the checks against joint serve (JSON lines)
The library has a TCP transport only. It pins msgpack-python 0.5.6 and tornado 4.5.3 (its own
venv). Its server runs with the library's defaults; its client is given
unpack_encoding='utf-8' (a documented Client option) so that str and bin stay distinct.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import pycommon as C  # noqa: E402

import msgpackrpc  # noqa: E402
from msgpackrpc.error import RPCError  # noqa: E402
from msgpackrpc.server import AsyncResult  # noqa: E402

SKIP = {
    "ext:negative-type": C.PY_NEGATIVE_EXT,
    "ext:timestamp32": "msgpack-python 0.5.6 predates the timestamp type: ExtType(-1) is refused",
}
NO_BIN = "msgpack-rpc-python packs Python bytes as the old raw (str) type: it cannot send bin"
SKIP.update({
    "bin:empty": NO_BIN,
    "bin:bytes": NO_BIN,
    "bin:bin16": NO_BIN,
    "bin:bin32": NO_BIN,
})


class Handler(object):
    def __init__(self, loop):
        self.loop = loop
        self.last = None

    def echo(self, x):
        return x

    def fail(self):
        raise Exception("boom \u2717")  # sent as str(exception)

    def note(self, *params):
        self.last = list(params)

    def last_note(self):
        return self.last

    def sleep(self, ms, tag):
        result = AsyncResult()
        self.loop._ioloop.call_later(ms / 1000.0, result.set_result, tag)
        return result


def serve(args):
    loop = msgpackrpc.Loop()
    server = msgpackrpc.Server(Handler(loop), loop=loop)
    server.listen(msgpackrpc.Address(args[1], int(args[2])))
    print("READY", flush=True)
    server.start()


def client(args):
    c = msgpackrpc.Client(msgpackrpc.Address(args[1], int(args[2])), timeout=60, unpack_encoding="utf-8")

    def types():
        chosen = [(n, v) for n, v in C.items() if n not in SKIP]
        vals = [C.native(v) for _, v in chosen]
        got = c.call("echo", vals)
        d = C.diff(vals, got)
        for a, b, s in C.ADD_CASES:
            d = d or C.diff(s, c.call("add", a, b), "add(%r, %r)" % (a, b))
        C.report("types", d is None, d or "%d items echoed, %d add() cases" % (len(vals), len(C.ADD_CASES)),
                 items=[n for n, _ in chosen], skipped=SKIP)

    def errors():
        details, ok = [], True
        for method, params, want in (("nope", [1], C.NOMETHOD_ERROR), ("add", ["x", 1], C.BADPARAMS_ERROR)):
            try:
                res = c.call(method, *params)
                ok = False
                details.append("%s: no error, result %r" % (method, res))
            except RPCError as e:
                d = C.diff(want, e.args[0], method)
                ok = ok and d is None
                details.append(d or "%s -> %r" % (method, e.args[0]))
        ok = ok and c.call("echo", "still alive") == "still alive"
        C.report("error", ok, "; ".join(details))

    def notify():
        c.notify("note", *C.NOTE_PARAMS)
        got = c.call("last_notification")
        d = C.diff(["note", C.NOTE_PARAMS], got)
        C.report("notify", d is None, d or "last_notification() = %r" % (got,))

    def pipeline():
        plan = C.pipeline_plan()
        order = []
        futures = []
        for k, (method, params, _) in enumerate(plan):
            f = c.call_async(method, *params)
            f.attach_callback(lambda _f, k=k: order.append(k))
            futures.append(f)
        results = [f.get() for f in futures]
        bad = [k for k, (res, (_, _, want)) in enumerate(zip(results, plan)) if C.diff(want, res)]
        C.report("pipeline", not bad and len(order) == len(plan),
                 "%d calls, %d wrong" % (len(plan), len(bad)),
                 reordered=order != sorted(order))

    def big():
        # It cannot send bin (see SKIP): Python bytes go out as the old raw (str) type. A client
        # with the library's default unpack_encoding (None: str arrives as bytes) checks that
        # 16 MiB of arbitrary bytes survive that way; blob() brings 16 MiB of real bin back.
        raw = msgpackrpc.Client(msgpackrpc.Address(args[1], int(args[2])), timeout=60)
        data = C.big_bytes()
        got = raw.call("echo", data)
        raw.close()
        ok = got == data
        blob = c.call("blob", C.BIG_LEN)
        ok2 = isinstance(blob, bytes) and blob == C.blob_bytes(C.BIG_LEN)
        C.report("big", ok and ok2, "echo(16 MiB of bytes, sent as str) %s; blob(16 MiB bin) %s" % (
            "intact" if ok else "WRONG", "intact" if ok2 else "WRONG"))

    for name, f in (("types", types), ("error", errors), ("notify", notify),
                    ("pipeline", pipeline), ("big", big)):
        try:
            f()
        except Exception as e:
            C.report(name, False, "exception: %r" % (e,))
    c.close()


if __name__ == "__main__":
    (serve if sys.argv[1] == "server" else client)(sys.argv[2:])
