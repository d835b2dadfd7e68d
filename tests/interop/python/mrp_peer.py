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
        C.check_types(c.call, SKIP)

    def errors():
        C.check_errors(c.call, RPCError)

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
