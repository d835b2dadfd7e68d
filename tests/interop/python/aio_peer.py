"""aio-msgpack-rpc 0.2.0 peer (server and client) for joint's interop matrix.

    aio_peer.py server tcp HOST PORT | server unix PATH    serve; prints READY when listening
    aio_peer.py client tcp HOST PORT | client unix PATH    run the checks against joint serve,
                                                           one JSON line per check on stdout
    aio_peer.py server|client tls|mtls HOST PORT DIR       the same over TLS (Python's ssl):
        DIR holds ca.pem, server.pem/server-key.pem and client.pem/client-key.pem; with mtls the
        server requires a client certificate signed by ca.pem and the client presents one
Both sides pass msgpack's strict_map_key=False through the library's own unpacker hooks
(its default unpacker refuses maps with non-str keys and then stops reading the connection).
"""
import asyncio
import os
import signal
import ssl
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import pycommon as C  # noqa: E402

import msgpack  # noqa: E402
import aio_msgpack_rpc  # noqa: E402
from aio_msgpack_rpc.error import RPCResponseError  # noqa: E402

CALL_TIMEOUT = 60
SKIP = {"ext:negative-type": C.PY_NEGATIVE_EXT}


class Handler:
    def __init__(self):
        self.last = None

    def echo(self, x):
        return x

    def fail(self):
        # aio-msgpack-rpc sends str(exception) as the error object: only strings are possible.
        raise Exception("boom \u2717")

    def note(self, *params):
        self.last = list(params)

    def last_note(self):
        return self.last

    async def sleep(self, ms, tag):
        await asyncio.sleep(ms / 1000.0)
        return tag


def tls_context(args, side):
    """The ssl context for `tls`/`mtls` transports: a verifying server or client."""
    mutual, d = args[0] == "mtls", args[3]
    if side == "server":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(d, "server.pem"), os.path.join(d, "server-key.pem"))
        if mutual:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(os.path.join(d, "ca.pem"))
    else:
        ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.pem"))
        if mutual:
            ctx.load_cert_chain(os.path.join(d, "client.pem"), os.path.join(d, "client-key.pem"))
    return ctx


async def serve(args):
    server = aio_msgpack_rpc.Server(
        Handler(), unpacker_factory=lambda: msgpack.Unpacker(raw=False, strict_map_key=False))
    if args[0] == "tcp":
        srv = await asyncio.start_server(server, args[1], int(args[2]))
    elif args[0] in ("tls", "mtls"):
        srv = await asyncio.start_server(server, args[1], int(args[2]), ssl=tls_context(args, "server"))
    else:
        srv = await asyncio.start_unix_server(server, args[1])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("READY", flush=True)
    async with srv:
        await stop.wait()


async def client(args):
    if args[0] == "tcp":
        r, w = await asyncio.open_connection(args[1], int(args[2]))
    elif args[0] in ("tls", "mtls"):
        r, w = await asyncio.open_connection(args[1], int(args[2]), ssl=tls_context(args, "client"))
    else:
        r, w = await asyncio.open_unix_connection(args[1])
    c = aio_msgpack_rpc.Client(r, w, unpacker=msgpack.Unpacker(raw=False, strict_map_key=False),
                               response_timeout=CALL_TIMEOUT)

    async def step(name, coro):
        try:
            await coro
        except Exception as e:  # a check that blew up is a failed check, the rest still run
            C.report(name, False, "exception: %r" % (e,))

    async def types():
        chosen = [(n, v) for n, v in C.items() if n not in SKIP]
        names = [n for n, _ in chosen]
        vals = [C.native(v) for _, v in chosen]
        got = await c.call("echo", vals)
        d = C.diff(vals, got)
        for a, b, s in C.ADD_CASES:
            got_sum = await c.call("add", a, b)
            d = d or C.diff(s, got_sum, "add(%r, %r)" % (a, b))
        C.report("types", d is None, d or "%d items echoed, %d add() cases" % (len(vals), len(C.ADD_CASES)),
                 items=names, skipped=SKIP)

    async def errors():
        details = []
        ok = True
        for method, params, want in (("nope", [1], C.NOMETHOD_ERROR), ("add", ["x", 1], C.BADPARAMS_ERROR)):
            try:
                res = await c.call(method, *params)
                ok = False
                details.append("%s: no error, result %r" % (method, res))
            except RPCResponseError as e:
                d = C.diff(want, e.args[0], method)
                ok = ok and d is None
                details.append(d or "%s -> %r" % (method, e.args[0]))
        alive = await c.call("echo", "still alive")
        ok = ok and alive == "still alive"
        C.report("error", ok, "; ".join(details))

    async def notify():
        await c.notify("note", *C.NOTE_PARAMS)
        got = await c.call("last_notification")
        d = C.diff(["note", C.NOTE_PARAMS], got)
        C.report("notify", d is None, d or "last_notification() = %r" % (got,))

    async def pipeline():
        plan = C.pipeline_plan()
        order = []

        async def one(k, method, params):
            res = await c.call(method, *params)
            order.append(k)
            return res

        results = await asyncio.gather(*(one(k, m, p) for k, (m, p, _) in enumerate(plan)))
        bad = [k for k, (res, (_, _, want)) in enumerate(zip(results, plan)) if C.diff(want, res)]
        reordered = order != sorted(order)
        C.report("pipeline", not bad and len(order) == len(plan),
                 "%d calls, %d wrong" % (len(plan), len(bad)),
                 reordered=reordered)

    async def big():
        data = C.big_bytes()
        got = await c.call("echo", data)
        ok = isinstance(got, bytes) and got == data
        blob = await c.call("blob", C.BIG_LEN)
        ok2 = isinstance(blob, bytes) and blob == C.blob_bytes(C.BIG_LEN)
        C.report("big", ok and ok2, "echo(16 MiB bin) %s; blob(16 MiB) %s" % (
            "intact" if ok else "WRONG (%s, %d bytes)" % (type(got).__name__, len(got or b"")),
            "intact" if ok2 else "WRONG"))

    for name, f in (("types", types), ("error", errors), ("notify", notify),
                    ("pipeline", pipeline), ("big", big)):
        await step(name, f())
    c.close()


def main():
    role, args = sys.argv[1], sys.argv[2:]
    asyncio.run(serve(args) if role == "server" else client(args))


if __name__ == "__main__":
    main()
